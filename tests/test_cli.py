"""The ``cashet`` command line, through Click's runner and as the real console script.

The store is populated in the test process; subprocess runs use the installed ``cashet``
entry point (and ``python -m cashet``) against it.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cashet import Client, TaskError
from cashet.cli import main

CASHET = Path(sys.executable).with_name("cashet")


def preprocess(path: str, size: int = 224) -> list[int]:
    return [size] * 3


def train(data: list[int], lr: float) -> dict[str, Any]:
    return {"loss": 0.05, "lr": lr, "samples": len(data)}


def greeting(name: str) -> str:
    return f"hello {name}\n[bold]not markup[/bold]"


def payload(n: int) -> bytes:
    return bytes(range(n))


def broken(x: int) -> int:
    raise ValueError(f"broken {x}")


@dataclass
class Populated:
    root: Path  # the working directory; the store is root / ".cashet"
    pre: str  # commit hashes
    pre_result: str  # result blob hash of ``pre``
    train_a: str
    train_b: str
    rerun: str  # forced re-run of train_a
    text: str
    blob: str
    failed: str

    @property
    def store(self) -> Path:
        return self.root / ".cashet"


@pytest.fixture
def populated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Populated]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASHET_DIR", raising=False)
    with Client(store_dir=tmp_path / ".cashet") as c:
        pre = c.submit(preprocess, "s3://bucket/images", 224)
        a = c.submit(train, pre, 0.01, _tags={"env": "prod", "experiment": "run-1"})
        b = c.submit(train, pre, 0.5, _tags={"env": "dev", "experiment": "run-1"})
        rerun = c.submit(train, pre, 0.01, _force=True, _tags={"env": "prod"})
        text = c.submit(greeting, "ada")
        blob = c.submit(payload, 256)
        with pytest.raises(TaskError):
            c.submit(broken, 1)
        (failed,) = c.log(status="failed")
        yield Populated(
            tmp_path,
            pre.commit_hash,
            pre.hash,
            a.commit_hash,
            b.commit_hash,
            rerun.commit_hash,
            text.commit_hash,
            blob.commit_hash,
            failed.hash,
        )


def cli(p: Populated, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--store-dir", str(p.store), *args], input=input)


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real console script."""
    full_env = {k: v for k, v in os.environ.items() if k != "CASHET_DIR"}
    full_env.update(env or {})
    return subprocess.run(
        [str(CASHET), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60
    )


# --- the README's CLI section, run unchanged by the real entry point ------------------------


def test_readme_cli_section_runs_unchanged(populated: Populated) -> None:
    p = populated
    commands = [
        "cashet log",
        'cashet log --func "preprocess"',
        "cashet log --tag env=prod --tag experiment=run-1",
        f"cashet show {p.train_a}",
        f"cashet get {p.train_a}",
        f"cashet get {p.blob} -o output.bin",
        f"cashet diff {p.train_a} {p.train_b}",
        f"cashet history {p.train_a}",
        f"cashet rm {p.text}",
        "cashet gc --older-than 30",
        "cashet gc --max-size 1GB",
        "cashet export backup.tar.gz",
        "cashet stats",
        "cashet clear",
        "cashet import backup.tar.gz",
        "cashet --help",
    ]
    outputs = {}
    for command in commands:
        argv = shlex.split(command)
        proc = run(*argv[1:], cwd=p.root)
        assert proc.returncode == 0, (command, proc.stderr)
        assert "Traceback" not in proc.stderr
        outputs[command] = proc.stdout
    assert outputs["cashet log"].count("\n") == 7
    assert outputs['cashet log --func "preprocess"'].split("\t")[0] == p.pre
    tagged = outputs["cashet log --tag env=prod --tag experiment=run-1"].splitlines()
    assert [line.split("\t")[0] for line in tagged] == [p.train_a]
    assert "Function: train" in outputs[f"cashet show {p.train_a}"]
    assert json.loads(outputs[f"cashet get {p.train_a}"]) == {
        "loss": 0.05,
        "lr": 0.01,
        "samples": 3,
    }
    assert (p.root / "output.bin").read_bytes() == bytes(range(256))
    assert "args_changed: true" in outputs[f"cashet diff {p.train_a} {p.train_b}"]
    history = outputs[f"cashet history {p.train_a}"].splitlines()
    assert [line.split("\t")[0] for line in history] == [p.train_a, p.rerun]
    assert "Deleted commit" in outputs[f"cashet rm {p.text}"]
    assert "Exported 6 commit(s)" in outputs["cashet export backup.tar.gz"]
    assert "total_commits: 6" in outputs["cashet stats"]
    assert outputs["cashet clear"] == "Cleared 6 commit(s)\n"
    assert outputs["cashet import backup.tar.gz"].startswith("Imported 6 commit(s)")


def test_readme_use_case_3_notebook_hash(populated: Populated) -> None:
    """``print(ref.hash)`` in a notebook, then ``cashet show <hash>`` in a terminal."""
    p = populated
    shown = run("show", p.pre_result, cwd=p.root)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"Hash:     {p.pre}"
    assert lines[1] == "Function: preprocess"
    assert "Args:     (('s3://bucket/images', 224), {})" in lines
    assert any(line.startswith("Source:   def preprocess(path: str") for line in lines)
    assert any(line.startswith("Created:  20") for line in lines)
    got = run("get", p.pre_result, "-o", "forecast.csv", cwd=p.root)
    assert got.returncode == 0, got.stderr
    assert pickle.loads((p.root / "forecast.csv").read_bytes()) == [224, 224, 224]


def test_python_dash_m_and_version(populated: Populated) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cashet", "--store-dir", str(populated.store), "log", "-n", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1
    version = subprocess.run(
        [sys.executable, "-m", "cashet", "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("cashet, version ")


# --- log, history: plain, json and rich -----------------------------------------------------


def test_log_plain_lines_are_stable(populated: Populated) -> None:
    p = populated
    result = cli(p, "log")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 7
    fields = [line.split("\t") for line in lines]
    assert all(len(f) == 6 and f[5] == "0" for f in fields)  # the 6th: hits (issue 15)
    assert fields[0][0] == p.failed and fields[0][2:5] == ["failed", "broken", "-"]
    assert fields[-1][0] == p.pre and fields[-1][2:4] == ["completed", "preprocess"]
    assert fields[-1][4] == p.pre_result[:12]
    assert all(f[1].endswith("Z") and "T" in f[1] for f in fields)


def test_log_filters(populated: Populated) -> None:
    p = populated

    def hashes(*args: str) -> list[str]:
        result = cli(p, "log", *args)
        assert result.exit_code == 0, result.output
        return [line.split("\t")[0] for line in result.stdout.splitlines()]

    assert hashes("--func", "train") == [p.rerun, p.train_b, p.train_a]
    assert hashes("--status", "failed") == [p.failed]
    assert hashes("--status", "FAILED") == [p.failed]
    assert hashes("--tag", "env=prod") == [p.rerun, p.train_a]
    assert hashes("--tag", "experiment") == [p.train_b, p.train_a]
    assert hashes("--tag", "env=prod", "--tag", "experiment=run-1") == [p.train_a]
    assert hashes("--limit", "2") == hashes()[:2]
    assert hashes("-n", "0") == hashes()
    assert hashes("--func", "nothing") == []


def test_log_json(populated: Populated) -> None:
    result = cli(populated, "log", "--json", "--func", "train", "--limit", "1")
    (entry,) = json.loads(result.stdout)
    assert entry["hash"] == populated.rerun
    assert entry["tags"] == {"env": "prod"}
    assert entry["result"]["size"] > 0 and "func_source" not in entry


def test_log_rich_on_a_terminal(populated: Populated) -> None:
    result = cli(populated, "--rich", "log")
    assert result.exit_code == 0
    assert populated.pre[:12] in result.stdout and "\x1b[" in result.stdout
    assert "Function" in result.stdout
    empty = cli(populated, "--rich", "log", "--func", "nothing")
    assert "No commits." in empty.stdout


def test_history(populated: Populated) -> None:
    p = populated
    plain = cli(p, "history", p.rerun[:8])
    assert [line.split("\t")[0] for line in plain.stdout.splitlines()] == [p.train_a, p.rerun]
    data = json.loads(cli(p, "history", p.train_a, "--json").stdout)
    assert [c["hash"] for c in data] == [p.train_a, p.rerun]
    assert data[1]["parent_hash"] == p.train_a
    assert p.train_a[:12] in cli(p, "--rich", "history", p.train_a).stdout


# --- show, get, diff ------------------------------------------------------------------------


def test_show_plain_json_rich(populated: Populated) -> None:
    p = populated
    plain = cli(p, "show", p.train_a[:10]).stdout
    assert f"Hash:     {p.train_a}" in plain
    assert "Tags:     env=prod, experiment=run-1" in plain
    assert f"Inputs:   {p.pre_result}" in plain
    assert "Source:   def train(data: list[int], lr: float)" in plain
    view = json.loads(cli(p, "show", p.train_a, "--json").stdout)
    assert view["hash"] == p.train_a and view["func_source"].startswith("def train")
    assert view["input_hashes"] == [p.pre_result]
    assert view["options"]["cache"] is True
    rich = cli(p, "--rich", "show", p.train_a).stdout
    assert "Source" in rich and p.train_a in rich


def test_show_failed_commit_has_the_error(populated: Populated) -> None:
    out = cli(populated, "show", populated.failed).stdout
    assert "Status:   failed" in out
    assert "ValueError: broken 1" in out
    assert "Error:" in out


def test_get_prints_strings_raw_and_containers_pretty(populated: Populated) -> None:
    p = populated
    assert cli(p, "get", p.text).stdout == "hello ada\n[bold]not markup[/bold]\n"
    assert cli(p, "--rich", "get", p.text).stdout == "hello ada\n[bold]not markup[/bold]\n"
    out = cli(p, "get", p.pre).stdout
    assert out == "[\n  224,\n  224,\n  224\n]\n"
    rich = cli(p, "--rich", "get", p.train_a).stdout
    assert "loss" in rich and "0.05" in rich


def test_get_bytes_and_output_files(populated: Populated, tmp_path: Path) -> None:
    p = populated
    piped = subprocess.run(
        [str(CASHET), "--store-dir", str(p.store), "get", p.blob], capture_output=True, timeout=60
    )
    assert piped.returncode == 0 and piped.stdout == bytes(range(256))
    out = tmp_path / "o"
    assert cli(p, "get", p.text, "-o", str(out)).exit_code == 0
    assert out.read_text() == "hello ada\n[bold]not markup[/bold]"
    assert cli(p, "get", p.train_a, "-o", str(out)).exit_code == 0
    assert pickle.loads(out.read_bytes())["lr"] == 0.01
    assert cli(p, "get", p.text, "--raw", "-o", str(out)).exit_code == 0
    assert pickle.loads(out.read_bytes()).startswith("hello")


def test_get_json_serializer_option(tmp_path: Path) -> None:
    from cashet import JsonSerializer

    with Client(store_dir=tmp_path / "js", serializer=JsonSerializer()) as c:
        h = c.submit(train, [1], 0.1).commit_hash
    args = ["--store-dir", str(tmp_path / "js"), "get", h]
    assert json.loads(CliRunner().invoke(main, [*args, "--serializer", "json"]).stdout)["lr"] == 0.1
    wrong = CliRunner().invoke(main, args)
    assert wrong.exit_code == 1 and "Error:" in wrong.stderr


def test_diff_plain_json_rich(populated: Populated) -> None:
    p = populated
    plain = cli(p, "diff", p.train_a, p.train_b).stdout.splitlines()
    assert plain[:4] == [
        "func_changed: false",
        "args_changed: true",
        "output_changed: true",
        "status_changed: false",
    ]
    assert "  changed args[1]: 0.01 -> 0.5" in plain
    data = json.loads(cli(p, "diff", p.train_a, p.pre, "--json").stdout)
    assert data["func_changed"] is True and data["source_diff"].startswith("---")
    rich = cli(p, "--rich", "diff", p.train_a, p.train_b).stdout
    assert "args_changed" in rich and "Arguments" in rich


# --- maintenance ----------------------------------------------------------------------------


def test_rm(populated: Populated) -> None:
    p = populated
    result = cli(p, "rm", p.text[:10])
    assert result.exit_code == 0 and result.stdout == f"Deleted commit {p.text}\n"
    gone = cli(p, "show", p.text)
    assert gone.exit_code == 1 and "no commit" in gone.stderr


def test_gc_and_json(populated: Populated) -> None:
    p = populated
    result = cli(p, "gc", "--json")
    data = json.loads(result.stdout)
    assert data["evicted"] == 0 and data["stats"]["total_commits"] == 7
    assert cli(p, "gc", "--max-size", "0").stdout.startswith("Evicted 6 commit(s)")
    assert cli(p, "gc", "--older-than", "0").stdout.startswith("Evicted 1 commit(s)")


@pytest.mark.parametrize("size", ["1GB", "500MB", "1.5 GiB", "1024", "10k"])
def test_gc_accepts_sizes(populated: Populated, size: str) -> None:
    assert cli(populated, "gc", "--max-size", size).exit_code == 0


def test_clear_confirmation(populated: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    p = populated
    monkeypatch.setattr("cashet.cli.maintenance._interactive", lambda: True)
    refused = cli(p, "clear", input="n\n")
    assert refused.exit_code == 1 and "Delete all 7 commit(s)" in refused.stdout
    assert cli(p, "stats", "--json").stdout.count('"total_commits": 7') == 1
    accepted = cli(p, "clear", input="y\n")
    assert accepted.exit_code == 0 and "Cleared 7 commit(s)" in accepted.stdout


def test_clear_yes_and_no_tty_never_prompt(populated: Populated) -> None:
    p = populated
    assert cli(p, "clear", "--yes").stdout == "Cleared 7 commit(s)\n"
    with Client(store_dir=p.store) as c:
        c.submit(preprocess, "x")
    # the real script with stdin not a terminal: no prompt, no hang
    proc = subprocess.run(
        [str(CASHET), "--store-dir", str(p.store), "clear"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "Cleared 1 commit(s)\n"


def test_invalidate(populated: Populated) -> None:
    p = populated
    assert cli(p, "invalidate", "--tag", "env=dev").stdout == "Invalidated 1 commit(s)\n"
    assert cli(p, "invalidate", "--tag", "env").stdout == "Invalidated 2 commit(s)\n"
    assert cli(p, "stats", "--json").stdout.count('"total_commits": 4') == 1
    missing = cli(p, "invalidate")
    assert missing.exit_code == 2 and "--tag" in missing.stderr
    empty = cli(p, "invalidate", "--tag", "=x")
    assert empty.exit_code == 2


def test_stats_human_and_json(populated: Populated) -> None:
    p = populated
    data = json.loads(cli(p, "stats", "--json").stdout)
    assert data["total_commits"] == 7 and data["completed_commits"] == 6
    plain = cli(p, "stats").stdout
    assert "total_commits: 7" in plain and "disk_bytes:" in plain and " B)" in plain
    rich = cli(p, "--rich", "stats").stdout
    assert "Commits" in rich and "7 (6 completed)" in rich


def test_export_import(populated: Populated, tmp_path: Path) -> None:
    p = populated
    archive = tmp_path / "b.tar.gz"
    assert cli(p, "export", str(archive)).exit_code == 0
    other = tmp_path / "other-store"
    result = CliRunner().invoke(main, ["--store-dir", str(other), "import", str(archive)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Imported 7 commit(s)")
    again = CliRunner().invoke(main, ["--store-dir", str(other), "import", str(archive)])
    assert "0 commit(s)" in again.stdout and "7 already present" in again.stdout


def test_import_of_a_bad_archive_fails_cleanly_and_creates_no_store(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"definitely not gzip")
    proc = run("--store-dir", str(tmp_path / "new"), "import", str(bad), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: cannot read archive") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "new").exists()


# --- errors: one line, exit 1 (2 for usage), never a traceback ------------------------------


def test_failures_in_a_subprocess(populated: Populated, tmp_path: Path) -> None:
    p = populated
    with Client(store_dir=p.store) as c:
        c.map(payload, range(10))  # 17 commits, 16 hex digits: some first digit repeats
        firsts = [c.hash[0] for c in c.log(limit=None)]
    ambiguous = next(d for d in firsts if firsts.count(d) > 1)
    cases: list[tuple[list[str], int, str]] = [
        (["show", "abc"], 1, "no cashet store at"),
        (["--store-dir", str(p.store), "show", "0" * 64], 1, "no commit"),
        (["--store-dir", str(p.store), "show", "xyz"], 1, "is not a commit hash"),
        (["--store-dir", str(p.store), "get", p.failed], 1, "has no result"),
        (["--store-dir", str(p.store), "gc", "--max-size", "12XB"], 2, "invalid size '12XB'"),
        (["--store-dir", str(p.store), "gc", "--max-size", "-5MB"], 2, "invalid size"),
        (["--store-dir", str(p.store), "log", "--status", "done"], 1, "Invalid status 'done'"),
        (["--store-dir", str(p.store), "log", "--limit", "-1"], 2, "--limit"),
        (["--store-dir", str(p.store), "nosuchcommand"], 2, "No such command"),
        (["--store-dir", str(p.root), "log"], 1, "is not a cashet store"),
    ]
    cases.append((["--store-dir", str(p.store), "show", ambiguous], 1, "Ambiguous prefix"))
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, code, message in cases:
        proc = run(*args, cwd=empty)
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr, args
        if code == 1 and message != "Ambiguous prefix":  # that one lists its candidates
            assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "missing").exists() and not (empty / ".cashet").exists()


def test_read_commands_never_create_a_store(tmp_path: Path) -> None:
    for command in (["gc"], ["clear", "--yes"], ["show", "ab"], ["rm", "ab"]):
        result = CliRunner().invoke(main, ["--store-dir", str(tmp_path / "s"), *command])
        assert result.exit_code == 1 and "no cashet store" in result.stderr
    # As the published cashet, which scripts expect (issue 12): no store, no commits, exit 0.
    for command, says in (
        (["log"], "No commits found"),
        (["list"], "No commits found"),
        (["stats"], "total_commits: 0"),
        (["history", "ab"], "No history found"),
    ):
        result = CliRunner().invoke(main, ["--store-dir", str(tmp_path / "s"), *command])
        assert result.exit_code == 0, (command, result.stderr)
        assert says in result.stdout
    as_json = CliRunner().invoke(main, ["--store-dir", str(tmp_path / "s"), "log", "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []
    stats = CliRunner().invoke(main, ["--store-dir", str(tmp_path / "s"), "stats", "--json"])
    assert json.loads(stats.stdout)["total_commits"] == 0
    assert not (tmp_path / "s").exists()


def test_published_short_flags_and_list_alias(populated: Populated) -> None:
    store = ["--store-dir", str(populated.store)]
    plain = CliRunner().invoke(main, [*store, "log", "--json"])
    short = CliRunner().invoke(main, [*store, "list", "-s", "failed", "--json"])
    assert short.exit_code == 0, short.stderr
    failed = [c for c in json.loads(plain.stdout) if c["status"] == "failed"]
    assert [c["hash"] for c in json.loads(short.stdout)] == [c["hash"] for c in failed]
    func = failed[0]["func_name"]
    by_func = CliRunner().invoke(main, [*store, "log", "-f", func, "-t", "nosuchtag", "--json"])
    assert by_func.exit_code == 0 and json.loads(by_func.stdout) == []
    gc = CliRunner().invoke(main, [*store, "gc", "-d", "365", "-s", "1GB", "--json"])
    assert gc.exit_code == 0, gc.stderr
    gone = CliRunner().invoke(main, [*store, "invalidate", "-t", "nosuchtag=1"])
    assert gone.exit_code == 0, gone.stderr
    serve_help = CliRunner().invoke(main, ["serve", "--help"])
    assert "-h, --host" in serve_help.stdout and "-p, --port" in serve_help.stdout


def test_store_dir_from_environment(populated: Populated, tmp_path: Path) -> None:
    proc = run("log", "-n", "1", cwd=tmp_path, env={"CASHET_DIR": str(populated.store)})
    assert proc.returncode == 0 and proc.stdout.startswith(populated.failed)


def test_unexpected_errors_are_one_line(
    populated: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(Client, "stats", boom)
    result = cli(populated, "stats")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: internal error: RuntimeError: kaboom (set CASHET_DEBUG=1 to see the traceback)\n"
    )


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "big") as c:
        c.map(preprocess, [f"file{i}" for i in range(600)])
    proc = subprocess.Popen(
        [str(CASHET), "--store-dir", str(tmp_path / "big"), "log", "-n", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.wait(60)
    assert "Traceback" not in err and "BrokenPipe" not in err


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1024", 1024),
        ("1_000", 1000),
        ("10k", 10 * 1024),
        ("500MB", 500 * 2**20),
        ("500 mb", 500 * 2**20),
        ("1GB", 2**30),  # binary, as the README's ``1024 * 1024 * 1024  # 1GB``
        ("1 GiB", 2**30),
        ("1.5 GiB", 3 * 2**29),
        ("2t", 2 * 2**40),
        (".5K", 512),
        ("7 B", 7),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    from cashet._humanize import parse_size

    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "1XB", "1e3", "nan", "inf", "1 G B", "1.2.3"])
def test_parse_size_rejects(text: str) -> None:
    from cashet._humanize import parse_size

    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_format_size() -> None:
    from cashet._humanize import format_size

    assert [format_size(n) for n in (0, 512, 1536, 10 * 2**20, 3 * 2**30)] == [
        "0 B",
        "512 B",
        "1.5 KiB",
        "10.0 MiB",
        "3.0 GiB",
    ]
