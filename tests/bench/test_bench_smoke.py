"""The benchmarks run end to end in their --quick mode (a few seconds each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import common
from bench import regret as regret_bench
from bench import stats as stats_bench


@pytest.fixture(autouse=True)
def results_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the full runs' bench/results/*.json; write the smoke results elsewhere."""
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)


def test_stats_bench_quick(tmp_path: Path) -> None:
    figures = stats_bench.main(["--quick"])
    accuracy = [f for f in figures if "error" in f.name or "sum" in f.name]
    assert accuracy and all(f.passed for f in accuracy)
    assert (tmp_path / "stats.json").exists()


def test_regret_bench_quick(tmp_path: Path) -> None:
    figures = regret_bench.main(["--quick", "--processes", "1"])
    names = {f.name for f in figures}
    assert (
        "4/5/6% 100k ratio policy/ttw" in names and "10/11% 20k delayed ratio policy/ttw" in names
    )
    assert (tmp_path / "regret.json").exists()
