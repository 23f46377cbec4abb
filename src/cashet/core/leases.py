"""The lease-judging rules: whether a lease's holder is still alive (no state, no IO but a
probe of a local pid).

Every store uses the same rule (see :func:`lease_is_dead`), so a lease taken through one
backend is judged the same way by every other.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime

from cashet.models import Lease

__all__ = ["lease_is_dead", "pid_alive"]


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


def lease_is_dead(lease: Lease, now: datetime, host: str) -> bool:
    """Return whether ``lease`` may be taken over at ``now`` by a caller on ``host``.

    A lease is dead once it has expired, or at once when it was taken on this same host by
    a process that no longer exists (a crashed holder need not be waited for). A zombie
    (exited, not yet reaped) still counts as alive until its expiry.

    Args:
        lease: the lease currently recorded.
        now: the current time (aware).
        host: the caller's host name, usually :func:`cashet._process.hostname`.
    """
    if now >= lease.expires_at:
        return True
    return lease.host == host and not pid_alive(lease.pid)
