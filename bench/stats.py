"""Accuracy and speed of engine.stats: P(best) and expected loss against high-precision references.

References, computed here with mpmath (25 significant digits), independently of engine.stats:

- two arms: the exact finite sum for P(θ_X > θ_Y) with integer α_X (Evan Miller), summed by a
  term recurrence; E[max θ] = μ_A·P(θ_A⁺ > θ_B) + μ_B·P(θ_B⁺ > θ_A), θ⁺ ~ Beta(α + 1, β);
- more arms: mpmath quadrature of ∫ f_i Π_{j≠i} F_j dx and of E[max θ] = ∫ (1 − Π F_j) dx.

Tolerance: 1e-6 absolute on every P(best) and every expected loss, and on |Σ P(best) − 1|.
Speed: median of repeated calls of stats.best_arm_summary (P(best) and expected loss from one
quadrature) for K arms, and of policy.assign_batch for N = 1,000,000 units.

Run: .venv/bin/python bench/stats.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mpmath as mp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Figure, emit
from engine import policy, stats

TOLERANCE = 1e-6
TIME_TARGET_MS = {20: 10.0, 100: 150.0}
ASSIGN_TARGET_MS = 250.0
DIGITS = 25

# (name, [(trials, successes), ...]) under the Beta(1, 1) prior.
TWO_ARM_CASES = [
    ("near tie 1k", [(1_000, 100), (1_000, 101)]),
    ("lopsided 10 vs 100k", [(10, 0), (100_000, 5_000)]),
    ("all successes vs none", [(20, 20), (20, 0)]),
    ("near tie 1M", [(1_000_000, 100_000), (1_000_000, 100_300)]),
]
MANY_ARM_CASES = [
    ("zero/all/mixed 5 arms", [(0, 0), (10, 0), (10, 10), (50, 20), (200, 30)]),
    ("4/5/6% at 2k sends", [(2_000, 80), (2_000, 100), (2_000, 120)]),
    ("near tie 3 arms", [(1_000, 100), (1_000, 101), (1_000, 102)]),
]
QUICK_CASES = {"near tie 1k", "all successes vs none", "zero/all/mixed 5 arms"}


def p_greater(ax: int, bx: float, ay: float, by: float) -> mp.mpf:
    """P(θ_X > θ_Y) for θ_X ~ Beta(ax, bx) with integer ax, θ_Y ~ Beta(ay, by), exactly."""
    term = mp.exp(mp.log(mp.beta(ay, by + bx)) - mp.log(mp.beta(ay, by)))
    total = mp.mpf(0)
    for i in range(int(ax)):
        total += term
        term *= (ay + i) * (bx + i) / ((ay + i + by + bx) * (1 + i))
    return total


def two_arm_reference(a: list[float], b: list[float]) -> tuple[list[float], list[float]]:
    """(P(best), expected loss) for two arms with integer α, by the exact sums."""
    p1 = p_greater(int(a[1]), b[1], a[0], b[0])
    mean = [mp.mpf(a[i]) / (a[i] + b[i]) for i in range(2)]
    expected_max = mean[0] * p_greater(int(a[0]) + 1, b[0], a[1], b[1]) + mean[1] * p_greater(
        int(a[1]) + 1, b[1], a[0], b[0]
    )
    return [float(1 - p1), float(p1)], [float(expected_max - m) for m in mean]


def quadrature_reference(a: list[float], b: list[float]) -> tuple[list[float], list[float]]:
    """(P(best), expected loss) for any arms, by mpmath quadrature in x on [0, 1]."""
    k = len(a)
    points = {mp.mpf(0), mp.mpf(1)}
    for ai, bi in zip(a, b, strict=True):
        mean, sd = ai / (ai + bi), (ai * bi / ((ai + bi) ** 2 * (ai + bi + 1))) ** 0.5
        points |= {mp.mpf(mean + z * sd) for z in (-8, -4, -2, 0, 2, 4, 8) if 0 < mean + z * sd < 1}
    grid = sorted(points)

    memo: dict[tuple[int, mp.mpf], mp.mpf] = {}  # the K + 1 integrals share their nodes

    def cdf(j: int, x: mp.mpf) -> mp.mpf:
        if (j, x) not in memo:
            memo[j, x] = mp.betainc(a[j], b[j], 0, x, regularized=True)
        return memo[j, x]

    def density(j: int, x: mp.mpf) -> mp.mpf:
        return x ** (a[j] - 1) * (1 - x) ** (b[j] - 1) / mp.beta(a[j], b[j])

    best = [
        mp.quad(
            lambda x, i=i: density(i, x) * mp.fprod(cdf(j, x) for j in range(k) if j != i), grid
        )
        for i in range(k)
    ]
    expected_max = mp.quad(lambda x: 1 - mp.fprod(cdf(j, x) for j in range(k)), grid)
    return [float(p) for p in best], [
        float(expected_max - ai / (ai + bi)) for ai, bi in zip(a, b, strict=True)
    ]


def accuracy(quick: bool) -> list[Figure]:
    figures = []
    cases = [(name, arms, two_arm_reference) for name, arms in TWO_ARM_CASES]
    cases += [(name, arms, quadrature_reference) for name, arms in MANY_ARM_CASES]
    for name, arms, reference in cases:
        if quick and name not in QUICK_CASES:
            continue
        trials, successes = zip(*arms, strict=True)
        a, b = stats.posterior(trials, successes)
        started = time.perf_counter()
        with mp.workdps(DIGITS):
            want_best, want_loss = reference(list(a), list(b))
        seconds = time.perf_counter() - started
        got_best, got_loss, _ = stats.best_arm_summary(a, b)
        best_error = float(np.max(np.abs(got_best - want_best)))
        loss_error = float(np.max(np.abs(got_loss - want_loss)))
        sum_error = abs(float(got_best.sum()) - 1)
        note = f"reference {reference.__name__} in {seconds:.1f} s"
        figures += [
            Figure(
                f"P(best) error: {name}", best_error, "", "<= 1e-6", best_error <= TOLERANCE, note
            ),
            Figure(f"loss error: {name}", loss_error, "", "<= 1e-6", loss_error <= TOLERANCE),
            Figure(f"|sum - 1|: {name}", sum_error, "", "<= 1e-6", sum_error <= TOLERANCE),
        ]
    return figures


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1e3 * float(np.median(times))


def speed(quick: bool) -> list[Figure]:
    rng = np.random.default_rng(7)
    figures = []
    for k in (2, 5, 10, 20, 50, 100):
        trials = rng.integers(1_000, 100_000, k).astype(float)
        successes = np.round(trials * rng.uniform(0.045, 0.055, k))
        a, b = stats.posterior(trials, successes)
        ms = median_ms(lambda a=a, b=b: stats.best_arm_summary(a, b), 5 if quick else 31)
        target = TIME_TARGET_MS.get(k)
        figures.append(
            Figure(
                f"P(best)+loss time, K={k}",
                ms,
                "ms",
                f"<= {target:g} ms" if target else "report",
                ms <= target if target else True,
                "median; arms with 1k-100k trials at 4.5-5.5%",
            )
        )
    weights = policy.thompson_weights([401, 501, 601], [9601, 9501, 9401], floor=0.05)
    ms = median_ms(lambda: policy.assign_batch(weights, 1_000_000, rng), 3 if quick else 11)
    figures.append(
        Figure(
            "assign 1,000,000 units, K=3",
            ms,
            "ms",
            f"<= {ASSIGN_TARGET_MS:g} ms",
            ms <= ASSIGN_TARGET_MS,
            "median; weights from thompson_weights",
        )
    )
    return figures


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three fast cases, fewer repeats")
    args = parser.parse_args(argv)
    figures = accuracy(args.quick) + speed(args.quick)
    emit("stats", figures)
    return figures


if __name__ == "__main__":
    main()
