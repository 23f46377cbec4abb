"""The web UI in a real browser: headless Debian Chromium driven by Playwright, against a
real ``cashet serve`` (uvicorn on a free loopback port).

Each test clicks through pages as a person would and checks that no request left
127.0.0.1, that the console showed no error and no script of the page failed, that HTML
and script in tags and arguments show as text (none runs), and the token's rules.
Screenshots go to ``$CASHET_TEST_ARTIFACTS`` (default: the test's temporary folder);
``CASHET_UI_SCREENSHOTS=docs/ui`` also writes the README's pictures there.

Chromium comes from Debian's ``chromium`` package (``/usr/bin/chromium``), installed here
when missing and we are root (``make pytest`` installs it first); never Playwright's own
browser download.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests._ui_data import XSS_ARG, XSS_TAG, Data, populate
from tests.test_server_e2e import CASHET, free_port, serving

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CASHET_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-token-42"
SHOTS = {"list", "commit", "lineage", "diff", "why", "stats"}


def ensure_chromium() -> Path:
    """``/usr/bin/chromium``, installed from Debian's packages when missing (as root)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    assert CHROMIUM.exists(), f"apt-get installed chromium, yet {CHROMIUM} is missing"
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = ensure_chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(path), args=LAUNCH_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Data]:
    root = tmp_path_factory.mktemp("browser")
    return root, populate(root / "store")


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CASHET_TEST_ARTIFACTS") or tmp_path / "artifacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


class Watch:
    """A page's requests, console errors, page errors and dialogs, for the asserts."""

    def __init__(self, page: Any) -> None:
        self.hosts: set[str] = set()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", lambda r: self.hosts.add(urlsplit(r.url).hostname or r.url))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check(self) -> None:
        assert self.hosts == {"127.0.0.1"}, f"requests left loopback: {self.hosts}"
        assert not self.errors, f"console errors: {self.errors}"
        assert not self.dialogs, f"a script ran: {self.dialogs}"


def shoot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    docs = os.environ.get("CASHET_UI_SCREENSHOTS")
    if docs and name in SHOTS:
        Path(docs).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(docs) / f"{name}.png"), full_page=False)


def serve(root: Path, *extra: str) -> Any:
    port = free_port()
    cmd = [str(CASHET), "--store-dir", str(root / "store"), "serve", "--port", str(port), *extra]
    return serving(cmd, root, port)


def new_page(browser: Any, **context: Any) -> tuple[Any, Any, Watch]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, **context)
    page = ctx.new_page()
    return ctx, page, Watch(page)


def test_click_through_list_commit_lineage_diff(
    browser: Any, cache: tuple[Path, Data], artifacts: Path
) -> None:
    root, data = cache
    with serve(root) as server:
        ctx, page, watch = new_page(browser)
        page.goto(f"{server.url}/ui/")
        assert page.locator("#commits tbody tr").count() == 7
        shoot(page, artifacts, "list")

        # list -> commit
        page.locator(f'#commits a[href="/ui/commit/{data.total3}"]').click()
        page.wait_for_url(f"**/ui/commit/{data.total3}")
        assert page.locator("pre.code .tok-kw").first.inner_text() == "def"
        assert "135" in page.locator("main").inner_text()
        shoot(page, artifacts, "commit")

        # commit -> lineage -> an upstream node's commit
        page.locator("#to-lineage").click()
        page.wait_for_url(f"**/ui/lineage/{data.total3}")
        nodes = page.locator("svg.lineage g.node")
        assert nodes.count() == 3
        page.locator("svg.lineage").hover()
        page.mouse.wheel(0, -200)  # the script zooms: the view box changes
        box = page.locator("svg.lineage").get_attribute("viewBox")
        assert box is not None and not box.startswith("0 0 ")
        page.locator("svg.lineage").dblclick(position={"x": 4, "y": 4})  # off the nodes
        assert page.locator("svg.lineage").get_attribute("viewBox", timeout=2000).startswith("0 0")
        page.locator(f'svg.lineage g.node[data-hash="{data.scale3}"]').click()
        page.wait_for_url(f"**/ui/commit/{data.scale3}")
        # the first step of the pipeline: both branches downstream
        page.goto(f"{server.url}/ui/lineage/{data.load}")
        assert nodes.count() == 5
        assert page.locator("svg.lineage path.edge").count() == 4
        page.locator(f'svg.lineage g.node[data-hash="{data.scale4}"]').hover()
        assert page.locator("svg.lineage path.edge.lit").count() == 2  # its in and out
        shoot(page, artifacts, "lineage")

        # commit -> why -> diff with the nearest earlier run
        page.goto(f"{server.url}/ui/commit/{data.scale4}")
        page.locator("#to-why").click()
        page.wait_for_url(f"**/ui/why/{data.scale4}")
        shoot(page, artifacts, "why")
        page.locator("#to-diff").click()
        page.wait_for_url(f"**/ui/diff/{data.scale3}/{data.scale4}")
        assert "arguments: changed" in page.locator("#flags").inner_text()
        assert page.locator("#args-diff tbody tr").count() >= 1

        # list -> check two -> compare
        page.goto(f"{server.url}/ui/?func=total")
        page.locator(f'input[value="{data.total3}"]').check()
        page.locator(f'input[value="{data.total4}"]').check()
        page.get_by_role("button", name="Compare the two checked").click()
        page.wait_for_url("**/ui/diff/**")
        assert "output: changed" in page.locator("#flags").inner_text()
        shoot(page, artifacts, "diff")

        page.get_by_role("link", name="Stats").click()
        page.wait_for_url("**/ui/stats")
        assert page.locator("#usage tbody tr").count() == 5
        shoot(page, artifacts, "stats")

        # a filter typed in the form
        page.get_by_role("link", name="Commits").click()
        page.get_by_placeholder("hash, argument, error…").fill("valueerror")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/ui/?*q=valueerror*")
        assert page.locator("#commits tbody tr").count() == 1
        watch.check()
        ctx.close()


def test_html_and_script_in_tags_and_arguments_never_run(
    browser: Any, cache: tuple[Path, Data], artifacts: Path
) -> None:
    root, data = cache
    with serve(root) as server:
        ctx, page, watch = new_page(browser)
        for path in ("/ui/", f"/ui/commit/{data.xss}", f"/ui/commit/{data.failed}", "/ui/stats"):
            page.goto(server.url + path)
            assert page.evaluate("window.__pwned") is None
        page.goto(f"{server.url}/ui/commit/{data.xss}")
        text = page.locator("main").inner_text()
        assert XSS_TAG in text  # shown as the text it is
        assert XSS_ARG in text
        assert page.locator("main script, main img").count() == 0
        page.goto(f"{server.url}/ui/commit/{data.failed}")
        assert "<b>x</b>" in page.locator("#error").inner_text()
        shoot(page, artifacts, "escaped")
        watch.check()
        ctx.close()


def test_with_a_token_the_login_form_and_cookie(
    browser: Any, cache: tuple[Path, Data], artifacts: Path
) -> None:
    root, data = cache
    with serve(root, "--require-token", TOKEN, "--read-only") as server:
        ctx, page, watch = new_page(browser)
        page.goto(f"{server.url}/ui/commit/{data.load}")
        assert page.url.endswith("/ui/login")
        assert data.load[:12] not in page.content()
        css = ctx.request.get(f"{server.url}/ui/static/ui.css")
        assert css.status == 200
        denied = ctx.request.get(f"{server.url}/ui/stats", max_redirects=0)
        assert denied.status == 303
        page.locator('input[name="token"]').fill("wrong-token")
        page.get_by_role("button", name="Sign in").click()
        assert "not the server's token" in page.locator("main").inner_text()
        page.locator('input[name="token"]').fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/ui/")
        assert page.locator("#commits tbody tr").count() == 7
        cookie = next(c for c in ctx.cookies() if c["name"] == "cashet_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # not readable by scripts
        page.goto(f"{server.url}/ui/commit/{data.load}")
        assert page.get_by_role("button", name="Delete this commit").count() == 0  # read-only
        shoot(page, artifacts, "signed-in")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/ui/login")
        page.goto(f"{server.url}/ui/")
        assert page.url.endswith("/ui/login")
        watch.errors = [e for e in watch.errors if "401" not in e]  # the wrong token's page
        watch.check()
        ctx.close()

        # The header works as well as the cookie.
        ctx, page, watch = new_page(
            browser, extra_http_headers={"Authorization": f"Bearer {TOKEN}"}
        )
        page.goto(f"{server.url}/ui/stats")
        assert page.url.endswith("/ui/stats")
        watch.check()
        ctx.close()


def test_delete_from_a_writable_server_with_a_token(
    browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    data = populate(tmp_path / "store")
    with serve(tmp_path, "--require-token", TOKEN) as server:
        ctx, page, watch = new_page(
            browser, extra_http_headers={"Authorization": f"Bearer {TOKEN}"}
        )
        page.goto(f"{server.url}/ui/commit/{data.xss}")
        page.get_by_role("button", name="Delete this commit").click()
        page.wait_for_url("**/ui/?deleted=*")
        assert "Deleted commit" in page.locator("main").inner_text()
        assert page.locator(f'a[href="/ui/commit/{data.xss}"]').count() == 0
        page.goto(f"{server.url}/ui/stats")
        page.locator('input[name="older_than_days"]').fill("0")
        page.get_by_role("button", name="Run GC").click()
        page.wait_for_url("**/ui/stats?evicted=6")
        watch.check()
        ctx.close()


def test_async_client_serve_has_the_ui(
    browser: Any, cache: tuple[Path, Data], artifacts: Path
) -> None:
    root, data = cache
    port = free_port()
    script = (
        "import asyncio\n"
        "from cashet.async_client import AsyncClient\n"
        "async def main():\n"
        f"    async with AsyncClient({str(root / 'store')!r}) as client:\n"
        f"        await client.serve(port={port})\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except KeyboardInterrupt:\n"  # the SIGINT that stops it: a clean exit
        "    pass\n"
    )
    with serving([sys.executable, "-c", script], root, port) as server:
        ctx, page, watch = new_page(browser)
        page.goto(f"{server.url}/ui/")
        page.locator(f'#commits a[href="/ui/commit/{data.scale4}"]').click()
        page.locator("#to-lineage").click()
        page.wait_for_url(f"**/ui/lineage/{data.scale4}")
        assert page.locator("svg.lineage g.node").count() == 3
        shoot(page, artifacts, "async-lineage")
        watch.check()
        ctx.close()
