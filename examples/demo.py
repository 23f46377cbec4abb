"""A small real pipeline, run twice in two separate processes on the embedded SQLite store.

The first process computes every step; the second gets every step from the cache. Then the
script changes one step's source and shows that only that step and the ones after it rerun.

    make demo            # or: python examples/demo.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PIPELINE = '''
import math
import random
import sys
import time

from cashet import Client, TaskRef


def load_dataset(n_rows, seed):
    """Simulate an expensive extract: synthetic (x, y) points on a noisy line."""
    time.sleep(0.4)
    rng = random.Random(seed)
    xs = [rng.uniform(0, 10) for _ in range(n_rows)]
    return [(x, 3.0 * x + 7.0 + rng.gauss(0, 2.0)) for x in xs]


def normalize(rows):
    time.sleep(0.2)
    xs = [x for x, _ in rows]
    lo, hi = min(xs), max(xs)
    return [((x - lo) / (hi - lo), y) for x, y in rows]


def fit_line(rows, epochs, lr):
    """Plain gradient descent: the 'training' step."""
    w = b = 0.0
    n = len(rows)
    for _ in range(epochs):
        gw = sum((w * x + b - y) * x for x, y in rows) * 2 / n
        gb = sum((w * x + b - y) for x, y in rows) * 2 / n
        w, b = w - lr * gw, b - lr * gb
    return {"w": w, "b": b}


def evaluate(rows, model):
    err = [(model["w"] * x + model["b"] - y) ** 2 for x, y in rows]
    return {"rmse": math.sqrt(sum(err) / len(err)), **model}


client = Client()
timings = []
t0 = time.perf_counter()
raw = client.submit(load_dataset, 20_000, seed=42)
timings.append(("load_dataset", time.perf_counter() - t0, raw))
t0 = time.perf_counter()
clean = client.submit(normalize, raw)
timings.append(("normalize", time.perf_counter() - t0, clean))
sweep = client.submit_many(
    {
        f"fit lr={lr}": (fit_line, (clean, 300, lr))
        for lr in (0.05, 0.1, 0.5)
    }
)
for name, ref in sweep.items():
    timings.append((name, 0.0 if ref.cached else ref.commit.compute_seconds or 0.0, ref))
best = min(sweep.values(), key=lambda r: evaluate(clean.load(), r.load())["rmse"])
t0 = time.perf_counter()
report = client.submit(evaluate, clean, best)
timings.append(("evaluate", time.perf_counter() - t0, report))

for name, seconds, ref in timings:
    how = "cache hit" if ref.cached else "ran      "
    print(f"  {name:<16} {how} {seconds * 1000:9.1f} ms   commit {ref.commit_hash[:12]}")
result = report.load()
print(f"  best model: w={result['w']:.3f} b={result['b']:.3f} rmse={result['rmse']:.3f}")
client.close()
'''


def run(label: str, script: Path, env: dict[str, str]) -> float:
    print(f"\n{label}")
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script)], check=True, env=env)
    elapsed = time.perf_counter() - start
    print(f"  -> whole process: {elapsed:.2f} s")
    return elapsed


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cashet-demo-") as tmp:
        script = Path(tmp) / "pipeline.py"
        script.write_text(textwrap.dedent(PIPELINE))
        env = dict(os.environ, CASHET_DIR=str(Path(tmp) / ".cashet"))
        first = run("Run 1 (fresh store: every step computes)", script, env)
        second = run("Run 2 (new process, same store: every step is a cache hit)", script, env)
        script.write_text(textwrap.dedent(PIPELINE).replace("/ (hi - lo)", "/ (hi - lo + 1e-9)"))
        third = run(
            "Run 3 (normalize() edited: it and the steps after it rerun, load_dataset hits)",
            script,
            env,
        )
        print(f"\nrun 1 {first:.2f} s, run 2 {second:.2f} s, run 3 {third:.2f} s")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from cashet import Client; "
                "import json; print('stats:', json.dumps(Client().stats()))",
            ],
            check=True,
            env=env,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
