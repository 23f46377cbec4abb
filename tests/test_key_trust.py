"""Trust the key (issue 11): every change that can change a result changes the cache key.

Each scenario runs as a user would: a module file in a temp dir, two *fresh* interpreters
sharing one store, the file edited in between (``PYTHONDONTWRITEBYTECODE=1``, so no stale
``.pyc`` is loaded), or two different values in one process. The second run must return
the value its own code computes, never the previous run's.

Scenarios marked ``xfail`` reproduce defects issue 11 lists that are not fixed yet
(``xfail_strict``: once fixed they fail as XPASS, and the marker must go).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ISSUE_11 = "issue 11: not in the key yet"

RUNNER = """
import json, sys
sys.path.insert(0, {folder!r})
from cashet import Client
import warnings
warnings.simplefilter("ignore")
import task_mod
client = Client(store_dir={store!r})
out = []
for call in task_mod.CALLS:
    func, args, kwargs = call
    ref = client.submit(func, *args, **kwargs)
    out.append([ref.load(), ref.cached if hasattr(ref, "cached") else None])
print(json.dumps(out))
"""


def run(folder: Path, source: str, extra: dict[str, str] | None = None) -> list[list[object]]:
    """Write ``task_mod.py`` (and ``extra`` modules), run it in a fresh interpreter."""
    (folder / "task_mod.py").write_text(textwrap.dedent(source))
    for name, text in (extra or {}).items():
        (folder / name).write_text(textwrap.dedent(text))
    code = RUNNER.format(folder=str(folder), store=str(folder / ".cashet"))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: list[list[object]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def values(result: list[list[object]]) -> list[object]:
    return [v for v, _ in result]


def edited(tmp_path: Path, before: str, after: str, extra: tuple[dict[str, str], ...] = ()):
    """Run ``before`` then ``after`` in fresh interpreters on one store; return both."""
    first = run(tmp_path, before, extra[0] if extra else None)
    second = run(tmp_path, after, extra[1] if len(extra) > 1 else None)
    return values(first), values(second)


# --- what already holds -----------------------------------------------------------------------


def test_editing_the_task_source_changes_the_key(tmp_path: Path) -> None:
    src = "def f(x):\n    return x * {k}\nCALLS = [(f, (10,), {{}})]\n"
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_editing_a_helper_changes_the_key(tmp_path: Path) -> None:
    src = """
    def helper(x):
        return x * {k}
    def f(x):
        return helper(x)
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_a_rerun_without_edits_is_a_hit(tmp_path: Path) -> None:
    src = "def f(x):\n    return x * 2\nCALLS = [(f, (10,), {})]\n"
    run(tmp_path, src)
    assert run(tmp_path, src) == [[20, True]]


# --- module and class level values ----------------------------------------------------------


def test_module_constant(tmp_path: Path) -> None:
    src = "SCALE = {k}\ndef f(x):\n    return x * SCALE\nCALLS = [(f, (10,), {{}})]\n"
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_config_dict_entry(tmp_path: Path) -> None:
    src = """
    CONFIG = {{"scale": {k}, "name": "x"}}
    def f(x):
        return x * CONFIG["scale"]
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_instance_global(tmp_path: Path) -> None:
    src = """
    class Model:
        def __init__(self, k):
            self.k = k
    MODEL = Model({k})
    def f(x):
        return x * MODEL.k
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_constant_of_another_module(tmp_path: Path) -> None:
    src = "import cfg\ndef f(x):\n    return x * cfg.SCALE\nCALLS = [(f, (10,), {})]\n"
    first, second = edited(
        tmp_path, src, src, ({"cfg.py": "SCALE = 2\n"}, {"cfg.py": "SCALE = 3\n"})
    )
    assert (first, second) == ([20], [30])


def test_class_attribute_read_through_self(tmp_path: Path) -> None:
    src = """
    class Scaler:
        K = {k}
        def mul(self, x):
            return x * self.K
    def f(x):
        return Scaler().mul(x)
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_enum_member_value(tmp_path: Path) -> None:
    src = """
    import enum
    class Mode(enum.Enum):
        FAST = {k}
    def f(x):
        return x * Mode.FAST.value
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


# --- bound methods, classmethods, closures ------------------------------------------------------


def test_bound_method_instance_is_in_the_key(tmp_path: Path) -> None:
    src = """
    class Scaler:
        def __init__(self, k):
            self.k = k
        def mul(self, x):
            return x * self.k
    CALLS = [(Scaler(2).mul, (10,), {}), (Scaler(3).mul, (10,), {})]
    """
    assert values(run(tmp_path, src)) == [20, 30]


def test_inherited_classmethod_is_keyed_by_its_class(tmp_path: Path) -> None:
    src = """
    class Reader:
        @staticmethod
        def sep():
            return ","
        @classmethod
        def count(cls, line):
            return len(line.split(cls.sep()))
    class TabReader(Reader):
        @staticmethod
        def sep():
            return "\\t"
    CALLS = [(Reader.count, ("a,b,c\\td",), {}), (TabReader.count, ("a,b,c\\td",), {})]
    """
    assert values(run(tmp_path, src)) == [3, 2]


def test_closure_values_from_a_factory(tmp_path: Path) -> None:
    src = """
    def make(k):
        def f(x):
            return x * k
        return f
    CALLS = [(make(2), (10,), {}), (make(3), (10,), {})]
    """
    assert values(run(tmp_path, src)) == [20, 30]


def test_decorator_with_arguments(tmp_path: Path) -> None:
    src = """
    import functools
    def scaled(k):
        def deco(fn):
            @functools.wraps(fn)
            def inner(x):
                return fn(x) * k
            return inner
        return deco
    @scaled({k})
    def f(x):
        return x
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


# --- helpers reached in other ways ----------------------------------------------------------


def test_import_inside_the_task_body(tmp_path: Path) -> None:
    src = "def f(x):\n    import helper_mod\n    return helper_mod.g(x)\nCALLS = [(f, (10,), {})]\n"
    helper = "def g(x):\n    return x * {k}\n"
    first, second = edited(
        tmp_path,
        src,
        src,
        ({"helper_mod.py": helper.format(k=2)}, {"helper_mod.py": helper.format(k=3)}),
    )
    assert (first, second) == ([20], [30])


def test_dispatch_table(tmp_path: Path) -> None:
    src = """
    def double(v):
        return v * {k}
    OPS = {{"double": double}}
    def f(name, v):
        return OPS[name](v)
    CALLS = [(f, ("double", 10), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_singledispatch_registered_implementation(tmp_path: Path) -> None:
    src = """
    import functools
    @functools.singledispatch
    def scale(v):
        return v
    @scale.register
    def _(v: int):
        return v * {k}
    def f(x):
        return scale(x)
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_class_based_decorator(tmp_path: Path) -> None:
    src = """
    class logged:
        def __init__(self, fn):
            self.fn = fn
        def __call__(self, *a):
            return self.fn(*a)
    @logged
    def helper(x):
        return x * {k}
    def f(x):
        return helper(x)
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


# --- classes and instances as data ----------------------------------------------------------


def test_class_passed_as_an_argument(tmp_path: Path) -> None:
    src = """
    class Op:
        @staticmethod
        def run(x):
            return x * {k}
    def f(cls, x):
        return cls.run(x)
    CALLS = [(f, (Op, 10), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_class_of_an_instance_argument(tmp_path: Path) -> None:
    src = """
    class Op:
        def run(self, x):
            return x * {k}
    def f(op, x):
        return op.run(x)
    CALLS = [(f, (Op(), 10), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_dataclass_attributes_beyond_its_fields(tmp_path: Path) -> None:
    src = """
    import dataclasses
    @dataclasses.dataclass
    class P:
        a: int
    def f(p):
        return p.a * p.extra
    p2, p3 = P(10), P(10)
    p2.extra, p3.extra = 2, 3
    CALLS = [(f, (p2,), {}), (f, (p3,), {})]
    """
    assert values(run(tmp_path, src)) == [20, 30]


# --- a needless miss --------------------------------------------------------------------------


def test_equivalent_calls_share_one_key(tmp_path: Path) -> None:
    src = """
    RUNS = []
    def f(x, k=2):
        return x * k
    CALLS = [(f, (10, 2), {}), (f, (10,), {"k": 2}), (f, (), {"x": 10, "k": 2}), (f, (10,), {})]
    """
    assert run(tmp_path, src) == [[20, False], [20, True], [20, True], [20, True]]


# --- more of issue 11: wrappers, layouts, in-place changes, what is left out -------------------


def test_contextmanager_helper(tmp_path: Path) -> None:
    src = """
    import contextlib
    @contextlib.contextmanager
    def scaled():
        yield {k}
    def f(x):
        with scaled() as k:
            return x * k
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_numpy_vectorize_pyfunc(tmp_path: Path) -> None:
    src = """
    import numpy as np
    def _scale(v):
        return v * {k}
    scale = np.vectorize(_scale)
    def f(x):
        return int(scale(np.array([x]))[0])
    CALLS = [(f, (10,), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


def test_structured_dtype_layout_is_in_the_key(tmp_path: Path) -> None:
    src = """
    import numpy as np
    fields = [("a", "u1"), ("b", "<i8")]
    packed = np.zeros(2, dtype=np.dtype(fields))
    aligned = np.zeros(2, dtype=np.dtype(fields, align=True))
    def f(arr):
        return arr.dtype.itemsize
    CALLS = [(f, (packed,), {}), (f, (aligned,), {})]
    """
    assert values(run(tmp_path, src)) == [9, 16]


def test_from_import_inside_the_task_body(tmp_path: Path) -> None:
    src = "def f(x):\n    from helper_mod import g\n    return g(x)\nCALLS = [(f, (10,), {})]\n"
    helper = "def g(x):\n    return x * {k}\n"
    first, second = edited(
        tmp_path,
        src,
        src,
        ({"helper_mod.py": helper.format(k=2)}, {"helper_mod.py": helper.format(k=3)}),
    )
    assert (first, second) == ([20], [30])


def test_a_helper_module_constant_read_by_a_helper(tmp_path: Path) -> None:
    src = "import helper_mod\ndef f(x):\n    return helper_mod.g(x)\nCALLS = [(f, (10,), {})]\n"
    helper = "SCALE = {k}\ndef g(x):\n    return x * SCALE\n"
    first, second = edited(
        tmp_path,
        src,
        src,
        ({"helper_mod.py": helper.format(k=2)}, {"helper_mod.py": helper.format(k=3)}),
    )
    assert (first, second) == ([20], [30])


def test_mutable_global_mutated_in_place_between_two_calls(tmp_path: Path) -> None:
    src = """
    CONFIG = {"scale": 2}
    def f(x):
        return x * CONFIG["scale"]
    def set_scale(v):
        CONFIG["scale"] = v
        return v
    CALLS = [(f, (10,), {}), (set_scale, (3,), {}), (f, (10,), {}), (set_scale, (2,), {}),
             (f, (10,), {})]
    """
    result = run(tmp_path, src)
    assert values(result) == [20, 3, 30, 2, 20]
    assert result[4][1] is True  # back to scale 2: the first call's entry is hit


def test_class_level_dict_mutated_in_place(tmp_path: Path) -> None:
    src = """
    class Pricing:
        RATES = {"eur": 2}
        def convert(self, x):
            return x * self.RATES["eur"]
    def f(x):
        return Pricing().convert(x)
    def set_rate(v):
        Pricing.RATES["eur"] = v
        return v
    CALLS = [(f, (10,), {}), (set_rate, (3,), {}), (f, (10,), {})]
    """
    assert values(run(tmp_path, src)) == [20, 3, 30]


def test_a_counter_the_task_only_writes_to_keeps_hits(tmp_path: Path) -> None:
    src = """
    RUNS = []
    SEEN = {}
    def f(x):
        RUNS.append(x)
        SEEN[x] = True
        return x * 2
    CALLS = [(f, (10,), {}), (f, (10,), {})]
    """
    assert run(tmp_path, src) == [[20, False], [20, True]]


def test_keyword_only_defaults_bind(tmp_path: Path) -> None:
    src = """
    def f(x, *, k=2):
        return x * k
    CALLS = [(f, (10,), {}), (f, (10,), {"k": 2}), (f, (10,), {"k": 3})]
    """
    assert run(tmp_path, src) == [[20, False], [20, True], [30, False]]


def test_an_enum_argument_is_keyed_by_its_class_code(tmp_path: Path) -> None:
    src = """
    import enum
    class Mode(enum.Enum):
        FAST = 1
        def factor(self):
            return {k}
    def f(m, x):
        return x * m.factor()
    CALLS = [(f, (Mode.FAST, 10), {{}})]
    """
    assert edited(tmp_path, src.format(k=2), src.format(k=3)) == ([20], [30])


# --- in one process: what is left out is named, never a crash ----------------------------------


def test_an_unhashable_global_is_named_in_a_warning_and_the_call_works(tmp_path: Path) -> None:
    import threading
    import types as _types

    from cashet import Client
    from cashet.errors import ClosureWarning

    mod = _types.ModuleType("trust_unhashable_mod")
    exec("def f(x):\n    with LOCK:\n        return x * 2\n", mod.__dict__)
    mod.LOCK = threading.Lock()  # type: ignore[attr-defined]
    with Client(store_dir=tmp_path / "s") as client:
        with pytest.warns(ClosureWarning, match=r"reads LOCK \(_thread\.lock\).*__cashet_hash__"):
            assert client.submit(mod.f, 10).load() == 20
        assert client.submit(mod.f, 10).load() == 20  # warned once; still a hit


def test_a_bound_method_of_an_unhashable_instance_still_runs(tmp_path: Path) -> None:
    import threading

    from cashet import Client
    from cashet.errors import ClosureWarning

    class Service:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def run(self, x: int) -> int:
            return x + 1

    with Client(store_dir=tmp_path / "s") as client:
        with pytest.warns(ClosureWarning, match=r"the bound instance self"):
            assert client.submit(Service().run, 1).load() == 2


def test_a_constant_read_through_an_import_inside_the_body(tmp_path: Path) -> None:
    src = "def f(x):\n    import cfg\n    return x * cfg.SCALE\nCALLS = [(f, (10,), {})]\n"
    first, second = edited(
        tmp_path, src, src, ({"cfg.py": "SCALE = 2\n"}, {"cfg.py": "SCALE = 3\n"})
    )
    assert (first, second) == ([20], [30])


def test_a_result_ref_global_is_keyed_by_its_content(tmp_path: Path) -> None:
    import types as _types
    import warnings

    from cashet import Client

    mod = _types.ModuleType("trust_ref_mod")
    exec("def load(n):\n    return list(range(n))\ndef f(x):\n    return len(RAW.load()) + x\n",
         mod.__dict__)  # fmt: skip
    with Client(store_dir=tmp_path / "s") as client, warnings.catch_warnings():
        warnings.simplefilter("error")
        mod.RAW = client.submit(mod.load, 2)  # type: ignore[attr-defined]
        assert client.submit(mod.f, 10).load() == 12
        mod.RAW = client.submit(mod.load, 3)  # type: ignore[attr-defined]
        assert client.submit(mod.f, 10).load() == 13


def test_singledispatch_registration_after_the_first_call(tmp_path: Path) -> None:
    src = """
    import functools
    @functools.singledispatch
    def fmt(v):
        return "object"
    def f(x):
        return fmt(x)
    def register(_):
        @fmt.register
        def _(v: int):
            return "int"
        return "registered"
    def replace(_):
        @fmt.register
        def _(v: int):
            return "int, again"
        return "replaced"
    CALLS = [(f, (10,), {}), (register, (0,), {}), (f, (10,), {}), (replace, (0,), {}),
             (f, (10,), {})]
    """
    assert values(run(tmp_path, src)) == ["object", "registered", "int", "replaced", "int, again"]


def test_ignore_globals_option_leaves_a_global_out_silently(tmp_path: Path) -> None:
    src = """
    import threading, warnings
    warnings.simplefilter("error")
    from cashet import Client
    LOCK = threading.Lock()
    SCALE = {k}
    client = Client(store_dir=__file__ + ".unused")
    @client.task(ignore_globals=["LOCK", "SCALE"])
    def f(x):
        with LOCK:
            return x * SCALE
    CALLS = [(f, (10,), {{}})]
    """
    first, second = edited(tmp_path, src.format(k=2), src.format(k=3))
    assert (first, second) == ([20], [20])  # SCALE opted out: the edit does not change the key
