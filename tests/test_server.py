"""The HTTP server in process (``httpx.ASGITransport``): every endpoint, status and check.

The sync app (``create_app``) and the async one (``create_async_app``) share one set of
handlers; the ``app`` fixture runs each test against both. End-to-end runs against a real
``cashet serve`` are in ``test_server_e2e.py``; the schema fuzzing in
``test_server_schema.py``.
"""

from __future__ import annotations

import base64
import json
import pickle
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import dill
import httpx
import pytest

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.server.app import create_app, create_async_app

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CALLS: list[Any] = []


def double(x: int) -> int:
    CALLS.append(("double", x))
    return x * 2


def add(x: int, y: int = 0) -> int:
    return x + y


def boom(message: str) -> None:
    raise ValueError(message)


def as_set(n: int) -> set[int]:
    return set(range(n))


def pair(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b)


def nan() -> float:
    return float("nan")


def int_keys() -> dict[int, str]:
    return {1: "a"}


def unpicklable() -> Any:
    return threading.Lock()


def big(n: int) -> bytes:
    return b"x" * n


TASKS: dict[str, Callable[..., Any]] = {
    "double": double,
    "add": add,
    "boom": boom,
    "as_set": as_set,
    "pair": pair,
    "nan": nan,
    "int_keys": int_keys,
    "unpicklable": unpicklable,
    "big": big,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Api:
    """An app, its client and an ``httpx.AsyncClient`` over ``ASGITransport``."""

    def __init__(self, app: Any, client: Client | AsyncClient, token: str | None) -> None:
        self.app = app
        self.client = client
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cashet", headers=headers
        )

    async def submit(self, task: str, *args: Any, **fields: Any) -> httpx.Response:
        return await self.http.post("/submit", json={"task": task, "args": list(args), **fields})

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.get(url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.post(url, **kw)


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture(params=["sync", "async"])
async def make_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeApi]:
    """``await make_api(**create_app_kwargs)``: an ``Api`` over a fresh store."""
    made: list[Api] = []

    async def make(*, store: str = "store", token: str | None = TOKEN, **kw: Any) -> Api:
        kw.setdefault("tasks", TASKS)
        client: Client | AsyncClient
        if request.param == "sync":
            client = Client(store_dir=tmp_path / store)
            app = create_app(client, require_token=token, **kw)
        else:
            client = AsyncClient(store_dir=tmp_path / store)
            app = create_async_app(client, require_token=token, **kw)
        api = Api(app, client, token)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.http.aclose()
        if isinstance(api.client, AsyncClient):
            await api.client.close()
        else:
            api.client.close()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


def error_of(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    return body  # type: ignore[no-any-return]


# --- /submit ------------------------------------------------------------------------------------


async def test_submit_runs_once_then_hits(api: Api) -> None:
    CALLS.clear()
    first = await api.submit("double", 21)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["result"] == 42 and body["result_is_json"] is True
    assert pickle.loads(base64.b64decode(body["result_b64"])) == 42
    assert body["cached"] is False
    assert len(body["commit_hash"]) == 64 and len(body["blob_hash"]) == 64
    assert body["size"] == len(base64.b64decode(body["result_b64"]))

    again = (await api.submit("double", 21)).json()
    assert again["cached"] is True
    assert {k: v for k, v in again.items() if k != "cached"} == {
        k: v for k, v in body.items() if k != "cached"
    }
    assert CALLS == [("double", 21)]


async def test_submit_kwargs_and_defaults(api: Api) -> None:
    r = await api.submit("add", 1, kwargs={"y": 2})
    assert r.json()["result"] == 3
    r = await api.submit("add", 5)
    assert r.json()["result"] == 5


async def test_a_commit_shows_the_manifest_of_its_key(api: Api) -> None:
    r = await api.submit("add", 5)
    commit = (await api.get(f"/commit/{r.json()['commit_hash']}")).json()
    manifest = commit["manifest"]
    assert manifest["function"]["name"].endswith(".add")
    assert manifest["function"]["digest"] == commit["func_hash"]
    assert [(a["name"], a["preview"], a.get("default", False)) for a in manifest["arguments"]] == [
        ("x", "5", False), ("y", "0", True),
    ]  # fmt: skip


async def test_submit_options_reach_the_commit(api: Api) -> None:
    r = await api.submit("double", 3, tags={"team": "ml"}, ttl=3600, retries=2, timeout=30)
    assert r.status_code == 200, r.text
    commit = (await api.get(f"/commit/{r.json()['commit_hash']}")).json()
    assert commit["tags"] == {"team": "ml"}
    assert commit["options"]["ttl"] == 3600 and commit["options"]["retries"] == 2
    assert commit["expires_at"] is not None
    forced = await api.submit("double", 3, force=True)
    assert forced.json()["cached"] is False
    assert forced.json()["commit_hash"] != r.json()["commit_hash"]
    uncached = await api.submit("double", 3, cache=False)
    assert uncached.json()["cached"] is False


async def test_registered_tasks_by_name(make_api: MakeApi) -> None:
    api = await make_api(tasks=None)

    @api.client.task(name="triple", tags={"env": "test"})
    def triple(x: int) -> int:
        return x * 3

    r = await api.submit("triple", 2, tags={"run": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == 6
    commit = (await api.get(f"/commit/{r.json()['commit_hash']}")).json()
    assert commit["func_name"] == "triple"
    assert commit["tags"] == {"env": "test", "run": "1"}


async def test_tasks_argument_wins_over_registry(make_api: MakeApi) -> None:
    api = await make_api(tasks={"double": add})

    @api.client.task(name="double")
    def other(x: int) -> int:
        return -x

    assert (await api.submit("double", 2, 3)).json()["result"] == 5


@pytest.mark.parametrize(
    ("task", "args", "expected", "is_json"),
    [
        ("pair", [1, "a"], [1, "a"], True),  # a tuple comes back as a list
        ("pair", [{"k": [1.5, None]}, True], [{"k": [1.5, None]}, True], True),
        ("as_set", [3], None, False),
        ("nan", [], None, False),
        ("int_keys", [], None, False),
    ],
)
async def test_result_json_or_b64(
    api: Api, task: str, args: list[Any], expected: Any, is_json: bool
) -> None:
    r = await api.submit(task, *args)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"] == expected
    assert body["result_is_json"] is is_json
    value = pickle.loads(base64.b64decode(body["result_b64"]))
    if task == "as_set":
        assert value == {0, 1, 2}


async def test_big_result_round_trips(api: Api) -> None:
    r = await api.submit("big", 200_000)
    assert r.status_code == 200
    assert pickle.loads(base64.b64decode(r.json()["result_b64"])) == b"x" * 200_000
    again = await api.submit("big", 200_000)  # a hit too big for the on-loop path
    assert again.json()["cached"] is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cache", "yes"),
        ("cache", 1),
        ("force", 0),
        ("tags", ["a"]),
        ("tags", {"a": 1}),
        ("tags", {"": "x"}),
        ("retries", -1),
        ("retries", 11),
        ("retries", True),
        ("retries", 1.5),
        ("timeout", 0),
        ("timeout", "1"),
        ("timeout", 1e10),
        ("ttl", -5),
        ("ttl", 1e300),
        ("ttl", False),
        ("args", {"x": 1}),
        ("args", "5"),
        ("kwargs", [1]),
        ("task", 5),
        ("task", ""),
        ("colour", "red"),
    ],
)
async def test_submit_field_validation(api: Api, field: str, value: Any) -> None:
    body: dict[str, Any] = {"task": "double", "args": [1], field: value}
    r = await api.post("/submit", json=body)
    assert r.status_code == 400, r.text
    assert error_of(r)["field"] == field


async def test_submit_refuses_option_kwargs(api: Api) -> None:
    r = await api.submit("double", 1, kwargs={"_force": True})
    assert r.status_code == 400
    assert "force" in error_of(r)["error"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"task"',
        b'{"task": "double", "args": [NaN]}',
        b'{"task": "double", "args": [Infinity]}',
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
    ],
)
async def test_submit_bad_bodies(api: Api, content: bytes) -> None:
    r = await api.post("/submit", content=content)
    assert r.status_code == 400, r.text
    error_of(r)


async def test_submit_refuses_deep_arguments(api: Api) -> None:
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    r = await api.submit("pair", deep, 1)
    assert r.status_code == 400
    assert error_of(r)["field"] == "args"


async def test_unknown_task_is_404_listing_tasks(api: Api) -> None:
    r = await api.submit("nope")
    assert r.status_code == 404
    body = error_of(r)
    assert body["field"] == "task"
    assert "double" in body["tasks"]


async def test_lone_surrogate_in_task_name_is_not_a_500(api: Api) -> None:
    r = await api.post("/submit", content=b'{"task": "\\ud800"}')
    assert r.status_code == 404
    assert "\\ud800" in error_of(r)["error"]


async def test_signature_mismatch_is_400_and_runs_nothing(api: Api) -> None:
    r = await api.submit("double", 1, 2)
    assert r.status_code == 400
    assert error_of(r)["field"] == "args"
    r = await api.submit("add", kwargs={"z": 1})
    assert r.status_code == 400
    assert (await api.get("/log")).json() == []


async def test_task_failure_is_422_with_last_line_only(api: Api, tmp_path: Path) -> None:
    r = await api.submit("boom", "bad input")
    assert r.status_code == 422
    body = error_of(r)
    assert body["error"] == "task failed"  # the published answer's shape
    assert body["detail"] == "ValueError: bad input"
    assert body["task"] == "boom"

    leaky = f"cannot open {Path.cwd() / 'secret.txt'} under {Path.home()}"
    r = await api.submit("boom", leaky)
    assert r.status_code == 422
    text = r.text
    assert str(Path.cwd()) not in text and str(Path.home()) not in text
    assert "Traceback" not in text and "File " not in text

    failed = (await api.get("/log", params={"status": "failed"})).json()
    assert len(failed) == 2
    view = (await api.get(f"/commit/{failed[0]['hash']}")).json()
    assert view["error"].startswith("ValueError: ")
    assert "Traceback" not in view["error"] and __file__ not in json.dumps(view)


async def test_result_that_does_not_serialize_is_422(api: Api) -> None:
    r = await api.submit("unpicklable")
    assert r.status_code == 422
    assert error_of(r)["error"] == "task failed"
    assert "lock" in error_of(r)["detail"].lower()


# --- remote code --------------------------------------------------------------------------------


def _b64(obj: Any) -> str:
    return base64.b64encode(dill.dumps(obj)).decode()


class _Tripwire:
    """Unpickling this creates a file: proof that a payload was (or was not) decoded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("field", ["func_source", "func_b64", "args_b64", "kwargs_b64"])
async def test_remote_code_refused_by_default(api: Api, tmp_path: Path, field: str) -> None:
    wire = tmp_path / "decoded"
    payload = "def f():\n    return 1\n" if field == "func_source" else _b64(_Tripwire(wire))
    r = await api.post("/submit", json={"task": "double", "args": [1], field: payload})
    assert r.status_code == 403
    assert error_of(r)["field"] == field
    assert not wire.exists()


async def test_remote_code_with_token_and_opt_in(make_api: MakeApi, tmp_path: Path) -> None:
    api = await make_api(allow_remote_code=True)
    source = "def helper(x):\n    return x + 1\n\ndef shout(x):\n    return helper(x) * 10\n"
    r = await api.post("/submit", json={"func_source": source, "args": [1]})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == 20
    r = await api.post("/submit", json={"func_source": source, "args": [1]})
    assert r.json()["cached"] is True
    r = await api.post("/submit", json={"func_source": source, "func_name": "helper", "args": [1]})
    assert r.json()["result"] == 2

    r = await api.post(
        "/submit",
        json={"func_b64": _b64(add), "args_b64": _b64((2,)), "kwargs_b64": _b64({"y": 5})},
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"] == 7

    bad = [
        ({"func_source": "def f(:\n"}, 400),
        ({"func_source": "x = 1\n"}, 400),
        ({"func_b64": "!!!"}, 400),
        ({"func_b64": _b64(5)}, 400),
        ({"func_source": "def f(): return 1", "task": "double"}, 400),
        ({"func_source": "def f(): return 1", "func_b64": _b64(add)}, 400),
        ({"func_source": "def f():\n    raise KeyError('k')\n"}, 422),
    ]
    for body, status in bad:
        r = await api.post("/submit", json=body)
        assert r.status_code == status, (body, r.text)


def test_remote_code_needs_a_token(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as client:
        for token in (None, ""):
            with pytest.raises(ValueError):
                create_app(client, require_token=token, allow_remote_code=True)
        with pytest.raises(ValueError, match="contradict"):
            create_app(client, require_token=TOKEN, allow_remote_code=True, read_only=True)


@pytest.mark.parametrize("token", ["", "has space", "tab\t", "ünïcode", 5])
def test_malformed_tokens_refused_at_startup(tmp_path: Path, token: Any) -> None:
    with Client(store_dir=tmp_path) as client, pytest.raises(ValueError):
        create_app(client, require_token=token)


def test_factories_check_their_arguments(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as client:
        with pytest.raises(TypeError, match="create_async_app"):
            create_app(AsyncClient(store_dir=tmp_path / "a"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="create_app"):
            create_async_app(client)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            create_app(client, tasks={"x": 5})  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            create_app(client, tasks=[double])  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            create_app(client, max_body_bytes=0)


# --- auth -----------------------------------------------------------------------------------------


async def _raw(
    app: Any,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """Call the ASGI app directly; return status, headers, body and body chunks read."""
    pending = list(chunks or [b""])
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        if not pending:
            return {"type": "http.disconnect"}
        reads += 1
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"cashet"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body, reads


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"Bearer wrong",
        b"Basic " + base64.b64encode(b"user:" + TOKEN.encode()),
        b"Bearer",
        b"Bearer ",
        b"Bearer" + TOKEN.encode(),
        b"Token " + TOKEN.encode(),
        b"Bearer " + TOKEN.encode() + b"x",
        b"Bearer " + TOKEN.encode()[:-1],
        "Bearer tökén".encode("latin-1"),
        "Bearer \u2603".encode(),
        b"Bearer \xff\xfe\x00",
        b"\x00\x01",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/stats"), ("POST", "/submit"), ("GET", "/no/such/path"), ("GET", "/openapi.json")],
)
async def test_bad_credentials_are_401_everywhere(
    api: Api, header: bytes | None, method: str, path: str
) -> None:
    headers = [] if header is None else [(b"authorization", header)]
    status, out_headers, body, reads = await _raw(api.app, method, path, headers, [b"{}"])
    assert status == 401
    assert out_headers[b"www-authenticate"].startswith(b"Bearer")
    assert json.loads(body)["error"]
    assert reads == 0  # refused before the body was read


async def test_two_authorization_headers_are_refused(api: Api) -> None:
    good = (b"authorization", f"Bearer {TOKEN}".encode())
    status, *_ = await _raw(api.app, "GET", "/stats", [good, good])
    assert status == 401


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER   {TOKEN} "])
async def test_good_credentials_pass(api: Api, header: str) -> None:
    status, *_ = await _raw(api.app, "GET", "/stats", [(b"authorization", header.encode())])
    assert status == 200


async def test_without_a_token_no_auth_is_needed(make_api: MakeApi) -> None:
    api = await make_api(token=None)
    assert (await api.get("/stats")).status_code == 200


# --- limits ---------------------------------------------------------------------------------------


async def test_body_limit_by_content_length(make_api: MakeApi) -> None:
    api = await make_api(max_body_bytes=1000)
    auth = (b"authorization", f"Bearer {TOKEN}".encode())
    status, _, body, reads = await _raw(
        api.app, "POST", "/submit", [auth, (b"content-length", b"5000")], [b"x" * 5000]
    )
    assert status == 413 and reads == 0
    assert json.loads(body)["error"]


async def test_body_limit_when_streamed(make_api: MakeApi) -> None:
    api = await make_api(max_body_bytes=1000)
    auth = (b"authorization", f"Bearer {TOKEN}".encode())
    status, _, _, reads = await _raw(api.app, "POST", "/submit", [auth], [b"x" * 600] * 5)
    assert status == 413
    assert reads == 2  # stopped reading as soon as the limit was passed


async def test_body_limit_via_http(make_api: MakeApi) -> None:
    api = await make_api(max_body_bytes=1000)
    r = await api.submit("pair", "x" * 2000, 1)
    assert r.status_code == 413
    r = await api.post("/gc", content=b" " * 2000)
    assert r.status_code == 413


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1e3", b"99999999999999999999999"])
async def test_invalid_content_length_is_400(api: Api, value: bytes) -> None:
    auth = (b"authorization", f"Bearer {TOKEN}".encode())
    status, *_ = await _raw(api.app, "POST", "/submit", [auth, (b"content-length", value)])
    assert status == 400


async def test_unknown_path_and_method_are_json(api: Api) -> None:
    r = await api.get("/nope")
    assert r.status_code == 404 and error_of(r)
    r = await api.http.put("/submit")
    assert r.status_code == 405 and error_of(r)
    assert "POST" in r.headers["allow"]


# --- read-only ------------------------------------------------------------------------------------


async def test_read_only_serves_hits_and_refuses_the_rest(make_api: MakeApi) -> None:
    writer = await make_api(store="shared")
    done = (await writer.submit("double", 4)).json()
    CALLS.clear()
    api = await make_api(store="shared", read_only=True)

    hit = await api.submit("double", 4)
    assert hit.status_code == 200, hit.text
    assert hit.json()["cached"] is True
    assert hit.json()["commit_hash"] == done["commit_hash"]
    assert hit.json()["result"] == 8

    for fields in ({}, {"force": True}, {"cache": False}):
        arg = 5 if not fields else 4
        r = await api.submit("double", arg, **fields)
        assert r.status_code == 403, (fields, r.text)
        assert "read-only" in error_of(r)["error"]
    assert CALLS == []
    assert (await api.post("/gc", json={"older_than_days": 0})).status_code == 403
    assert (await api.get("/stats")).json()["total_commits"] == 1
    assert (await api.get(f"/commit/{done['commit_hash']}")).status_code == 200


# --- reads ----------------------------------------------------------------------------------------


async def _fill(api: Api, n: int) -> list[str]:
    hashes = []
    for i in range(n):
        r = await api.submit("double", i, tags={"batch": "b1" if i % 2 else "b2"})
        hashes.append(r.json()["commit_hash"])
    return hashes


async def test_commit_and_prefix_lookup(api: Api) -> None:
    hashes = await _fill(api, 20)
    h = hashes[0]
    full = (await api.get(f"/commit/{h}")).json()
    assert full["hash"] == h and full["func_name"] == "double" and "func_source" in full
    assert (await api.get(f"/commit/{h[:10].upper()}")).json()["hash"] == h

    firsts = [x[0] for x in hashes]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    r = await api.get(f"/commit/{shared}")
    assert r.status_code == 409
    assert sorted(error_of(r)["candidates"]) == sorted(x for x in hashes if x[0] == shared)

    missing = "0" * 64 if not any(x.startswith("0" * 4) for x in hashes) else "f" * 64
    assert (await api.get(f"/commit/{missing}")).status_code == 404


@pytest.mark.parametrize("bad", ["xyz", "g" * 10, "a" * 65, "%20abc", "12-34"])
@pytest.mark.parametrize("endpoint", ["commit", "result", "history"])
async def test_malformed_hash_is_400(api: Api, bad: str, endpoint: str) -> None:
    r = await api.get(f"/{endpoint}/{bad}")
    assert r.status_code == 400
    assert error_of(r)["field"] == "hash"


async def test_result_by_commit_and_by_blob(api: Api) -> None:
    done = (await api.submit("pair", "a", 1)).json()
    by_commit = (await api.get(f"/result/{done['commit_hash'][:12]}")).json()
    assert by_commit["result"] == ["a", 1]
    assert by_commit["result_b64"] == done["result_b64"]
    by_blob = (await api.get(f"/result/{done['blob_hash']}")).json()
    assert by_blob["commit_hash"] is None
    assert by_blob["result_b64"] == done["result_b64"]
    assert (await api.get(f"/result/{'e' * 64}")).status_code == 404

    await api.submit("boom", "x")
    failed = (await api.get("/log", params={"status": "failed"})).json()[0]
    r = await api.get(f"/result/{failed['hash']}")
    assert r.status_code == 404
    assert "no result" in error_of(r)["error"]


async def test_result_never_runs_a_stored_pickle(api: Api, tmp_path: Path) -> None:
    # A store shared with others may hold any bytes: the JSON form is decoded safely.
    wire = tmp_path / "unpickled"
    data = pickle.dumps(_Tripwire(wire))
    store = api.client.store
    ref = (
        await store.put_blob(data) if isinstance(api.client, AsyncClient) else store.put_blob(data)
    )
    r = await api.get(f"/result/{ref.hash}")
    assert r.status_code == 200
    assert r.json()["result"] is None and r.json()["result_is_json"] is False
    assert base64.b64decode(r.json()["result_b64"]) == data
    assert not wire.exists()


async def test_history_and_diff(api: Api) -> None:
    first = (await api.submit("double", 7)).json()["commit_hash"]
    second = (await api.submit("double", 7, force=True)).json()["commit_hash"]
    history = (await api.get(f"/history/{second}")).json()["commits"]
    assert [c["hash"] for c in history] == [first, second]
    other = (await api.submit("double", 8)).json()["commit_hash"]
    diff = (await api.get(f"/diff/{first}/{other[:8]}")).json()
    assert diff["args_changed"] is True and diff["func_changed"] is False
    assert (await api.get(f"/diff/{first}/{'0' * 64}")).status_code in (404,)
    assert (await api.get(f"/diff/{first}/zz")).json()["field"] == "b"


async def test_log_filters(api: Api) -> None:
    await _fill(api, 6)
    await api.submit("add", 1, 2)
    log = (await api.get("/log")).json()
    assert len(log) == 7 and "func_source" not in log[0]
    assert len((await api.get("/log", params={"limit": 2})).json()) == 2
    assert {c["func_name"] for c in (await api.get("/log?func=add")).json()} == {"add"}
    b1 = (await api.get("/log?tag=batch=b1")).json()
    assert len(b1) == 3 and all(c["tags"]["batch"] == "b1" for c in b1)
    assert len((await api.get("/log?tag=batch")).json()) == 6
    assert (await api.get("/log?tag=batch=b1&tag=other")).json() == []
    assert len((await api.get("/log?status=completed")).json()) == 7


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=%EF%BC%91", "limit"),  # a fullwidth digit
        ("status=done", "status"),
        ("status=", "status"),
        ("tag==v", "tag"),
        ("tag=", "tag"),
    ],
)
async def test_log_bad_queries(api: Api, query: str, field: str) -> None:
    r = await api.get(f"/log?{query}")
    assert r.status_code == 400, r.text
    body = error_of(r)
    assert body["field"] == field
    if field == "status":
        assert body["valid"] == ["running", "completed", "failed"]


async def test_stats_and_gc(api: Api) -> None:
    await _fill(api, 3)
    stats = (await api.get("/stats")).json()
    assert stats["total_commits"] == 3 and isinstance(stats.pop("seconds_saved"), float)
    assert stats["misses"] == 3 and all(isinstance(v, int) for v in stats.values())
    assert (await api.post("/gc")).json() == {"evicted": 0, "deleted": 0}
    assert (await api.post("/gc", json={"older_than_days": 0})).json() == {
        "evicted": 3,
        "deleted": 3,
    }
    assert (await api.get("/stats")).json()["total_commits"] == 0
    for body in (
        {"older_than_days": -1},
        {"older_than_days": "1"},
        {"older_than_days": 1e9},
        {"max_size_bytes": -1},
        {"max_size_bytes": 1.5},
        {"max_size_bytes": 2**64},
        {"older": 1},
    ):
        r = await api.post("/gc", json=body)
        assert r.status_code == 400, body
        assert error_of(r)["field"] in ("older_than_days", "max_size_bytes", "older")
    assert (await api.post("/gc", content=b"[]")).status_code == 400


# --- the OpenAPI document -------------------------------------------------------------------------


async def test_openapi_matches_the_routes(make_api: MakeApi) -> None:
    api = await make_api()
    doc = (await api.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (method, route.path)
        for route in api.app.routes
        for method in route.methods
        if method != "HEAD" and not route.path.startswith("/ui")  # the web UI's pages: HTML
    }
    assert documented == served
    assert doc["security"] == [{"bearer": []}]
    for ops in doc["paths"].values():
        for op in ops.values():
            assert "401" in op["responses"]
    assert set(TASKS) <= set(
        doc["components"]["schemas"]["SubmitRequest"]["properties"]["task"]["examples"]
    )
    assert "func_source" not in doc["components"]["schemas"]["SubmitRequest"]["properties"]

    open_api = await make_api(token=None, store="other", allow_remote_code=False)
    open_doc = (await open_api.get("/openapi.json")).json()
    assert "security" not in open_doc


async def test_openapi_lists_tasks_registered_later(make_api: MakeApi) -> None:
    api = await make_api(tasks=None)
    doc = (await api.get("/openapi.json")).json()
    assert "examples" not in doc["components"]["schemas"]["SubmitRequest"]["properties"]["task"]

    @api.client.task(name="late")
    def late() -> int:
        return 1

    doc = (await api.get("/openapi.json")).json()
    assert doc["components"]["schemas"]["SubmitRequest"]["properties"]["task"]["examples"] == [
        "late"
    ]


async def test_websockets_are_closed(api: Api) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await api.app({"type": "websocket", "path": "/submit", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_head_is_served_like_get(api: Api) -> None:
    r = await api.http.head("/stats")
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [
        ("0.0.0.0", None, True),
        ("192.168.1.5", None, True),
        ("0.0.0.0", TOKEN, False),
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
    ],
)
def test_run_app_warns_when_exposed_without_token(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    host: str,
    token: str | None,
    warned: bool,
) -> None:
    import uvicorn

    from cashet.server.app import run_app

    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append(kw))
    with Client(store_dir=tmp_path) as client:
        run_app(create_app(client, require_token=token), host, 8123)
    assert runs[0]["host"] == host and runs[0]["port"] == 8123
    assert "cashet" in runs[0]["log_config"]["loggers"]
    assert any("without a token" in r.message for r in caplog.records) is warned


async def test_published_clients_find_their_shapes(api: Api) -> None:
    """Issue 12: HTTP clients written against the published cashet keep working: /log is a
    list, commits carry the published names beside ours, /gc takes max_size, answers deleted."""
    await _fill(api, 2)
    log = (await api.get("/log")).json()
    assert isinstance(log, list) and len(log) == 2
    for c in log:
        assert c["function"] == c["func_name"] and c["short_hash"] == c["hash"][:12]
        assert c["output"] == c["result"]["hash"] and c["parent"] == c["parent_hash"]
    one = (await api.get(f"/commit/{log[0]['hash']}")).json()
    assert one["output"] == log[0]["output"] and one["function"] == log[0]["function"]
    r = await api.post("/gc", json={"older_than_days": 30, "max_size": 10**9})
    assert r.status_code == 200 and r.json() == {"evicted": 0, "deleted": 0}
    bad = await api.post("/gc", json={"max_size": 1, "max_size_bytes": 2})
    assert bad.status_code == 400 and "not both" in error_of(bad)["error"]
    assert (await api.post("/gc", json={"max_size": -1})).status_code == 400
