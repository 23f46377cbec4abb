"""Task options: validation and precedence (call-site ``_x`` > ``@task(...)`` > defaults)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cashet.models import TaskDef

if TYPE_CHECKING:
    from cashet.hashing.functions import FunctionIdentity

__all__ = [
    "CALL_OPTIONS",
    "DEFAULT_OPTIONS",
    "TaskOptions",
    "call_options",
    "check_ignore_globals",
    "check_versions",
    "make_task_def",
    "check_tags",
    "merge_options",
]

#: Longest accepted ``timeout``/``ttl``: beyond this, datetimes overflow.
MAX_SECONDS = 100 * 365.25 * 86400

#: Call-site keyword arguments that are options, not task arguments.
CALL_OPTIONS = ("_cache", "_force", "_tags", "_retries", "_timeout", "_ttl")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Options of a task; ``None`` fields mean "not set here" during merging."""

    cache: bool = True
    force: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    retries: int = 0
    timeout: float | None = None
    ttl: float | None = None
    name: str | None = None
    #: Library versions in the key: ``"off"``, ``"major"``, ``"minor"``, ``"exact"``;
    #: ``None``: the client's policy.
    versions: str | None = None


DEFAULT_OPTIONS = TaskOptions()

#: The policies of ``Client(versions=...)`` / ``@client.task(versions=...)``.
VERSION_POLICIES = ("off", "major", "minor", "exact")


def check_versions(value: Any) -> str:
    """Validate a versions policy."""
    if value not in VERSION_POLICIES:
        raise ValueError(
            f"option 'versions' must be one of {', '.join(map(repr, VERSION_POLICIES))},"
            f" not {value!r}"
        )
    return str(value)


def _check_bool(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"option {option!r} must be True or False, not {value!r}")
    return value


def _check_seconds(option: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"option {option!r} must be a number of seconds or None, not {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"option {option!r} must be a positive number of seconds, not {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(
            f"option {option!r} must be at most {MAX_SECONDS:.0f} seconds (100 years), "
            f"not {value!r}"
        )
    return seconds


def _check_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"option 'retries' must be a non-negative integer, not {value!r}")
    if value < 0:
        raise ValueError(f"option 'retries' must be a non-negative integer, not {value}")
    return value


def check_tags(value: Any, option: str = "tags") -> dict[str, str]:
    """Return ``value`` as a ``dict[str, str]`` or raise ``ValueError`` naming the option.

    Values may be ``str``, ``int``, ``float`` or ``bool`` (stored as text).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"option {option!r} must be a dict of str to str, not {value!r}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"option {option!r}: tag keys must be non-empty strings, not {k!r}")
        if isinstance(v, str):
            out[k] = v
        elif isinstance(v, bool | int | float):
            out[k] = str(v)
        else:
            raise ValueError(f"option {option!r}: tag {k!r} must have a str value, not {v!r}")
    return out


def make_options(
    *,
    cache: Any = True,
    force: Any = False,
    tags: Any = None,
    retries: Any = 0,
    timeout: Any = None,
    ttl: Any = None,
    name: Any = None,
    versions: Any = None,
) -> TaskOptions:
    """Validate decorator options into a ``TaskOptions``."""
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"option 'name' must be a non-empty string, not {name!r}")
    return TaskOptions(
        cache=_check_bool("cache", cache),
        force=_check_bool("force", force),
        tags=check_tags(tags),
        retries=_check_retries(retries),
        timeout=_check_seconds("timeout", timeout),
        ttl=_check_seconds("ttl", ttl),
        name=name,
        versions=None if versions is None else check_versions(versions),
    )


def check_ignore_globals(names: Any) -> tuple[str, ...]:
    """Validate ``@task(ignore_globals=...)``: names of values left out of the key."""
    if names is None:
        return ()
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ValueError(
            "option 'ignore_globals' must be a list of names (such as ['LOCK', 'cfg.CACHE']),"
            f" not {names!r}"
        )
    out = tuple(names)
    for n in out:
        if not isinstance(n, str) or not n.strip() or n != n.strip():
            raise ValueError(f"option 'ignore_globals' holds {n!r}: each entry must be a name")
    return out


def merge_options(base: TaskOptions, given: dict[str, Any]) -> TaskOptions:
    """Apply call-site options (keys without the leading underscore) over ``base``."""
    tags = dict(base.tags)
    if "tags" in given and given["tags"] is not None:
        tags.update(check_tags(given["tags"], "_tags"))
    return TaskOptions(
        cache=_check_bool("_cache", given["cache"])
        if given.get("cache") is not None
        else base.cache,
        force=_check_bool("_force", given["force"])
        if given.get("force") is not None
        else base.force,
        tags=tags,
        retries=_check_retries(given["retries"])
        if given.get("retries") is not None
        else base.retries,
        timeout=_check_seconds("_timeout", given["timeout"])
        if given.get("timeout") is not None
        else base.timeout,
        ttl=_check_seconds("_ttl", given["ttl"]) if given.get("ttl") is not None else base.ttl,
        name=base.name,
        versions=base.versions,
    )


def call_options(
    base: TaskOptions,
    cache: Any = None,
    force: Any = None,
    tags: Any = None,
    retries: Any = None,
    timeout: Any = None,
    ttl: Any = None,
) -> TaskOptions:
    """Apply a ``submit``'s ``_cache``, ``_force``, ... over ``base`` (``None`` = not given).

    Shared by ``Client.submit`` and ``AsyncClient.submit``; returns ``base`` itself when no
    option is given (the common case costs six comparisons).
    """
    if (
        cache is None
        and force is None
        and tags is None
        and retries is None
        and timeout is None
        and ttl is None
    ):
        return base
    return merge_options(
        base,
        {
            "cache": cache,
            "force": force,
            "tags": tags,
            "retries": retries,
            "timeout": timeout,
            "ttl": ttl,
        },
    )


def make_task_def(identity: FunctionIdentity, options: TaskOptions, args_hash: str) -> TaskDef:
    """Return the ``TaskDef`` of one call: what ``Client`` and ``AsyncClient`` hand their
    executor (``args_snapshot`` is filled in on a miss only)."""
    # Positional, in TaskDef's field order: on the hit path this costs half of the keyword
    # form (~0.4 µs of a ~16 µs hit). tests/test_call_flow.py pins the mapping.
    return TaskDef(
        options.name or identity.name,  # func_name
        identity.hash,  # func_hash
        args_hash,
        identity.source,  # func_source
        "",  # args_snapshot
        identity.module,
        options.cache,
        options.force,
        options.retries,
        options.timeout,
        options.ttl,
        options.tags,
        {},  # manifest: made on a miss
        identity,
    )
