"""``export`` / ``import_archive``: round trips over every store backend, and crafted archives
that must each be rejected with the store left exactly as it was."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import random
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cashet import ArchiveError, Client, TaskError
from cashet.hashing.commits import commit_from_json, commit_to_dict, compute_commit_hash
from cashet.models import Commit
from cashet.protocols import Store
from cashet.provenance.archive import ExportResult, ImportResult, export_archive, import_archive
from cashet.stores.blobs import blob_hash

CALLS: list[Any] = []


def square(x: int) -> int:
    CALLS.append(x)
    return x * x


def big(n: int) -> bytes:
    return random.Random(n).randbytes(256 * n)  # incompressible: stored as a file


def fails(x: int) -> int:
    raise RuntimeError(f"no {x}")


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Client]:
    """A store with completed, failed, tagged, forced, large and shared-blob commits."""
    with Client(store_dir=tmp_path / "src") as c:
        for i in range(4):
            c.submit(square, i, _tags={"i": str(i)})
        c.submit(square, 2, _force=True)  # same blob as square(2): one blob, two commits
        c.submit(big, 40)  # 10 KiB: a blob file, not inline
        with pytest.raises(TaskError):
            c.submit(fails, 1)
        yield c


@pytest.fixture
def archive(source: Client, tmp_path: Path) -> Path:
    path = tmp_path / "backup.tar.gz"
    source.export(path)
    return path


def fresh(tmp_path: Path, name: str = "dst") -> Client:
    return Client(store_dir=tmp_path / name)


def snapshot(client: Client) -> Any:
    """Everything an import could change: commits, counters and the files of the store."""
    root = Path(client.store.path)  # type: ignore[attr-defined]
    files = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "meta.db" not in p.name
    )
    commits = sorted((c.hash, c.last_accessed) for c in client.log(limit=None))
    return commits, client.stats(), files


# --- round trips ----------------------------------------------------------------------------


def test_readme_export_import_example(
    source: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    client = source
    # Export
    client.export("backup.tar.gz")

    # Import into a fresh store
    client2 = Client(store_dir=".cashet2")
    count = client2.import_archive("backup.tar.gz")
    print(f"Imported {count} commits")
    assert capsys.readouterr().out == "Imported 7 commits\n"
    client2.close()


def test_round_trip_preserves_everything(source: Client, archive: Path, tmp_path: Path) -> None:
    with fresh(tmp_path) as dst:
        result = dst.import_archive(archive)
        assert isinstance(result, int) and isinstance(result, ImportResult)
        assert result == 7 and result.imported == 7 and result.skipped == 0
        assert result.blobs == 5  # square(0..3), big; none for the failed run
        originals = {c.hash: c for c in source.log(limit=None)}
        copies = {c.hash: c for c in dst.log(limit=None)}
        assert copies.keys() == originals.keys()
        for h, c in copies.items():
            o = originals[h]
            assert compute_commit_hash(c) == h
            assert (c.task_def, c.tags, c.error, c.parent_hash) == (
                o.task_def,
                o.tags,
                o.error,
                o.parent_hash,
            )
            if c.result is not None:
                assert dst.get(h) == source.get(h)
        # the same objects: a tiny result the source keeps in its commits' rows (schema
        # v8) and the imported blob row of it count once each
        assert dst.stats() == source.stats()
        # imported entries are cache hits: nothing runs again
        assert dst.submit(square, 3).cached and dst.submit(big, 40).cached
        assert CALLS == [0, 1, 2, 3, 2]
        forced = dst.history(source.log(func_name="square", limit=1)[0].hash)
        assert len(forced) == 2 and forced[1].parent_hash == forced[0].hash


def test_reimport_skips_existing_commits(archive: Path, tmp_path: Path) -> None:
    with fresh(tmp_path) as dst:
        dst.import_archive(archive)
        before = snapshot(dst)
        again = dst.import_archive(archive)
        assert (again, again.imported, again.skipped, again.blobs) == (0, 0, 7, 0)
        assert snapshot(dst) == before


def test_results_are_int_like_and_picklable() -> None:
    r = ImportResult(3, skipped=2, blobs=1)
    assert r == 3 and f"{r}" == str(r) == "3" and r + 1 == 4 and "skipped=2" in repr(r)
    assert pickle.loads(pickle.dumps(r)).skipped == 2
    e = ExportResult(5, blobs=2, bytes=10, skipped=("a",))
    assert e == 5 and pickle.loads(pickle.dumps(e)).skipped == ("a",)


def test_export_result_counts(source: Client, tmp_path: Path) -> None:
    result = source.export(tmp_path / "out.tar.gz")
    assert (result, result.commits, result.blobs, result.skipped) == (7, 7, 5, ())
    assert result.bytes >= 10 * 1024


def test_archive_layout(archive: Path, source: Client) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "cashet-archive/manifest.json"
    assert all(m.isfile() and m.mode == 0o644 for m in members)
    commits = {n.split("/")[-1][:-5] for n in names if n.startswith("cashet-archive/commits/")}
    assert commits == {c.hash for c in source.log(limit=None)}
    blobs = [n for n in names if n.startswith("cashet-archive/blobs/")]
    assert len(blobs) == 5 and all(len(n.split("/")[-1]) == 62 for n in blobs)


def test_import_into_every_backend_and_export_from_it(
    store: Store, archive: Path, tmp_path: Path
) -> None:
    assert import_archive(store, archive) == 7
    again = tmp_path / "again.tar.gz"
    assert export_archive(store, again) == 7
    with fresh(tmp_path, "third") as third:
        assert third.import_archive(again) == 7
        assert third.submit(square, 3).cached


def test_export_skips_commits_whose_blob_is_lost(source: Client, tmp_path: Path) -> None:
    ref = source.submit(big, 40)
    root = Path(source.store.path)  # type: ignore[attr-defined]
    (root / "objects" / ref.hash[:2] / ref.hash[2:]).unlink()
    result = source.export(tmp_path / "partial.tar.gz")
    assert result == 6 and result.skipped == (ref.commit_hash,)
    with fresh(tmp_path) as dst:
        assert dst.import_archive(tmp_path / "partial.tar.gz") == 6


def test_export_is_atomic(source: Client, tmp_path: Path) -> None:
    with pytest.raises(OSError):
        source.export(tmp_path / "missing-dir" / "x.tar.gz")
    target = tmp_path / "x.tar.gz"
    target.write_bytes(b"old")

    def broken() -> Iterator[Commit]:
        yield from []
        raise RuntimeError("store died")

    source.store.iter_commits = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        source.export(target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".x")) == []


def test_store_failure_midway_rolls_back_commits(archive: Path, tmp_path: Path) -> None:
    with fresh(tmp_path) as dst:
        before = dst.stats()["total_commits"]
        real = dst.store.put_commit
        calls = []

        def flaky_put(commit: Commit) -> None:
            calls.append(commit.hash)
            if len(calls) == 4:
                raise OSError("disk full")
            real(commit)

        dst.store.put_commit = flaky_put  # type: ignore[method-assign]
        with pytest.raises(OSError, match="disk full"):
            dst.import_archive(archive)
        assert dst.stats()["total_commits"] == before == 0


# --- crafted archives -----------------------------------------------------------------------

Member = tuple[tarfile.TarInfo, bytes]


def members_of(path: Path) -> list[Member]:
    out = []
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out.append((m, f.read() if f else b""))
    return out


def write_archive(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def regular(name: str, data: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, b""


def commit_members(members: list[Member]) -> list[tuple[int, dict[str, Any]]]:
    return [
        (i, json.loads(data))
        for i, (m, data) in enumerate(members)
        if m.name.startswith("cashet-archive/commits/")
    ]


def reseal(members: list[Member], index: int, d: dict[str, Any], rehash: bool = True) -> None:
    """Replace commit ``index`` by ``d``, optionally re-hashing it so it is self-consistent."""
    if rehash:
        commit = commit_from_json(json.dumps(d))
        d = commit_to_dict(commit) | {"hash": compute_commit_hash(commit)}
    members[index] = regular(f"cashet-archive/commits/{d['hash']}.json", json.dumps(d).encode())


def tamper_forged_commit(members: list[Member]) -> None:
    i, d = next((i, d) for i, d in commit_members(members) if d["result"])
    d["task_def"]["func_name"] = "evil"  # content changed, hash kept
    members[i] = (members[i][0], json.dumps(d).encode())


def tamper_blob_bytes(members: list[Member]) -> None:
    i = next(i for i, (m, _) in enumerate(members) if m.name.startswith("cashet-archive/blobs/"))
    members[i] = (members[i][0], pickle.dumps(666))


def tamper_future_commit(members: list[Member]) -> None:
    i, d = commit_members(members)[0]
    d["created_at"] = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    reseal(members, i, d)


def tamper_dangling_result(members: list[Member]) -> None:
    i, d = next((i, d) for i, d in commit_members(members) if d["result"])
    d["result"] = {"hash": "0" * 64, "size": 4}
    reseal(members, i, d)


def tamper_result_size(members: list[Member]) -> None:
    i, d = next((i, d) for i, d in commit_members(members) if d["result"])
    d["result"]["size"] += 1
    reseal(members, i, d)


def tamper_name_vs_hash(members: list[Member]) -> None:
    i, _ = commit_members(members)[0]
    members[i] = regular(f"cashet-archive/commits/{'1' * 64}.json", members[i][1])


def tamper_nan(members: list[Member]) -> None:
    i, _ = commit_members(members)[0]
    members[i] = (members[i][0], members[i][1].replace(b'"compute_seconds":', b'"x":NaN,"y":'))


def tamper_status_running(members: list[Member]) -> None:
    i, d = next((i, d) for i, d in commit_members(members) if not d["result"])
    d["status"] = "running"
    reseal(members, i, d)


def tamper_bad_fingerprint(members: list[Member]) -> None:
    i, d = commit_members(members)[0]
    d["task_def"]["func_hash"] = "abc:def"
    reseal(members, i, d)


def tamper_manifest_version(members: list[Member]) -> None:
    members[0] = regular(
        members[0][0].name, json.dumps({"format": "cashet-archive", "version": 9}).encode()
    )


CRAFTED: dict[str, tuple[Callable[[list[Member]], None], str]] = {
    "parent-dir": (lambda ms: ms.append(regular("cashet-archive/../evil", b"x")), r"'\.\.'"),
    "leading-parent-dir": (lambda ms: ms.insert(1, regular("../evil", b"x")), r"'\.\.'"),
    "absolute-path": (lambda ms: ms.append(regular("/tmp/cashet-evil", b"x")), "absolute"),
    "symlink": (
        lambda ms: ms.insert(1, special("cashet-archive/blobs/ab", tarfile.SYMTYPE, "/etc")),
        "symbolic link",
    ),
    "hardlink": (
        lambda ms: ms.append(special("cashet-archive/x", tarfile.LNKTYPE, "/etc/passwd")),
        "hard link",
    ),
    "device": (lambda ms: ms.append(special("cashet-archive/dev", tarfile.CHRTYPE)), "device"),
    "fifo": (lambda ms: ms.append(special("cashet-archive/fifo", tarfile.FIFOTYPE)), "FIFO"),
    "forged-commit": (tamper_forged_commit, "forged or damaged"),
    "blob-bytes-mismatch": (tamper_blob_bytes, "corrupt or forged"),
    "future-commit": (tamper_future_commit, "in the future"),
    "dangling-result": (tamper_dangling_result, "neither in the archive nor in the store"),
    "result-size": (tamper_result_size, "records a result of"),
    "name-vs-hash": (tamper_name_vs_hash, "file name and the recorded hash differ"),
    "nan": (tamper_nan, "not valid JSON"),
    "running": (tamper_status_running, "running"),
    "bad-fingerprint": (tamper_bad_fingerprint, "bad func_hash"),
    "unexpected-member": (lambda ms: ms.append(regular("cashet-archive/x.py", b"")), "unexpected"),
    "duplicate-member": (lambda ms: ms.append(ms[-1]), "twice"),
    "no-manifest": (lambda ms: ms.pop(0), "no cashet-archive/manifest.json"),
    "manifest-version": (tamper_manifest_version, "version 9 is not supported"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_archive_is_rejected_and_store_unchanged(
    case: str, archive: Path, tmp_path: Path
) -> None:
    tamper, message = CRAFTED[case]
    members = members_of(archive)
    tamper(members)
    bad = write_archive(tmp_path / f"{case}.tar.gz", members)
    with fresh(tmp_path) as dst:
        dst.submit(square, 10)  # the store is not empty
        before = snapshot(dst)
        with pytest.raises(ArchiveError, match=message):
            dst.import_archive(bad)
        assert snapshot(dst) == before
    assert not (tmp_path / "evil").exists() and not Path("/tmp/cashet-evil").exists()
    assert not (tmp_path.parent / "evil").exists()


def test_all_or_nothing_when_only_the_last_commit_is_bad(archive: Path, tmp_path: Path) -> None:
    members = members_of(archive)
    i, d = commit_members(members)[-1]
    d["error"] = "changed"
    members[i] = (members[i][0], json.dumps(d).encode())
    bad = write_archive(tmp_path / "last.tar.gz", members)
    with fresh(tmp_path) as dst, pytest.raises(ArchiveError):
        dst.import_archive(bad)
    with fresh(tmp_path) as dst:
        assert dst.stats() == dict.fromkeys(dst.stats(), 0)


def test_crafted_archive_cannot_poison_a_later_submit(archive: Path, tmp_path: Path) -> None:
    """A commit for ``square(3)`` pointing at a blob whose bytes are not its name."""
    members = members_of(archive)
    evil = pickle.dumps(-1)
    target = next(
        (i, d)
        for i, d in commit_members(members)
        if d["task_def"]["func_name"] == "square" and d["task_def"]["args_snapshot"] == "((3,), {})"
    )
    _, d = target
    blob_name = d["result"]["hash"]
    j = next(
        j
        for j, (m, _) in enumerate(members)
        if m.name.endswith(blob_name[:2] + "/" + blob_name[2:])
    )
    members[j] = (members[j][0], evil)  # keeps its name, changes its bytes
    bad = write_archive(tmp_path / "poison.tar.gz", members)
    with fresh(tmp_path) as dst:
        with pytest.raises(ArchiveError):
            dst.import_archive(bad)
        ref = dst.submit(square, 3)
        assert ref.load() == 9 and not ref.cached


def test_consistent_blob_under_its_true_name_is_accepted_but_unused(
    archive: Path, tmp_path: Path
) -> None:
    """Extra blobs (named by their true hash) that no commit uses are not imported."""
    members = members_of(archive)
    data = b"stray"
    h = blob_hash(data)
    members.append(regular(f"cashet-archive/blobs/{h[:2]}/{h[2:]}", data))
    ok = write_archive(tmp_path / "extra.tar.gz", members)
    with fresh(tmp_path) as dst:
        assert dst.import_archive(ok).blobs == 5
        assert not dst.store.has_blob(h)


@pytest.mark.parametrize(
    "content",
    [b"", b"not an archive at all", gzip.compress(b"plain text, not a tar"), b"\x1f\x8b\x08"],
)
def test_unreadable_archives(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "junk.tar.gz"
    path.write_bytes(content)
    with fresh(tmp_path) as dst:
        with pytest.raises(ArchiveError, match=r"cannot read archive|not a cashet archive"):
            dst.import_archive(path)
        assert dst.stats()["total_commits"] == 0


def test_truncated_archive(archive: Path, tmp_path: Path) -> None:
    data = archive.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with fresh(tmp_path) as dst:
        with pytest.raises(ArchiveError):
            dst.import_archive(cut)
        assert dst.stats()["total_commits"] == 0


def test_missing_archive_file(tmp_path: Path) -> None:
    with fresh(tmp_path) as dst, pytest.raises(ArchiveError, match="cannot read archive"):
        dst.import_archive(tmp_path / "nope.tar.gz")


def test_import_never_extracts(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("extraction is never used")

    monkeypatch.setattr(tarfile.TarFile, "extractall", refuse)
    monkeypatch.setattr(tarfile.TarFile, "extract", refuse)
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with fresh(tmp_path) as dst:
        assert dst.import_archive(archive) == 7
    assert sorted(os.listdir(tmp_path)) == sorted({*before, "dst"})


def test_export_streams_one_blob_at_a_time(tmp_path: Path) -> None:
    import tracemalloc

    with Client(store_dir=tmp_path / "big") as c:
        for i in range(12):
            c.submit(big, 4096 + i)  # 12 incompressible results of ~1 MiB each
        tracemalloc.start()
        try:
            assert c.export(tmp_path / "big.tar.gz").bytes > 12 << 20
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 5 << 20  # a blob or two in flight, never all twelve
    with fresh(tmp_path) as dst:
        assert dst.import_archive(tmp_path / "big.tar.gz") == 12
        assert dst.get(dst.log(limit=1)[0].hash) == big(4107)
