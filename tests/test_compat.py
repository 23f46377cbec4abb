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
