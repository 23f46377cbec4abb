"""The manifest of a key (issue 11): every computed commit records what went into its key.

The code reached (with digests), the values read (a live value's digest is this call's), the
values left out and why, the arguments by parameter name (defaults marked), Python and the
packages; stored in the commit (so verified with it), shown by ``cashet show`` and the
server, kept by export/import.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cashet import Client
from cashet.cli import main
from cashet.hashing import function_identity, hash_value
from cashet.hashing.manifest import key_manifest, package_version
from cashet.provenance.views import commit_view, manifest_rows

SCALE = 2
CONFIG = {"offset": 1}
LOCK = threading.Lock()
WEIGHTS = np.arange(4)


def scale(v: int) -> int:
    return v * SCALE


def reads_everything(x: int, k: int = 3, *rest: int, flag: bool = False, **extra: Any) -> int:
    with LOCK:
        return scale(x) + k + CONFIG["offset"] + int(WEIGHTS.sum()) + sum(rest) + len(extra)


class Model:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def predict(self, x: int) -> int:
        return x * self.factor


def plain(x: int) -> int:
    return x + 1


def by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in entries}


@pytest.fixture(autouse=True)
def _quiet() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LOCK is named in a ClosureWarning: tested elsewhere
        yield


def test_the_manifest_names_every_part_of_the_key() -> None:
    identity = function_identity(reads_everything)
    m = key_manifest(identity, reads_everything, (10, 4, 5), {"z": 1})
    assert m["function"] == {"name": f"{__name__}.reads_everything", "digest": identity.hash}
    code = by_name(m["code"])
    assert set(code) == {f"{__name__}.reads_everything", f"{__name__}.scale"}
    values = {(v["owner"].rsplit(".", 1)[-1], v["name"]): v for v in m["values"]}
    assert values[("scale", "SCALE")] == {
        "owner": f"{__name__}.scale", "name": "SCALE", "digest": hash_value(2)[:32], "preview": "2",
    }  # fmt: skip
    assert values[("reads_everything", "CONFIG")]["digest"] == hash_value(CONFIG)[:32]
    assert values[("reads_everything", "WEIGHTS")]["digest"] == hash_value(WEIGHTS)[:32]
    lock = values[("reads_everything", "LOCK")]
    assert lock["left_out"].startswith("unhashable") and "digest" not in lock
    args = m["arguments"]
    assert [a["name"] for a in args] == ["x", "k", "*rest[0]", "flag", "z"]
    assert [a.get("default", False) for a in args] == [False, False, False, True, False]
    assert args[0] == {"name": "x", "digest": hash_value(10)[:32], "preview": "10"}
    assert m["python"].split(" ")[0].count(".") == 2
    assert m["packages"] == {"numpy": np.__version__}  # a value of numpy's is read
    json.dumps(m)  # stored as JSON


def test_a_default_used_is_marked_and_a_bound_instance_is_self() -> None:
    m = key_manifest(function_identity(reads_everything), reads_everything, (10,), {})
    assert [(a["name"], a.get("default", False)) for a in m["arguments"]] == [
        ("x", False), ("k", True), ("flag", True),
    ]  # fmt: skip
    model = Model(3)
    m = key_manifest(function_identity(model.predict), model.predict, (2,), {})
    assert [a["name"] for a in m["arguments"]] == ["self", "x"]
    assert m["arguments"][0]["digest"] == hash_value(model)[:32]


def test_a_call_that_does_not_bind_is_recorded_as_given() -> None:
    m = key_manifest(function_identity(plain), plain, (1, 2), {"nope": 3})
    assert [a["name"] for a in m["arguments"]] == ["args[0]", "args[1]", "nope"]
    m = key_manifest(function_identity(len), len, ([1, 2],), {})
    assert m["code"] == [] and [a["name"] for a in m["arguments"]] == ["args[0]"]


def test_package_versions_are_looked_up_once() -> None:
    assert package_version("numpy") == np.__version__
    assert package_version("no_such_package_for_cashet") is None


def test_a_computed_commit_records_its_manifest_and_a_hit_returns_it(client: Any) -> None:
    ref = client.submit(reads_everything, 10)
    manifest = client.show(ref.commit_hash).task_def.manifest
    assert manifest["function"]["digest"] == ref.commit.task_def.func_hash
    assert by_name(manifest["arguments"])["x"]["preview"] == "10"
    hit = client.submit(reads_everything, 10)
    assert hit.cached and hit.commit.task_def.manifest == manifest


def test_a_live_value_is_recorded_as_it_was_keyed(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as client:
        first = client.submit(reads_everything, 1)
        CONFIG["offset"] = 5
        try:
            second = client.submit(reads_everything, 1)
        finally:
            CONFIG["offset"] = 1
        assert (first.load(), second.load()) == (12, 16)

        def config(ref: Any) -> dict[str, Any]:
            values = client.show(ref.commit_hash).task_def.manifest["values"]
            return next(v for v in values if v["name"] == "CONFIG")

        assert config(first)["preview"] == "{'offset': 1}"
        assert config(second)["preview"] == "{'offset': 5}"
        assert config(first)["digest"] == hash_value({"offset": 1})[:32]
        assert config(second)["digest"] == hash_value({"offset": 5})[:32]


def mutates_its_argument(items: list[int]) -> int:
    items.append(99)
    return len(items)


def test_the_manifest_is_made_before_the_task_runs(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as client:
        ref = client.submit(mutates_its_argument, [1, 2])
        arg = client.show(ref.commit_hash).task_def.manifest["arguments"][0]
        assert arg["preview"] == "[1, 2]" and arg["digest"] == hash_value([1, 2])[:32]


def test_the_manifest_is_part_of_the_verified_commit(tmp_path: Path) -> None:
    from cashet.hashing.commits import commit_to_json, compute_commit_hash, verified_commit

    with Client(store_dir=tmp_path) as client:
        commit = client.show(client.submit(plain, 1).commit_hash)
    assert compute_commit_hash(commit) == commit.hash
    body = json.loads(commit_to_json(commit))
    body["task_def"]["manifest"]["arguments"][0]["preview"] = "2"
    with pytest.raises(ValueError, match="hashes to"):
        verified_commit(json.dumps(body), commit.hash)


def test_export_and_import_keep_the_manifest(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / "a") as a:
        ref = a.submit(plain, 1)
        a.export(tmp_path / "x.tar.gz")
        manifest = a.show(ref.commit_hash).task_def.manifest
    with Client(store_dir=tmp_path / "b") as b:
        b.import_archive(tmp_path / "x.tar.gz")
        assert b.show(ref.commit_hash).task_def.manifest == manifest


def test_show_prints_the_key(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as client:
        h = client.submit(reads_everything, 10).commit_hash
    out = CliRunner().invoke(main, ["--store-dir", str(tmp_path), "show", h])
    assert out.exit_code == 0, out.output
    key = out.output[out.output.index("Key:") :]
    assert "function" in key and f"{__name__}.reads_everything" in key
    assert f"code      {manifest_digest(tmp_path, h, 'scale')}  {__name__}.scale" in key
    assert "SCALE = 2  (read by" in key
    assert "LOCK  (unhashable: _thread.lock; read by" in key
    assert "k = 3  (default)" in key
    assert f"numpy {np.__version__}" in key
    shown = CliRunner().invoke(main, ["--store-dir", str(tmp_path), "show", h, "--json"])
    assert json.loads(shown.output)["manifest"]["function"]["name"].endswith("reads_everything")


def manifest_digest(store: Path, h: str, name: str) -> str:
    with Client(store_dir=store) as client:
        code = client.show(h).task_def.manifest["code"]
    return str(next(c["digest"] for c in code if c["name"].endswith(f".{name}")))[:12]


def test_a_commit_without_a_manifest_says_so(tmp_path: Path) -> None:
    from dataclasses import replace

    with Client(store_dir=tmp_path) as client:
        commit = client.show(client.submit(plain, 1).commit_hash)
    old = replace(commit, task_def=replace(commit.task_def, manifest={}))
    assert manifest_rows(old.task_def.manifest) == []
    assert commit_view(old)["manifest"] == {}
    rows = manifest_rows(commit.task_def.manifest)
    assert rows[0][0] == "function" and ("argument", "x = 1", hash_value(1)[:12]) in rows


def test_damaged_manifest_entries_do_not_break_show() -> None:
    rows = manifest_rows({"function": {}, "code": ["x", {"name": 3}], "values": None})
    assert rows == [("function", "", ""), ("code", "", "")]
