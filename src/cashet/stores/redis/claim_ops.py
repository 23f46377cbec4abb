"""The lease operations of the Redis stores (``P lock:{fingerprint}``, released with a
publish on ``P release:{fingerprint}``), free of IO like the rest of
:mod:`cashet.stores.redis.ops`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cashet.core import leases as _lease
from cashet.models import Commit, Lease, TaskDef, TaskStatus
from cashet.stores.redis.calls import OpFlow, RedisCall, text
from cashet.stores.redis.calls import run_script as _run
from cashet.stores.redis.keys import (
    CLAIM,
    LOCK_GRACE_MS,
    RELEASE,
    RENEW,
    RUNNING,
    TAKEOVER,
    Keys,
    from_us,
    now_us,
    to_us,
)

__all__ = ["ClaimOps"]


def _lease_of(fields: list[Any]) -> Lease:
    host, boot, ns = _lease.parse_holder(text(fields[2]))
    return Lease(
        owner=text(fields[0]),
        host=host,
        pid=int(fields[3]),
        expires_at=from_us(int(fields[1])),
        func_name=text(fields[4]),
        boot_id=boot,
        pid_ns=ns,
    )


def _ttl_ms(expires_us: int, now: int) -> int:
    return max(expires_us - now, 0) // 1000 + LOCK_GRACE_MS


class ClaimOps:
    """The lease operations of :class:`~cashet.stores.redis.ops.Ops`."""

    keys: Keys
    prefix: str
    host: str

    def try_claim(self, fingerprint: str, lease: Lease) -> OpFlow[bool]:
        key = self.keys.lock(fingerprint)
        op = f"claim fingerprint {fingerprint[:16]}"
        exp = to_us(lease.expires_at)
        for _ in range(3):
            now = now_us()
            mine = (
                lease.owner,
                exp,
                _lease.holder_text(lease),
                lease.pid,
                lease.func_name,
                now,
                _ttl_ms(exp, now),
            )
            keys = (key, self.keys.running)
            reply = yield _run(op, CLAIM, keys, *mine, fingerprint)
            if reply == 1:
                return True
            held = _lease_of(reply)
            if not _lease.lease_is_dead(held, from_us(now), self.host):
                return False
            # Its holder was a process of this host that is gone: replace exactly that lease.
            if (yield _run(op, TAKEOVER, keys, reply[0], reply[1], *mine, fingerprint)) == 1:
                return True
        return False

    def read_claim(self, fingerprint: str) -> OpFlow[tuple[Lease, int] | None]:
        """The live lease on ``fingerprint`` and when it was taken (µs), or None."""
        key = self.keys.lock(fingerprint)
        op = f"read the lease on {fingerprint[:16]}"
        row = yield RedisCall(op, ("HMGET", key, "o", "e", "h", "p", "f", "c"))
        if row[0] is None or row[1] is None:
            return None
        lease = _lease_of(row)
        if _lease.lease_is_dead(lease, from_us(now_us()), self.host):
            return None
        return lease, int(row[5] or 0)

    def running_claims(self, limit: int = 10_000) -> OpFlow[list[tuple[str, Lease, datetime]]]:
        """The live leases: ``(fingerprint, lease, claimed at)``, from the running index."""
        now = now_us()
        rows = yield _run(
            "list the calls in flight", RUNNING, (self.keys.running,),
            self.keys.lock(""), now, limit,
        )  # fmt: skip
        out = []
        for row in rows:
            lease = _lease_of(row[1:])
            if not _lease.lease_is_dead(lease, from_us(now), self.host):
                out.append((text(row[0]), lease, from_us(int(row[6] or 0))))
        return out

    def get_claim(self, fingerprint: str) -> OpFlow[Lease | None]:
        found = yield from self.read_claim(fingerprint)
        return None if found is None else found[0]

    def find_running_by_fingerprint(self, fingerprint: str) -> OpFlow[Commit | None]:
        found = yield from self.read_claim(fingerprint)
        if found is None:
            return None
        lease, claimed = found
        func_hash, _, args_hash = fingerprint.partition(":")
        return Commit(
            hash="",
            task_def=TaskDef(func_name=lease.func_name, func_hash=func_hash, args_hash=args_hash),
            status=TaskStatus.RUNNING,
            created_at=from_us(claimed),
        )

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> OpFlow[bool]:
        exp = to_us(expires_at)
        op = f"renew the lease on {fingerprint[:16]}"
        key = self.keys.lock(fingerprint)
        keys = (key, self.keys.running)
        reply = yield _run(op, RENEW, keys, owner, exp, _ttl_ms(exp, now_us()), fingerprint)
        return bool(reply == 1)

    def release_claim(self, fingerprint: str, owner: str) -> OpFlow[None]:
        op = f"release the lease on {fingerprint[:16]}"
        key = self.keys.lock(fingerprint)
        yield _run(op, RELEASE, (key,), self.prefix, owner, self.keys.channel(fingerprint))

    def pause(self, lease: Lease, left: float) -> float:
        """How long a waiter may sleep before it must look at ``lease`` again.

        Until the release is published, the lease expires, or the timeout; a lease of this
        host is looked at every 0.25 s (its holder may die: a local check, and one GET),
        any other every 2 s in case a release message was lost with a connection.
        """
        local = _lease.same_process_space(lease, self.host)
        until_expiry = (to_us(lease.expires_at) - now_us()) / 1e6 + 0.001
        recheck = 0.25 if local else 2.0
        return max(0.0, min(left, until_expiry, recheck))
