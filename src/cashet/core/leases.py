"""The lease-judging rules: whether a lease's holder is still alive (no IO but a probe of a
local pid), and how a lease's holder is kept in a store.

One piece of process-local state: the leases this process *disowned* — took, then failed
to release (a full disk, a Redis that went away, an interrupted release). They are being
released again in the background (``executors/_orphans``); meanwhile every judgment made
in this process counts them dead, so this process never waits for a lease it no longer
uses (it takes it over), while other processes wait for the late release or the expiry.

Every store uses the same rule (see :func:`lease_is_dead`), so a lease taken through one
backend is judged the same way by every other.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cashet import _process
from cashet.models import Lease

__all__ = [
    "lease_from_row",
    "lease_row",
    "disown",
    "disowned",
    "holder_text",
    "lease_is_dead",
    "parse_holder",
    "pid_alive",
    "reclaimed",
    "same_process_space",
]

# Owners of the leases this process disowned (see the module docstring).
_disowned: set[str] = set()


@_process.after_fork_in_child
def _forget_disowned_in_child() -> None:
    _disowned.clear()  # the parent's, which the parent goes on releasing


def disown(owner: str) -> None:
    """Record that this process gave up the lease ``owner`` without releasing it: from now
    on this process judges it dead (and may take it over)."""
    _disowned.add(owner)


def reclaimed(owner: str) -> None:
    """Forget a disowned lease: it was released at last, or it has expired anyway."""
    _disowned.discard(owner)


def disowned(owner: str) -> bool:
    """Return whether this process disowned the lease ``owner``."""
    return owner in _disowned


def pid_alive(pid: int) -> bool:
    """Return whether process ``pid`` may still exist on this host.

    Only a certain answer counts as dead: an invalid pid, a platform without a cheap probe
    or a process owned by another user all count as alive, so that a lease is then judged
    by its expiry alone.
    """
    if pid <= 0 or sys.platform == "win32":
        # os.kill(0, 0) would signal our whole process group; on Windows os.kill(pid, 0)
        # sends CTRL_C_EVENT instead of probing.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists but belongs to someone else
        return True
    return True


def same_process_space(lease: Lease, host: str) -> bool:
    """Return whether ``lease``'s pid names a process a caller on ``host`` can probe: the
    same host name, and (when the lease records them) the same boot and PID namespace.

    A lease written by an older cashet records neither and is judged by its host as before.
    """
    if lease.host != host:
        return False
    if lease.boot_id and lease.boot_id != _process.boot_id():
        return False
    return not lease.pid_ns or lease.pid_ns == _process.pid_namespace()


def lease_is_dead(lease: Lease, now: datetime, host: str) -> bool:
    """Return whether ``lease`` may be taken over at ``now`` by a caller on ``host``.

    A lease is dead once it has expired, once this process has disowned it (:func:`disown`:
    it took it and could not release it), or at once when it was taken in this same process
    space (host, boot and PID namespace: :func:`same_process_space`) by a process that no
    longer exists (a crashed holder need not be waited for). A holder elsewhere — another
    container of the same host name has its own PID namespace — is judged by the expiry
    alone. A zombie (exited, not yet reaped) still counts as alive until its expiry.

    Args:
        lease: the lease currently recorded.
        now: the current time (aware).
        host: the caller's host name, usually :func:`cashet._process.hostname`.
    """
    if now >= lease.expires_at or lease.owner in _disowned:
        return True
    return same_process_space(lease, host) and not pid_alive(lease.pid)


# How a store keeps a lease's holder in one text field (the ``host`` column of SQLite's
# ``claims``, the ``h`` field of a Redis lock), so that the stored format stays the one
# older cashets read: they see a host name that is not theirs, and judge the lease by its
# expiry alone, which is safe.
_HOLDER = re.compile(r"(?P<host>.*) boot=(?P<boot>\S*) pidns=(?P<ns>\S*)", re.DOTALL)


def holder_text(lease: Lease) -> str:
    """The stored form of ``lease``'s holder: its host, with boot id and PID namespace."""
    if not lease.boot_id and not lease.pid_ns:
        return lease.host
    return f"{lease.host} boot={lease.boot_id} pidns={lease.pid_ns}"


def parse_holder(text: str) -> tuple[str, str, str]:
    """``(host, boot_id, pid_ns)`` from :func:`holder_text`'s form (or a bare host name)."""
    found = _HOLDER.fullmatch(text)
    if found is None:
        return text, "", ""
    return found["host"], found["boot"], found["ns"]


def lease_from_row(row: Sequence[Any]) -> Lease:
    """The lease of a stored ``(owner, holder, pid, expires_at epoch, func_name, ...)`` row
    (how the SQLite and PostgreSQL stores keep a lease; the holder as :func:`holder_text`)."""
    host, boot, ns = parse_holder(row[1])
    return Lease(
        owner=row[0],
        host=host,
        pid=row[2],
        expires_at=datetime.fromtimestamp(row[3], UTC),
        func_name=row[4],
        boot_id=boot,
        pid_ns=ns,
    )


def lease_row(lease: Lease) -> tuple[str, str, int, float, str]:
    """``lease`` as the ``(owner, holder, pid, expires_at epoch, func_name)`` row that
    :func:`lease_from_row` reads back (a naive ``expires_at`` is taken to be UTC)."""
    expires = lease.expires_at
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return lease.owner, holder_text(lease), lease.pid, expires.timestamp(), lease.func_name
