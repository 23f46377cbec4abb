"""The HTTP server end to end: a real ``cashet serve`` (or ``Client().serve``) subprocess.

Each test starts uvicorn on a free loopback port, waits for it by polling, talks to it
with a real ``httpx.Client`` over TCP, then stops it with SIGINT and expects a clean exit.
"""

from __future__ import annotations

import base64
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cashet import Client

pytestmark = pytest.mark.slow

CASHET = Path(sys.executable).with_name("cashet")
TOKEN = "e2e-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STARTUP_TIMEOUT_S = 30.0

TASKS_MODULE = """
def double(x):
    return x * 2


def boom(message):
    raise ValueError(message)
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            out, err = server.proc.communicate()
            pytest.fail(f"server exited with {server.proc.returncode}:\n{out}\n{err}")
        try:
            httpx.get(f"{server.url}/openapi.json", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("server did not start in time")


@contextmanager
def serving(
    cmd: Sequence[str], cwd: Path, port: int, env: dict[str, str] | None = None
) -> Iterator[Server]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CASHET_DIR", None)
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Server(proc, port)
    try:
        _wait_ready(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.communicate()
    assert proc.returncode == 0, proc.returncode


def cashet_serve(tmp_path: Path, port: int, *extra: str) -> list[str]:
    return [
        str(CASHET),
        "--store-dir",
        str(tmp_path / "store"),
        "serve",
        "--port",
        str(port),
        *extra,
    ]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "e2e_tasks.py").write_text(TASKS_MODULE, encoding="utf-8")
    return tmp_path


def test_cashet_serve_with_token_and_tasks(project: Path) -> None:
    port = free_port()
    cmd = cashet_serve(project, port, "--task", "e2e_tasks:double", "--task", "e2e_tasks:boom")
    with serving(cmd, project, port, env={"CASHET_TOKEN": TOKEN}) as server:
        with httpx.Client(base_url=server.url, timeout=30) as anon:
            for method, path in (("GET", "/stats"), ("GET", "/nope"), ("POST", "/submit")):
                r = anon.request(method, path, json={"task": "double", "args": [1]})
                assert r.status_code == 401
                assert r.headers["www-authenticate"].startswith("Bearer")
            bad = anon.get("/stats", headers={"Authorization": b"Bearer \xff\xfe caf\xe9"})
            assert bad.status_code == 401

        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
            first = http.post("/submit", json={"task": "double", "args": [21]})
            assert first.status_code == 200, first.text
            assert first.json()["result"] == 42 and first.json()["cached"] is False
            again = http.post("/submit", json={"task": "double", "args": [21]}).json()
            assert again["cached"] is True
            h = again["commit_hash"]

            assert http.get(f"/commit/{h[:12]}").json()["func_name"] == "double"
            result = http.get(f"/result/{h}").json()
            assert pickle.loads(base64.b64decode(result["result_b64"])) == 42
            assert [c["hash"] for c in http.get("/log").json()] == [h]
            assert http.get(f"/history/{h}").status_code == 200
            assert http.get(f"/diff/{h}/{h}").json()["output_changed"] is False
            assert http.get("/stats").json()["total_commits"] == 1

            failed = http.post("/submit", json={"task": "boom", "args": ["bad input"]})
            assert failed.status_code == 422
            assert failed.json()["error"] == "task failed"
            assert failed.json()["detail"] == "ValueError: bad input"
            assert http.get("/log?limit=0").status_code == 400
            assert http.get("/commit/nothex").status_code == 400
            assert http.get(f"/commit/{'0' * 64}").status_code == 404
            assert http.post("/submit", json={"task": "nope"}).status_code == 404
            refused = http.post("/submit", json={"func_source": "def f(): return 1"})
            assert refused.status_code == 403

            too_big = http.post("/submit", content=b"x" * (5 * 2**20))
            assert too_big.status_code == 413
            assert http.get("/stats").status_code == 200  # still serving

            assert http.get("/openapi.json").json()["openapi"].startswith("3.1")
            assert http.post("/gc", json={"older_than_days": 0}).json() == {
                "evicted": 2,
                "deleted": 2,
            }


def test_client_serve_from_python(tmp_path: Path) -> None:
    port = free_port()
    script = textwrap.dedent(
        f"""
        from cashet import Client

        client = Client({str(tmp_path / "store")!r})

        def add(x: int, y: int) -> int:
            return x + y

        client.serve(port={port}, tasks={{"add": add}})
        """
    )
    with (
        serving([sys.executable, "-c", script], tmp_path, port) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        r = http.post("/submit", json={"task": "add", "args": [3, 4]})
        assert r.status_code == 200, r.text
        assert r.json()["result"] == 7
        assert http.get("/stats").json()["total_commits"] == 1
        assert f"/ui/commit/{r.json()['commit_hash']}" in http.get("/ui/").text  # the web UI
    with Client(store_dir=tmp_path / "store") as client:
        assert client.get(r.json()["commit_hash"]) == 7


def test_registered_task_via_client_task(tmp_path: Path) -> None:
    port = free_port()
    script = textwrap.dedent(
        f"""
        from cashet import Client

        client = Client({str(tmp_path / "store")!r})

        @client.task(tags={{"team": "ml"}})
        def square(x):
            return x * x

        client.serve(port={port}, require_token={TOKEN!r})
        """
    )
    with (
        serving([sys.executable, "-c", script], tmp_path, port) as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http,
    ):
        r = http.post("/submit", json={"task": "square", "args": [9]})
        assert r.status_code == 200, r.text
        commit = http.get(f"/commit/{r.json()['commit_hash']}").json()
        assert commit["tags"] == {"team": "ml"}


def test_remote_code_needs_token_at_startup(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*cashet_serve(tmp_path, free_port()), "--allow-remote-code"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "CASHET_TOKEN"},
    )
    assert proc.returncode == 2
    assert "--require-token" in proc.stderr
    assert "Traceback" not in proc.stderr

    script = (
        f"from cashet import Client; Client({str(tmp_path / 's')!r}).serve(allow_remote_code=True)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "ValueError" in proc.stderr and "require_token" in proc.stderr


def test_remote_code_when_enabled(tmp_path: Path) -> None:
    port = free_port()
    cmd = cashet_serve(tmp_path, port, "--require-token", TOKEN, "--allow-remote-code")
    with (
        serving(cmd, tmp_path, port) as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http,
    ):
        source = "def triple(x):\n    return x * 3\n"
        r = http.post("/submit", json={"func_source": source, "args": [5]})
        assert r.status_code == 200, r.text
        assert r.json()["result"] == 15
        anon = httpx.post(f"{server.url}/submit", json={"func_source": source, "args": [5]})
        assert anon.status_code == 401


def test_read_only_server(project: Path) -> None:
    with Client(store_dir=project / "store") as client:
        sys.path.insert(0, str(project))
        try:
            import e2e_tasks  # type: ignore[import-not-found]

            done = client.submit(e2e_tasks.double, 4)
        finally:
            sys.path.remove(str(project))
            sys.modules.pop("e2e_tasks", None)
    port = free_port()
    cmd = cashet_serve(project, port, "--read-only", "--task", "e2e_tasks:double")
    with (
        serving(cmd, project, port) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        hit = http.post("/submit", json={"task": "double", "args": [4]})
        assert hit.status_code == 200, hit.text
        assert hit.json()["commit_hash"] == done.commit_hash
        assert http.post("/submit", json={"task": "double", "args": [5]}).status_code == 403
        assert http.post("/gc").status_code == 403
        assert http.get("/stats").json()["total_commits"] == 1


def test_read_only_needs_an_existing_store(tmp_path: Path) -> None:
    proc = subprocess.run(
        cashet_serve(tmp_path, free_port(), "--read-only"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "no cashet store" in proc.stderr
    assert not (tmp_path / "store").exists()


def test_bad_task_spec_is_a_usage_error(tmp_path: Path) -> None:
    for spec in ("nocolon", "no_such_module_xyz:f", "os:no_such_attr"):
        proc = subprocess.run(
            cashet_serve(tmp_path, free_port(), "--task", spec),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert proc.returncode == 2, (spec, proc.stderr)
        assert "--task" in proc.stderr
