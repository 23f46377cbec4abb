"""The ``stats()`` every built-in store answers, from the counters it keeps."""

from __future__ import annotations

__all__ = ["store_stats"]


def store_stats(
    total: int, completed: int, files: int, file_bytes: int, inline: int, inline_bytes: int
) -> dict[str, int]:
    """The ``stats()`` of a store from its counters: commits, and blobs kept as files (or
    objects) and inline."""
    return {
        "total_commits": total,
        "completed_commits": completed,
        "stored_objects": files + inline,
        "disk_bytes": file_bytes + inline_bytes,
        "blob_objects": files,
        "blob_bytes": file_bytes,
        "inline_objects": inline,
        "inline_bytes": inline_bytes,
    }
