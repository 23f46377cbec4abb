"""Issue 13, item 6: errors that say what happened.

Each test reproduced its finding before the fix: a task's ``SystemExit`` or
``KeyboardInterrupt`` under a timeout, an unpicklable result, a store that dies while a task
runs, arguments nested thousands deep, a blackholed Redis link.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cashet import Client, ResultSerializationError, TaskError, TaskTimeoutError

pytestmark = pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning")


# --- SystemExit / KeyboardInterrupt under a timeout -------------------------------------


def _exits(code: int) -> int:
    raise SystemExit(code)


def _interrupted() -> int:
    raise KeyboardInterrupt


@pytest.mark.parametrize("timeout", [None, 5])
def test_system_exit_under_timeout_leaves_as_itself(client: Any, timeout: float | None) -> None:
    start = time.monotonic()
    with pytest.raises(SystemExit) as info:
        client.submit(_exits, 3, _timeout=timeout)
    assert info.value.code == 3 and not isinstance(info.value, TaskTimeoutError)
    assert time.monotonic() - start < 4  # never waited out the timeout
    # Nothing recorded as a timeout, and the lease is free: a second call runs at once.
    assert not any("timed out" in (c.error or "") for c in client.log())
    with pytest.raises(SystemExit):
        client.submit(_exits, 3, _timeout=timeout)


@pytest.mark.parametrize("timeout", [None, 5])
def test_keyboard_interrupt_under_timeout_stops_the_program(
    client: Any, timeout: float | None
) -> None:
    with pytest.raises(KeyboardInterrupt):
        client.submit(_interrupted, _timeout=timeout)
    assert not any("timed out" in (c.error or "") for c in client.log())


def test_a_real_timeout_is_still_a_timeout(client: Any) -> None:
    def slow() -> int:
        time.sleep(0.5)
        return 1

    with pytest.raises(TaskTimeoutError, match=r"timed out after 0\.05s"):
        client.submit(slow, _timeout=0.05)


# --- a result that cannot be serialized -------------------------------------------------


def _returns_lock() -> Any:
    return threading.Lock()


def test_unpicklable_result_names_the_task_and_the_type(client: Any) -> None:
    with pytest.raises(ResultSerializationError) as info:
        client.submit(_returns_lock)
    err = info.value
    assert "_returns_lock" in str(err) and "lock" in str(err).lower()
    assert isinstance(err, TaskError) and isinstance(err, TypeError)
    assert err.func_name is not None and "_returns_lock" in err.func_name
    assert err.__cause__ is not None  # the serializer's own error
    assert client.log() == []  # nothing stored
    # The lease was released: the next call runs (and fails the same way) at once.
    start = time.monotonic()
    with pytest.raises(ResultSerializationError):
        client.submit(_returns_lock)
    assert time.monotonic() - start < 10


def test_unpicklable_result_sync_client_message(tmp_path: Any) -> None:
    with Client(store_dir=tmp_path) as c:
        with pytest.raises(ResultSerializationError, match=r"_returns_lock .*\(a _thread\.lock"):
            c.submit(_returns_lock)
