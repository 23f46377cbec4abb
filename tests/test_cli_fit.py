"""A CLI that fits (issue 15), tried as users would: the real ``cashet`` in subprocesses, and
in a pseudo-terminal (``pty``) where what a terminal sees matters (80 columns, prompts,
binary refused, long lists cut, progress)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

from cashet import Client
from cashet.serializers import JsonSerializer

CASHET = Path(sys.executable).with_name("cashet")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def train_model(i: int) -> dict[str, int]:
    return {"i": i}


def evaluate(i: int) -> int:
    return i * 2


def blob(n: int) -> bytes:
    return bytes(range(256)) * n


def many(n: int) -> list[int]:
    return list(range(n))


def run(*args: str, cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    """The real console script, piped."""
    env = {k: v for k, v in os.environ.items() if k not in ("CASHET_DIR", "CASHET_STORE")}
    return subprocess.run(
        [str(CASHET), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, **kw
    )


def run_tty(
    *args: str, cwd: Path, columns: int = 80, answer: bytes = b""
) -> tuple[int, str]:  # fmt: skip
    """The real console script on a pseudo-terminal ``columns`` wide: (exit code, screen)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("CASHET_DIR", "CASHET_STORE")}
    env.update(TERM="xterm", COLUMNS=str(columns), LINES="50")
    proc = subprocess.Popen(
        [str(CASHET), *args], cwd=cwd, stdin=follower, stdout=follower, stderr=follower,
        env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    if answer:
        os.write(leader, answer)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=30)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def plain(text: str) -> str:
    return ANSI.sub("", text)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store of 60 ``train_model`` runs (tagged) and 3 ``evaluate`` runs."""
    where = tmp_path / ".cashet"
    with Client(store_dir=where) as c:
        for i in range(60):
            c.submit(train_model, i, _tags={"experiment": "baseline-v3", "env": "prod"})
        for i in range(3):
            c.submit(evaluate, i)
    return where


def hashes(store: Path, func: str | None = None) -> list[str]:
    with Client(store_dir=store) as c:
        return [x.hash for x in c.log(func_name=func, limit=None)]


# --- log -----------------------------------------------------------------------------------


def test_log_at_80_columns_is_one_commit_per_line(store: Path) -> None:
    code, screen = run_tty("--store-dir", str(store), "log", cwd=store.parent)
    assert code == 0, screen
    lines = plain(screen).splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    rows = [line for line in lines if re.match(r"^\s+[0-9a-f]{12}\s", line)]
    assert len(rows) == 50  # one line per commit, none wrapped
    assert all("train_model" in r or "evaluate" in r for r in rows)  # whole names
    assert "Created" in screen and "Tags" not in screen  # the least important dropped
    assert "50 of 63 commits (use -n 0 for all)" in screen


def test_log_wide_shows_every_column(store: Path) -> None:
    code, screen = run_tty(
        "--store-dir", str(store), "log", "-f", "train_model", "-n", "3", "--wide",
        cwd=store.parent,
    )  # fmt: skip
    assert code == 0, screen
    text = plain(screen)
    for column in ("Hash", "Status", "Function", "Created", "Size", "Compute"):
        assert column in text
    assert "Tags" in text
    assert "experiment=baseline-v3" in text.replace("\n", "")  # the terminal may wrap it


def test_limited_listing_says_so(store: Path) -> None:
    piped = run("--store-dir", str(store), "log", "-n", "5", cwd=store.parent)
    assert piped.returncode == 0
    assert len(piped.stdout.splitlines()) == 5  # the lines for scripts are unchanged
    assert "5 of 63 commits (use -n 0 for all)" in piped.stderr
    everything = run("--store-dir", str(store), "log", "-n", "0", cwd=store.parent)
    assert len(everything.stdout.splitlines()) == 63 and everything.stderr == ""
    fitted = run("--store-dir", str(store), "log", "--func", "evaluate", cwd=store.parent)
    assert len(fitted.stdout.splitlines()) == 3 and fitted.stderr == ""


def test_global_options_after_the_subcommand(store: Path, tmp_path: Path) -> None:
    before = run("--store-dir", str(store), "--plain", "log", "-n", "3", cwd=tmp_path)
    after = run("log", "-n", "3", "--store-dir", str(store), "--plain", cwd=tmp_path)
    assert before.returncode == after.returncode == 0, after.stderr
    assert after.stdout == before.stdout and len(after.stdout.splitlines()) == 3
    url = run("show", hashes(store)[0][:12], f"--store=sqlite://{store}", "--json", cwd=tmp_path)
    assert url.returncode == 0, url.stderr
    assert json.loads(url.stdout)["func_name"] in ("train_model", "evaluate")
    literal = run("--store-dir", str(store), "get", "--", "--plain", cwd=tmp_path)
    assert literal.returncode == 1 and "--plain" in literal.stderr  # after --: an argument


# --- usage errors, ambiguity ---------------------------------------------------------------


@pytest.mark.parametrize("size", ["1XB", "-5MB", "lots"])
def test_bad_size_is_a_usage_error(store: Path, size: str) -> None:
    proc = run("--store-dir", str(store), "gc", "--max-size", size, cwd=store.parent)
    assert proc.returncode == 2, proc.stderr
    assert "--max-size" in proc.stderr and "Traceback" not in proc.stderr
    assert len(hashes(store)) == 63


def test_ambiguous_prefix_lists_short_hash_function_and_date(store: Path) -> None:
    all_hashes = hashes(store)
    prefix = next(
        h[0] for h in all_hashes if sum(1 for other in all_hashes if other[0] == h[0]) > 1
    )
    proc = run("--store-dir", str(store), "show", prefix, cwd=store.parent)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"Error: Ambiguous prefix {prefix!r}")
    listed = [line for line in lines if re.match(r"^\s+[0-9a-f]{12}\s", line)]
    assert len(listed) >= 2
    for line in listed:
        short, func, day, clock = line.split()
        assert short.startswith(prefix) and len(short) == 12
        assert func in ("train_model", "evaluate")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", day) and re.fullmatch(r"\d\d:\d\d", clock)
    assert all(len(h) < 64 for h in re.findall(r"[0-9a-f]{13,}", proc.stderr))


# --- deleting: previews and confirmation ---------------------------------------------------


def test_gc_dry_run_deletes_nothing(store: Path) -> None:
    proc = run("--store-dir", str(store), "gc", "--older-than", "0", "--dry-run", cwd=store.parent)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 64  # 63 commits and the summary
    assert "Dry run: would delete 63 commit(s); nothing deleted." in proc.stdout
    as_json = run(
        "--store-dir", str(store), "gc", "-d", "0", "--dry-run", "--json", cwd=store.parent
    )
    assert len(json.loads(as_json.stdout)["would_delete"]) == 63
    assert len(hashes(store)) == 63
    gone = run("--store-dir", str(store), "gc", "--older-than", "0", cwd=store.parent)
    assert gone.returncode == 0 and "Evicted 63" in gone.stdout  # piped: never asks


def test_gc_dry_run_under_a_size_limit(store: Path) -> None:
    proc = run(
        "--store-dir", str(store), "gc", "--max-size", "0", "--dry-run", "--json",
        cwd=store.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["would_delete"]) == 63
    assert len(hashes(store)) == 63


def test_rm_dry_run_and_several_hashes(store: Path) -> None:
    a, b = hashes(store, "evaluate")[:2]
    dry = run("--store-dir", str(store), "rm", a[:12], b, "--dry-run", cwd=store.parent)
    assert dry.returncode == 0 and "would delete 2 commit(s)" in dry.stdout
    assert len(hashes(store)) == 63
    done = run("--store-dir", str(store), "rm", a[:12], b, cwd=store.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Deleted commit") == 2 and len(hashes(store)) == 61


def test_invalidate_by_function(store: Path) -> None:
    dry = run("--store-dir", str(store), "invalidate", "--func", "evaluate", "--dry-run",
              cwd=store.parent)  # fmt: skip
    assert dry.returncode == 0 and "would delete 3 commit(s)" in dry.stdout
    assert len(hashes(store)) == 63
    done = run("--store-dir", str(store), "invalidate", "--func", "evaluate", cwd=store.parent)
    assert done.returncode == 0 and "Invalidated 3 commit(s)" in done.stdout
    assert hashes(store, "evaluate") == [] and len(hashes(store)) == 60
    both = run("--store-dir", str(store), "invalidate", "-f", "train_model", "-t", "env=dev",
               cwd=store.parent)  # fmt: skip
    assert "Invalidated 0 commit(s)" in both.stdout and len(hashes(store)) == 60
    nothing = run("--store-dir", str(store), "invalidate", cwd=store.parent)
    assert nothing.returncode == 2 and "--func" in nothing.stderr


def test_deleting_more_than_a_handful_asks_on_a_terminal(store: Path) -> None:
    code, screen = run_tty(
        "--store-dir", str(store), "invalidate", "--tag", "env=prod", cwd=store.parent,
        answer=b"n\n",
    )  # fmt: skip
    assert code == 1 and "Delete 60 commit(s)" in screen and "Aborted" in screen
    assert len(hashes(store)) == 63
    code, screen = run_tty("--store-dir", str(store), "gc", "-d", "0", cwd=store.parent,
                           answer=b"n\n")  # fmt: skip
    assert code == 1 and "Delete 63 commit(s)" in screen
    assert len(hashes(store)) == 63
    few = hashes(store, "evaluate")
    code, screen = run_tty("--store-dir", str(store), "rm", *few, cwd=store.parent)
    assert code == 0 and "Delete" not in screen.replace("Deleted", "")  # a few: no question
    code, screen = run_tty(
        "--store-dir", str(store), "invalidate", "-t", "env=prod", "--yes", cwd=store.parent
    )
    assert code == 0 and "Invalidated 60 commit(s)" in screen and "?" not in screen
    assert hashes(store) == []


# --- get -----------------------------------------------------------------------------------


def test_get_dash_writes_to_stdout(tmp_path: Path) -> None:
    store = tmp_path / ".cashet"
    with Client(store_dir=store) as c:
        h = c.submit(blob, 4).commit.hash
    proc = subprocess.run(
        [str(CASHET), "--store-dir", str(store), "get", h[:12], "-o", "-"],
        cwd=tmp_path, capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == blob(4)
    assert not (tmp_path / "-").exists()


def test_binary_is_never_dumped_to_a_terminal(tmp_path: Path) -> None:
    store = tmp_path / ".cashet"
    with Client(store_dir=store) as c:
        h = c.submit(evaluate, 4).commit.hash[:12]
        b = c.submit(blob, 1).commit.hash[:12]
    for args in (["get", h, "--raw"], ["get", b], ["get", b, "-o", "-"]):
        code, screen = run_tty("--store-dir", str(store), *args, cwd=tmp_path)
        assert code == 1, (args, screen)
        assert "binary data" in screen and "-o FILE" in screen and "pipe" in screen
        assert "\x80" not in screen and "\ufffd" not in screen
    piped = subprocess.run(
        [str(CASHET), "--store-dir", str(store), "get", h, "--raw"], cwd=tmp_path,
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0 and piped.stdout.startswith(b"\x80")  # a pickle


def test_get_names_the_serializer_of_a_json_store(tmp_path: Path) -> None:
    store = tmp_path / ".cashet"
    with Client(store_dir=store, serializer=JsonSerializer()) as c:
        h = c.submit(train_model, 7).commit.hash[:12]
    wrong = run("--store-dir", str(store), "get", h, cwd=tmp_path)
    assert wrong.returncode == 1
    assert "use --serializer json" in wrong.stderr
    assert "Unpickling" not in wrong.stderr and "Traceback" not in wrong.stderr
    right = run("--store-dir", str(store), "get", h, "--serializer", "json", cwd=tmp_path)
    assert right.returncode == 0 and json.loads(right.stdout) == {"i": 7}
    other = tmp_path / "pickled"
    with Client(store_dir=other) as c:
        p = c.submit(train_model, 8).commit.hash[:12]
    swapped = run("--store-dir", str(other), "get", p, "--serializer", "json", cwd=tmp_path)
    assert swapped.returncode == 1 and "use --serializer pickle" in swapped.stderr


def test_a_huge_list_is_cut_short_on_a_terminal(tmp_path: Path) -> None:
    store = tmp_path / ".cashet"
    with Client(store_dir=store) as c:
        h = c.submit(many, 5000).commit.hash[:12]
    code, screen = run_tty("--store-dir", str(store), "get", h, cwd=tmp_path)
    assert code == 0
    assert "showing 100 of 5000 items" in screen and "--all" in screen
    assert "4999" not in screen and len(screen.splitlines()) < 150
    code, screen = run_tty("--store-dir", str(store), "get", h, "--all", cwd=tmp_path)
    assert code == 0 and "4999" in screen
    piped = run("--store-dir", str(store), "get", h, cwd=tmp_path)
    assert json.loads(piped.stdout) == list(range(5000)) and piped.stderr == ""


# --- serve ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_until_serving(port: int, timeout: float = 30.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_serve_says_what_it_serves(store: Path, tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text("def double(x):\n    return 2 * x\n")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CASHET_DIR", "CASHET_TOKEN")}
    proc = subprocess.Popen(
        [str(CASHET), "--store-dir", str(store), "serve", "--host", "0.0.0.0", "--port",
         str(port), "--task", "jobs:double"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        _wait_until_serving(port)  # everything it prints at start-up is out by then
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    out = "".join(lines)
    assert f"cashet serving {store.as_posix()}" in out
    assert "tasks:   double" in out
    assert "auth:    off" in out
    assert f"openapi: http://0.0.0.0:{port}/openapi.json" in out
    assert "warning: serving on 0.0.0.0 without a token" in err


def test_serve_on_a_busy_port_is_a_clean_error(store: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run("--store-dir", str(store), "serve", "--port", str(port), cwd=store.parent)
    assert proc.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


# --- progress ------------------------------------------------------------------------------


def test_long_operations_show_progress_on_a_terminal(store: Path, tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar.gz"
    code, screen = run_tty("--store-dir", str(store), "export", str(archive), cwd=tmp_path)
    assert code == 0 and "Exporting" in screen
    code, screen = run_tty("--store-dir", str(store), "doctor", cwd=tmp_path)
    assert code == 0 and "Checking the store" in screen
    code, screen = run_tty(
        "--store-dir", str(tmp_path / "copy"), "import", str(archive), cwd=tmp_path
    )
    assert code == 0 and "importing" in screen
    code, screen = run_tty("--store-dir", str(store), "gc", "-d", "0", "--yes", cwd=tmp_path)
    assert code == 0 and "Collecting garbage" in screen
    piped = run("--store-dir", str(tmp_path / "copy"), "doctor", cwd=tmp_path)
    assert piped.returncode == 0 and "Checking" not in piped.stdout + piped.stderr


def test_gc_preview_is_what_gc_evicts(client_factory: Any) -> None:
    """``client.gc_preview`` (behind ``gc --dry-run``) on every client and store."""
    from datetime import timedelta

    c = client_factory()
    made = [c.submit(evaluate, i).commit.hash for i in range(4)]
    assert c.gc_preview() == []
    assert {x.hash for x in c.gc_preview(max_size_bytes=0)} == set(made)
    doomed = c.gc_preview(older_than=timedelta(0))
    assert sorted(x.hash for x in doomed) == sorted(made) and c.stats()["total_commits"] == 4
    assert c.gc(older_than=timedelta(0)) == len(doomed)
