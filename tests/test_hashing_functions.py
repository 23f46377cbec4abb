"""Function identity: what changes it, what does not, and how it is cached."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import linecache
import math
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cashet._process import BoundedCache
from cashet.errors import ClosureWarning
from cashet.hashing import FunctionIdentity, function_identity, hash_args
from cashet.hashing import dependencies as _deps
from cashet.hashing import functions as _fnhash
from cashet.hashing import source as _source

FIXTURE = Path(__file__).parent / "hashing_fixtures" / "helper_mod.py"
_cells = itertools.count()
_modules = itertools.count()


def cell(src: str, ns: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``src`` like a notebook cell: its source lives only in linecache (as in IPython)."""
    ns = {"__name__": "__main__"} if ns is None else ns
    filename = f"<cashet-test-cell-{next(_cells)}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    exec(compile(src, filename, "exec"), ns)
    return ns


@pytest.fixture
def load_helper(tmp_path: Path) -> Iterator[Callable[..., types.ModuleType]]:
    """Copy the helper module to a fresh directory, apply text edits, import it."""
    names: list[str] = []

    def load(*edits: tuple[str, str]) -> types.ModuleType:
        src = FIXTURE.read_text()
        for old, new in edits:
            assert old in src
            src = src.replace(old, new)
        n = next(_modules)
        d = tmp_path / f"v{n}"
        d.mkdir()
        path = d / "helper_mod.py"
        path.write_text(src)
        name = f"cashet_test_helper_{n}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        names.append(name)
        spec.loader.exec_module(mod)
        return mod

    yield load
    for name in names:
        sys.modules.pop(name, None)


def fid(ns: dict[str, Any], name: str = "f") -> str:
    return function_identity(ns[name]).hash


BASE = "def f(x, y=2):\n    return x * y + 1\n"


# --- what does not change identity ---------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        'def f(x,   y = 2):\n    """Docstring."""\n    # a comment\n\n    return (x*y\n'
        "            + 1)  # trailing comment\n",
        "def deco(fn):\n    return fn\n\n\n@deco\n@deco\ndef f(x, y=2):\n    return x * y + 1\n",
        "if True:\n    def f(x, y=2):\n        return x * y + 1\n",
        "\n\n\n# moved down\ndef f(x, y=2):\n\n    return x * y + 1\n",
    ],
    ids=["comments-docstring-format", "decorators", "indented", "moved"],
)
def test_cosmetic_changes_keep_identity(variant: str) -> None:
    assert fid(cell(variant)) == fid(cell(BASE))


def test_golden_identities() -> None:
    # pins the identity format (AST dump, graph entries): every cache key depends on it
    # (format 2, issue 11: values read by the code are in the key; updated on purpose)
    assert fid(cell(BASE)) == "84f1ff1e8367c123a29b5e27196be72140de31661df531f62f84e88ed2ee7c9c"
    helper = "def g(x):\n    return x + 1\n\ndef f(x):\n    return g(x) * 2\n"
    assert fid(cell(helper)) == "8e180847c3bd71a9aa6e43ebbd32f99253638a8dc60c14a8c7ae6fc0be01b52b"


def test_identity_fields() -> None:
    ident = function_identity(cell(BASE)["f"])
    assert isinstance(ident, FunctionIdentity)
    assert len(ident.hash) == 64 and ident.hash == ident.hash.lower()
    int(ident.hash, 16)
    assert ident.name == "f"
    assert ident.module == "__main__"
    assert ident.source == BASE


# --- what changes it ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "def f(x, y=2):\n    return x * y + 2\n",  # constant
        "def f(x, y=2):\n    return x * y - 1\n",  # operator
        "def f(x, z=2):\n    return x * z + 1\n",  # a name
        "def f(x, y=3):\n    return x * y + 1\n",  # default
        "def f(x, *, y=2):\n    return x * y + 1\n",  # signature
        "def f(x, y=2):\n    return x * y + 1.0\n",  # 1 vs 1.0
        "def g(x, y=2):\n    return x * y + 1\nf = g\n",  # the function's name
    ],
)
def test_semantic_changes_change_identity(variant: str) -> None:
    assert fid(cell(variant)) != fid(cell(BASE))


def test_kwdefaults_change_identity() -> None:
    a = cell("def f(x, *, y=2):\n    return x * y\n")
    b = cell("def f(x, *, y=3):\n    return x * y\n")
    assert fid(a) != fid(b)


def test_nested_docstring_and_inner_function_change() -> None:
    a = cell("def f(x):\n    def g():\n        'doc'\n        return x\n    return g\n")
    b = cell("def f(x):\n    def g():\n        return x\n    return g\n")
    c = cell("def f(x):\n    def g():\n        return x + 1\n    return g\n")
    assert fid(a) == fid(b) != fid(c)


# --- dependencies --------------------------------------------------------------------------------


def test_bare_name_helper_is_hashed() -> None:
    a = cell("def g(x):\n    return x + 1\n\ndef f(x):\n    return g(x) * 2\n")
    b = cell("def g(x):\n    return x + 2\n\ndef f(x):\n    return g(x) * 2\n")
    c = cell("def g(x):\n    return x + 1  # same\n\ndef f(x):\n    return g(x) * 2\n")
    assert fid(a) != fid(b)
    assert fid(a) == fid(c)


def test_helper_in_comprehension_and_lambda_is_hashed() -> None:
    body = "def f(xs):\n    k = lambda v: g(v)\n    return [h(x) for x in xs], k\n"
    a = cell("def g(x):\n    return x\n\ndef h(x):\n    return x\n\n" + body)
    b = cell("def g(x):\n    return -x\n\ndef h(x):\n    return x\n\n" + body)
    c = cell("def g(x):\n    return x\n\ndef h(x):\n    return -x\n\n" + body)
    assert len({fid(a), fid(b), fid(c)}) == 3


def test_module_attribute_helper(load_helper: Callable[..., types.ModuleType]) -> None:
    caller = "def f(x):\n    return hm.double(x) + 1\n"
    v1 = load_helper()
    ns = cell(caller, {"__name__": "__main__", "hm": v1})
    first = fid(ns)

    same = load_helper(("return x * 2", "return x * 2  # reformatted, same code"))
    ns_same = cell(caller, {"__name__": "__main__", "hm": same})
    assert fid(ns_same) == first  # module names and comments are not identity

    v2 = load_helper(("return x * 2", "return x * 3"))
    ns2 = cell(caller, {"__name__": "__main__", "hm": v2})
    assert fid(ns2) != first

    # the caller object is unchanged, the module attribute is replaced (like a reload)
    v1.double = v2.double
    assert fid(ns) == fid(ns2)


def test_source_edited_on_disk_without_reload_is_not_trusted(
    load_helper: Callable[..., types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = load_helper()
    assert function_identity(mod.double).source.startswith("def double")
    path = Path(mod.__file__ or "")
    path.write_text(path.read_text().replace("return x * 2", "return x * 20"))
    # a fresh process: nothing cached, the running code is still ``x * 2``
    monkeypatch.setattr(_fnhash, "_IDS", BoundedCache(_fnhash._CACHE_MAX))
    monkeypatch.setattr(_fnhash, "_NODES", BoundedCache(_fnhash._CACHE_MAX))
    stale = function_identity(mod.double)
    assert stale.source == ""  # the file no longer compiles to this code: bytecode identity
    fresh = load_helper(("return x * 2", "return x * 20"))
    assert function_identity(fresh.double).source.startswith("def double")
    assert function_identity(fresh.double).hash != stale.hash


def test_helper_two_levels_deep(load_helper: Callable[..., types.ModuleType]) -> None:
    caller = "def f(x):\n    return hm.twice_double(x)\n"
    v1 = load_helper()
    v2 = load_helper(("return x * 2", "return x * 4"))
    a = cell(caller, {"__name__": "__main__", "hm": v1})
    b = cell(caller, {"__name__": "__main__", "hm": v2})
    assert fid(a) != fid(b)


def test_class_methods_are_hashed(load_helper: Callable[..., types.ModuleType]) -> None:
    caller = "def f(x):\n    return hm.Scaler(3).apply(x)\n"
    v1 = load_helper()
    v2 = load_helper(("return double(x) * self.k", "return double(x) * self.k + 1"))
    v3 = load_helper(("return x * 2", "return x * 5"))  # reached through the method
    ids = {fid(cell(caller, {"__name__": "__main__", "hm": m})) for m in (v1, v2, v3)}
    assert len(ids) == 3


def test_bare_class_reference_and_method_owner() -> None:
    src = (
        "class C:\n    def run(self, x):\n        return self.step(x)\n"
        "    def step(self, x):\n        return x + {n}\n\n"
        "def f(x):\n    return C().run(x)\n"
    )
    a, b = cell(src.format(n=1)), cell(src.format(n=2))
    assert fid(a) != fid(b)
    # a method's identity covers its class: self.step() changed
    assert function_identity(a["C"].run).hash != function_identity(b["C"].run).hash
    assert function_identity(a["C"]().run) is function_identity(a["C"].run)


def test_mutual_recursion_is_cycle_safe_and_order_independent() -> None:
    src = (
        "def is_even(n):\n    return True if n == 0 else is_odd(n - 1)\n\n"
        "def is_odd(n):\n    return False if n == 0 else is_even(n - {k})\n"
    )
    a, b = cell(src.format(k=1)), cell(src.format(k=1))
    even_first = (fid(a, "is_even"), fid(a, "is_odd"))
    odd_first = (fid(b, "is_odd"), fid(b, "is_even"))[::-1]
    assert even_first == odd_first
    assert even_first[0] != even_first[1]
    c = cell(src.format(k=2))
    assert fid(c, "is_even") != even_first[0]


def test_self_recursion() -> None:
    a = cell("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n")
    b = cell("def fact(n):\n    return 1 if n < 3 else n * fact(n - 1)\n")
    assert fid(a, "fact") != fid(b, "fact")


def test_library_code_is_not_descended(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    computed: list[Any] = []
    real = _fnhash._compute_node

    def spy(obj: Any) -> Any:
        computed.append(obj)
        return real(obj)

    monkeypatch.setattr(_fnhash, "_compute_node", spy)
    ns = cell(
        "import json\nimport numpy as np\nfrom json import dumps\n\n"
        "def f(x):\n    return json.dumps(np.linalg.norm(np.asarray(x))) + dumps(len(x))\n"
    )
    function_identity(ns["f"])
    assert computed == [ns["f"]]
    assert not _deps.is_user_function(json.dumps)
    assert not _deps.is_user_function(np.linalg.norm.__wrapped__)  # type: ignore[attr-defined]
    assert not _deps.is_user_class(dict)


def test_library_binding_is_part_of_identity() -> None:
    a = cell("from json import dumps\n\ndef f(x):\n    return dumps(x)\n")
    b = cell("from pickle import dumps\n\ndef f(x):\n    return dumps(x)\n")
    assert fid(a) != fid(b)


def test_global_values_are_hashed() -> None:
    # issue 11: a module-level value the code reads is in the key (it was left out before)
    ns = cell("K = 2\n\ndef f(x):\n    return x * K\n")
    before = fid(ns)
    ns["K"] = 3
    assert fid(ns) != before
    ns["K"] = 2
    assert fid(ns) == before


def test_a_mutable_global_mutated_in_place_changes_the_identity() -> None:
    ns = cell("CFG = {'k': 2}\n\ndef f(x):\n    return x * CFG['k']\n")
    before = fid(ns)
    ns["CFG"]["k"] = 3
    assert fid(ns) != before
    ns["CFG"]["k"] = 2
    assert fid(ns) == before


def test_a_global_only_written_into_is_not_in_the_key() -> None:
    ns = cell(
        "CALLS = []\nSEEN = {}\nN = 0\n\ndef f(x):\n    global N\n    N += 1\n"
        "    CALLS.append(x)\n    SEEN[x] = True\n    return x\n"
    )
    before = function_identity(ns["f"])
    ns["f"](1)
    assert fid(ns) == before.hash
    assert {v.label: v.reason for v in before.values} == {
        "CALLS": "write-only",
        "SEEN": "write-only",
        "N": "write-only",
    }


def test_identity_reports_its_parts() -> None:
    ns = cell(
        "SCALE = 2\nCFG = {'a': 1}\n\ndef g(x):\n    return x * SCALE\n\n"
        "def f(x):\n    return g(x) + CFG['a']\n"
    )
    ident = function_identity(ns["f"])
    assert [name for name, _ in ident.helpers] == ["__main__.f", "__main__.g"]
    parts = {v.label: v for v in ident.values}
    assert parts["SCALE"].digest and parts["SCALE"].preview == "2"
    assert parts["CFG"].reason == "live" and parts["CFG"].preview == "{'a': 1}"
    assert ident.skipped == ()
    lib = cell("import json\nimport numpy as np\n\ndef f(x):\n    return np.sum(json.loads(x))\n")
    assert function_identity(lib["f"]).libraries == ("numpy",)  # stdlib not listed


def test_an_unhashable_global_is_left_out_and_named() -> None:
    ns = cell(
        "import threading\nLOCK = threading.Lock()\n\ndef f(x):\n    with LOCK:\n        return x\n"
    )
    with pytest.warns(ClosureWarning, match=r"LOCK \(_thread.lock\).*__cashet_hash__") as rec:
        ident = function_identity(ns["f"])
    assert rec[0].filename == __file__  # points at the caller, not into cashet
    assert [(v.label, v.reason) for v in ident.skipped] == [("LOCK", "unhashable: _thread.lock")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        function_identity(ns["f"])  # once


def test_ignore_opts_a_value_out_without_a_warning() -> None:
    from cashet.hashing import ignore

    ns = cell(
        "import threading\nLOCK = threading.Lock()\nK = 2\n\ndef f(x):\n"
        "    with LOCK:\n        return x * K\n"
    )
    ignore("LOCK", "K")(ns["f"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        before = fid(ns)
    ns["K"] = 3
    assert fid(ns) == before


def test_ignore_applied_after_the_first_identity_takes_effect() -> None:
    from cashet.hashing import ignore

    ns = cell("K = 2\n\ndef f(x):\n    return x * K\n")
    with_k = fid(ns)
    ignore("K")(ns["f"])
    without_k = fid(ns)
    assert without_k != with_k  # the cached identity is not reused once K is opted out
    ns["K"] = 3
    assert fid(ns) == without_k


def test_task_ignore_globals_option(tmp_path: Path) -> None:
    from cashet import Client

    ns = cell("K = 2\n\ndef f(x):\n    return x * K\n")
    with Client(store_dir=tmp_path) as client:
        task = client.task(ignore_globals=["K"])(ns["f"])
        assert task(10).load() == 20
        ns["K"] = 3
        assert task(10).load() == 20  # K is out of the key, by request
        for bad in ("K", 3, [""], [" K"], [None]):
            with pytest.raises(ValueError, match="ignore_globals"):
                client.task(ignore_globals=bad)


# --- notebook redefinition and caching ----------------------------------------------------------


def test_redefining_a_helper_changes_the_caller() -> None:
    ns = cell("def g(x):\n    return x + 1\n\ndef f(x):\n    return g(x) * 2\n")
    f = ns["f"]
    first = function_identity(f)
    assert function_identity(f) is first  # cached: the very same object
    cell("def g(x):\n    return x + 100\n", ns)  # a later cell redefines only g
    second = function_identity(f)
    assert ns["f"] is f
    assert second.hash != first.hash
    cell("def g(x):\n    return x + 1\n", ns)  # back to the original code
    assert function_identity(f).hash == first.hash


def test_defining_a_missing_helper_later_changes_the_caller() -> None:
    ns = cell("def f(x):\n    return helper(x)\n")
    before = fid(ns)
    cell("def helper(x):\n    return x\n", ns)
    assert fid(ns) != before


def test_reassigned_code_and_defaults_invalidate() -> None:
    ns = cell("def f(x, y=1):\n    return x + y\n\ndef g(x, y=1):\n    return x - y\n")
    f = ns["f"]
    before = function_identity(f).hash
    f.__defaults__ = (5,)
    after_defaults = function_identity(f).hash
    f.__code__ = ns["g"].__code__  # what IPython's autoreload does
    after_code = function_identity(f).hash
    assert len({before, after_defaults, after_code}) == 3


def test_reassigned_method_invalidates() -> None:
    ns = cell("class C:\n    def run(self):\n        return 1\n\ndef f():\n    return C().run()\n")
    before = fid(ns)
    other = cell("def run(self):\n    return 2\n")
    ns["C"].run = other["run"]
    assert fid(ns) != before


# --- closures -------------------------------------------------------------------------------------


def test_closure_over_plain_value_is_hashed() -> None:
    # issue 11: closure cells are values like any other (a ClosureWarning was all there was)
    src = "def make(k):\n    def inner(x):\n        return x * k\n    return inner\n\n"
    ns = cell(src + "a = make(3)\nb = make(3)\nc = make(4)\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fid(ns, "a") == fid(ns, "b") != fid(ns, "c")


def test_closure_over_function_is_hashed_without_warning() -> None:
    src = (
        "def make(helper):\n    def inner(x):\n        return helper(x)\n    return inner\n\n"
        "def g(x):\n    return x + {n}\n\ninner = make(g)\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = fid(cell(src.format(n=1)), "inner"), fid(cell(src.format(n=2)), "inner")
    assert a != b


def test_closure_over_an_object_hashes_its_state_even_if_callable() -> None:
    ns = cell(
        "class Model:\n    def __init__(self, k):\n        self.k = k\n"
        "    def __call__(self, x):\n        return x * self.k\n"
        "    def predict(self, x):\n        return x * self.k\n\n"
        "def make(m):\n    def inner(x):\n        return m(x)\n    return inner\n\n"
        "def make_bound(m):\n    fn = m.predict\n    def inner2(x):\n        return fn(x)\n"
        "    return inner2\n\n"
        "i2, i3 = make(Model(2)), make(Model(3))\n"
        "b2, b3 = make_bound(Model(2)), make_bound(Model(3))\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fid(ns, "i2") != fid(ns, "i3")
        assert fid(ns, "b2") != fid(ns, "b3")


def test_dataclass_dependency_hashes_fields_without_warnings() -> None:
    src = (
        "import dataclasses\n\n@dataclasses.dataclass(frozen=True, order=True)\nclass Cfg:\n"
        "    a: int = {a}\n    b: list = dataclasses.field(default_factory=list)\n\n"
        "def f(x):\n    return Cfg(x).a\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one, other = fid(cell(src.format(a=1))), fid(cell(src.format(a=2)))
    assert one != other  # the generated __init__ carries the default
    assert one == fid(cell(src.format(a=1)))


def test_partial_dependency() -> None:
    src = (
        "import functools\n\nclass C:\n    def add(self, x, y):\n        return x + y\n\n"
        "def g(x, y):\n    return x * y\n\np = functools.partial(g, {n})\n"
        "q = functools.partial(C().add, 1)\n\ndef f(x):\n    return p(x) + q(x)\n"
    )
    assert fid(cell(src.format(n=1))) != fid(cell(src.format(n=2)))


def test_closure_cell_rebinding_invalidates() -> None:
    ns = cell(
        "def g(x):\n    return x\n\ndef h(x):\n    return -x\n\n"
        "def make():\n    fn = g\n    def inner(x):\n        return fn(x)\n"
        "    def swap():\n        nonlocal fn\n        fn = h\n    return inner, swap\n\n"
        "inner, swap = make()\n"
    )
    before = fid(ns, "inner")
    ns["swap"]()
    assert fid(ns, "inner") != before


def test_cached_entries_do_not_keep_functions_alive() -> None:
    import gc
    import weakref

    ns = cell(
        "def helper(x):\n    return x\n\n"
        "def make():\n    def inner(x):\n        return helper(x) + 1\n    return inner\n\n"
        "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n"
    )
    refs = []
    for _ in range(3):
        f = ns["make"]()
        function_identity(f)
        refs.append(weakref.ref(f))
    before = function_identity(ns["fact"])
    refs.append(weakref.ref(ns["fact"]))
    cell("def fact(n):\n    return 1 if n < 3 else n * fact(n - 1)\n", ns)  # redefined
    assert function_identity(ns["fact"]).hash != before.hash
    del f
    gc.collect()
    assert [r() for r in refs] == [None] * 4


# --- lambdas, exec, other callables ------------------------------------------------------------


_inc, _dbl = (lambda x: x + 1), (lambda x: x * 2)
_same_a, _same_b = (lambda x: x + 1), (lambda x: x + 1)
_nested = lambda x: lambda y: x + y  # noqa: E731


def test_two_lambdas_on_one_line_differ() -> None:
    a, b = function_identity(_inc), function_identity(_dbl)
    assert a.hash != b.hash
    assert a.name == b.name == "<lambda>"
    assert a.source == "lambda x: x + 1"
    assert b.source == "lambda x: x * 2"
    assert function_identity(_same_a).hash == function_identity(_same_b).hash


def test_nested_lambdas_are_told_apart() -> None:
    outer = function_identity(_nested)
    inner = function_identity(_nested(1))  # its closure cell x is hashed
    assert inner.hash != function_identity(_nested(2)).hash
    assert outer.source == "lambda x: lambda y: x + y"
    assert inner.source == "lambda y: x + y"
    assert outer.hash != inner.hash


def test_lambdas_in_a_cell() -> None:
    a = cell("f, g = (lambda x: x + 1), (lambda x: x * 2)\n")
    b = cell("f, g = (lambda x: x + 1), (lambda x: x * 3)\n")
    assert fid(a, "f") == fid(b, "f")
    assert fid(a, "g") != fid(b, "g")


def test_exec_without_source_uses_bytecode() -> None:
    def run(src: str) -> Any:
        ns: dict[str, Any] = {}
        exec(src, ns)
        return ns["ex"]

    a = run("def ex(a):\n    return a + 1\n")
    b = run("def ex(a):\n    # no source to read, same code\n    return a + 1\n")
    c = run("def ex(a):\n    return a + 2\n")
    d = run("def ex(a):\n    return [a + 2 for _ in range(1)]\n")
    e = run("def ex(a):\n    return [a + 3 for _ in range(1)]\n")  # nested code object
    ia = function_identity(a)
    assert ia.source == ""
    assert ia.hash == function_identity(b).hash
    assert len({ia.hash, function_identity(c).hash, function_identity(d).hash}) == 3
    assert function_identity(d).hash != function_identity(e).hash


def test_interactive_history_tier_is_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    def repl(src: str) -> Any:
        ns: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(src, "<stdin>", "exec"), ns)  # a plain REPL: nothing in linecache
        return ns["f"]

    f = repl("def f(x):\n    return x + 1\n")
    history = {"text": "def f(x):\n    # from the session history\n    return (x + 1)\n"}
    monkeypatch.setattr(_source, "_dill_source", lambda fn: history["text"])
    found = function_identity(f)
    assert found.source == history["text"]
    assert found.hash == fid(cell("def f(x):\n    return x + 1\n"))  # same AST, same identity

    g = repl("def f(x):\n    return x + 1\n")
    history["text"] = "def f(x):\n    return x + 2\n"  # history holds a later redefinition
    assert function_identity(g).source == ""  # not this code: fall back to the bytecode


class Adder:
    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return x + self.k

    def add(self, x: int) -> int:
        return x + self.k


def test_bound_methods_partials_builtins_callables() -> None:
    assert function_identity(Adder(1).add) is function_identity(Adder.add)
    p1, p2 = functools.partial(Adder.add, Adder(1)), functools.partial(Adder.add, Adder(2))
    assert function_identity(p1).hash != function_identity(p2).hash
    p1_again = functools.partial(Adder.add, Adder(1))
    assert function_identity(p1).hash == function_identity(p1_again).hash
    assert function_identity(p1).name == "Adder.add"
    assert function_identity(Adder(1)).hash != function_identity(Adder(2)).hash
    assert function_identity(Adder(1)).hash == function_identity(Adder(1)).hash
    assert function_identity(len).name == "len"
    assert function_identity(math.sqrt).module == "math"
    assert function_identity(math.sqrt).hash != function_identity(math.cos).hash
    assert function_identity(functools.lru_cache(_inc)).hash == function_identity(_inc).hash
    with pytest.raises(TypeError, match="not callable"):
        function_identity(42)  # type: ignore[arg-type]


def test_classes_as_tasks() -> None:
    a = cell("class C:\n    def __init__(self, x):\n        self.x = x + 1\n")
    b = cell("class C:\n    def __init__(self, x):\n        self.x = x + 2\n")
    assert function_identity(a["C"]).hash != function_identity(b["C"]).hash
    assert function_identity(a["C"]).name == "C"


def test_identity_is_deterministic_across_processes(tmp_path: Path) -> None:
    import subprocess

    script = tmp_path / "prog.py"
    script.write_text(
        "from cashet.hashing import function_identity\n\n"
        "def g(x):\n    return x + 1\n\n"
        "def f(x):\n    return g(x) * 2\n\n"
        "print(function_identity(f).hash)\n"
    )
    out = [
        subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    ns = cell("def g(x):\n    return x + 1\n\ndef f(x):\n    return g(x) * 2\n")
    assert out[0].stdout.strip() == out[1].stdout.strip() == fid(ns)


def test_concurrent_first_calls_agree() -> None:
    from concurrent.futures import ThreadPoolExecutor

    ns = cell("def g(x):\n    return x + 1\n\ndef f(x):\n    return g(x) * 2\n")
    with ThreadPoolExecutor(4) as pool:
        hashes = set(pool.map(lambda _: function_identity(ns["f"]).hash, range(16)))
    assert len(hashes) == 1


def test_notebook_class_counts_as_user_code_when_main_is_a_library_file() -> None:
    # Under ``python -m tool`` (pytest, ipykernel, ...) ``__main__`` is a file in
    # site-packages; a class defined by a notebook cell still lives in ``__main__``.
    main = sys.modules["__main__"]
    had = "__file__" in vars(main)
    saved = getattr(main, "__file__", None)
    main.__file__ = "/opt/venv/lib/python3.11/site-packages/tool/__main__.py"
    try:
        src = (
            "class C:\n    def run(self, x):\n        return x + {n}\n\n"
            "def f(x):\n    return C().run(x)\n"
        )
        assert fid(cell(src.format(n=1))) != fid(cell(src.format(n=2)))
    finally:
        if had:
            main.__file__ = saved
        else:
            del main.__file__


# --- the argument key: calls bound to the signature (issue 11) ---------------------------------


def test_equivalent_calls_hash_alike() -> None:
    from cashet.hashing import hash_call

    f = cell("def f(x, k=2):\n    return x * k\n")["f"]
    forms = [((10, 2), {}), ((10,), {"k": 2}), ((), {"x": 10, "k": 2}), ((10,), {})]
    assert len({hash_call(f, a, kw) for a, kw in forms}) == 1
    assert hash_call(f, (10, 2), {}) == hash_args((10, 2), {})  # positional: as before
    assert hash_call(f, (10, 3), {}) != hash_call(f, (10,), {})


def test_binding_keeps_varargs_and_keyword_only_apart() -> None:
    from cashet.hashing import hash_call

    g = cell("def g(a, /, b=1, *rest, c, d=4, **more):\n    return a\n")["g"]
    assert hash_call(g, (1,), {"c": 3}) == hash_call(g, (1, 1), {"c": 3, "d": 4})
    assert hash_call(g, (1, 1, 9), {"c": 3}) != hash_call(g, (1, 1), {"c": 3})
    assert hash_call(g, (1,), {"c": 3, "z": 0}) != hash_call(g, (1,), {"c": 3})
    # a call that does not bind (it fails when run) is hashed as given, never an error
    assert hash_call(g, (), {}) == hash_args((), {})
    assert hash_call(g, (1,), {}) == hash_args((1,), {})  # c is missing
    # ``a`` is positional-only: a=2 goes to **more, and binds as such
    assert hash_call(g, (1,), {"a": 2, "c": 3}) == hash_args((1, 1), {"a": 2, "c": 3, "d": 4})


def test_bound_method_instance_and_classmethod_class_are_arguments() -> None:
    from cashet.hashing import hash_call

    ns = cell(
        "class S:\n    def __init__(self, k):\n        self.k = k\n"
        "    def mul(self, x):\n        return x * self.k\n"
        "    @classmethod\n    def make(cls, k):\n        return cls(k)\n"
        "class T(S):\n    pass\n"
    )
    s, t = ns["S"], ns["T"]
    assert hash_call(s(2).mul, (10,), {}) == hash_call(s(2).mul, (), {"x": 10})
    assert hash_call(s(2).mul, (10,), {}) != hash_call(s(3).mul, (10,), {})
    assert hash_call(s.make, (1,), {}) != hash_call(t.make, (1,), {})


def test_an_unhashable_default_is_left_out_and_named() -> None:
    from cashet.hashing import hash_call

    ns = cell("import threading\ndef f(x, lock=threading.Lock()):\n    return x\n")
    with pytest.warns(ClosureWarning, match=r"the default of lock \(lock\)"):
        a = hash_call(ns["f"], (1,), {})
    assert a != hash_call(ns["f"], (2,), {})
    with pytest.raises(TypeError, match="argument 1"):  # one the caller passed: an error
        hash_call(ns["f"], (1, ns["threading"].Lock()), {})
