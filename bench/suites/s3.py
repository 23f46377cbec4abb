"""S3 suite (issue 16): a 100 MiB result through ``S3BlobStore`` against obstore alone.

A real S3-protocol server on loopback (moto's server, from the ``dev`` extra, in a child
process), one bucket. ``ours`` stores the blob with ``S3BlobStore.put`` (framing, the
compressibility probe, a streamed multipart upload; ``replace=True`` so every sample
uploads) and loads it with ``S3BlobStore.get`` (streamed download into one buffer, decoding
and BLAKE3 verification); ``baseline`` puts and gets the same bytes with ``obstore.put`` /
``obstore.get(...).bytes()`` on a plain ``S3Store``. Random bytes: incompressible, stored
raw, as most large results (NumPy floats) are. Goal: at most 1.3x each way.

    python bench/run.py --suite s3 [--quick]
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

from _context import Context
from _harness import Config, Outcome, Unavailable, measure, suite, within

from suites.core import rounds

s3 = suite("s3", "100 MiB through S3BlobStore vs obstore alone (moto server on loopback)")

MiB = 2**20

_server: dict[str, Any] = {}


def _endpoint(ctx: Context) -> str:
    """A moto server in a child process, started once per run (stopped at exit): in its own
    process, its Python does not compete with the measured client for the GIL."""
    ctx.require("obstore")
    ctx.require("moto.server")
    if "endpoint" not in _server:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(_stop, proc)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise Unavailable("the moto server did not start") from None
                time.sleep(0.1)
        _server.update(endpoint=f"http://127.0.0.1:{port}", proc=proc)
    return str(_server["endpoint"])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _bucket(endpoint: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as reply:
        reply.read()
    return name


def _setup(ctx: Context) -> tuple[Any, Any, bytes, str]:
    endpoint = _endpoint(ctx)
    bucket = _bucket(endpoint)
    from obstore.store import S3Store

    from cashet.blob_store import S3BlobStore
    from cashet.stores.blobs import blob_hash

    creds = {"access_key_id": "bench", "secret_access_key": "bench-secret", "region": "us-east-1"}
    ours = S3BlobStore(bucket, prefix="ours", endpoint=endpoint, allow_http=True, **creds)
    raw = S3Store(
        bucket, prefix="raw", endpoint=endpoint, client_options={"allow_http": True}, **creds
    )
    size = ctx.cfg.pick(100, 8) * MiB
    data = os.urandom(size)
    return ours, raw, data, blob_hash(data)


def _few(cfg: Config) -> Config:
    import dataclasses

    return dataclasses.replace(cfg, min_samples=max(3, cfg.min_samples // 2), budget_s=0.1)


@s3.scenario(
    "s3_store_100mib",
    "store a 100 MiB blob (baseline: obstore.put of the same bytes)",
    targets=[within("baseline", 1.3, label="obstore.put")],
    baseline="obstore.put",
)
def s3_store(ctx: Context) -> dict[str, Outcome]:
    try:
        ours, raw, data, h = _setup(ctx)
    except Unavailable as exc:
        return {"ours": Outcome.unavailable(str(exc)), "baseline": Outcome.unavailable(str(exc))}
    import obstore

    ctx.note(f"{len(data) // MiB} MiB of random bytes, moto server on loopback, multipart")

    def mine(cfg: Config) -> Outcome:
        return measure(
            lambda: ours.put(h, [data], len(data), replace=True), _few(cfg), warmup=1
        )

    def bare(cfg: Config) -> Outcome:
        return measure(lambda: obstore.put(raw, "blob", data), _few(cfg), warmup=1)

    return rounds(ctx.cfg, {"ours": mine, "baseline": bare}, n=2)


@s3.scenario(
    "s3_load_100mib",
    "load a 100 MiB blob, verified (baseline: obstore.get(...).bytes())",
    targets=[within("baseline", 1.3, label="obstore.get")],
    baseline="obstore.get",
)
def s3_load(ctx: Context) -> dict[str, Outcome]:
    try:
        ours, raw, data, h = _setup(ctx)
    except Unavailable as exc:
        return {"ours": Outcome.unavailable(str(exc)), "baseline": Outcome.unavailable(str(exc))}
    import obstore

    ours.put(h, [data], len(data), replace=True)
    obstore.put(raw, "blob", data)
    assert ours.get(h) == data
    ctx.note(f"{len(data) // MiB} MiB of random bytes; ours decodes and BLAKE3-verifies")

    def mine(cfg: Config) -> Outcome:
        return measure(lambda: ours.get(h), _few(cfg), warmup=1)

    def bare(cfg: Config) -> Outcome:
        return measure(lambda: obstore.get(raw, "blob").bytes(), _few(cfg), warmup=1)

    return rounds(ctx.cfg, {"ours": mine, "baseline": bare}, n=2)
