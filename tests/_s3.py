"""A real S3-protocol server for the tests: moto's ``ThreadedMotoServer`` on a free loopback
port (the in-process moto mock patches boto only: obstore speaks HTTP to a real server).

The session fixture ``s3_server`` starts it once; ``s3_bucket`` makes a fresh bucket per
test. Needs ``moto[server]`` (the ``dev`` extra); without it the tests are skipped, except
in CI (``CI=true``), where that fails the run.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

#: The credentials the tests use: moto accepts any; the tests check none leaks.
ACCESS_KEY = "AKIATESTCASHETKEY01"
SECRET_KEY = "cashet-test-secret-do-not-print-7f3a9c"


@dataclass
class S3Server:
    """A running moto server: its endpoint, and the server object (tests may stop it)."""

    endpoint: str
    server: Any

    def make_bucket(self) -> str:
        name = f"cashet-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()
        return name

    def blob_store(self, bucket: str, prefix: str = "cache", **kwargs: Any) -> Any:
        from cashet.blob_store import S3BlobStore

        return S3BlobStore(
            bucket,
            prefix=prefix,
            endpoint=self.endpoint,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            allow_http=True,
            **kwargs,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> S3Server:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - dev installs moto[server]
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"moto[server] is required in CI: {exc}", pytrace=False)
        pytest.skip(f"moto[server] is not installed: {exc}")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return S3Server(f"http://127.0.0.1:{port}", server)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    running = start_server()
    try:
        yield running
    finally:
        running.server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    return s3_server.make_bucket()


@contextmanager
def server_process() -> Iterator[S3Server]:
    """A moto server in a child process: for a test that measures a child's memory (a
    process forked from one that holds the objects would report its parent's peak RSS)."""
    import subprocess
    import sys
    import time

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no moto server"
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        proc.wait(30)
