"""The web UI in process (``httpx.ASGITransport``), over the sync and the async app.

Pages, filters and paging, escaping, the token (header, login form, cookie), read-only by
default and delete/GC on a writable server with a token; ``Client.log_page`` and the
SQLite index of inputs under them. The real browser runs are in ``test_ui_browser.py``.
"""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cashet import Client
from cashet.async_client import AsyncClient
from cashet.server.app import create_app, create_async_app
from cashet.stores.sqlite import schema as sql
from tests._ui_data import XSS_ARG, XSS_TAG, Data, populate, scale, total

pytestmark = pytest.mark.anyio

TOKEN = "ui-token-0123"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Data]:
    root = tmp_path_factory.mktemp("ui") / "store"
    return root, populate(root)


class Ui:
    def __init__(self, app: Any, headers: dict[str, str]) -> None:
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cashet", headers=headers
        )

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.get(path, **kw)

    async def text(self, path: str) -> str:
        r = await self.http.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        return r.text


MakeUi = Callable[..., Awaitable[Ui]]


@pytest.fixture(params=["sync", "async"])
async def make_ui(
    request: pytest.FixtureRequest, tmp_path: Path, data_dir: tuple[Path, Data]
) -> AsyncIterator[MakeUi]:
    """``await make_ui(store=..., token=..., auth=True, **create_app_kwargs)``."""
    made: list[tuple[Ui, Any]] = []

    async def make(
        *, store: Path | None = None, token: str | None = None, auth: bool = True, **kw: Any
    ) -> Ui:
        where = store or data_dir[0]
        client: Client | AsyncClient
        if request.param == "sync":
            client = Client(store_dir=where)
            app = create_app(client, require_token=token, **kw)
        else:
            client = AsyncClient(store_dir=where)
            app = create_async_app(client, require_token=token, **kw)
        headers = {"Authorization": f"Bearer {token}"} if token and auth else {}
        ui = Ui(app, headers)
        made.append((ui, client))
        return ui

    yield make
    for ui, client in made:
        await ui.http.aclose()
        if isinstance(client, AsyncClient):
            await client.close()
        else:
            client.close()


def hashes_in(page: str) -> set[str]:
    return set(re.findall(r"/ui/commit/([0-9a-f]{64})", page))


# --- pages ----------------------------------------------------------------------------------


async def test_the_list_shows_every_commit_newest_first(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    data = data_dir[1]
    ui = await make_ui()
    page = await ui.text("/ui/")
    for h in (data.load, data.total3, data.failed, data.xss):
        assert f"/ui/commit/{h}" in page
    assert page.index(data.xss) < page.index(data.load)  # newest first
    for column in ("Function", "Status", "Created (UTC)", "Compute", "Hits", "Size"):
        assert f"<th>{column}</th>" in page


async def test_filters_by_function_status_tag_and_text(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    data = data_dir[1]
    ui = await make_ui()
    assert hashes_in(await ui.text("/ui/?func=scale")) == {data.scale3, data.scale4}
    assert hashes_in(await ui.text("/ui/?status=failed")) == {data.failed}
    assert hashes_in(await ui.text("/ui/?tags=note")) == {data.xss}
    assert hashes_in(await ui.text(f"/ui/?q={data.total4[:10]}")) == {data.total4}
    assert hashes_in(await ui.text("/ui/?q=ZERO-MATCHES")) == set()
    assert hashes_in(await ui.text("/ui/?q=VALUEERROR")) == {data.failed}  # case ignored
    assert (await ui.get("/ui/?status=bogus")).status_code == 400


async def test_pages_follow_the_cursor_to_the_end(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    ui = await make_ui()
    seen: list[str] = []
    path = "/ui/?limit=2"
    for _ in range(10):
        page = await ui.text(path)
        seen += re.findall(r'name="c" value="([0-9a-f]{64})"', page)
        found = re.search(r'href="(/ui/\?[^"]*cursor=[^"]*)" rel="next"', page)
        if found is None:
            break
        path = html.unescape(found.group(1))
    assert len(seen) == len(set(seen)) == 7  # every commit once, across pages of two


async def test_commit_page_shows_source_arguments_manifest_and_links(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    data = data_dir[1]
    ui = await make_ui()
    page = await ui.text(f"/ui/commit/{data.total3}")
    assert '<span class="tok-kw">def</span> <span class="tok-def">total</span>' in page
    assert f'href="/ui/lineage/{data.total3}"' in page
    assert f'href="/ui/why/{data.total3}"' in page
    assert f'href="/ui/result/{data.total3}"' in page
    assert "Key manifest" in page and "<td>argument</td>" in page
    assert "<td>python</td>" in page
    assert "135" in page  # the value, decoded by the restricted unpickler
    # A prefix redirects to the commit's own address.
    r = await ui.get(f"/ui/commit/{data.total3[:10]}")
    assert r.status_code == 303 and r.headers["location"] == f"/ui/commit/{data.total3}"


async def test_a_failed_run_shows_its_error_and_traceback(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    ui = await make_ui()
    page = await ui.text(f"/ui/commit/{data_dir[1].failed}")
    error = re.search(r'<pre class="error" id="error">(.*?)</pre>', page, re.S)
    assert error is not None
    text = html.unescape(error.group(1))
    assert "Traceback" in text and "ValueError: bad input '<b>x</b>'" in text
    assert str(Path.cwd()) not in text  # the server's paths are redacted


async def test_download_gives_the_stored_bytes(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    data = data_dir[1]
    ui = await make_ui()
    r = await ui.get(f"/ui/result/{data.total3}")
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith("attachment")
    with Client(store_dir=data_dir[0]) as c:
        assert r.content == c.result_bytes(data.total3)


async def test_diff_why_lineage_and_stats(make_ui: MakeUi, data_dir: tuple[Path, Data]) -> None:
    data = data_dir[1]
    ui = await make_ui()
    diff = await ui.text(f"/ui/diff/{data.scale3}/{data.scale4}")
    assert "arguments: changed" in diff and "function: same" in diff
    assert "output: changed" in diff and 'id="args-diff"' in diff
    same = await ui.text(f"/ui/diff/{data.scale3}/{data.scale3}")
    assert "The output is the same result" in same
    why = await ui.text(f"/ui/why/{data.scale4}")
    assert f"/ui/diff/{data.scale3}/{data.scale4}" in why  # the nearest earlier run
    lineage = await ui.text(f"/ui/lineage/{data.scale3}")
    assert {data.load, data.scale3, data.total3} <= hashes_in(lineage)
    assert data.total4 not in hashes_in(lineage)  # another branch
    assert "<svg" in lineage and "/ui/static/lineage.js" in lineage
    stats = await ui.text("/ui/stats")
    assert "Time saved per function" in stats and "Running tasks" in stats
    assert re.search(r"<b>7</b><span>Commits</span>", stats)
    assert re.search(r"<b>1</b><span>Failed</span>", stats)


async def test_compare_redirects_to_the_diff(make_ui: MakeUi, data_dir: tuple[Path, Data]) -> None:
    data = data_dir[1]
    ui = await make_ui()
    r = await ui.get(f"/ui/compare?c={data.load}&c={data.total3}")
    assert r.status_code == 303 and r.headers["location"] == f"/ui/diff/{data.load}/{data.total3}"
    assert (await ui.get(f"/ui/compare?c={data.load}")).status_code == 400


async def test_errors_are_pages(make_ui: MakeUi) -> None:
    ui = await make_ui()
    r = await ui.get("/ui/commit/" + "0" * 64)
    assert r.status_code == 404 and "<!doctype html>" in r.text
    r = await ui.get("/ui/commit/<script>")
    assert r.status_code == 400 and "<script>" not in r.text


# --- escaping, assets, headers -------------------------------------------------------------


async def test_html_and_script_in_user_data_show_as_text(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    data = data_dir[1]
    ui = await make_ui()
    for path in ("/ui/", f"/ui/commit/{data.xss}", "/ui/?tags=note"):
        page = await ui.text(path)
        assert "<script>window" not in page and "<img src=x" not in page
    commit = await ui.text(f"/ui/commit/{data.xss}")
    assert html.escape(XSS_TAG) in commit
    assert html.escape(XSS_ARG, quote=True)[:30] in commit


async def test_every_page_forbids_foreign_and_inline_scripts(make_ui: MakeUi) -> None:
    ui = await make_ui()
    r = await ui.get("/ui/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert not re.search(r"<script>|<style|\sstyle=|\son[a-z]+=|https?://", r.text)


async def test_assets_ship_in_the_package(make_ui: MakeUi) -> None:
    ui = await make_ui()
    for name, kind in (("ui.css", "text/css"), ("lineage.js", "text/javascript")):
        r = await ui.get(f"/ui/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert "http://" not in r.text and "https://" not in r.text
    assert (await ui.get("/ui/static/../app.py")).status_code == 404
    assert (await ui.get("/ui/static/other.js")).status_code == 404


# --- the token, read-only, writes ------------------------------------------------------------


async def test_with_a_token_nothing_shows_without_it(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    data = data_dir[1]
    ui = await make_ui(token=TOKEN, auth=False)
    for path in ("/ui/", f"/ui/commit/{data.load}", "/ui/stats", f"/ui/result/{data.total3}"):
        r = await ui.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        assert data.load not in r.text
    r = await ui.get("/ui/", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 303
    r = await ui.get("/ui/", headers={"Cookie": "cashet_session=forged"})
    assert r.status_code == 303
    assert (await ui.http.post("/ui/gc")).status_code == 401
    assert (await ui.get("/ui/login")).status_code == 200  # the form and the assets only
    assert (await ui.get("/ui/static/ui.css")).status_code == 200
    assert (await ui.get("/log")).status_code == 401  # the API's rule is unchanged


async def test_login_sets_a_strict_http_only_cookie(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    ui = await make_ui(token=TOKEN, auth=False)
    r = await ui.http.post("/ui/login", data={"token": "nope"})
    assert r.status_code == 401 and "not the server" in r.text
    r = await ui.http.post("/ui/login", data={"token": TOKEN})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert TOKEN not in cookie  # an HMAC of it, not the token
    session = re.match(r"cashet_session=([0-9a-f]+);", cookie)
    assert session is not None
    page = await ui.get("/ui/", headers={"Cookie": "cashet_session=" + session.group(1)})
    assert page.status_code == 200 and data_dir[1].load in page.text
    api = await ui.get("/log", headers={"Cookie": "cashet_session=" + session.group(1)})
    assert api.status_code == 401  # the cookie opens the UI only


async def test_read_only_by_default_without_a_token(
    make_ui: MakeUi, data_dir: tuple[Path, Data]
) -> None:
    data = data_dir[1]
    for kw in ({}, {"token": TOKEN, "read_only": True}):
        ui = await make_ui(**kw)
        assert "Delete this commit" not in await ui.text(f"/ui/commit/{data.load}")
        assert "Run GC" not in await ui.text("/ui/stats")
        r = await ui.http.post(f"/ui/commit/{data.load}/delete", data={"csrf": "x"})
        assert r.status_code == 403


async def test_delete_and_gc_on_a_writable_server_with_a_token(
    make_ui: MakeUi, tmp_path: Path
) -> None:
    data = populate(tmp_path / "own")
    ui = await make_ui(store=tmp_path / "own", token=TOKEN)
    page = await ui.text(f"/ui/commit/{data.xss}")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None and "Delete this commit" in page
    forged = await ui.http.post(f"/ui/commit/{data.xss}/delete", data={"csrf": "0" * 64})
    assert forged.status_code == 403
    r = await ui.http.post(f"/ui/commit/{data.xss}/delete", data={"csrf": csrf.group(1)})
    assert r.status_code == 303
    assert (await ui.get(f"/ui/commit/{data.xss}")).status_code == 404
    r = await ui.http.post("/ui/gc", data={"csrf": csrf.group(1), "older_than_days": "0"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/stats?evicted=6"
    assert hashes_in(await ui.text("/ui/")) == set()


# --- what the pages stand on --------------------------------------------------------------


def test_log_page_is_the_same_on_both_clients(data_dir: tuple[Path, Data]) -> None:
    import asyncio

    with Client(store_dir=data_dir[0]) as c:
        first = c.log_page(limit=3)
        second = c.log_page(limit=3, cursor=first.cursor)
        assert len(first.commits) == 3 and first.cursor is not None
        assert not {x.hash for x in first.commits} & {x.hash for x in second.commits}
        assert [x.hash for x in first.commits + second.commits] == [x.hash for x in c.log(limit=6)]
        assert c.log_page(func_name="scale", text="k").commits  # the kwargs of the snapshot
        assert c.log_page(text="%").commits == []  # LIKE's wildcards are taken literally
        assert [x.hash for x in c.log_page(text=data_dir[1].load[:9]).commits] == [
            data_dir[1].load
        ]
        with pytest.raises(ValueError, match="limit"):
            c.log_page(limit=0)
        with pytest.raises(ValueError, match="cursor"):
            c.log_page(cursor="nonsense")
        hits = {x.hash: x.hits for x in c.log_page(func_name="scale").commits}
        assert hits[data_dir[1].scale3] == 1

    async def both() -> list[str]:
        async with AsyncClient(store_dir=data_dir[0]) as ac:
            page = await ac.log_page(limit=3, cursor=first.cursor)
            return [x.hash for x in page.commits]

    assert asyncio.run(both()) == [x.hash for x in second.commits]


def _back_to_version_6(db: sqlite3.Connection) -> None:
    """Undo schema version 7 (the inputs index, the totals per function)."""
    for trigger in (
        "commits_inputs_after_delete",
        "commits_functions_after_insert",
        "commits_functions_after_delete",
        "hits_functions_after_insert",
        "hits_functions_after_update",
        "hits_functions_after_delete",
    ):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DROP TABLE commit_inputs")
    db.execute("DROP TABLE function_totals")
    db.execute("ALTER TABLE hits DROP COLUMN func_name")
    # and version 8's tiny results in commit rows: back in blob rows
    db.execute(
        "INSERT OR IGNORE INTO blobs SELECT result_hash, result_size, length(result_data),"
        " result_data, 0, created_at FROM commits WHERE result_data IS NOT NULL"
    )
    db.execute(
        "UPDATE blobs SET refcount ="
        " (SELECT count(*) FROM commits AS c WHERE c.result_hash = blobs.hash)"
    )
    for trigger in (
        "commits_after_insert",
        "commits_after_delete",
        "commits_data_after_update",
        "blobs_shadow_after_insert",
        "blobs_shadow_after_delete",
    ):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("ALTER TABLE commits DROP COLUMN result_data")
    db.execute("PRAGMA user_version = 6")
    db.commit()


def test_version_7_indexes_inputs_and_totals_and_backfills_a_version_6_store(
    tmp_path: Path,
) -> None:
    data = populate(tmp_path / "s")
    db = sqlite3.connect(tmp_path / "s" / "meta.db")
    rows = set(db.execute("SELECT commit_hash FROM commit_inputs").fetchall())
    assert rows == {(data.scale3,), (data.scale4,), (data.total3,), (data.total4,)}
    # Their bodies are lean (deflated): the backfill reads them through cashet_content.
    lean = db.execute(
        "SELECT count(*) FROM commits WHERE fn IS NOT NULL AND hash IN (?, ?, ?, ?)",
        (data.scale3, data.scale4, data.total3, data.total4),
    ).fetchone()
    assert lean == (4,)
    kept = db.execute("SELECT * FROM function_totals ORDER BY func_name").fetchall()
    assert [(name, runs, hits) for name, runs, hits, _ in kept] == [
        ("fails", 1, 0),
        ("label", 1, 0),
        ("load", 1, 0),
        ("scale", 2, 1),
        ("total", 2, 0),
    ]
    _back_to_version_6(db)  # a store of the previous version: opening it migrates
    db.close()
    with Client(store_dir=tmp_path / "s") as c:
        assert c.store._conn().execute("PRAGMA user_version").fetchone() == (sql.SCHEMA_VERSION,)
        assert (
            c.store._conn().execute("SELECT * FROM function_totals ORDER BY func_name").fetchall()
            == kept
        )
        load_blob = c.show(data.load).result.hash  # type: ignore[union-attr]
        found = c.store.find_by_input(load_blob)  # type: ignore[attr-defined]
        assert {x.hash for x in found} == {data.scale3, data.scale4}
        graph = c.lineage(data.load)
        assert graph.downstream() == {data.scale3, data.scale4, data.total3, data.total4}
        # Kept as commits come and go, and as hits are counted.
        assert c.rm(data.scale3)
        assert {x.hash for x in c.store.find_by_input(load_blob)} == {data.scale4}  # type: ignore[attr-defined]
        c.submit(total, [1])
        c.submit(total, [1])  # a hit
        totals = {r["func_name"]: (r["runs"], r["hits"]) for r in c.savings_by_function()}
        assert totals == {
            "fails": (1, 0),
            "label": (1, 0),
            "load": (1, 0),
            "scale": (1, 0),
            "total": (3, 1),
        }


def test_savings_by_function_agrees_with_the_full_usage(data_dir: tuple[Path, Data]) -> None:
    from cashet.provenance.usage import savings_by_function

    with Client(store_dir=data_dir[0]) as c:
        full = {u.func_name: u for u in c.stats_by_function()}
        fast = c.savings_by_function()
        assert fast[0]["func_name"] == "scale"  # the one hit saved the most
        for row in fast:
            u = full[row["func_name"]]
            assert (row["runs"], row["hits"]) == (u.runs, u.hits)
            assert row["seconds_saved"] == pytest.approx(u.seconds_saved, abs=1e-6)

        class Plain:  # a store without the capability: the full pass, same answer
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

        # (hits are a capability too: the wrapper has none, so it counts runs only)
        plain = savings_by_function(Plain(c.store))  # type: ignore[arg-type]
        assert sorted((r["func_name"], r["runs"]) for r in plain) == sorted(
            (r["func_name"], r["runs"]) for r in fast
        )


def test_a_store_without_pages_is_paged_by_a_scan(data_dir: tuple[Path, Data]) -> None:
    from cashet.provenance.pages import page_commits

    class Plain:  # forwards the required methods only: no CommitPages capability
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    with Client(store_dir=data_dir[0]) as c:
        store = Plain(c.store)
        seen: list[str] = []
        cursor = None
        while True:
            page = page_commits(store, None, None, None, None, cursor, 3)  # type: ignore[arg-type]
            seen += [x.hash for x in page.commits]
            if page.cursor is None:
                break
            cursor = page.cursor
        assert seen == [x.hash for x in c.log(limit=None)]
        found = page_commits(store, "scale", None, None, "'K': 4", None, 10)  # type: ignore[arg-type]
        assert [x.hash for x in found.commits] == [data_dir[1].scale4]
        with pytest.raises(ValueError, match="cursor"):
            page_commits(store, None, None, None, None, "x", 3)  # type: ignore[arg-type]


def test_a_signed_client_pages_only_signed_commits(tmp_path: Path) -> None:
    key = "team-key-0123456789abcdef"
    data = populate(tmp_path / "s")  # written without a key: unsigned
    with Client(store_dir=tmp_path / "s", signing_key=key) as signed:
        assert signed.log_page().commits == []
        blob = Client(store_dir=tmp_path / "s").show(data.load).result.hash  # type: ignore[union-attr]
        assert signed.store.find_by_input(blob) == []  # type: ignore[attr-defined]
        ok = signed.submit(scale, [1, 2], k=5)
        page = signed.log_page()
        assert [c.hash for c in page.commits] == [ok.commit_hash]
