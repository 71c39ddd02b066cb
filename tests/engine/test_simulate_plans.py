"""The arithmetic of a simulation's verdict: plans valued on the same sends, metric rates."""

from __future__ import annotations

import numpy as np
import pytest

from engine.simulate_plans import metric_rate, plan_values
from engine.simulator.truth import Rates


def test_the_plans_are_valued_on_the_same_sends() -> None:
    # Variant 1 always converts, variant 0 never; the bandit alternated.
    chances = np.tile([0.0, 1.0], (10, 1))
    values = plan_values(chances, np.arange(10) % 2, np.random.default_rng(0))
    assert values.bandit == 5.0
    assert values.oracle == 10.0
    # test on 2 sends (one each: 0 + 1), then the test's certain winner on the other 8
    assert values.test_then_winner == 9.0


def test_a_tied_test_picks_either_winner_half_the_time() -> None:
    # The test sends (the first 2) cannot tell the arms apart; afterwards only arm 1 converts.
    chances = np.array([[0.5, 0.5]] * 2 + [[0.0, 1.0]] * 8)
    values = plan_values(chances, np.ones(10, dtype=int), np.random.default_rng(3))
    assert values.bandit == values.oracle == 9.0
    assert values.test_then_winner == pytest.approx(1.0 + 8 * 0.5, abs=0.1)


def test_metric_rates_follow_the_simulator_model() -> None:
    rates = Rates(open=0.2, click=0.03)
    assert metric_rate(rates, "click") == 0.03
    assert metric_rate(rates, "open") == 0.2
    assert metric_rate(Rates(open=0.01, click=0.03), "open") == 0.03  # every clicker opens
    assert metric_rate(rates, "signup") is None
