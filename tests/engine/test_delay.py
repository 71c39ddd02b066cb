"""engine.delay: delay CDFs and effective trials for conversions still on their way."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import stats
from engine.delay import (
    effective_trials,
    empirical_delay_cdf,
    exponential_delay_cdf,
    lognormal_delay_cdf,
)


def test_exponential_cdf() -> None:
    cdf = exponential_delay_cdf(12.0)
    assert cdf([0.0, 12.0]).round(12).tolist() == [0.0, round(1 - math.exp(-1), 12)]
    capped = exponential_delay_cdf(12.0, cap=48.0)
    scale = 1 - math.exp(-4)
    assert capped([12.0, 48.0, 100.0]).round(12).tolist() == [
        round((1 - math.exp(-1)) / scale, 12),
        1.0,
        1.0,
    ]


def test_lognormal_cdf_is_a_half_at_the_median() -> None:
    cdf = lognormal_delay_cdf(median=6.0, sigma=1.2)
    assert cdf([0.0, 6.0]).round(12).tolist() == [0.0, 0.5]
    assert 0.5 < cdf([24.0])[0] < 1.0


def test_empirical_cdf_interpolates_and_normalises_to_the_last_point() -> None:
    cdf = empirical_delay_cdf([1, 6, 24, 48], [0.2, 0.6, 0.9, 0.96])
    assert cdf([0, 1, 3.5, 48, 72]).round(6).tolist() == [
        0.0,
        round(0.2 / 0.96, 6),
        round(0.4 / 0.96, 6),
        1.0,
        1.0,
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: exponential_delay_cdf(0.0),
        lambda: exponential_delay_cdf(12.0, cap=-1.0),
        lambda: lognormal_delay_cdf(6.0, 0.0),
        lambda: empirical_delay_cdf([1, 1], [0.2, 0.4]),
        lambda: empirical_delay_cdf([1, 2], [0.5, 0.4]),
        lambda: empirical_delay_cdf([1, 2], [0.5, 1.5]),
        lambda: empirical_delay_cdf([1, 2], [0.0, 0.0]),
        lambda: empirical_delay_cdf([1, 2], [0.5]),
        lambda: exponential_delay_cdf(12.0)([-1.0]),
        lambda: exponential_delay_cdf(12.0)([float("nan")]),
    ],
)
def test_bad_delay_arguments_raise(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_effective_trials_per_send() -> None:
    cdf = exponential_delay_cdf(12.0)
    ages = [0.0, 12.0, 1_000.0]
    assert effective_trials(ages, cdf) == pytest.approx(1 - math.exp(-1) + 1.0)


def test_converted_sends_count_as_whole_trials() -> None:
    cdf = exponential_delay_cdf(12.0)
    # Groups: 100 sends 1 h ago (2 converted), 100 sends 48 h ago (5 converted).
    got = effective_trials([1.0, 48.0], cdf, sends=[100, 100], successes=[2, 5])
    want = 7 + 98 * (1 - math.exp(-1 / 12)) + 95 * (1 - math.exp(-4))
    assert got == pytest.approx(want, rel=1e-12)
    assert got >= 7  # never fewer trials than successes


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ages": [-1.0]},
        {"ages": [float("nan")]},
        {"ages": [1.0], "sends": [1, 2]},
        {"ages": [1.0], "sends": [1], "successes": [2]},
        {"ages": [1.0], "sends": [-1]},
    ],
)
def test_effective_trials_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        effective_trials(cdf=exponential_delay_cdf(12.0), **kwargs)


def test_a_cdf_outside_zero_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="delay CDF"):
        effective_trials([1.0], lambda ages: np.asarray(ages) * 2.0)


def test_a_fresh_variant_is_not_punished() -> None:
    # Same true rate 5 %: A sent 10,000 two days ago; B sent 10,000 an hour ago. In
    # expectation A shows 500 conversions and B only 500·F(1 h).
    cdf = exponential_delay_cdf(12.0, cap=48.0)
    arrived_b = 500 * cdf([1.0])[0]
    naive = stats.posterior_mean(*stats.posterior([10_000, 10_000], [500, arrived_b]))
    assert naive[1] < 0.005  # raw trials make B look ten times worse
    trials_b = effective_trials([1.0], cdf, sends=[10_000], successes=[arrived_b])
    fair = stats.posterior_mean(*stats.posterior([10_000, trials_b], [500, arrived_b]))
    assert fair[1] == pytest.approx(0.05, rel=0.05)
