"""engine.policy: Thompson weights with floors, batch assignment, and every branch of decide."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import stats
from engine.policy import ArmCounts, Decision, PolicyConfig, assign_batch, decide, thompson_weights


def arms(*counts: tuple[float, float], **extra: dict) -> list[ArmCounts]:
    return [
        ArmCounts(chr(65 + i), n, s, **extra.get(chr(65 + i), {}))
        for i, (n, s) in enumerate(counts)
    ]


# -- thompson_weights ---------------------------------------------------------------------


def test_weights_without_floor_are_p_best() -> None:
    alpha, beta = [11, 16], [91, 86]
    np.testing.assert_allclose(thompson_weights(alpha, beta), stats.p_best(alpha, beta), atol=1e-15)


def test_floor_lifts_every_live_arm_and_rescales_the_rest() -> None:
    alpha, beta = stats.posterior([5_000, 5_000, 5_000], [200, 250, 300])
    weights = thompson_weights(alpha, beta, floor=0.05)
    p = stats.p_best(alpha, beta)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert weights[0] == 0.05 and weights[1] == 0.05  # both were below the floor
    assert weights[2] == pytest.approx(0.9)
    assert p[0] < 0.05 and p[1] < 0.05


def test_paused_arms_get_nothing_and_unfloored_arms_no_floor() -> None:
    alpha, beta = stats.posterior([5_000, 5_000, 5_000], [200, 250, 300])
    weights = thompson_weights(alpha, beta, floor=0.05, live=[True, False, True])
    assert weights[1] == 0.0 and weights[0] == 0.05
    weights = thompson_weights(alpha, beta, floor=0.05, floored=[False, True, True])
    assert weights[0] < 1e-5 and weights[1] == 0.05


def test_a_floor_too_high_for_the_arms_becomes_an_even_split() -> None:
    weights = thompson_weights([1, 1, 9], [9, 9, 1], floor=0.4)
    np.testing.assert_allclose(weights, 1 / 3)


@pytest.mark.parametrize(
    "kwargs", [{"floor": 1.0}, {"floor": -0.1}, {"live": [False, False]}, {"live": [True]}]
)
def test_weights_reject_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        thompson_weights([1, 1], [1, 1], **kwargs)


# -- assign_batch -------------------------------------------------------------------------


def test_assignment_follows_weights_and_keeps_floors() -> None:
    weights = np.array([0.05, 0.0, 0.6234, 0.3266])
    units = assign_batch(weights, 1_000, np.random.default_rng(0))
    counts = np.bincount(units, minlength=4)
    assert units.shape == (1_000,) and counts.sum() == 1_000
    assert counts[1] == 0
    assert counts[0] == 50
    assert all(abs(counts - weights * 1_000) < 1)
    assert (np.diff(units) != 0).sum() > 300  # shuffled, not in blocks


def test_assignment_is_seeded_and_unbiased() -> None:
    weights = [1 / 3, 1 / 3, 1 / 3]
    first = assign_batch(weights, 1_000, np.random.default_rng(5))
    assert first.tolist() == assign_batch(weights, 1_000, np.random.default_rng(5)).tolist()
    # 1,000 / 3 leaves one unit over: it goes to each arm a third of the time.
    rng = np.random.default_rng(6)
    extra = np.array(
        [np.bincount(assign_batch(weights, 1_000, rng), minlength=3) for _ in range(600)]
    )
    assert set(extra.ravel()) == {333, 334}
    np.testing.assert_allclose((extra == 334).mean(axis=0), 1 / 3, atol=0.07)


def test_assigning_a_million_units() -> None:
    units = assign_batch([0.01, 0.99], 1_000_000, np.random.default_rng(1))
    assert np.bincount(units).tolist() == [10_000, 990_000]


@pytest.mark.parametrize(
    ("weights", "n"), [([0, 0], 10), ([1, -1], 10), ([np.nan, 1], 10), ([1], -1), ([1], 2.5)]
)
def test_assignment_rejects_bad_arguments(weights: list[float], n: float) -> None:
    with pytest.raises(ValueError):
        assign_batch(weights, n, np.random.default_rng(0))  # type: ignore[arg-type]


# -- decide -------------------------------------------------------------------------------


def test_burn_in_splits_evenly_over_live_arms() -> None:
    decision = decide(arms((700, 60), (700, 10), (400, 40), (700, 5), D={"paused": True}))
    assert decision.status == "burn_in"
    assert decision.weights == {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3, "D": 0.0}
    assert decision.winner is None and decision.paused == ("D",)
    assert (
        decision.reason == "burn-in: 3 live arms split evenly until each has 600 sends (C has 400)"
    )


def test_burn_in_counts_raw_sends_when_given() -> None:
    counts = [ArmCounts("A", 300, 20, sends=1_000), ArmCounts("B", 300, 10, sends=1_000)]
    assert decide(counts).status != "burn_in"


def test_promotion_when_p_best_clears_the_threshold() -> None:
    decision = decide(arms((6_200, 300), (6_200, 360)))
    assert decision.status == "promoted" and decision.winner == "B"
    assert decision.weights == {"A": 0.0, "B": 1.0}
    p = stats.p_best(*stats.posterior([6_200, 6_200], [300, 360]))[1]
    assert p >= 0.95
    assert decision.reason == f"B promoted: P(best) = {p:.3f} ≥ 0.95 after 12,400 sends"


def test_promotion_when_value_remaining_is_under_one_percent() -> None:
    decision = decide(arms((1_000_000, 50_010), (1_000_000, 50_000)))
    assert decision.status == "promoted" and decision.winner == "A"
    assert decision.snapshot["arms"][0]["p_best"] < 0.95
    assert decision.snapshot["value_remaining"] < 0.01
    assert decision.reason.startswith("A promoted: value remaining 0.")
    assert decision.reason.endswith("< 1% of A's rate after 2,000,000 sends")


def test_exploring_uses_thompson_weights_with_the_floor() -> None:
    config = PolicyConfig(floor=0.05)
    decision = decide(arms((2_000, 100), (2_000, 110), (2_000, 85)), config)
    assert decision.status == "exploring" and decision.winner is None
    alpha, beta = stats.posterior([2_000] * 3, [100, 110, 85])
    expected = thompson_weights(alpha, beta, floor=0.05)
    assert list(decision.weights.values()) == pytest.approx(expected.tolist(), abs=1e-12)
    assert decision.weights["C"] == 0.05
    assert decision.reason.startswith("exploring: B leads with P(best) = ")


def test_clearly_losing_arms_lose_their_floor() -> None:
    config = PolicyConfig(floor=0.05)
    decision = decide(arms((5_000, 250), (5_000, 262), (5_000, 150)), config)
    assert decision.status == "exploring"
    assert decision.snapshot["arms"][2]["p_best"] < config.floor_release
    assert decision.weights["C"] < 1e-6


def test_no_clear_winner_at_the_maximum_sample() -> None:
    config = PolicyConfig(max_trials=20_000)
    decision = decide(arms((10_000, 500), (10_000, 510)), config)
    assert decision.status == "no_clear_winner" and decision.winner is None
    assert sum(decision.weights.values()) == pytest.approx(1.0)
    assert decision.reason.startswith("no clear winner at the maximum of 20,000 sends: B leads")
    assert decide(arms((9_000, 450), (9_000, 460)), config).status == "exploring"


def test_guardrail_pauses_an_arm_credibly_above_its_limit() -> None:
    counts = arms(
        (1_000, 50),
        (1_000, 60),
        (1_000, 55),
        A={"guardrail_events": {"unsubscribe": 25}},
        B={"guardrail_events": {"unsubscribe": 12, "spam_report": 1}},
    )
    decision = decide(counts)
    assert decision.paused == ("A",)  # P(rate > 1%) = 0.99998 for A; 0.79 for B
    assert decision.weights["A"] == 0.0
    assert "A paused: unsubscribe rate credibly above 1.00% (P = 1.000 after 1,000 sends)" in (
        decision.reason
    )
    assert decision.snapshot["arms"][0]["guardrail_breaches"]["unsubscribe"] > 0.9999


def test_guardrail_waits_for_its_minimum_trials() -> None:
    counts = arms((900, 50), (900, 60), A={"guardrail_events": {"unsubscribe": 100}})
    assert decide(counts).paused == ()
    assert decide(counts, PolicyConfig(guardrail_min_trials=500)).paused == ("A",)


def test_the_only_live_arm_is_promoted_and_all_paused_gets_nothing() -> None:
    decision = decide(arms((100, 5), (100, 9), A={"paused": True}))
    assert decision.status == "promoted" and decision.winner == "B"
    assert decision.reason == "B promoted: the only live arm"
    decision = decide(arms((100, 5), (100, 9), A={"paused": True}, B={"paused": True}))
    assert decision.status == "all_paused" and decision.weights == {"A": 0.0, "B": 0.0}


def test_decisions_repeat_with_the_same_seed_and_snapshot_is_json() -> None:
    counts = arms((3_000, 150), (3_000, 165), (3_000, 140))
    first = decide(counts, rng=np.random.default_rng(11))
    again = decide(counts, rng=np.random.default_rng(11))
    assert first == again
    assert isinstance(first, Decision)
    stored = json.loads(json.dumps(first.snapshot))
    assert [row["name"] for row in stored["arms"]] == ["A", "B", "C"]
    assert stored["config"]["p_best_threshold"] == 0.95
    assert sum(row["p_best"] for row in stored["arms"]) == pytest.approx(1.0, abs=1e-9)


def test_degenerate_counts_decide_without_warnings() -> None:
    for counts in (
        arms((0, 0), (0, 0)),
        arms((1_000, 0), (1_000, 0)),
        arms((1_000, 1_000), (1_000, 1_000), (1_000, 999)),
        arms((1_000_000, 1), (1_000_000, 2)),
        arms(*[(700.5, 35)] * 100),
    ):
        decision = decide(counts)
        assert sum(decision.weights.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([], "at least one arm"),
        (arms((10, 1), (10, 1))[:1] * 2, "unique arm names"),
        (arms((-1, 0)), "arm 'A': trials must be >= 0"),
        (arms((10, 11)), r"arm 'A': successes \(11\) exceed trials \(10\)"),
        (arms((np.nan, 0)), "arm 'A': trials contains NaN"),
        (arms((1_000, 1), A={"guardrail_events": {"unsubscribe": np.nan}}), "unsubscribe events"),
        ([ArmCounts("A", 10, 1, sends=-5)], "sends must be >= 0"),
    ],
)
def test_decide_rejects_bad_counts_naming_the_arm(counts: list[ArmCounts], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(counts)


@pytest.mark.parametrize(
    "field",
    ["prior_alpha", "p_best_threshold", "floor", "burn_in", "guardrail_confidence", "max_trials"],
)
def test_config_rejects_out_of_range_values(field: str) -> None:
    with pytest.raises(ValueError, match=f"PolicyConfig.{field}"):
        PolicyConfig(**{field: -1.0})
    with pytest.raises(ValueError, match=f"PolicyConfig.{field}"):
        PolicyConfig(**{field: float("nan")})


def test_config_rejects_a_guardrail_limit_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="guardrails\\['unsubscribe'\\]"):
        PolicyConfig(guardrails={"unsubscribe": 1.5})


def test_guardrail_judges_unsubscribes_against_raw_sends_not_effective_trials() -> None:
    """Right after a mailing effective trials are a fraction of sends; unsubscribes are not."""
    fresh = [
        ArmCounts(
            "A", trials=300.0, successes=3, sends=3_000, guardrail_events={"unsubscribe": 20}
        ),
        ArmCounts(
            "B", trials=300.0, successes=3, sends=3_000, guardrail_events={"unsubscribe": 19}
        ),
    ]
    # 20 of 3,000 sends (0.7 %) is under the 1 % limit: no pause, although 20/300 would be 6.7 %.
    assert decide(fresh, PolicyConfig(guardrail_min_trials=1_000)).paused == ()
    harmful = [
        ArmCounts(
            "A", trials=300.0, successes=3, sends=3_000, guardrail_events={"unsubscribe": 90}
        ),
        ArmCounts("B", trials=300.0, successes=3, sends=3_000),
    ]
    assert decide(harmful, PolicyConfig(guardrail_min_trials=1_000)).paused == ("A",)


def test_reasons_and_the_maximum_sample_count_sends_made_not_delay_weighted_trials() -> None:
    fresh = [
        ArmCounts("A", trials=40.0, successes=2, sends=5_000),
        ArmCounts("B", trials=40.0, successes=2, sends=5_000),
    ]
    decision = decide(fresh, PolicyConfig(burn_in=600, max_trials=None))
    assert decision.status == "exploring"
    assert decision.reason.endswith("after 10,000 sends")
    capped = decide(fresh, PolicyConfig(burn_in=600, max_trials=10_000))
    assert capped.status == "no_clear_winner"
