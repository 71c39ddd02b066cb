"""The landing benchmark runs end to end: the production server, both routes, every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import common
from bench import landing as landing_bench
from bench.landing_load import Run


def test_landing_bench_measures_both_routes_without_failures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    arguments = ["--quick", "--seconds", "1", "--warmup", "0.5"]
    assert landing_bench.main(arguments) == 0
    figures = {row["name"]: row for row in json.loads((tmp_path / "landing.json").read_text())}
    assert figures["failed requests"]["value"] == 0
    assert figures["hello-world rps"]["value"] > 0 and figures["landing GET / rps"]["value"] > 0
    assert figures["server CPU per landing view"]["value"] > 0
    ratio = figures["landing GET / rps"]["value"] / figures["hello-world rps"]["value"]
    assert figures["landing/hello rps ratio"]["value"] == pytest.approx(ratio)


def test_the_ratio_is_the_median_of_each_rounds_ratio() -> None:
    def runs(*rates: float) -> landing_bench.Measured:
        return landing_bench.Measured([Run(int(rate), 1.0, 1.0, 2.0, 0, 0.1) for rate in rates])

    # Round 2 ran while the machine was slow for both routes: it must not decide the ratio.
    hello, landing = runs(1000, 400, 1000), runs(600, 300, 650)
    figures = {
        f.name: f for f in landing_bench.figures_of({"hello": hello, "landing": landing}, None, "")
    }
    assert figures["landing/hello rps ratio"].value == pytest.approx(0.65)
