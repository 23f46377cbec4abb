"""The lineage graph as an SVG drawn on the server (no library, no script needed to see it).

Layered left to right: a commit's column is one past the furthest of the commits it was
computed from, so every edge points right; within a column, commits are ordered by where
their inputs sit (fewer crossings). Each node links to its commit's page. The page's small
script (``static/lineage.js``) only adds panning, zooming and highlighting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cashet.server.ui.html import Safe, commit_url, esc, short, tag

__all__ = ["NODE_H", "NODE_W", "layout", "lineage_svg"]

NODE_W, NODE_H = 190, 48
GAP_X, GAP_Y, MARGIN = 80, 22, 16


def layout(hashes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """``hash -> (column, row)`` for a DAG (a cycle, impossible here, still gets a place)."""
    preds: dict[str, list[str]] = {h: [] for h in hashes}
    for a, b in edges:
        if a in preds and b in preds and a != b:
            preds[b].append(a)
    column: dict[str, int] = {}
    visiting: set[str] = set()

    def col(h: str) -> int:
        if h in column:
            return column[h]
        if h in visiting:  # a cycle: cut it here
            return 0
        visiting.add(h)
        column[h] = max((col(p) + 1 for p in preds[h]), default=0)
        visiting.discard(h)
        return column[h]

    for h in hashes:
        col(h)
    by_column: dict[int, list[str]] = {}
    for h in hashes:
        by_column.setdefault(column[h], []).append(h)
    place: dict[str, tuple[int, int]] = {}
    for c in sorted(by_column):
        members = by_column[c]

        def weight(h: str) -> float:
            rows = [place[p][1] for p in preds[h] if p in place]
            return sum(rows) / len(rows) if rows else 0.0

        members.sort(key=lambda h: (weight(h), hashes.index(h)))
        for r, h in enumerate(members):
            place[h] = (c, r)
    return place


def _xy(cell: tuple[int, int]) -> tuple[int, int]:
    return MARGIN + cell[0] * (NODE_W + GAP_X), MARGIN + cell[1] * (NODE_H + GAP_Y)


def _name(func_name: str) -> str:
    name = func_name.rsplit(".", 1)[-1]
    return name if len(name) <= 24 else name[:23] + "…"


def lineage_svg(graph: Mapping[str, Any]) -> Safe:
    """The SVG of ``Lineage.to_dict()``: nodes linking to commits, edges labelled by blob."""
    nodes: list[Mapping[str, Any]] = list(graph["nodes"])
    edges = [(e["from"], e["to"], e["blob"]) for e in graph["edges"]]
    place = layout([n["hash"] for n in nodes], [(a, b) for a, b, _ in edges])
    columns = max((c for c, _ in place.values()), default=0) + 1
    rows = max((r for _, r in place.values()), default=0) + 1
    width = 2 * MARGIN + columns * NODE_W + (columns - 1) * GAP_X
    height = 2 * MARGIN + rows * NODE_H + (rows - 1) * GAP_Y
    drawn_edges = []
    for a, b, blob in edges:
        if a not in place or b not in place:
            continue
        x1, y1 = _xy(place[a])
        x2, y2 = _xy(place[b])
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H // 2, y2 + NODE_H // 2
        mid = (x1 + x2) // 2
        path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 6},{y2}"
        drawn_edges.append(
            tag(
                "path",
                tag("title", f"result {short(blob)} of {short(a)} → input of {short(b)}"),
                d=path,
                class_="edge",
                marker_end="url(#arrow)",
                data_from=a,
                data_to=b,
            )
        )
    drawn_nodes = []
    for n in nodes:
        x, y = _xy(place[n["hash"]])
        side = n.get("side", "related")
        drawn_nodes.append(
            tag(
                "a",
                tag(
                    "g",
                    tag("title", f"{n['func_name']} · {n['status']} · {n['created_at']}"),
                    tag("rect", x=x, y=y, width=NODE_W, height=NODE_H, rx=7),
                    tag("text", _name(n["func_name"]), x=x + 10, y=y + 20, class_="fn"),
                    tag(
                        "text",
                        f"{short(n['hash'])} · {n['status']}",
                        x=x + 10,
                        y=y + 38,
                        class_="meta",
                    ),
                    class_=f"node side-{side} status-{n['status']}",
                    data_hash=n["hash"],
                ),
                href=commit_url(n["hash"]),
            )
        )
    defs = tag(
        "defs",
        tag(
            "marker",
            tag("path", d="M0,0 L8,4 L0,8 z", class_="arrowhead"),
            id="arrow",
            viewBox="0 0 8 8",
            refX=8,
            refY=4,
            markerWidth=9,
            markerHeight=9,
            markerUnits="userSpaceOnUse",
            orient="auto",
        ),
    )
    return tag(
        "svg",
        defs,
        tag("g", *drawn_edges, *drawn_nodes, class_="viewport"),
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {width} {height}",
        width=width,
        height=height,
        class_="lineage",
        role="img",
        aria_label=f"lineage of {esc(short(graph['root']))}",
    )
