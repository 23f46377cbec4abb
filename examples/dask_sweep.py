"""A hyperparameter sweep on a Dask LocalCluster, cached by cashet.

Needs only the extra: ``pip install "cashet[dask]"``. The first run ships every call to the
cluster's worker processes; the second finds every call in the cache on this process and
sends nothing to the cluster.

    python examples/dask_sweep.py
"""

from __future__ import annotations

import math
import tempfile
import time

from distributed import Client as DaskClient
from distributed import LocalCluster

from cashet import Client
from cashet.executor import DaskExecutor


def train(learning_rate: float, depth: int) -> float:
    """Stand-in for a training run: a loss, after a little work."""
    time.sleep(0.05)
    return round((math.log10(learning_rate) + 2) ** 2 + (depth - 4) ** 2 / 10, 4)


def sweep(client: Client) -> list[tuple[float, int, float]]:
    grid = [(lr, depth) for lr in (0.001, 0.01, 0.1) for depth in (2, 4, 6, 8)]
    refs = client.submit_many([(train, (lr, depth)) for lr, depth in grid], max_workers=8)
    return [(lr, depth, ref.load()) for (lr, depth), ref in zip(grid, refs, strict=True)]


def main() -> None:
    store_dir = tempfile.mkdtemp(prefix="cashet-dask-sweep-")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        DaskClient(cluster) as dask,
        Client(store_dir=store_dir, executor=DaskExecutor(dask)) as client,
    ):
        for run in ("first run (on the cluster)", "second run (all cached)"):
            start = time.perf_counter()
            results = sweep(client)
            took = time.perf_counter() - start
            best = min(results, key=lambda r: r[2])
            print(f"{run}: {len(results)} calls in {took:.2f} s; best lr={best[0]} depth={best[1]}")


if __name__ == "__main__":
    main()
