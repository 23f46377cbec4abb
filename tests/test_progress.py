"""submit_many shows a Rich progress bar on a terminal and nothing when piped."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, time
from cashet import Client

def step(i):
    time.sleep(0.02)
    return i

with Client(store_dir=sys.argv[1]) as c:
    refs = c.map(step, range(30))
    print("sum", sum(r.load() for r in refs))
"""


def test_no_progress_output_when_not_a_tty(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "sum 435"
    assert out.stderr == ""


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="100")
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
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
    proc.wait(timeout=30)
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "sum 435" in text
    assert "/30" in text  # "n/30 completed" column of the bar
    assert "ran, " in text and "cached" in text  # what the finished calls were


def test_a_rerun_batch_says_its_calls_came_from_the_cache(tmp_path: Path) -> None:
    """The bar counts what ran and what came from the cache (on a cluster: hits are never
    sent anywhere), and how many run now."""
    script = SCRIPT.replace(
        "refs = c.map(step, range(30))", "c.map(step, range(30))\n    refs = c.map(step, range(30))"
    )
    leader, follower = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0 and "sum 435" in text
    assert "0 ran, 30 cached" in text or "0 ran, 29 cached" in text
