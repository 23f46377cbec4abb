"""The pages of the web UI that show commits: the list, a commit, the stats.

Pure rendering: each function takes what the client returned and gives HTML, every value
escaped (:mod:`cashet.server.ui.html`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cashet.models import Commit, TaskStatus
from cashet.protocols import CommitPage
from cashet.provenance.views import manifest_rows
from cashet.server.responses import redact
from cashet.server.ui.highlight import highlight_python, plain_code
from cashet.server.ui.html import (
    Safe,
    commit_url,
    definition_list,
    fmt_bytes,
    fmt_seconds,
    fmt_time,
    link,
    short,
    status_badge,
    table,
    tag,
    url,
)

__all__ = ["ListQuery", "commit_body", "list_body", "stats_body"]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The list's filters, as the form sent them."""

    func: str = ""
    tags: str = ""
    status: str = ""
    text: str = ""
    cursor: str = ""
    limit: int = 50

    def params(self, **override: Any) -> dict[str, Any]:
        """The query string of this list (``override`` replaces some)."""
        values = {
            "func": self.func,
            "tags": self.tags,
            "status": self.status,
            "q": self.text,
            "cursor": self.cursor,
            "limit": self.limit if self.limit != 50 else None,
        }
        values.update(override)
        return values

    def tag_query(self) -> dict[str, str | None] | None:
        """``"env=prod, team"`` -> ``{"env": "prod", "team": None}``."""
        out: dict[str, str | None] = {}
        for part in self.tags.split(","):
            key, sep, value = part.strip().partition("=")
            if key.strip():
                out[key.strip()] = value.strip() if sep else None
        return out or None


def _filters(q: ListQuery) -> Safe:
    statuses = [("", "any status"), *((s.value, s.value) for s in TaskStatus.recorded())]
    options = [
        tag("option", label, value=value, selected=value == q.status) for value, label in statuses
    ]

    def field(label: str, name: str, value: str, hint: str) -> Safe:
        return tag(
            "label",
            tag("span", label),
            tag("input", type="text", name=name, value=value, placeholder=hint),
        )

    return tag(
        "form",
        field("Function", "func", q.func, "exact name"),
        field("Tags", "tags", q.tags, "key=value, key"),
        tag("label", tag("span", "Status"), tag("select", *options, name="status")),
        field("Text", "q", q.text, "hash, argument, error…"),
        tag("button", "Filter", type="submit"),
        link("/ui/", "Clear", class_="button secondary"),
        method="get",
        action="/ui/",
        class_="filters",
        role="search",
    )


def _row(c: Commit, running: bool) -> list[Any]:
    hash_cell: Any = (
        tag("code", short(c.hash))
        if running
        else link(commit_url(c.hash), tag("code", short(c.hash)))
    )
    pick = (
        ""
        if running
        else tag("input", type="checkbox", name="c", value=c.hash, aria_label="compare")
    )
    return [
        pick,
        hash_cell,
        c.func_name,
        status_badge(c.status.value),
        fmt_time(c.created_at),
        fmt_seconds(c.compute_seconds),
        str(c.hits),
        fmt_bytes(c.result.size) if c.result is not None else "—",
    ]


def list_body(page: CommitPage, q: ListQuery) -> Safe:
    """The commits list: filters, the page, paging links, a compare button."""
    running = q.status == TaskStatus.RUNNING.value
    rows = [_row(c, running) for c in page.commits]
    heads = ["", "Commit", "Function", "Status", "Created (UTC)", "Compute", "Hits", "Size"]
    if rows:
        listing: Safe = tag(
            "form",
            table(heads, rows, id="commits"),
            tag("button", "Compare the two checked", type="submit", class_="secondary"),
            method="get",
            action="/ui/compare",
        )
    else:
        listing = tag("p", "No commits match.", class_="empty")
    pager = []
    if q.cursor:
        pager.append(link(url("/ui/", **q.params(cursor=None)), "← Newest"))
    if page.cursor is not None:
        label = "Search older →" if page.partial else "Older →"
        pager.append(link(url("/ui/", **q.params(cursor=page.cursor)), label, rel="next"))
    note = ""
    if q.text:
        note = tag(
            "p",
            f"Searched {page.scanned:,} commits"
            + (" (the search goes on from the next page)." if page.partial else "."),
            class_="muted",
        )
    return Safe(_filters(q) + listing + note + tag("nav", *pager, class_="pager"))


def _tags(tags: Mapping[str, str]) -> Safe:
    if not tags:
        return Safe("—")
    return tag(
        "ul", *(tag("li", tag("code", f"{k}={v}")) for k, v in sorted(tags.items())), class_="tags"
    )


def _manifest(commit: Commit) -> Safe:
    rows = manifest_rows(commit.task_def.manifest)
    if not rows:
        return tag("p", "No key manifest was recorded for this commit.", class_="muted")
    return table(["Part", "What", "Digest"], [[k, w, tag("code", d)] for k, w, d in rows])


def _result_preview(preview: Any, is_json: bool) -> Safe:
    if not is_json:
        return Safe("")
    text = json.dumps(preview, indent=2, ensure_ascii=False)
    if len(text) > 20_000:
        text = text[:20_000] + "\n…"
    return Safe(tag("h3", "Value (JSON)") + plain_code(text))


def commit_body(
    commit: Commit,
    *,
    preview: tuple[Any, bool] | None,
    csrf: str | None,
) -> Safe:
    """A commit: source, arguments, tags, timings, manifest, error, links, result."""
    td = commit.task_def
    h = commit.hash
    links = [
        link(f"/ui/lineage/{h}", "Lineage", class_="button", id="to-lineage"),
        link(f"/ui/why/{h}", "Why was it computed?", class_="button", id="to-why"),
    ]
    if commit.parent_hash:
        links.append(link(commit_url(commit.parent_hash), "Previous run", class_="button"))
        links.append(
            link(f"/ui/diff/{commit.parent_hash}/{h}", "Diff with previous", class_="button")
        )
    if commit.result is not None:
        links.append(
            link(
                f"/ui/result/{h}",
                "Download result",
                class_="button",
                id="download",
                download=f"{short(h)}.result",
            )
        )
    facts = {
        "Hash": tag("code", h),
        "Function": f"{td.module}.{td.func_name}" if td.module else td.func_name,
        "Status": status_badge(commit.status.value),
        "Created (UTC)": fmt_time(commit.created_at),
        "Compute time": fmt_seconds(commit.compute_seconds),
        "Hits": f"{commit.hits} (last {fmt_time(commit.last_hit)})",
        "Last used": fmt_time(commit.last_accessed),
        "Expires": fmt_time(commit.expires_at) + (" (expired)" if commit.is_expired() else ""),
        "Result": "—"
        if commit.result is None
        else Safe(tag("code", short(commit.result.hash)) + f" · {fmt_bytes(commit.result.size)}"),
        "Fingerprint": tag("code", td.fingerprint),
        "Options": f"cache={td.cache} retries={td.retries} timeout={td.timeout} ttl={td.ttl}",
        "Tags": _tags(commit.tags),
    }
    parts = [tag("nav", *links, class_="actions"), definition_list(facts)]
    if commit.error:
        parts.append(tag("h2", "Error"))
        parts.append(tag("pre", redact(commit.error), class_="error", id="error"))
    parts.append(tag("h2", "Arguments"))
    parts.append(plain_code(td.args_snapshot or "(not recorded)"))
    parts.append(tag("h2", "Source"))
    parts.append(highlight_python(td.func_source))
    parts.append(tag("h2", "Key manifest"))
    parts.append(_manifest(commit))
    if commit.input_hashes:
        parts.append(tag("h2", "Inputs (results of other commits)"))
        parts.append(tag("ul", *(tag("li", tag("code", b)) for b in commit.input_hashes)))
    if preview is not None:
        parts.append(_result_preview(*preview))
    if csrf is not None:
        parts.append(
            tag(
                "form",
                tag("input", type="hidden", name="csrf", value=csrf),
                tag("button", "Delete this commit", type="submit", class_="danger"),
                method="post",
                action=f"/ui/commit/{h}/delete",
                class_="danger-zone",
            )
        )
    return Safe("".join(parts))


def stats_body(
    stats: Mapping[str, Any],
    running: Sequence[Commit],
    usage: Sequence[Mapping[str, Any]],
    *,
    csrf: str | None,
    message: str = "",
) -> Safe:
    """Storage, commits by status, hits and misses, time saved per function, leases."""
    total = int(stats.get("total_commits", 0))
    completed = int(stats.get("completed_commits", 0))
    cards = {
        "Commits": f"{total:,}",
        "Completed": f"{completed:,}",
        "Failed": f"{max(total - completed, 0):,}",
        "Running now": f"{len(running):,}",
        "Hits": f"{int(stats.get('hits', 0)):,}",
        "Misses (runs)": f"{int(stats.get('misses', 0)):,}",
        "Time saved": fmt_seconds(float(stats.get("seconds_saved", 0.0))),
        "Stored": f"{fmt_bytes(int(stats.get('disk_bytes', 0)))} in "
        f"{int(stats.get('stored_objects', 0)):,} objects",
    }
    parts: list[Any] = []
    if message:
        parts.append(tag("p", message, class_="notice", role="status"))
    parts.append(
        tag(
            "div",
            *(tag("div", tag("b", v), tag("span", k), class_="card") for k, v in cards.items()),
            class_="cards",
        )
    )
    parts.append(tag("h2", "Storage"))
    storage = {
        "Files": f"{int(stats.get('blob_objects', 0)):,} · "
        f"{fmt_bytes(int(stats.get('blob_bytes', 0)))}",
        "Inline (in the database)": f"{int(stats.get('inline_objects', 0)):,} · "
        f"{fmt_bytes(int(stats.get('inline_bytes', 0)))}",
    }
    parts.append(definition_list(storage))
    parts.append(tag("h2", "Time saved per function"))
    if usage:
        rows = [
            [
                link(url("/ui/", func=u["func_name"]), u["func_name"]),
                f"{u['runs']:,}",
                f"{u['hits']:,}",
                f"{u['hit_rate']:.0%}",
                fmt_seconds(u["seconds_saved"]),
            ]
            for u in usage
        ]
        heads = ["Function", "Runs (misses)", "Hits", "Hit rate", "Time saved"]
        parts.append(table(heads, rows, id="usage"))
    else:
        parts.append(tag("p", "No commits yet.", class_="empty"))
    parts.append(tag("h2", "Running tasks (leases)"))
    if running:
        rows = [
            [
                c.func_name,
                f"{c.tags.get('host', '?')} pid {c.tags.get('pid', '?')}",
                fmt_time(c.created_at),
                fmt_seconds(_age(c)),
            ]
            for c in running
        ]
        parts.append(table(["Function", "Holder", "Since (UTC)", "Age"], rows, id="running"))
    else:
        parts.append(tag("p", "Nothing is running.", class_="empty"))
    if csrf is not None:
        parts.append(tag("h2", "Garbage collection"))
        parts.append(
            tag(
                "form",
                tag("input", type="hidden", name="csrf", value=csrf),
                tag(
                    "label",
                    tag("span", "Evict entries unused for (days)"),
                    tag("input", type="number", name="older_than_days", value="30", min="0"),
                ),
                tag("button", "Run GC", type="submit", class_="danger"),
                method="post",
                action="/ui/gc",
                class_="danger-zone",
            )
        )
    return Safe("".join(str(p) for p in parts))


def _age(c: Commit) -> float:
    from cashet.models import utcnow

    return max((utcnow() - c.created_at).total_seconds(), 0.0)
