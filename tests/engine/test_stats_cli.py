"""``resistry stats``: JSON in, statistics and the decision out; bad input exits 2 in one line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from engine.stats_cli import stats_command

GOOD = {
    "arms": [
        {"name": "A", "trials": 1000, "successes": 100},
        {"name": "B", "trials": 1000, "successes": 130},
        {"name": "C", "trials": 0, "successes": 0},
    ],
    "prior": [1, 1],
    "control": "A",
}


def run(payload: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(stats_command, [], input=payload)
    return result.exit_code, result.stdout, result.stderr


def test_good_input_prints_every_statistic() -> None:
    code, out, _ = run(json.dumps(GOOD))
    assert code == 0
    result = json.loads(out)
    rows = {row["name"]: row for row in result["arms"]}
    assert set(rows["A"]) >= {
        "name",
        "p_best",
        "p_beat_control",
        "expected_loss",
        "expected_loss_relative",
        "ci95",
        "mean",
        "value_remaining95",
    }
    assert sum(row["p_best"] for row in rows.values()) == pytest.approx(1.0, abs=1e-9)
    assert rows["A"]["p_beat_control"] == 0.5
    assert rows["B"]["p_beat_control"] > 0.98
    assert rows["C"]["mean"] == 0.5 and rows["C"]["ci95"] == pytest.approx([0.025, 0.975])
    assert round(rows["A"]["mean"], 6) == round(101 / 1002, 6)
    decision = result["decision"]
    assert set(decision) == {"status", "weights", "winner", "paused", "reason"}
    assert decision["status"] == "burn_in"  # C has no sends yet
    assert decision["weights"] == {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}


def test_control_defaults_to_the_first_arm_and_prior_to_uniform() -> None:
    payload = {"arms": GOOD["arms"][:2]}
    code, out, _ = run(json.dumps(payload))
    assert code == 0
    result = json.loads(out)
    assert result["control"] == "A" and result["prior"] == [1.0, 1.0]
    assert result["decision"]["winner"] == "B"
    assert result["decision"]["reason"] == "B promoted: P(best) = 0.982 ≥ 0.95 after 2,000 sends"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"arms": [', "invalid JSON"),
        ("[]", 'expected an object with an "arms" list'),
        ('{"arms": []}', "no arms given"),
        ('{"arms": [{"name": "A", "trials": 10, "successes": 11}]}', "exceed trials"),
        ('{"arms": [{"name": "A", "trials": -1, "successes": 0}]}', "trials must be >= 0"),
        ('{"arms": [{"name": "A", "trials": "ten", "successes": 0}]}', "must be a number"),
        ('{"arms": [{"name": "A", "trials": NaN, "successes": 0}]}', "NaN"),
        ('{"arms": [{"name": "A", "trials": 1, "successes": 0}], "prior": [0, 1]}', "prior_alpha"),
        ('{"arms": [{"name": "A", "trials": 1, "successes": 0}], "control": "Z"}', "control"),
        # Finite values whose statistics overflow to NaN: refused up front, not a traceback.
        (
            '{"arms": [{"name": "A", "trials": 1, "successes": 0}], "prior": [1e308, 1e308]}',
            "2**53",
        ),
        ('{"arms": [{"name": "A", "trials": 1, "successes": 0}], "prior": [1e17, 1e17]}', "2**53"),
        ('{"arms": [{"name": "A", "trials": 1e18, "successes": 0}]}', "trials + prior"),
        ('{"arms": [{"name": "A", "trials": 1%s, "successes": 0}]}' % ("0" * 400), "too large"),
    ],
)
def test_bad_input_exits_2_with_one_line(payload: str, message: str) -> None:
    code, out, err = run(payload)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
