"""``make bench``: run every benchmark, then print one table of all figures and targets.

Each benchmark is a script in this folder that writes ``results/<name>.json`` through
``bench.common.emit``. Pass ``--quick`` to run them in their smoke mode.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BENCHMARKS = ["stats", "regret", "landing", "ingest", "send", "reports"]

sys.path.insert(0, str(ROOT))
from bench.common import RESULTS_DIR, Figure, print_table  # noqa: E402


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    chosen = [name for name in argv if not name.startswith("-")] or BENCHMARKS
    failures: list[str] = []
    for name in chosen:
        script = BENCH_DIR / f"{name}.py"
        if not script.exists():
            failures.append(f"{name}: no such benchmark")
            continue
        (RESULTS_DIR / f"{name}.json").unlink(missing_ok=True)
        started = time.monotonic()
        command = [sys.executable, str(script), *(["--quick"] if quick else [])]
        code = subprocess.call(command, cwd=ROOT)
        print(f"[{name}: exit {code} after {time.monotonic() - started:.0f} s]", flush=True)
        if code != 0:
            failures.append(f"{name}: exit code {code}")
    figures: list[Figure] = []
    for name in chosen:
        path = RESULTS_DIR / f"{name}.json"
        if path.exists():
            for row in json.loads(path.read_text()):
                row["name"] = f"{name}: {row['name']}"
                figures.append(Figure(**row))
    print_table("all benchmarks", figures)
    missed = [f.name for f in figures if not f.passed]
    print(f"\n{len(figures) - len(missed)} of {len(figures)} figures meet their targets")
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
