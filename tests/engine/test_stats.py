"""engine.stats against hand-checked values: exact sums, symmetry, mpmath, degenerate inputs."""

from __future__ import annotations

from fractions import Fraction
from math import factorial

import mpmath as mp
import numpy as np
import pytest

from engine import stats


def exact_beta(a: int, b: int) -> Fraction:
    return Fraction(factorial(a - 1) * factorial(b - 1), factorial(a + b - 1))


def exact_p_greater(ax: int, bx: int, ay: int, by: int) -> Fraction:
    """P(θ_X > θ_Y), X ~ Beta(ax, bx), Y ~ Beta(ay, by), integer parameters: the exact sum."""
    return sum(
        (
            exact_beta(ay + i, by + bx) / ((bx + i) * exact_beta(1 + i, bx) * exact_beta(ay, by))
            for i in range(ax)
        ),
        Fraction(0),
    )


# A: 10 of 100, B: 15 of 100, Beta(1, 1) prior -> Beta(11, 91) and Beta(16, 86).
TWO_ARMS = ([11, 16], [91, 86])


def test_posterior_adds_counts_to_the_prior() -> None:
    alpha, beta = stats.posterior([100, 0, 5.5], [10, 0, 2.5], 2.0, 3.0)
    assert alpha.tolist() == [12.0, 2.0, 4.5]
    assert beta.tolist() == [93.0, 3.0, 6.0]


@pytest.mark.parametrize(
    ("trials", "successes", "prior", "message"),
    [
        ([-1], [0], (1, 1), "trials must be >= 0"),
        ([10], [-1], (1, 1), "successes must be >= 0"),
        ([10, 5], [3, 6], (1, 1), "successes (6) exceed trials (5) for arm 1"),
        ([float("nan")], [0], (1, 1), "trials contains NaN"),
        ([10], [float("nan")], (1, 1), "successes contains NaN"),
        ([float("inf")], [0], (1, 1), "trials contains an infinite value"),
        ([10], [1], (0, 1), "prior_alpha must be a finite number > 0"),
        ([10], [1], (1, -2), "prior_beta must be a finite number > 0"),
        ([10], [1], (float("nan"), 1), "prior_alpha"),
        ([10, 10], [1], (1, 1), "trials has 2 entries but successes has 1"),
    ],
)
def test_posterior_rejects_bad_arguments_naming_them(
    trials: list[float], successes: list[float], prior: tuple[float, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stats.posterior(trials, successes, *prior)


@pytest.mark.parametrize(
    "call",
    [
        lambda: stats.p_best([1, 0], [1, 1]),
        lambda: stats.p_best([1, 1], [1, np.nan]),
        lambda: stats.p_best([], []),
        lambda: stats.expected_loss([1, 2], [1]),
        lambda: stats.credible_interval([1], [1], level=1.0),
        lambda: stats.p_beat_control([1, 1], [1, 1], control=2),
        lambda: stats.value_remaining([1, 1], [1, 1], draws=0),
        lambda: stats.value_remaining([1, 1], [1, 1], quantile=1.5),
        lambda: stats.p_rate_above([1], [1], limit=2.0),
    ],
)
def test_functions_reject_bad_parameters(call) -> None:
    with pytest.raises(ValueError):
        call()


def test_posterior_mean_and_equal_tailed_interval() -> None:
    assert stats.posterior_mean([1, 11], [1, 91]).round(6).tolist() == [0.5, 0.107843]
    low, high = stats.credible_interval([1, 11], [1, 91])
    assert low.round(6).tolist() == [0.025, 0.055637]  # mpmath: 0.0556372238353
    assert high.round(6).tolist() == [0.975, 0.174553]  # mpmath: 0.174552826077


def test_p_best_of_two_arms_matches_the_exact_sum() -> None:
    exact = float(exact_p_greater(16, 86, 11, 91))
    assert round(exact, 10) == 0.8532837899
    p = stats.p_best(*TWO_ARMS)
    assert p.round(10).tolist() == [round(1 - exact, 10), round(exact, 10)]


def test_expected_loss_of_two_arms_matches_the_exact_sums() -> None:
    # E[max] = μ_A P(θ_A⁺ > θ_B) + μ_B P(θ_B⁺ > θ_A), θ⁺ ~ Beta(α + 1, β).
    mean_a, mean_b = Fraction(11, 102), Fraction(16, 102)
    expected_max = mean_a * exact_p_greater(12, 91, 16, 86) + mean_b * exact_p_greater(
        17, 86, 11, 91
    )
    loss = stats.expected_loss(*TWO_ARMS)
    assert loss.round(10).tolist() == [0.052597696, 0.0035780881]
    assert loss.round(12).tolist() == [
        round(float(expected_max - mean_a), 12),
        round(float(expected_max - mean_b), 12),
    ]
    relative = stats.expected_loss_relative(*TWO_ARMS)
    assert relative.round(12).tolist() == (loss / float(expected_max)).round(12).tolist()


def test_three_arms_match_mpmath_quadrature() -> None:
    alpha, beta = [3, 5, 2], [8, 7, 2]
    # mpmath.quad of f_i Π F_j and of 1 − Π F_j at 30 digits (see the module's git history).
    assert stats.p_best(alpha, beta).round(12).tolist() == [
        0.081362775063,
        0.335820122804,
        0.582817102133,
    ]
    assert stats.expected_loss(alpha, beta).round(12).tolist() == [
        0.305468672083,
        0.161529278143,
        0.07819594481,
    ]


def test_mpmath_quadrature_of_a_lopsided_pair() -> None:
    alpha, beta = [2, 31], [40, 171]  # 1 of 40 against 30 of 200
    density = lambda x: x ** (alpha[0] - 1) * (1 - x) ** (beta[0] - 1) / mp.beta(alpha[0], beta[0])  # noqa: E731
    other = lambda x: mp.betainc(alpha[1], beta[1], 0, x, regularized=True)  # noqa: E731
    with mp.workdps(20):
        p0 = mp.quad(lambda x: density(x) * other(x), [0, 0.05, 0.1, 0.2, 0.3, 1])
    assert stats.p_best(alpha, beta)[0] == pytest.approx(float(p0), abs=1e-12)


@pytest.mark.parametrize("k", [2, 3, 10, 100])
@pytest.mark.parametrize(("trials", "successes"), [(0, 0), (1_000, 50), (1_000_000, 10_000)])
def test_identical_arms_each_have_p_best_one_over_k(k: int, trials: int, successes: int) -> None:
    alpha, beta = stats.posterior([trials] * k, [successes] * k)
    p = stats.p_best(alpha, beta)
    np.testing.assert_allclose(p, 1 / k, atol=1e-9)


def test_identical_uniform_arms_lose_k_over_k_plus_one_minus_a_half() -> None:
    for k in (2, 5):
        loss = stats.expected_loss(np.ones(k), np.ones(k))
        np.testing.assert_allclose(loss, k / (k + 1) - 0.5, atol=1e-12)
        relative = stats.expected_loss_relative(np.ones(k), np.ones(k))
        np.testing.assert_allclose(relative, (k / (k + 1) - 0.5) / (k / (k + 1)), atol=1e-12)


@pytest.mark.parametrize(
    ("trials", "successes"),
    [
        ([0, 0, 0], [0, 0, 0]),
        ([10, 10, 10], [0, 10, 5]),
        ([1_000_000, 1_000_000], [0, 1_000_000]),
        ([1_000_000, 3], [500_000, 3]),
        ([1_000_000, 1_000_000, 10], [100_000, 100_300, 1]),
        ([5], [5]),
        ([2.5, 7.25], [1, 0]),
    ],
)
def test_degenerate_inputs_give_finite_answers(trials: list[float], successes: list[float]) -> None:
    alpha, beta = stats.posterior(trials, successes)
    p, loss, relative = stats.best_arm_summary(alpha, beta)
    beat = stats.p_beat_control(alpha, beta)
    remaining = stats.value_remaining(alpha, beta)
    for values in (p, loss, relative, beat, remaining, *stats.credible_interval(alpha, beta)):
        assert np.isfinite(values).all()
    assert abs(p.sum() - 1) < 1e-9
    assert (p >= 0).all() and (loss >= 0).all() and (relative <= 1).all()


def test_tiny_priors_still_sum_to_one() -> None:
    alpha, beta = stats.posterior([0, 1_000, 40], [0, 0, 40], 0.02, 0.02)
    p = stats.p_best(alpha, beta)
    assert abs(p.sum() - 1) < 1e-9
    assert p[2] > p[0] > p[1]


def test_random_arms_sum_to_one_for_one_to_a_hundred_arms() -> None:
    rng = np.random.default_rng(3)
    for k in (1, 2, 7, 30, 100):
        trials = rng.integers(0, 100_000, k)
        successes = rng.binomial(trials, rng.uniform(0, 0.2, k))
        p = stats.p_best(*stats.posterior(trials, successes))
        assert abs(p.sum() - 1) < 1e-9


def test_million_trial_pair_matches_the_exact_sum() -> None:
    # The exact sum for P(θ_B > θ_A) has α_B = 100,301 terms; each is the previous times a
    # rational factor, so the log-terms are a cumulative sum (in extended precision), and
    # only the first term needs mpmath.
    ax, bx, ay, by = 100_301, 899_701, 100_001, 900_001
    with mp.workdps(30):
        log_first = float(mp.log(mp.beta(ay, by + bx)) - mp.log(mp.beta(ay, by)))
    i = np.arange(ax - 1, dtype=np.longdouble)
    steps = np.log((ay + i) * (bx + i) / ((ay + i + by + bx) * (1 + i)))
    log_terms = np.longdouble(log_first) + np.concatenate([[0], np.cumsum(steps)])
    exact = float(np.exp(log_terms).sum())
    assert round(exact, 6) == 0.760103
    p = stats.p_best(*stats.posterior([1_000_000, 1_000_000], [100_000, 100_300]))
    assert p[1] == pytest.approx(exact, abs=1e-9)


def test_p_beat_control() -> None:
    beat = stats.p_beat_control(*TWO_ARMS, control=0)
    assert beat[0] == 0.5
    assert round(beat[1], 10) == round(float(exact_p_greater(16, 86, 11, 91)), 10)
    alpha, beta = stats.posterior([1_000_000, 1_000_000, 1_000_000], [1000, 5000, 500])
    assert stats.p_beat_control(alpha, beta, control=0).round(12).tolist() == [0.5, 1.0, 0.0]


def test_value_remaining_is_seeded_and_shrinks_with_evidence() -> None:
    alpha, beta = stats.posterior([2_000, 2_000], [100, 120])
    first = stats.value_remaining(alpha, beta)
    assert first.tolist() == stats.value_remaining(alpha, beta).tolist()  # default seed
    seeded = stats.value_remaining(alpha, beta, rng=np.random.default_rng(1))
    assert (
        seeded.tolist() == stats.value_remaining(alpha, beta, rng=np.random.default_rng(1)).tolist()
    )
    assert (
        seeded.tolist() != stats.value_remaining(alpha, beta, rng=np.random.default_rng(2)).tolist()
    )
    assert 0.0 < first[1] < first[0]
    more = stats.value_remaining(*stats.posterior([200_000, 200_000], [10_000, 12_000]))
    assert more[1] == 0.0  # B beats A in essentially every draw
    near = stats.value_remaining(*stats.posterior([10**6, 10**6], [50_000, 50_010]))
    assert 0 < near[1] < 0.01  # a near tie at a million trials: under 1 % left for the champion


def test_value_remaining_of_uniform_pair_matches_its_closed_form() -> None:
    # θ1, θ2 ~ U(0, 1): P((max − θ1)/θ1 ≤ v) = P(θ2 ≤ (1 + v)θ1) = 1 − 1/(2(1 + v)) for v ≥ 0,
    # so the 95th percentile is v = 1/(2·0.05) − 1 = 9.
    remaining = stats.value_remaining([1, 1], [1, 1], draws=400_000, rng=np.random.default_rng(0))
    np.testing.assert_allclose(remaining, 9.0, rtol=0.03)


def test_p_rate_above() -> None:
    assert stats.p_rate_above([1], [1], 0.3).round(12).tolist() == [0.7]
    p = stats.p_rate_above([26, 13], [976, 989], 0.01)
    assert p.round(9).tolist() == [0.999984149, 0.791559987]  # mpmath: 1 − I_0.01(α, β)
