"""``resistry simulate``: a small real run (consistent numbers, an SVG chart, repeatable for a
seed, the configured database untouched), the plan arithmetic, and bad arguments."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.runtime import Runtime
from engine.simulate import mailing_days
from tests.conftest import make_settings

SMALL_RUN = ["simulate", "--days", "8", "--recruiters", "300", "--seed", "7"]
EXPECTED = re.compile(
    r"expected: bandit ([\d,.]+) · oracle ([\d,.]+) · test 20% evenly, then the winner ([\d,.]+)"
)


def simulate(tmp_path: Path, *args: str) -> tuple[Result, Path]:
    """Run the command with settings whose database is a file that must never appear."""
    database = tmp_path / "configured.sqlite3"
    runtime = Runtime(make_settings(f"sqlite:///{database}"))
    try:
        result = CliRunner().invoke(main, list(args), obj=runtime, catch_exceptions=False)
    finally:
        runtime.close()
    return result, database


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_a_small_run_is_consistent_and_the_same_seed_prints_the_same(tmp_path: Path) -> None:
    chart = tmp_path / "charts" / "run.svg"
    first, database = simulate(tmp_path, *SMALL_RUN, "--chart", str(chart))
    assert first.exit_code == 0, first.output
    assert not database.exists(), "the configured database must never be touched"
    out = first.stdout
    header = re.search(r"300 recruiters, (\d+) mailings, ([\d,]+) sends", out)
    assert header is not None, out
    mailings, sends = int(header[1]), number(header[2])
    assert mailings == 2  # days 1 and 8
    assert 0.9 * 300 * mailings <= sends <= 300 * mailings  # a few addresses bounce or opt out
    assert re.search(r"webhook: [\d,]+ events posted .* 0 dropped", out)

    blocks = out.split("\n\n")[1:-1]
    assert [block.split(" ", 1)[0] for block in blocks] == [
        "recruiter-subject",
        "recruiter-body",
        "share-text",
    ]
    for block in blocks[:2]:  # click metrics: the simulator models them
        assert "true best:" in block
        bandit, oracle, test_plan = (number(value) for value in EXPECTED.search(block).groups())
        assert 0 < bandit <= oracle and 0 < test_plan <= oracle
        observed = number(re.search(r"observed ([\d,]+)", block)[1])
        assert 0 < observed <= number(re.search(r": ([\d,]+) sends", block)[1])
        # what the webhook credited is close to what the true rates make likely
        assert abs(observed - bandit) < 5 * np.sqrt(bandit) + 1
    assert "expected values not computed" in blocks[2]  # signups happen on the landing site
    assert "true best: friends-brought" in blocks[0]
    assert "true best: progress-story" in blocks[1]

    svg = chart.read_text()
    assert svg.startswith("<?xml") and "<svg" in svg
    assert "Allocation share per day" in svg and "friends-brought" in svg

    second, _ = simulate(tmp_path, *SMALL_RUN, "--chart", str(chart))
    assert second.exit_code == 0, second.output
    assert second.stdout == out
    assert chart.read_text() == svg

    other_seed, _ = simulate(tmp_path, *SMALL_RUN[:-1], "8", "--chart", str(chart))
    assert other_seed.stdout != out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "Invalid value for '--days'"),
        (["--days", "many"], "'many' is not a valid integer"),
        (["--recruiters", "0"], "Invalid value for '--recruiters'"),
        (["--mailings-per-week", "8"], "Invalid value for '--mailings-per-week'"),
        (["--seed", "-1"], "Invalid value for '--seed'"),
        (["--chart", "out.txt"], "the chart must be a .svg or .png file"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    result, database = simulate(tmp_path, "simulate", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not database.exists()


def test_mailings_are_spread_evenly_over_each_week() -> None:
    assert mailing_days(30, 1) == [0, 7, 14, 21, 28]
    assert mailing_days(8, 3) == [0, 2, 4, 7]
    assert mailing_days(3, 7) == [0, 1, 2]


def test_a_one_day_run_draws_a_png(tmp_path: Path) -> None:
    chart = tmp_path / "one-day.png"
    result, _ = simulate(
        tmp_path, "simulate", "--days", "1", "--recruiters", "20", "--chart", str(chart)
    )
    assert result.exit_code == 0, result.output
    assert "simulated 1 day from 2026-09-01" in result.stdout
    assert "20 recruiters, 1 mailing, " in result.stdout
    assert chart.read_bytes().startswith(b"\x89PNG\r\n")
