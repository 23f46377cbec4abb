"""The lineage of a result: what it was computed from and what was computed from it.

A commit's ``input_hashes`` are the result blobs of the ``ResultRef`` arguments it was
called with. Upstream of a commit are the commits that produced those blobs (the store's
``ResultIndex`` capability, ``find_by_result``); downstream, the commits that took its result
as an input (the ``InputIndex`` capability, ``find_by_input``: SQLite indexes inputs; on
another store, one pass over the commits). Both are followed
recursively, up to ``depth`` steps and ``max_nodes`` commits. Pure graph building over the
store contract, and three renderings: Mermaid, Graphviz dot, JSON.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

from cashet.models import Commit
from cashet.protocols import InputIndex, Store, supports
from cashet.stores.base import full_store

__all__ = ["FORMATS", "Lineage", "lineage", "render"]

#: The output formats of :func:`render`.
FORMATS = ("mermaid", "dot", "json")


@dataclass(slots=True)
class Lineage:
    """A commit's lineage graph.

    Attributes:
        root: the commit asked about.
        nodes: every commit in the graph, by hash (the root included).
        edges: ``(upstream commit, downstream commit, blob)``: the downstream commit was
            called with the upstream commit's result ``blob``.
        unknown_inputs: input blobs of a commit in the graph that no stored commit produced
            (deleted since, or passed in from elsewhere), as ``(blob, commit)``.
        truncated: the graph reached ``depth`` or ``max_nodes`` somewhere.
    """

    root: str
    nodes: dict[str, Commit] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    unknown_inputs: list[tuple[str, str]] = field(default_factory=list)
    truncated: bool = False

    def upstream(self) -> set[str]:
        """The hashes of the commits the root was (transitively) computed from."""
        return self._reach(0, 1)

    def downstream(self) -> set[str]:
        """The hashes of the commits (transitively) computed from the root."""
        return self._reach(1, 0)

    def _reach(self, there: int, here: int) -> set[str]:
        found: set[str] = set()
        todo = [self.root]
        while todo:
            at = todo.pop()
            for edge in self.edges:
                if edge[here] == at and edge[there] not in found:
                    found.add(edge[there])
                    todo.append(edge[there])
        return found

    def to_dict(self) -> dict[str, Any]:
        """The graph as JSON-able data (``cashet graph --format json``)."""
        up, down = self.upstream(), self.downstream()

        def side(h: str) -> str:
            return "root" if h == self.root else "upstream" if h in up else "downstream"

        return {
            "root": self.root,
            "nodes": [
                {
                    "hash": c.hash,
                    "func_name": c.func_name,
                    "status": c.status.value,
                    "created_at": c.created_at.isoformat(),
                    "result": None if c.result is None else c.result.hash,
                    "side": side(c.hash) if c.hash in up | down | {self.root} else "related",
                }
                for c in self.nodes.values()
            ],
            "edges": [{"from": a, "to": b, "blob": blob} for a, b, blob in self.edges],
            "unknown_inputs": [{"blob": b, "to": h} for b, h in self.unknown_inputs],
            "truncated": self.truncated,
        }


def lineage(store: Store, root: Commit, depth: int = 10, max_nodes: int = 200) -> Lineage:
    """Build the lineage of ``root``: its upstream and downstream commits.

    Args:
        store: the store to read.
        root: the commit asked about.
        depth: how many steps to follow each way.
        max_nodes: stop adding commits past this many (``truncated`` says so).

    Raises:
        ValueError: ``depth`` or ``max_nodes`` is not positive.
    """
    if depth < 1 or max_nodes < 1:
        raise ValueError(f"depth and max_nodes must be positive, not {depth} and {max_nodes}")
    full = full_store(store)
    graph = Lineage(root.hash, {root.hash: root})
    edges: set[tuple[str, str, str]] = set()

    def add(commit: Commit) -> bool:
        if commit.hash in graph.nodes:
            return False
        if len(graph.nodes) >= max_nodes:
            graph.truncated = True
            return False
        graph.nodes[commit.hash] = commit
        return True

    # Upstream: the producers of each input blob (the newest one when several made it).
    queue: deque[tuple[Commit, int]] = deque([(root, 0)])
    while queue:
        commit, level = queue.popleft()
        for blob in commit.input_hashes:
            producers = full.find_by_result(blob, limit=1)
            if not producers:
                graph.unknown_inputs.append((blob, commit.hash))
                continue
            producer = producers[0]
            edges.add((producer.hash, commit.hash, blob))
            if level + 1 >= depth:
                graph.truncated = graph.truncated or bool(producer.input_hashes)
                add(producer)
            elif add(producer):
                queue.append((producer, level + 1))

    # Downstream: who took a result as an input (an index, or one pass over every commit).
    consumers = _Consumers(store, max_nodes)
    queue = deque([(root, 0)])
    seen = {root.hash}
    while queue:
        commit, level = queue.popleft()
        if commit.result is None:
            continue
        for consumer in consumers.of(commit.result.hash):
            if level + 1 > depth:
                graph.truncated = True
                break
            edges.add((commit.hash, consumer.hash, commit.result.hash))
            add(consumer)
            if consumer.hash not in seen and consumer.hash in graph.nodes:
                seen.add(consumer.hash)
                queue.append((consumer, level + 1))
    graph.edges = sorted(e for e in edges if e[0] in graph.nodes and e[1] in graph.nodes)
    return graph


class _Consumers:
    """The commits that took a blob as an input: the store's ``InputIndex`` when it has
    one (SQLite), else every commit read once, on first use."""

    def __init__(self, store: Store, limit: int) -> None:
        self.index = cast(InputIndex, store) if supports(store, InputIndex) else None
        self.store = store
        self.limit = limit
        self._all: dict[str, list[Commit]] | None = None

    def of(self, blob: str) -> list[Commit]:
        if self.index is not None:
            return self.index.find_by_input(blob, self.limit + 1)
        if self._all is None:
            self._all = {}
            for commit in full_store(self.store).iter_commits():
                for b in commit.input_hashes:
                    self._all.setdefault(b, []).append(commit)
        return self._all.get(blob, [])


def _label(c: Commit) -> str:
    return f"{c.func_name.rsplit('.', 1)[-1]}\\n{c.hash[:12]}"


def render(graph: Lineage, fmt: str) -> str:
    """The graph as Mermaid (``flowchart LR``), Graphviz ``dot`` or JSON text.

    Raises:
        ValueError: ``fmt`` is not one of :data:`FORMATS`.
    """
    if fmt == "json":
        return json.dumps(graph.to_dict(), indent=2)
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        for c in graph.nodes.values():
            label = _label(c).replace("\\n", "<br/>").replace('"', "'")
            style = ":::root" if c.hash == graph.root else ""
            lines.append(f'    c{c.hash[:12]}["{label}"]{style}')
        for a, b, blob in graph.edges:
            lines.append(f"    c{a[:12]} -->|{blob[:8]}| c{b[:12]}")
        lines.append("    classDef root stroke-width:3px")
        return "\n".join(lines)
    if fmt == "dot":
        lines = ["digraph lineage {", "    rankdir=LR;", "    node [shape=box];"]
        for c in graph.nodes.values():
            bold = ", style=bold" if c.hash == graph.root else ""
            label = _label(c).replace('"', "'")
            lines.append(f'    "{c.hash}" [label="{label}"{bold}];')
        for a, b, blob in graph.edges:
            lines.append(f'    "{a}" -> "{b}" [label="{blob[:8]}"];')
        lines.append("}")
        return "\n".join(lines)
    raise ValueError(f"unknown graph format {fmt!r}: expected one of {', '.join(FORMATS)}")
