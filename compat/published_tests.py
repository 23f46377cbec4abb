"""Run the published cashet's own public-API tests against this project (``make compat``).

Downloads the published sdist (``cashet==VERSION``, default 0.5.0) into a throwaway folder,
keeps the test files whose ``cashet`` imports are all public paths (the spec's, plus the
modules users import for types: ``models``, ``serializers``, ``client``, ``cli``,
``server``), and runs them with pytest on this interpreter, where ``cashet`` is this
project. Prints the pass rate and every failing test; writes the list as JSON beside the
bench results. Nothing of the published package is kept or vendored: the folder is deleted.

Usage: python compat/published_tests.py [--version 0.5.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {
    "cashet",
    "cashet.async_client",
    "cashet.executor",
    "cashet.hashing",
    "cashet.protocols",
    "cashet.redis_store",
    "cashet.store",
    "cashet.serializers",
    "cashet.models",
    "cashet.client",
    "cashet.cli",
    "cashet.server",
}


def cashet_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cashet"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cashet")}
    return found


def fetch(version: str, into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(into),
            f"cashet=={version}",
        ],
        check=True,
    )
    (sdist,) = into.glob(f"cashet-{version}.tar.gz")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/" in m.name and m.isfile()]
        tar.extractall(into, members=members, filter="data")
    return into / f"cashet-{version}" / "tests"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="0.5.0")
    parser.add_argument("--keep", type=Path, help="extract here and keep it (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        tests = fetch(args.version, folder)
        chosen, skipped = [], {}
        for path in sorted(tests.glob("test_*.py")):
            private = sorted(m for m in cashet_imports(path) if m not in PUBLIC)
            if private:
                skipped[path.name] = private
            else:
                chosen.append(path.name)
        for name, private in skipped.items():
            print(f"compat: not run: {name} imports private {', '.join(private)}")
        report = tests / "report.txt"
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"),
                *("-o", "addopts=", "-o", "asyncio_mode=auto", "-W", "ignore"),
                *("--rootdir", str(tests.parent), "--timeout", "120"),
                *("--continue-on-collection-errors", *chosen),
            ],
            cwd=tests,
            capture_output=True,
            text=True,
        )
        report.write_text(proc.stdout + proc.stderr)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error|errors)", summary)}
        passed = counts.get("passed", 0)
        failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
        failures = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)))
        for line in failures:
            print(f"compat: fails: {line}")
        total = passed + failed
        rate = passed / total if total else 0.0
        print(
            f"compat: cashet {args.version} public-API tests ({len(chosen)} files): "
            f"{passed} passed, {failed} failed ({rate:.0%})"
        )
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"compat-{args.version}.json").write_text(
            json.dumps(
                {
                    "version": args.version,
                    "files": chosen,
                    "not_run": skipped,
                    "passed": passed,
                    "failed": failed,
                    "failures": failures,
                },
                indent=2,
            )
            + "\n"
        )
        return 0 if rate >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
