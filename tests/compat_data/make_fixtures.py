"""Make the published-cashet fixtures that tests/test_compat*.py open (issue 12).

Run once per published version, with that version's Python, in a throwaway venv::

    python3 -m venv /tmp/c043 && /tmp/c043/bin/pip install "cashet==0.4.3"
    /tmp/c043/bin/python tests/compat_data/make_fixtures.py tests/compat_data/v0.4.3

It writes ``<out>/store.tar.gz`` (a whole ``.cashet`` directory: SQLite ``meta.db`` and
``objects/``) and ``<out>/export.tar.gz`` (what ``client.export`` makes), plus
``<out>/expected.json``: what each commit should load to. Only the published public API is
used; nothing of its code is copied here.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path


def double(x):
    return x * 2


def add(a, b=1):
    return a + b


def big_list(n):
    return list(range(n))


def fails(x):
    raise ValueError(f"bad {x}")


def main(out: Path) -> None:
    from cashet import Client

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        client = Client(store_dir=".cashet")
        expected = {}
        r1 = client.submit(double, 21, _tags={"team": "ml", "run": "1"})
        r2 = client.submit(add, r1, b=8)  # a chained step: its input is r1's result
        r3 = client.submit(big_list, 5000)  # a result large enough to be a blob file
        r4 = client.submit(add, 1)
        for name, ref in {"double": r1, "add_chained": r2, "big_list": r3, "add": r4}.items():
            expected[name] = {
                "commit": ref.commit_hash,
                "blob": ref.hash,
                "value": ref.load() if name != "big_list" else {"len": 5000, "last": 4999},
            }
        try:
            client.submit(fails, 3)
        except Exception as exc:  # a failed commit, recorded with its error
            expected["fails"] = {"error": type(exc).__name__}
        client.export(str(out / "export.tar.gz"))
        with tarfile.open(out / "store.tar.gz", "w:gz") as tar:
            tar.add(".cashet", arcname=".cashet")
    (out / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
