"""The functions and data every peer caches: one definition, so every peer hashes the same code.

Standard library at import; NumPy and pandas only inside the data builders. Imported as the
top-level module ``_workloads`` both by ``bench/run.py`` and by ``peer_*.py`` scripts running
in other venvs.
"""

from __future__ import annotations

from typing import Any


def f(x):
    return x + 1


def trivial(i):
    return i


def nap(i):
    """A 50 ms task (the cluster suite's sweeps): sleeps, returns ``i``."""
    import time

    time.sleep(0.05)
    return i


def first_value(a):
    return float(a[0])


def middle_value(a):
    return float(a[len(a) // 2])


def frame_rows(df):
    return len(df)


def fill(i):
    return i


#: What ``produce_result`` returns, set by the scenario before it runs (no compute: the
#: result-size scenarios measure storing and loading, not the function).
RESULT: list[Any] = [None]


def produce_result(i):
    return RESULT[0]


# A value the task reads is in its key (issue 11): RESULT is how the scenario hands over the
# payload, not an input, so it is opted out (``cashet.hashing.ignore`` sets this attribute;
# set directly, the module still imports where that function does not exist: other peers).
produce_result.__cashet_ignore__ = ("RESULT",)  # type: ignore[attr-defined]

#: A module constant and a 20-key config dict, read by ``scaled_by_config`` (both are in its
#: key: the constant hashed once, the dict on every call since it can change in place).
SCALE = 3
CONFIG = {f"key{i}": i for i in range(20)}


def scaled_by_config(x):
    return x * SCALE + CONFIG["key7"]


#: The 100 MiB NumPy global ``reads_big_global`` reads, set by the scenario before it runs.
BIG_GLOBAL: Any = None


def reads_big_global(i):
    return float(BIG_GLOBAL[i])


# The README's Quick Start pipeline.
def load_dataset(path):
    return list(range(100))


def normalize(data):
    max_val = max(data)
    return [x / max_val for x in data]


def train_model(data, lr=0.01):
    return {"loss": 0.05, "lr": lr, "samples": len(data)}


def run_pipeline(client):
    """Submit load -> normalize -> train and load the model (a re-run when cached)."""
    raw = client.submit(load_dataset, "data/train.csv")
    normalized = client.submit(normalize, raw)
    model = client.submit(train_model, normalized, lr=0.001)
    return model.load()


# --- data -----------------------------------------------------------------------------------


def make_array(nbytes: int) -> Any:
    """A float64 array of ``nbytes`` bytes of random data (seeded: the same every run)."""
    import numpy as np

    return np.random.default_rng(0).random(nbytes // 8)


def make_frame(rows: int) -> Any:
    """Nine numeric columns (6 float64, 3 int64) and one column of short strings."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    cols: dict[str, Any] = {f"x{i}": rng.random(rows) for i in range(6)}
    cols |= {f"n{i}": rng.integers(0, 1 << 40, rows) for i in range(3)}
    cols["label"] = [f"s{i % 1000}" for i in range(rows)]
    return pd.DataFrame(cols)


def frame_data_bytes(df: Any) -> int:
    """Bytes of the frame's data: numeric buffers plus UTF-8 string contents."""
    total = 0
    for name in df.columns:
        col = df[name]
        if col.dtype.kind in "biufc":
            total += col.to_numpy().nbytes
        else:
            total += sum(len(str(v).encode()) for v in col)
    return total
