"""The arithmetic behind a simulation's verdict (pure: NumPy only).

Expected conversions of three plans on the same sends — the bandit's allocation, an oracle that
always sends the true best variant, and "test evenly on the first 20 % of sends, then send the
test's winner" — and the chance that a delivered email reaches a metric under the simulator's
model of recipients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.simulator.truth import Rates

TEST_SHARE = 0.2  # the share of sends the "test evenly, then send the winner" plan tests on
WINNER_DRAWS = 20_000  # draws estimating who wins that plan's test


@dataclass(frozen=True)
class PlanValues:
    """Expected conversions of the three plans on the same sends."""

    bandit: float
    oracle: float
    test_then_winner: float


def metric_rate(rates: Rates, metric: str) -> float | None:
    """The chance that a delivered email reaches ``metric`` (None when not modelled).

    Every human clicker also opens, so a person opens with probability max(open, click).
    """
    if metric == "click":
        return rates.click
    if metric == "open":
        return max(rates.open, rates.click)
    return None


def plan_values(chances: np.ndarray, assigned: np.ndarray, rng: np.random.Generator) -> PlanValues:
    """Expected conversions of the three plans.

    ``chances[s, j]``: expected conversions of send ``s`` (in send order) under variant ``j``;
    ``assigned[s]``: the variant the bandit gave it. The test plan gives its first
    ``TEST_SHARE`` of sends to the variants in turn, then every later send to the test's winner:
    the arm with the most conversions, drawn ``WINNER_DRAWS`` times from binomials of its test
    sends and mean chance, ties broken at random.
    """
    sends, arms = chances.shape
    if sends == 0 or arms == 0:
        return PlanValues(0.0, 0.0, 0.0)
    bandit = float(chances[np.arange(sends), assigned].sum())
    oracle = float(chances.max(axis=1).sum())
    tested = min(sends, int(np.ceil(TEST_SHARE * sends)))
    turn = np.arange(tested) % arms
    test_value = float(chances[np.arange(tested), turn].sum())
    counts = np.bincount(turn, minlength=arms)
    means = np.bincount(turn, weights=chances[np.arange(tested), turn], minlength=arms)
    means = np.divide(means, counts, out=np.zeros(arms), where=counts > 0)
    conversions = rng.binomial(counts, means, size=(WINNER_DRAWS, arms)).astype(float)
    conversions += rng.random((WINNER_DRAWS, arms)) * 0.5  # breaks ties uniformly
    wins = np.bincount(conversions.argmax(axis=1), minlength=arms) / WINNER_DRAWS
    after = float((chances[tested:] @ wins).sum())
    return PlanValues(bandit, oracle, test_value + after)
