"""What a miss computes once and reuses (issue 18: a faster miss) is what it computed before."""

from __future__ import annotations

from typing import Any

import pytest
from blake3 import blake3

from cashet.hashing import manifest as m
from cashet.hashing.calls import bind
from cashet.stores.sqlite.lean import fp_key


def direct_key(text: str) -> int:
    return int.from_bytes(
        blake3(text.encode("utf-8", "surrogatepass")).digest()[:8], "big", signed=True
    )


def test_a_fingerprint_key_asked_again_is_its_own() -> None:
    a, b = "a" * 64 + ":" + "b" * 64, "c" * 64 + ":" + "d" * 64
    for fp in (a, a, b, a, "", "", "\udcff", b, b):
        assert fp_key(fp) == direct_key(fp)
    assert fp_key(b"x") == direct_key(str(b"x"))


def one(x: Any) -> Any:
    return x


def two(x: Any, y: Any = 2) -> Any:
    return x, y


def kwonly(x: Any, *, k: Any = 3) -> Any:
    return x, k


def star(x: Any, *rest: Any, **more: Any) -> Any:
    return x, rest, more


class Thing:
    def method(self, x: Any) -> Any:
        return x


def by_binding(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The arguments part as it was made before the fast path: always bound."""
    f, owner = (func.__func__, func.__self__) if hasattr(func, "__self__") else (func, None)
    full = args if owner is None else (owner, *args)
    bound = bind(f, full, kwargs)
    assert bound is not None
    pos, kw, defaulted = bound
    code = f.__code__
    names = code.co_varnames[: code.co_argcount]
    star_name = (
        code.co_varnames[code.co_argcount + code.co_kwonlyargcount] if code.co_flags & 4 else ""
    )
    out = []
    for i, v in enumerate(pos):
        name = names[i] if i < len(names) else f"*{star_name}[{i - len(names)}]"
        out.append(m._argument(name, v, i in defaulted))
    return out + [m._argument(k, v, k not in kwargs) for k, v in sorted(kw.items())]


@pytest.mark.parametrize(
    ("func", "args", "kwargs"),
    [
        (one, (5,), {}),
        (one, (), {"x": 5}),
        (two, (1,), {}),
        (two, (1, 7), {}),
        (two, (1,), {"y": 7}),
        (kwonly, (1,), {}),
        (kwonly, (1,), {"k": 9}),
        (star, (1,), {}),
        (star, (1, 2, 3), {"z": 4}),
        (Thing().method, (5,), {}),
    ],
)
def test_the_manifest_names_the_arguments_as_binding_does(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    assert m.manifest_arguments(func, args, kwargs) == by_binding(func, args, kwargs)
