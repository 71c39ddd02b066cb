"""Regret of the bandit policy in simulated campaigns, against test-then-winner and an oracle.

Each campaign sends 20,000 or 100,000 emails in hourly batches of 1,000 to arms with true
conversion rates 4/5/6 % or 10/11 %. Three ways to choose the arm of each send:

- policy: engine.policy.decide before every batch (stateless: a promoted winner gets every
  send while its promotion holds) and engine.policy.assign_batch to split the batch;
- test-then-winner: the first 20 % of sends split evenly, then every send to the arm with the
  highest observed rate;
- oracle: every send to the best arm.

Regret is expected-value regret, the low-noise measure: Σ over sends of (best rate − rate of the
arm sent), i.e. conversions lost versus the oracle in expectation. With delayed rewards each
conversion arrives after an exponential delay (mean 12 h, truncated at 48 h); both strategies see
only arrived conversions, and the policy counts effective trials with engine.delay.

Run: .venv/bin/python bench/regret.py [--quick] [--processes 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Figure, emit
from engine import delay, policy

BATCH = 1_000
TEST_SHARE = 0.2
DELAY_MEAN_HOURS, DELAY_CAP_HOURS = 12.0, 48
RATE_SETS = {"4/5/6%": (0.04, 0.05, 0.06), "10/11%": (0.10, 0.11)}
HORIZONS = (20_000, 100_000)
TARGET_RATIO = {20_000: 0.85, 100_000: 0.5}
SEED = 20_240_611


@dataclass(frozen=True)
class Outcome:
    """One simulated campaign: conversions lost by each strategy, and the policy's final arm."""

    policy_regret: float
    test_then_winner_regret: float
    policy_correct: bool
    promoted_after: float  # sends before the first promotion (the horizon if none)


class Arrivals:
    """Conversions per (batch, arm), binned by the hour of delay in which they arrive."""

    def __init__(self, batches: int, arms: int, delayed: bool) -> None:
        self.delayed = delayed
        self.sends = np.zeros((batches, arms))
        self.by_hour = np.zeros((batches, arms, DELAY_CAP_HOURS + 1))
        edges = np.arange(DELAY_CAP_HOURS + 1)
        self.cdf = delay.exponential_delay_cdf(DELAY_MEAN_HOURS, cap=DELAY_CAP_HOURS)
        self.bins = np.diff(self.cdf(edges))  # P(delay in (k-1, k]) for k = 1..48

    def record(
        self, batch: int, sends: np.ndarray, successes: np.ndarray, rng: np.random.Generator
    ):
        self.sends[batch] = sends
        if self.delayed:
            self.by_hour[batch, :, 1:] = rng.multinomial(successes.astype(np.int64), self.bins)
        else:
            self.by_hour[batch, :, 0] = successes

    def seen(self, now: int) -> tuple[np.ndarray, np.ndarray]:
        """Trials (effective, if delayed) and arrived successes per arm at hour ``now``."""
        ages = now - np.arange(now)
        cumulative = self.by_hour[:now].cumsum(axis=2)
        arrived = cumulative[np.arange(now), :, np.minimum(ages, DELAY_CAP_HOURS)]
        successes = arrived.sum(axis=0)
        if not self.delayed:
            return self.sends[:now].sum(axis=0), successes
        trials = np.array(
            [
                delay.effective_trials(
                    ages, self.cdf, sends=self.sends[:now, i], successes=arrived[:, i]
                )
                for i in range(self.sends.shape[1])
            ]
        )
        return trials, successes


def run_policy(
    rates: np.ndarray, horizon: int, delayed: bool, rng: np.random.Generator
) -> tuple[float, int, float]:
    """Return (regret, final arm, sends before the first promotion) of the project's policy.

    decide() is stateless and consulted before every batch, as the service does: a promoted
    winner gets every send while its promotion holds, and exploring resumes if it stops holding.
    """
    batches, names = horizon // BATCH, [f"arm{i}" for i in range(rates.size)]
    arrivals, config = Arrivals(batches, rates.size, delayed), policy.PolicyConfig()
    regret, first_promotion, final = 0.0, float(horizon), 0
    for b in range(batches):
        trials, successes = arrivals.seen(b)
        sent = arrivals.sends[:b].sum(axis=0)
        arms = [
            policy.ArmCounts(name, float(n), float(s), sends=float(raw))
            for name, n, s, raw in zip(names, trials, successes, sent, strict=True)
        ]
        decision = policy.decide(arms, config, rng)
        weights = np.array([decision.weights[name] for name in names])
        final = int(np.argmax([row["p_best"] for row in decision.snapshot["arms"]]))
        if decision.status == "promoted":
            final = names.index(decision.winner)
            first_promotion = min(first_promotion, float(b * BATCH))
        units = policy.assign_batch(weights, BATCH, rng)
        sends = np.bincount(units, minlength=rates.size).astype(float)
        arrivals.record(b, sends, rng.binomial(sends.astype(np.int64), rates), rng)
        regret += float(sends @ (rates.max() - rates))
    return regret, final, first_promotion


def run_test_then_winner(
    rates: np.ndarray, horizon: int, delayed: bool, rng: np.random.Generator
) -> float:
    """Return the regret of: test 20 % evenly, then send the highest observed rate."""
    batches = horizon // BATCH
    tests = round(batches * TEST_SHARE)
    arrivals = Arrivals(batches, rates.size, delayed)
    even = np.full(rates.size, BATCH // rates.size, dtype=float)
    even[: BATCH - int(even.sum())] += 1
    for b in range(tests):
        arrivals.record(b, even, rng.binomial(even.astype(np.int64), rates), rng)
    _, successes = arrivals.seen(tests)
    sent = arrivals.sends[:tests].sum(axis=0)
    observed = successes / sent
    winner = int(rng.choice(np.flatnonzero(observed == observed.max())))  # ties: at random
    gap = rates.max() - rates
    return float(sent @ gap + (horizon - tests * BATCH) * gap[winner])


def campaign(task: tuple[str, int, bool, int]) -> Outcome:
    label, horizon, delayed, rep = task
    rates = np.array(RATE_SETS[label])
    key = [SEED, list(RATE_SETS).index(label), horizon, int(delayed), rep]
    policy_rng, baseline_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(key).spawn(2)
    )
    regret, final, promoted_after = run_policy(rates, horizon, delayed, policy_rng)
    baseline = run_test_then_winner(rates, horizon, delayed, baseline_rng)
    return Outcome(regret, baseline, final == int(np.argmax(rates)), promoted_after)


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 repetitions instead of 200")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per scenario")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    reps = args.reps or (4 if args.quick else 200)
    scenarios = [(r, h, d) for d in (False, True) for r in RATE_SETS for h in HORIZONS]
    tasks = [(r, h, d, i) for r, h, d in scenarios for i in range(reps)]
    started = time.perf_counter()
    if args.processes > 1:
        with Pool(args.processes) as pool:
            outcomes = pool.map(campaign, tasks, chunksize=4)
    else:
        outcomes = [campaign(task) for task in tasks]
    figures = []
    for k, (label, horizon, delayed) in enumerate(scenarios):
        runs = outcomes[k * reps : (k + 1) * reps]
        mine = np.mean([o.policy_regret for o in runs])
        theirs = np.mean([o.test_then_winner_regret for o in runs])
        correct = np.mean([o.policy_correct for o in runs])
        promoted = np.median([o.promoted_after for o in runs])
        tag = f"{label} {horizon // 1000}k{' delayed' if delayed else ''}"
        note = f"{reps} runs; median first promotion after {promoted:,.0f} sends"
        figures += [
            Figure(f"{tag} policy regret", float(mine), "conv", "report", True, note),
            Figure(f"{tag} test-then-winner regret", float(theirs), "conv", "report", True),
            Figure(
                f"{tag} ratio policy/ttw",
                float(mine / theirs),
                "",
                f"<= {TARGET_RATIO[horizon]}",
                bool(mine / theirs <= TARGET_RATIO[horizon]),
            ),
        ]
        if horizon == max(HORIZONS):
            figures.append(
                Figure(
                    f"{tag} ends on best arm", float(correct), "", ">= 0.99", bool(correct >= 0.99)
                )
            )
    elapsed = time.perf_counter() - started
    figures.append(Figure("wall time", elapsed, "s", "< 300 (full)", elapsed < 300))
    emit("regret", figures)
    return figures


if __name__ == "__main__":
    main()
