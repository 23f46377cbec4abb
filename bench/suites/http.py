"""HTTP suite: requests per second of the server against a bare Starlette endpoint.

Each scenario starts two uvicorn processes on free loopback ports (127.0.0.1 only): the
cashet app (``cashet.server.app.create_app``, with a token and one registered task) and a bare
Starlette app whose endpoint returns the very JSON body the cashet endpoint returned. Both
run with the same uvicorn settings (one worker, no access log). A load generator then
alternates between the two for a few bounded rounds: ``wrk`` when installed, else a
bounded asyncio httpx loop in a separate process (noted: it saturates before the server
does, so it understates the gap). Results are per request (1 / rate); the target is the
rate as a share of the bare endpoint's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _context import Context
from _harness import Outcome, Unavailable, suite, throughput

http = suite("http", "HTTP server throughput vs a bare Starlette endpoint (loopback)")

TOKEN = "bench-token-0123456789"
CONNECTIONS = 16
ROUNDS = (6, 1)  # (full, quick): alternating, so drift hits both alike
SECONDS = (2, 1)
STARTUP_TIMEOUT_S = 30.0

_SERVER = r"""
import json, sys
import uvicorn
kind, port, arg, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if kind == "cashet":
    from cashet import Client
    from cashet.server.app import create_app

    def double(x):
        return x * 2

    app = create_app(Client(store_dir=arg), require_token=token, tasks={"double": double})
else:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    with open(arg, encoding="utf-8") as f:
        bodies = json.load(f)

    async def commit(request):
        return JSONResponse(bodies["commit"])

    async def submit(request):
        await request.body()
        return JSONResponse(bodies["submit"])

    app = Starlette(routes=[
        Route("/commit/{hash}", commit),
        Route("/submit", submit, methods=["POST"]),
    ])
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""

_LOADGEN = r"""
import asyncio, json, sys, time
import httpx
url, method, body, token, conns, seconds = sys.argv[1:7]
conns, seconds = int(conns), float(seconds)
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}

async def worker(client, deadline, counts):
    while time.perf_counter() < deadline:
        r = await client.request(method, url, content=body or None, headers=headers)
        counts[0 if r.status_code == 200 else 1] += 1

async def main():
    counts = [0, 0]
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(*(worker(client, deadline, counts) for _ in range(conns)))
        took = time.perf_counter() - t0
    print(json.dumps({"rps": counts[0] / took, "errors": counts[1]}))

asyncio.run(main())
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("server did not start in time")


@contextmanager
def _server(kind: str, arg: str) -> Iterator[int]:
    port = _free_port()
    cmd = [sys.executable, "-c", _SERVER, kind, str(port), arg, TOKEN]
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "1", *cmd]  # the load generator gets CPU 0
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _load(url: str, method: str, body: str, seconds: int, workdir: Path) -> tuple[float, str]:
    """Requests per second against ``url`` for ``seconds``, and the tool used."""
    wrk = shutil.which("wrk")
    if wrk:
        script = workdir / "request.lua"
        lua_body = json.dumps(body)  # a JSON string literal is a valid Lua string literal
        script.write_text(
            f'wrk.method = "{method}"\n'
            f"wrk.body = {lua_body}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n',
            encoding="utf-8",
        )
        cmd = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url]
        if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
            cmd = ["taskset", "-c", "0", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
        if re.search(r"Non-2xx or 3xx responses: [1-9]", out):
            raise RuntimeError(f"non-2xx responses from {url}")
        match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
        if match is None:
            raise RuntimeError(f"wrk printed no rate: {out[-500:]}")
        return float(match.group(1)), f"wrk -t1 -c{CONNECTIONS}"
    cmd = [
        sys.executable, "-c", _LOADGEN, url, method, body, TOKEN, str(CONNECTIONS), str(seconds)
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    data = json.loads(proc.stdout)
    if data["errors"]:
        raise RuntimeError(f"{data['errors']} failed requests to {url}")
    return float(data["rps"]), f"httpx asyncio loop, {CONNECTIONS} connections (no wrk)"


def _prepare(ctx: Context, store: Path) -> tuple[str, dict[str, Any], str]:
    """Fill the store through the server once; return the commit hash, bodies, submit JSON."""
    import httpx

    submit_body = json.dumps({"task": "double", "args": [21]})
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with _server("cashet", str(store)) as port:
        base = f"http://127.0.0.1:{port}"
        first = httpx.post(f"{base}/submit", content=submit_body, headers=headers).json()
        submitted = httpx.post(f"{base}/submit", content=submit_body, headers=headers).json()
        commit = httpx.get(f"{base}/commit/{first['commit_hash']}", headers=headers).json()
    if not submitted.get("cached"):
        raise RuntimeError("the second submit was not a cache hit")
    return first["commit_hash"], {"commit": commit, "submit": submitted}, submit_body


def _measure(ctx: Context, method: str, path_of: str) -> dict[str, Outcome]:
    ctx.require("starlette")
    ctx.require("uvicorn")
    ctx.require("httpx")
    ctx.ours()  # Unavailable until the Client lands
    work = ctx.tmpdir("http")
    store = work / "store"
    commit_hash, bodies, submit_body = _prepare(ctx, store)
    bodies_file = work / "bodies.json"
    bodies_file.write_text(json.dumps(bodies), encoding="utf-8")
    path = f"/commit/{commit_hash}" if path_of == "commit" else "/submit"
    body = "" if method == "GET" else submit_body
    seconds, rounds = ctx.cfg.pick(*SECONDS), ctx.cfg.pick(*ROUNDS)
    rates: dict[str, list[float]] = {"ours": [], "baseline": []}
    tool = ""
    with (
        _server("cashet", str(store)) as ours_port,
        _server("bare", str(bodies_file)) as bare_port,
    ):
        ports = {"ours": ours_port, "baseline": bare_port}
        for port in ports.values():  # warm both up
            _load(f"http://127.0.0.1:{port}{path}", method, body, 1, work)
        for _ in range(rounds):
            for name, port in ports.items():
                rps, tool = _load(f"http://127.0.0.1:{port}{path}", method, body, seconds, work)
                rates[name].append(rps)
    ctx.note(f"{tool}, {rounds} x {seconds} s per server, alternating; loopback 127.0.0.1")
    out: dict[str, Outcome] = {}
    for name, rps_list in rates.items():
        outcome = Outcome.from_samples([1e9 / r for r in rps_list])
        outcome.extra["rps"] = [round(r) for r in rps_list]
        outcome.note = f"{sorted(rps_list)[len(rps_list) // 2]:.0f} req/s"
        out[name] = outcome
    return out


def _guarded(ctx: Context, method: str, path_of: str) -> dict[str, Outcome]:
    try:
        return _measure(ctx, method, path_of)
    except Unavailable as exc:
        return {
            "ours": Outcome.unavailable(str(exc)),
            "baseline": Outcome.unavailable(str(exc)),
        }
    except Exception as exc:
        return {"ours": ctx.failed("ours", exc)}


def paired_ratios(results: dict[str, Outcome]) -> None:
    """Note the per-round ratios: neighbours in time share the machine's load."""
    ours, bare = results.get("ours"), results.get("baseline")
    if ours is None or bare is None or not (ours.ok and bare.ok):
        return
    pairs = sorted(o / b for o, b in zip(ours.extra["rps"], bare.extra["rps"], strict=True))
    best = max(ours.extra["rps"]) / max(bare.extra["rps"])
    ours.extra["paired_ratio_median"] = round(pairs[len(pairs) // 2], 3)
    ours.extra["best_round_ratio"] = round(best, 3)
    ours.note = (
        f"{ours.note}; paired rounds: median {pairs[len(pairs) // 2]:.0%} of bare, "
        f"best rounds: {best:.0%}"
    )


@http.scenario(
    "http_get_commit",
    "GET /commit/{hash}: requests/s vs bare Starlette",
    targets=[throughput("baseline", 50)],
    baseline="bare Starlette",
    annotate=paired_ratios,
)
def http_get_commit(ctx: Context) -> dict[str, Outcome]:
    return _guarded(ctx, "GET", "commit")


@http.scenario(
    "http_submit_cached",
    "cached POST /submit: requests/s vs bare Starlette",
    targets=[throughput("baseline", 50)],
    baseline="bare Starlette",
    annotate=paired_ratios,
)
def http_submit_cached(ctx: Context) -> dict[str, Outcome]:
    return _guarded(ctx, "POST", "submit")


__all__ = ["http"]
