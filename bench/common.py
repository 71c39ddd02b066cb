"""Shared helpers for the benchmarks: one result row format, one table printer.

Every benchmark prints its own table and writes ``bench/results/<name>.json`` so that
``bench/run_all.py`` can print the one table ``make bench`` shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Figure:
    """One measured figure, its target, and whether the target was met."""

    name: str
    value: float
    unit: str
    target: str
    passed: bool
    note: str = ""


def emit(benchmark: str, figures: list[Figure]) -> None:
    """Print the figures as a table and store them for the suite summary."""
    print_table(benchmark, figures)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}.json"
    path.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")


def print_table(benchmark: str, figures: list[Figure]) -> None:
    width = max((len(f.name) for f in figures), default=10)
    print(f"\n== {benchmark}")
    print(f"{'figure':<{width}}  {'value':>14}  {'target':<18} ok")
    for f in figures:
        value = f"{f.value:,.6g} {f.unit}".strip()
        mark = "yes" if f.passed else "NO"
        note = f"  ({f.note})" if f.note else ""
        print(f"{f.name:<{width}}  {value:>14}  {f.target:<18} {mark}{note}")


def serve_bench_app(build: Callable[[], Any], description: str, argv: list[str]) -> int:
    """Serve a benchmark's app exactly as ``resistry serve`` serves production (same gunicorn
    options), with the benchmark's extra routes added by ``build``."""
    import argparse

    from engine.server import serve
    from engine.settings import load_settings

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    serve(load_settings(), host=args.host, port=args.port, workers=args.workers, build=build)
    return 0
