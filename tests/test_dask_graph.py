"""``submit_many`` on Dask as one graph (issue 14): futures depending on futures.

Real parts: one ``distributed.LocalCluster`` (2 worker processes, 1 thread each) and the
SQLite store on this host. The Dask client is wrapped only to record *when* each call was
handed to the scheduler (everything is forwarded to the real client); runs are counted in
a file the tasks append to, never through the cache under test.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client as DaskClient
from distributed import LocalCluster

from cashet import Client, TaskRef
from cashet.async_client import AsyncClient
from cashet.errors import TaskError
from cashet.executor import DaskExecutor
from tests._cluster_tasks import PerProcess, failing_step, runs, step_with_token, timed_step


@pytest.fixture(scope="module")
def dask_client() -> Iterator[DaskClient]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        DaskClient(cluster) as client,
    ):
        yield client


class Recording:
    """The real Dask client, with the time each ``submit`` reached it recorded."""

    def __init__(self, client: DaskClient) -> None:
        self._client = client
        self.submitted: list[tuple[str, float]] = []

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append((fn.__name__, time.time()))
        return self._client.submit(fn, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _lines(log: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in runs(log)}


def _pipeline(log: str, first_seconds: float) -> list[Any]:
    return [
        (timed_step, (log, "a", 1, first_seconds)),
        (timed_step, (log, "b", TaskRef(0))),
        (timed_step, (log, "c", TaskRef(1))),
        (timed_step, (log, "d", 10)),
        (timed_step, (log, "e", TaskRef(3)), {"seconds": 0.0}),
    ]


def test_a_wired_batch_is_one_graph_and_keys_as_the_driver_does(
    dask_client: DaskClient, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs")
    engine = Recording(dask_client)
    with Client(store_dir=tmp_path / "s", executor=DaskExecutor(engine)) as client:
        refs = client.submit_many(_pipeline(log, 1.5))
        assert [r.load() for r in refs] == [2, 3, 4, 11, 12]
        assert not any(r.cached for r in refs)
        # every call reached the scheduler before the first upstream had finished: the
        # downstream calls waited on the cluster, not on the driver
        lines = _lines(log)
        a_end = float(lines["a"][1])
        assert len(engine.submitted) == 5
        assert max(t for _, t in engine.submitted) < a_end
        assert sorted(n for n, _ in engine.submitted) == ["run_chained"] * 3 + ["run_shipped"] * 2
        assert {lines[k][2] for k in lines} != {str(os.getpid())}  # ran on the workers
        # what a worker recorded names the real upstream result, never a placeholder
        shown = client.show(refs[2].commit_hash)
        text = json.dumps(shown, default=str)
        assert "pending" not in text
        assert refs[1].hash in text
    # the keys are the driver's: the same batch submitted call by call, locally, all hits
    with Client(store_dir=tmp_path / "s") as local:
        again = local.submit_many(_pipeline(log, 1.5))
        assert [r.cached for r in again] == [True] * 5
        assert [r.commit_hash for r in again] == [r.commit_hash for r in refs]
    assert len(runs(log)) == 5


def test_a_rerun_is_answered_on_the_driver(dask_client: DaskClient, tmp_path: Path) -> None:
    log = str(tmp_path / "runs")
    engine = Recording(dask_client)
    with Client(store_dir=tmp_path / "s", executor=DaskExecutor(engine)) as client:
        client.submit_many(_pipeline(log, 0.0))
        engine.submitted.clear()
        again = client.submit_many(_pipeline(log, 0.0))
        assert [r.cached for r in again] == [True] * 5
        assert engine.submitted == []  # hits never reach the cluster
        # a changed upstream input: only what depends on it runs, as one graph again
        changed = _pipeline(log, 0.0)
        changed[0] = (timed_step, (log, "a2", 5))
        out = client.submit_many(changed)
        assert [r.load() for r in out] == [6, 7, 8, 11, 12]
        assert [r.cached for r in out] == [False, False, False, True, True]
        assert sorted(n for n, _ in engine.submitted) == ["run_chained"] * 2 + ["run_shipped"]


def test_a_failed_upstream_fails_the_batch_and_its_downstream_never_runs(
    dask_client: DaskClient, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs")
    with Client(store_dir=tmp_path / "s", executor=DaskExecutor(dask_client)) as client:
        batch = [
            (failing_step, (log, 1)),
            (timed_step, (log, "after", TaskRef(0))),
        ]
        with pytest.raises(TaskError, match="bad input 1"):
            client.submit_many(batch)
        assert [line.split()[0] for line in runs(log)] == ["failing"]
        # nothing half-done: the failure is recorded, and a later batch runs again
        assert client.log(status="failed")


def test_a_call_a_worker_keys_differently_is_handed_back_to_the_driver(
    dask_client: DaskClient, tmp_path: Path
) -> None:
    """``PerProcess`` hashes to its process's pid: the worker's digest of the arguments
    (with the placeholder) differs from the driver's, so it hands the call back; the driver
    keys it with the real upstream result and ships it as an ordinary miss."""
    log = str(tmp_path / "runs")
    engine = Recording(dask_client)
    token = PerProcess()
    with Client(store_dir=tmp_path / "s", executor=DaskExecutor(engine)) as client:
        batch = [
            (timed_step, (log, "up", 1, 0.5)),
            (step_with_token, (log, TaskRef(0), token)),
        ]
        refs = client.submit_many(batch)
        assert [r.load() for r in refs] == [2, 3]
        assert sorted(n for n, _ in engine.submitted) == [
            "run_chained",
            "run_shipped",
            "run_shipped",
        ]
        assert sorted(_lines(log)) == ["down", "up"]  # each ran once
        again = client.submit_many(batch)
        assert [r.cached for r in again] == [True, True]
        assert [r.commit_hash for r in again] == [r.commit_hash for r in refs]


def test_async_client_runs_a_wired_batch_as_one_graph(
    dask_client: DaskClient, tmp_path: Path
) -> None:
    log = str(tmp_path / "runs")
    engine = Recording(dask_client)

    async def main() -> list[Any]:
        async with AsyncClient(store_dir=tmp_path / "s", executor=DaskExecutor(engine)) as client:
            refs = await client.submit_many(_pipeline(log, 1.0))
            return [await r.load() for r in refs]

    import asyncio

    assert asyncio.run(main()) == [2, 3, 4, 11, 12]
    a_end = float(_lines(log)["a"][1])
    assert max(t for _, t in engine.submitted) < a_end
