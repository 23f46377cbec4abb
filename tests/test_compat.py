"""Drop-in for the published cashet's users (issue 12): code written against the spec runs
unchanged. Each test is written as such user code would be."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from packaging.version import Version

import cashet
from cashet import Client
from cashet.errors import CashetError, CommitNotFoundError


def test_version_is_above_the_published_releases() -> None:
    # pip would call a move from the published 0.5.0 to a lower version a downgrade
    assert Version(cashet.__version__) > Version("0.5.0")


def test_not_found_is_a_key_error_with_a_plain_message(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path / ".cashet") as client:
        missing = "ab" * 32
        with pytest.raises(KeyError) as info:
            client.get(missing)
        assert isinstance(info.value, CommitNotFoundError)
        assert isinstance(info.value, CashetError) and isinstance(info.value, LookupError)
        assert str(info.value) == f"no commit {missing}"  # not KeyError's quoted key
        with pytest.raises(KeyError):
            client.diff(missing, "cd" * 32)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is CommitNotFoundError and str(again) == str(info.value)


def test_published_model_conveniences(tmp_path: Path) -> None:
    from cashet.models import TaskStatus

    def double(x: int) -> int:
        return x * 2

    with Client(store_dir=tmp_path / ".cashet") as client:
        ref = client.submit(double, 21, _tags={"a": "b"})
        commit = client.show(ref.commit_hash)
        assert commit is not None
        assert commit.short_hash == commit.hash[:12] == commit.short_hash()  # property or call
        assert commit.output_ref == commit.result and commit.output_ref.hash == ref.hash
        summary = commit.summary()
        assert summary == {
            "hash": commit.hash,
            "short_hash": commit.hash[:12],
            "function": commit.func_name,
            "status": "completed",
            "created_at": commit.created_at.isoformat(),
            "output": ref.hash,
            "parent": None,
            "tags": {"a": "b"},
        }
        assert {s.name for s in TaskStatus} >= {"PENDING", "RUNNING", "COMPLETED", "FAILED"}
        assert TaskStatus.CACHED.value == "cached"
        assert client.log(status=TaskStatus.CACHED) == []  # no commit is recorded so
        assert client.rm("0" * 64) is False and client.show("0" * 64) is None


def test_task_decorator_on_a_method_binds_with_the_instance_in_the_key(tmp_path: Path) -> None:
    runs: list[int] = []
    client = Client(store_dir=tmp_path / ".cashet")

    class Model:
        def __init__(self, k: int) -> None:
            self.k = k

        @client.task
        def predict(self, x: int) -> int:
            runs.append(self.k)
            return self.k * x

    with client:
        assert Model(3).predict(2).load() == 6
        assert Model(4).predict(2).load() == 8  # another instance: another key
        again = Model(3).predict(2)
        assert again.cached and again.load() == 6
        assert runs == [3, 4]
        assert Model.predict.name.endswith("Model.predict")  # on the class: the task itself
