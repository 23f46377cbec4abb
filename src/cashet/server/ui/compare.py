"""The pages of the web UI that relate commits: a diff, why one was computed, a lineage.

Pure rendering over what the client returned, every value escaped.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from cashet.models import Commit
from cashet.provenance.explain import Change, Explanation, compare_manifests
from cashet.server.ui.graph import lineage_svg
from cashet.server.ui.html import (
    Safe,
    commit_url,
    fmt_time,
    link,
    short,
    status_badge,
    table,
    tag,
)

__all__ = ["diff_body", "lineage_body", "why_body"]


def _flag(changed: bool, what: str) -> Safe:
    word = "changed" if changed else "same"
    return tag("span", f"{what}: {word}", class_=f"flag flag-{word}")


def _side_by_side(a: str, b: str) -> Safe:
    left, right = a.splitlines(), b.splitlines()
    rows: list[Safe] = []

    def row(kind: str, i: int | None, j: int | None) -> None:
        la = "" if i is None else left[i]
        lb = "" if j is None else right[j]
        rows.append(
            tag(
                "tr",
                tag("td", "" if i is None else str(i + 1), class_="ln"),
                tag("td", tag("code", la), class_=f"src {kind if i is not None else 'gap'}"),
                tag("td", "" if j is None else str(j + 1), class_="ln"),
                tag("td", tag("code", lb), class_=f"src {kind if j is not None else 'gap'}"),
            )
        )

    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for k in range(i2 - i1):
                row("same", i1 + k, j1 + k)
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            i = i1 + k if i1 + k < i2 else None
            j = j1 + k if j1 + k < j2 else None
            row("del" if j is None else "add" if i is None else "chg", i, j)
    return tag("table", tag("tbody", *rows), class_="sbs", id="source-diff")


def _change_rows(changes: list[Change]) -> list[list[Any]]:
    return [
        [c.kind, c.name, tag("code", c.before), tag("code", c.after)]
        for c in changes
        if c.kind != "source"
    ]


def _commit_head(c: Commit, label: str) -> Safe:
    return tag(
        "div",
        tag("h3", label, " ", link(commit_url(c.hash), tag("code", short(c.hash)))),
        tag("p", c.func_name, " ", status_badge(c.status.value)),
        tag("p", "created ", fmt_time(c.created_at), " UTC", class_="muted"),
        tag(
            "p",
            "output ",
            tag("code", short(c.result.hash) if c.result else "none"),
            class_="muted",
        ),
        class_="side",
    )


def diff_body(diff: Mapping[str, Any], a: Commit, b: Commit) -> Safe:
    """Two commits side by side: flags, source, arguments, manifest, output."""
    flags = tag(
        "p",
        _flag(diff["func_changed"], "function"),
        _flag(diff["args_changed"], "arguments"),
        _flag(diff["output_changed"], "output"),
        _flag(diff["status_changed"], "status"),
        class_="flags",
        id="flags",
    )
    parts: list[Safe] = [
        tag("div", _commit_head(a, "A"), _commit_head(b, "B"), class_="pair"),
        flags,
        tag(
            "p",
            "The output "
            + ("changed." if diff["output_changed"] else "is the same result (same blob)."),
            class_="notice",
            id="output-verdict",
        ),
        tag("h2", "Source"),
    ]
    src_a, src_b = a.task_def.func_source, b.task_def.func_source
    if src_a == src_b:
        parts.append(tag("p", "The sources are the same.", class_="muted"))
    else:
        parts.append(_side_by_side(src_a, src_b))
    parts.append(tag("h2", "Arguments"))
    args = diff.get("args_diff") or []
    if args:
        rows = [
            [d["path"], d["change"], tag("code", d["a"] or ""), tag("code", d["b"] or "")]
            for d in args
        ]
        parts.append(table(["Where", "Change", "A", "B"], rows, id="args-diff"))
    else:
        parts.append(tag("p", "The arguments are the same.", class_="muted"))
    parts.append(tag("h2", "Key manifest"))
    ma, mb = a.task_def.manifest, b.task_def.manifest
    if not ma or not mb:
        parts.append(tag("p", "One of the commits has no key manifest.", class_="muted"))
    else:
        rows = _change_rows(compare_manifests(ma, mb, src_a, src_b))
        if rows:
            parts.append(table(["Part", "Name", "A", "B"], rows, id="manifest-diff"))
        else:
            parts.append(tag("p", "Nothing else in the key differs.", class_="muted"))
    return Safe("".join(parts))


def why_body(why: Explanation) -> Safe:
    """Why a commit was computed: the nearest earlier run and what differs from it."""
    assert why.commit is not None
    c = why.commit
    parts: list[Safe] = [
        tag(
            "p",
            "Commit ",
            link(commit_url(c.hash), tag("code", short(c.hash))),
            " of ",
            tag("code", why.function or c.func_name),
            " was computed.",
        ),
    ]
    if why.previous is not None:
        p = why.previous
        parts.append(
            tag(
                "p",
                "Compared with the nearest earlier run ",
                link(commit_url(p.hash), tag("code", short(p.hash)), id="previous"),
                f" ({fmt_time(p.created_at)} UTC) · ",
                link(f"/ui/diff/{p.hash}/{c.hash}", "diff the two", id="to-diff"),
            )
        )
    if why.reason:
        parts.append(tag("p", why.reason, class_="notice"))
    source = [ch for ch in why.changes if ch.kind == "source"]
    rows = _change_rows(why.changes)
    if rows:
        parts.append(table(["Part", "Name", "Before", "Now"], rows, id="changes"))
    for ch in source:
        parts.append(tag("h3", f"Source of {ch.name}"))
        parts.append(tag("pre", ch.before, class_="code diff"))
    if not why.changes and not why.reason:
        parts.append(tag("p", "Nothing differs.", class_="muted"))
    return Safe("".join(parts))


def lineage_body(graph: Mapping[str, Any]) -> Safe:
    """The lineage graph, its legend and its nodes as a list (readable without the SVG)."""
    nodes = list(graph["nodes"])
    legend = tag(
        "p",
        tag("span", "this commit", class_="key side-root"),
        tag("span", "computed from (upstream)", class_="key side-upstream"),
        tag("span", "computed from it (downstream)", class_="key side-downstream"),
        class_="legend",
    )
    parts: list[Safe] = [legend]
    if len(nodes) <= 1:
        parts.append(
            tag(
                "p",
                "No other commit is linked to this one through ResultRef arguments.",
                class_="muted",
                id="alone",
            )
        )
    parts.append(
        tag(
            "div",
            lineage_svg(graph),
            tag("p", "Drag to pan, scroll to zoom, double-click to reset.", class_="muted hint"),
            class_="graph",
            id="graph",
        )
    )
    if graph.get("truncated"):
        parts.append(tag("p", "The graph was cut at its size or depth limit.", class_="notice"))
    rows = [
        [
            link(commit_url(n["hash"]), tag("code", short(n["hash"]))),
            n["func_name"],
            n["side"],
            status_badge(n["status"]),
        ]
        for n in nodes
    ]
    parts.append(tag("h2", "Commits in the graph"))
    parts.append(table(["Commit", "Function", "Relation", "Status"], rows, id="lineage-nodes"))
    unknown = graph.get("unknown_inputs") or []
    if unknown:
        parts.append(tag("h2", "Inputs no stored commit produced"))
        parts.append(
            table(
                ["Blob", "Input of"],
                [[tag("code", short(u["blob"])), tag("code", short(u["to"]))] for u in unknown],
            )
        )
    return Safe("".join(parts))
