"""The package surface: public import paths of the spec, typing marker, lazy heavy imports."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import cashet

SPEC_IMPORTS = {
    "cashet": [
        "Client",
        "TaskRef",
        "TaskError",
        "ResultRef",
        "PickleSerializer",
        "SafePickleSerializer",
        "JsonSerializer",
        "Store",
        "Executor",
        "Serializer",
    ],
    "cashet.store": ["SQLiteStore"],
    "cashet.executor": ["LocalExecutor"],
    "cashet.protocols": ["Store", "AsyncStore", "Executor", "AsyncExecutor"],
    "cashet.hashing": ["Serializer"],
    "cashet.serializers": ["PickleSerializer", "SafePickleSerializer", "JsonSerializer"],
}


def test_spec_import_paths() -> None:
    for module, names in SPEC_IMPORTS.items():
        mod = importlib.import_module(module)
        for name in names:
            assert hasattr(mod, name), f"{module}.{name}"


def test_all_is_exact() -> None:
    assert sorted(cashet.__all__) == sorted(set(cashet.__all__))
    for name in cashet.__all__:
        assert hasattr(cashet, name), name
    assert isinstance(cashet.__version__, str) and cashet.__version__


def test_task_error_is_a_runtime_error_and_everything_is_a_cashet_error() -> None:
    assert issubclass(cashet.TaskError, RuntimeError)
    for name in cashet.__all__:
        obj = getattr(cashet, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, cashet.CashetError), name


def test_py_typed_is_shipped() -> None:
    assert (Path(cashet.__file__).parent / "py.typed").exists()


def test_import_does_not_pull_optional_or_heavy_modules() -> None:
    code = (
        "import sys, cashet\n"
        "heavy = ['numpy', 'pandas', 'redis', 'starlette', 'uvicorn', 'rich', 'click',"
        " 'tarfile', 'concurrent.futures', 'dask', 'distributed', 'celery', 'cloudpickle']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_exception_pickles() -> None:
    import pickle

    from cashet import errors

    samples = [
        errors.CashetError("x"),
        errors.TaskError("failed", func_name="f", traceback_text="Traceback ...", attempts=3),
        errors.TaskTimeoutError("slow", func_name="g", attempts=2),
        errors.StoreError("s"),
        errors.ResultSerializationError("no bytes", func_name="h"),
        errors.StoreUnavailableError("down"),
        errors.BlobMissingError("gone", "ab" * 32),
        errors.BlobCorruptedError("bad", "cd" * 32),
        errors.CommitNotFoundError("nope"),
        errors.AmbiguousHashError("ab", ["ab1", "ab2"]),
        errors.ArchiveError("bad archive"),
    ]
    for exc in samples:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
    task = pickle.loads(pickle.dumps(samples[1]))
    assert (task.func_name, task.traceback_text, task.attempts) == ("f", "Traceback ...", 3)
    assert pickle.loads(pickle.dumps(samples[9])).candidates == ["ab1", "ab2"]
