"""The README's examples (Quick Start, Use Cases 1, 2 and 4, options, serialization), run as
written. Each test runs in an empty working directory so ``Client()`` makes ``.cashet`` there.

The pipeline, use-case and options examples run on every kind of client (sync and async, on
SQLite and Redis: the ``client_factory`` fixture stands in for ``Client``); the async
examples of the README run as written in ``tests/test_async_client.py``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from cashet import (
    Client,
    JsonSerializer,
    PickleSerializer,
    ResultRef,
    SafePickleSerializer,
    TaskError,
    TaskRef,
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASHET_DIR", raising=False)


def expensive_transform(data: list[float], scale: float = 1.0) -> list[float]:
    # imagine this takes 10 minutes
    return [x * scale for x in data]


def test_quick_start(capsys: pytest.CaptureFixture[str]) -> None:
    client = Client()  # creates .cashet/ in current directory

    ref = client.submit(expensive_transform, [1, 2, 3], scale=2.0)
    print(ref.load())  # [2.0, 4.0, 6.0]

    ref2 = client.submit(expensive_transform, [1, 2, 3], scale=2.0)
    print(ref2.load())  # [2.0, 4.0, 6.0] — no re-computation
    client.close()

    with Client() as client:
        ref = client.submit(expensive_transform, [1, 2, 3], scale=2.0)
        print(ref.load())
    assert capsys.readouterr().out.splitlines() == ["[2.0, 4.0, 6.0]"] * 3
    assert Path(".cashet/meta.db").exists()
    assert ref2.cached and ref.cached


def load_dataset(path: str) -> list[int]:
    return list(range(100))


def normalize(data: list[int]) -> list[float]:
    max_val = max(data)
    return [x / max_val for x in data]


def train_model(data: list[float], lr: float = 0.01) -> dict[str, Any]:
    return {"loss": 0.05, "lr": lr, "samples": len(data)}


def test_quick_start_pipeline(client_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    Client = client_factory  # the README's Client, of every kind (see conftest)
    client = Client()
    raw = client.submit(load_dataset, "data/train.csv")
    normalized = client.submit(normalize, raw)
    model = client.submit(train_model, normalized, lr=0.001)
    print(model.load())  # {'loss': 0.05, 'lr': 0.001, 'samples': 100}
    assert capsys.readouterr().out.strip() == "{'loss': 0.05, 'lr': 0.001, 'samples': 100}"
    again = [
        client.submit(load_dataset, "data/train.csv"),
    ]
    again.append(client.submit(normalize, again[0]))
    again.append(client.submit(train_model, again[1], lr=0.001))
    assert all(r.cached for r in again)
    changed = client.submit(train_model, again[1], lr=0.01)
    assert not changed.cached
    client.close()


PREPROCESS_RUNS: list[Any] = []


def preprocess(dataset_path: str, image_size: int) -> dict[str, Any]:
    PREPROCESS_RUNS.append(dataset_path)
    return {"path": dataset_path, "size": image_size}


def train(data: dict[str, Any], learning_rate: float, dropout: float) -> float:
    return data["size"] * learning_rate * (1 - dropout)


def test_use_case_1_sweep_preprocesses_once(client_factory: Any) -> None:
    Client = client_factory  # the README's Client, of every kind (see conftest)
    PREPROCESS_RUNS.clear()
    client = Client()
    results = client.submit_many(
        [
            (preprocess, ("s3://my-bucket/images", 224)),
            (train, (TaskRef(0), 0.01, 0.2)),
            (train, (TaskRef(0), 0.01, 0.5)),
            (train, (TaskRef(0), 0.001, 0.2)),
            (train, (TaskRef(0), 0.001, 0.5)),
            (train, (TaskRef(0), 0.0001, 0.2)),
            (train, (TaskRef(0), 0.0001, 0.5)),
        ]
    )
    assert len(results) == 7 and PREPROCESS_RUNS == ["s3://my-bucket/images"]
    assert results[1].load() == pytest.approx(224 * 0.01 * 0.8)
    rerun = client.submit_many(
        [
            (preprocess, ("s3://my-bucket/images", 224)),
            (train, (TaskRef(0), 0.01, 0.2)),
        ]
    )
    assert all(r.cached for r in rerun)
    assert TaskError  # importable as the README shows
    client.close()


def load_s3(prefix: str) -> list[str]:
    return [f"{prefix}{i}.log" for i in range(3)]


def remove_pii(rows: list[str]) -> list[str]:
    return [r.upper() for r in rows]


def generate_report(rows: list[str]) -> str:
    return "\n".join(rows)


JOIN_SOURCE = """
def join_crm(rows, query):
    return [r + "|" + query for r in rows]
"""


def test_use_case_2_only_changed_step_and_downstream_rerun(
    client_factory: Any, tmp_path: Path
) -> None:
    Client = client_factory  # the README's Client, of every kind (see conftest)
    namespace: dict[str, Any] = {}
    exec(compile(JOIN_SOURCE, str(tmp_path / "etl.py"), "exec"), namespace)
    join_crm = namespace["join_crm"]
    client = Client()

    raw = client.submit(load_s3, "s3://logs/2024-05-01/")
    clean = client.submit(remove_pii, raw)
    enriched = client.submit(join_crm, clean, "select * from users")
    report = client.submit(generate_report, enriched)
    assert report.load().count("|select * from users") == 3

    # "Fix the join_crm function and re-run the script"
    exec(compile(JOIN_SOURCE.replace('"|"', '" | "'), str(tmp_path / "etl.py"), "exec"), namespace)
    join_crm = namespace["join_crm"]
    raw2 = client.submit(load_s3, "s3://logs/2024-05-01/")
    clean2 = client.submit(remove_pii, raw2)
    enriched2 = client.submit(join_crm, clean2, "select * from users")
    report2 = client.submit(generate_report, enriched2)
    assert raw2.cached and clean2.cached
    assert not enriched2.cached and not report2.cached
    assert " | select" in report2.load()
    client.close()


CHUNKS_RUN: list[int] = []


def process_chunk(chunk_id: int, source_file: str) -> int:
    CHUNKS_RUN.append(chunk_id)
    return chunk_id * 2


def test_use_case_4_incremental_chunks(client_factory: Any) -> None:
    Client = client_factory  # the README's Client, of every kind (see conftest)
    CHUNKS_RUN.clear()
    client = Client()
    results = []
    for chunk_id in range(100):
        ref = client.submit(process_chunk, chunk_id, "huge_file.parquet")
        results.append(ref)
    assert len(CHUNKS_RUN) == 100
    first_values = [r.load() for r in results]
    client.close()

    client = Client()  # "even after restarting Python"
    again = [client.submit(process_chunk, i, "huge_file.parquet") for i in range(101)]
    assert CHUNKS_RUN[100:] == [100]
    assert [r.load() for r in again[:100]] == first_values

    refs = client.map(process_chunk, range(100), source_file="data.parquet")
    assert refs[0].load() == process_chunk(0, source_file="data.parquet")
    client.close()


def non_deterministic_func() -> float:
    return random.random()


def test_options_section(client_factory: Any) -> None:
    Client = client_factory  # the README's Client, of every kind (see conftest)
    client = Client()

    ref = client.submit(non_deterministic_func, _cache=False)
    assert client.submit(non_deterministic_func, _cache=False).commit_hash != ref.commit_hash

    @client.task(cache=False)
    def random_score() -> float:
        return random.random()

    assert random_score().commit_hash != random_score().commit_hash

    def my_func(arg: int) -> int:
        return arg

    ref = client.submit(my_func, 1, _force=True)

    @client.task(force=True)
    def always_rerun() -> int:
        return 1

    assert not always_rerun().cached and not always_rerun().cached

    def train(data: int, lr: float) -> float:
        return data * lr

    ref = client.submit(train, 3, lr=0.01, _tags={"experiment": "v1"})

    @client.task(tags={"team": "ml"})
    def preprocess(raw: int) -> int:
        return raw

    assert client.show(preprocess(1).commit_hash).tags == {"team": "ml"}

    def fetch_api(url: str) -> str:
        return url.upper()

    ref = client.submit(fetch_api, "http://x", _retries=3)

    @client.task(retries=3)
    def fetch_api2(url: str) -> str:
        return url

    fetch_api2("u")

    def slow_func() -> int:
        return 1

    ref = client.submit(slow_func, _timeout=30)

    @client.task(timeout=30)
    def slow_func2() -> int:
        return 2

    assert slow_func2().load() == 2

    def fetch_api_data(url: str) -> str:
        return url

    ref = client.submit(fetch_api_data, "u", _ttl=3600)
    assert client.show(ref.commit_hash).expires_at is not None

    @client.task(ttl=3600)
    def fetch_api_data2(url: str) -> str:
        return url

    fetch_api_data2("u")

    @client.task
    def my_task(x: int) -> int:
        return x * 2

    ref = my_task(5)  # Returns ResultRef, same as client.submit(my_func, 5)
    assert ref.load() == 10
    assert client.submit(my_task, 5).cached

    @client.task(cache=False, name="custom_task_name", tags={"env": "prod"})
    def other_func(x: int) -> int:
        return x + 1

    assert other_func(1).load() == 2
    typed: ResultRef[int] = client.submit(my_task.func, 5)
    assert typed.load() == 10
    client.close()


class MyClass:
    def __init__(self, value: int) -> None:
        self.value = value


def test_custom_serialization_section() -> None:
    client = Client(serializer=PickleSerializer())
    assert client.submit(lambda: {"a": 1}).load() == {"a": 1}
    client.close()

    client = Client(serializer=SafePickleSerializer())
    assert client.submit(lambda: [1, (2, 3)]).load() == [1, (2, 3)]
    client.close()

    client = Client(serializer=SafePickleSerializer(extra_classes=[MyClass]))
    assert client.submit(MyClass, 5).load().value == 5
    client.close()

    client = Client(serializer=JsonSerializer())
    assert client.submit(lambda: {"k": [1, 2]}).load() == {"k": [1, 2]}
    client.close()

    from cashet.hashing import Serializer

    class MySerializer:
        def dumps(self, obj: Any) -> bytes:
            return repr(obj).encode()

        def loads(self, data: bytes) -> Any:
            import ast

            return ast.literal_eval(data.decode())

    assert isinstance(MySerializer(), Serializer)
    client = Client(serializer=MySerializer())
    assert client.submit(lambda: (1, "two")).load() == (1, "two")
    client.close()


def test_pluggable_backends_section() -> None:
    from cashet import Executor, Serializer, Store
    from cashet.executor import LocalExecutor
    from cashet.store import SQLiteStore

    client = Client(store_dir=".cashet")
    client.close()
    client = Client(store=SQLiteStore(Path(".cashet")), executor=LocalExecutor())
    assert isinstance(client.store, Store) and isinstance(client.executor, Executor)
    assert isinstance(client.serializer, Serializer)
    client.close()
