"""The policy run: for every running experiment, counts → effective trials → decision → stored.

Counts are the variants' rollup counters of the current epoch (what the bandit reads). Fresh
trials have not had their chance to convert yet, so each trial younger than the delay horizon
counts only for the share of its eventual conversions expected by now (:mod:`engine.delay`, with
[delay] click_median_hours for click and open metrics, signup_median_hours for signups):

    effective trials = trials − Σ over recent trials of (1 − arrived share at its age)

Ages come from the database already aggregated: recent sends (email kinds) or visits and partner
assignments (landing) are counted per 10-minute bucket in SQL, so a large table costs one
GROUP BY, not a Python loop over rows. Guardrails (unsubscribe and spam-report rates) use the
same effective trials with the click delay.

Then :func:`engine.policy.decide` answers weights, a status and the reason in words. Each run
stores an :class:`AllocationSnapshot` and the variants' weights; a promotion, a guardrail pause
and "no clear winner" are stored as :class:`Decision` rows with the posterior snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import stats
from engine.models import (
    AllocationSnapshot,
    Assignment,
    Decision,
    Experiment,
    Send,
    Variant,
    Visit,
)
from engine.settings import Settings

BUCKET_SECONDS = 600
EMAIL_KINDS = ("subject", "body", "share")
SEND_COLUMN = {
    "subject": Send.subject_variant_id,
    "body": Send.body_variant_id,
    "share": Send.share_variant_id,
}


@dataclass
class ArmCounts:
    """One variant's counts as the policy sees them."""

    variant: Variant
    trials: int
    effective_trials: float
    successes: int
    unsubscribes: int
    spam_reports: int


@dataclass
class ExperimentOutcome:
    """What a run decided for one experiment (for logs, the CLI and tests)."""

    experiment_key: str
    status: str
    reason: str
    weights: dict[str, float]
    decisions: list[str] = field(default_factory=list)

    def summary(self) -> str:
        stored = f" [{', '.join(self.decisions)}]" if self.decisions else ""
        return f"{self.experiment_key}: {self.status}{stored} — {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment_key,
            "status": self.status,
            "reason": self.reason,
            "weights": self.weights,
            "decisions": self.decisions,
        }


def _epoch_seconds(session: so.Session, column: Any) -> Any:
    """Whole UTC epoch seconds of a datetime column, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast(sa.func.strftime("%s", column), sa.BigInteger)
    return sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)


def _epoch_start(session: so.Session, experiment: Experiment) -> datetime | None:
    """When the current epoch began (the latest restart), or ``None`` for the first epoch."""
    return session.scalar(
        sa.select(sa.func.max(Decision.created_at)).where(
            Decision.experiment_id == experiment.id, Decision.kind == "restart"
        )
    )


def delay_hours(settings: Settings, metric: str) -> float:
    """The median delay of ``metric``'s conversions, in hours."""
    config = settings.delay
    return config.signup_median_hours if metric == "signup" else config.click_median_hours


def horizon_hours(median_hours: float, sigma: float) -> float:
    """Age beyond which a trial has had 99.9 % of its chance (log-normal 0.999 quantile)."""
    return median_hours * math.exp(3.0902 * sigma)


def recent_trial_ages(
    session: so.Session,
    experiment: Experiment,
    variant_ids: list[int],
    now: datetime,
    horizon: float,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per variant: (ages in hours, trial counts) of its trials younger than ``horizon`` hours,
    aggregated in 10-minute buckets by the database (mean age per bucket)."""
    since = now - timedelta(hours=horizon)
    started = _epoch_start(session, experiment)
    if started is not None and started > since:
        since = started
    sources: list[tuple[Any, Any, list[Any]]]
    if experiment.kind in EMAIL_KINDS:
        column = SEND_COLUMN[experiment.kind]
        sources = [(column, Send.sent_at, [Send.status == "sent"])]
    else:
        sources = [
            (Visit.landing_variant_id, Visit.created_at, []),
            (Assignment.variant_id, Assignment.created_at, []),
        ]
    rows: dict[int, list[tuple[float, int]]] = {}
    for variant_column, time_column, conditions in sources:
        seconds = _epoch_seconds(session, time_column)
        bucket = seconds // BUCKET_SECONDS
        query = (
            sa.select(variant_column, sa.func.avg(seconds), sa.func.count())
            .where(variant_column.in_(variant_ids), time_column > since, *conditions)
            .group_by(variant_column, bucket)
        )
        for variant_id, mean_seconds, count in session.execute(query):
            rows.setdefault(variant_id, []).append((float(mean_seconds), count))
    now_seconds = now.timestamp()
    result = {}
    for variant_id, buckets in rows.items():
        moments = np.array([moment for moment, _ in buckets])
        counts = np.array([count for _, count in buckets], dtype=np.float64)
        result[variant_id] = (np.maximum(now_seconds - moments, 0.0) / 3600.0, counts)
    return result


def arm_counts(
    session: so.Session, settings: Settings, experiment: Experiment, now: datetime
) -> list[ArmCounts]:
    """Counts of every variant that is not retired, with delay-weighted effective trials."""
    variants = [v for v in experiment.variants if v.status != "retired"]
    median = delay_hours(settings, experiment.metric)
    sigma = settings.delay.sigma
    ages = recent_trial_ages(
        session, experiment, [v.id for v in variants], now, horizon_hours(median, sigma)
    )
    arms = []
    for variant in variants:
        effective = float(variant.trials)
        if variant.id in ages:
            bucket_ages, counts = ages[variant.id]
            arrived = float((counts * arrived_share(bucket_ages, median, sigma)).sum())
            effective -= float(counts.sum()) - arrived
        arms.append(
            ArmCounts(
                variant=variant,
                trials=variant.trials,
                effective_trials=max(effective, float(variant.successes), 0.0),
                successes=variant.successes,
                unsubscribes=variant.unsubscribes,
                spam_reports=variant.spam_reports,
            )
        )
    return arms


def winner_of(session: so.Session, experiment: Experiment) -> Variant | None:
    """The promoted variant: the latest promotion's, else the live variant with the top weight."""
    variant_id = session.scalar(
        sa.select(Decision.variant_id)
        .where(
            Decision.experiment_id == experiment.id,
            Decision.kind == "promote",
            Decision.variant_id.is_not(None),
        )
        .order_by(Decision.created_at.desc(), Decision.id.desc())
        .limit(1)
    )
    if variant_id is not None:
        return session.get(Variant, variant_id)
    live = [v for v in experiment.variants if v.status == "live"]
    return max(live, key=lambda v: (v.weight, -v.id)) if live else None


# --- policy -------------------------------------------------------------------------------------
# INTERIM: engine.policy and engine.delay (pure statistics) are not in the tree yet; these three
# functions stand in for them using engine.stats and will call them once they land.


def arrived_share(ages_hours: np.ndarray, median_hours: float, sigma: float) -> np.ndarray:
    """Share of eventual conversions arrived by each age (log-normal delay CDF)."""
    from scipy import special

    ages = np.maximum(np.asarray(ages_hours, dtype=np.float64), 1e-9)
    return special.ndtr((np.log(ages) - math.log(median_hours)) / sigma)


def thompson_assign(
    experiment: Experiment, arms: list[ArmCounts], count: int, rng: np.random.Generator
) -> np.ndarray:
    """Arm indices for ``count`` units: one vectorized Thompson draw, burn-in and floor kept."""
    k = len(arms)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if k == 1:
        return np.zeros(count, dtype=np.int64)
    if min(arm.trials for arm in arms) < experiment.burn_in:
        return rng.permutation(np.arange(count) % k)
    alpha, beta = _posterior(experiment, arms)
    choice = rng.beta(alpha, beta, size=(count, k)).argmax(axis=1)
    floor = math.floor(experiment.floor * count)
    if floor:
        order = rng.permutation(count)
        choice[order[: floor * k]] = np.repeat(np.arange(k), floor)
    return choice


def _posterior(experiment: Experiment, arms: list[ArmCounts]) -> tuple[np.ndarray, np.ndarray]:
    return stats.posterior(
        [arm.effective_trials for arm in arms],
        [arm.successes for arm in arms],
        experiment.prior_alpha,
        experiment.prior_beta,
    )


@dataclass
class PolicyResult:
    """The policy's answer for the live arms of one experiment."""

    status: str  # "burn_in", "exploring", "promote" or "no_clear_winner"
    weights: np.ndarray
    reason: str
    winner: int | None = None
    paused: dict[int, str] = field(default_factory=dict)  # arm index → reason
    p_best: np.ndarray | None = None
    value_remaining: float | None = None


def decide(experiment: Experiment, arms: list[ArmCounts], settings: Settings) -> PolicyResult:
    """Burn-in, guardrails, promotion, no clear winner: the policy for the live ``arms``."""
    guard = settings.guardrails
    paused: dict[int, str] = {}
    for index, arm in enumerate(arms):
        if arm.effective_trials < guard.min_trials:
            continue
        for label, count, limit in (
            ("unsubscribe", arm.unsubscribes, guard.unsubscribe_rate_limit),
            ("spam-report", arm.spam_reports, guard.spam_report_rate_limit),
        ):
            a, b = stats.posterior([arm.effective_trials], [min(count, arm.effective_trials)])
            chance = float(stats.p_rate_above(a, b, limit)[0])
            if chance >= guard.confidence:
                paused[index] = (
                    f"{arm.variant.key}: {label} rate {count}/{arm.effective_trials:.0f} is above "
                    f"{limit:.2%} with probability {chance:.1%} (guardrail {guard.confidence:.0%})"
                )
                break
    k = len(arms)
    alpha, beta = _posterior(experiment, arms)
    best = stats.p_best(alpha, beta)
    if min(arm.trials for arm in arms) < experiment.burn_in:
        return PolicyResult(
            "burn_in",
            np.full(k, 1.0 / k),
            f"burn-in: every arm needs {experiment.burn_in} trials before the weights move",
            paused=paused,
            p_best=best,
        )
    champion = int(np.argmax(best))
    remaining = stats.value_remaining(alpha, beta, champion=champion) if k > 1 else 0.0
    floor = min(experiment.floor, 1.0 / k)
    weights = floor + (1.0 - k * floor) * best / best.sum()
    name = arms[champion].variant.key
    if best[champion] >= experiment.p_best_threshold:
        reason = f"{name} is best with probability {best[champion]:.1%}"
        return PolicyResult("promote", weights, reason, champion, paused, best, remaining)
    if remaining < experiment.value_remaining_threshold:
        reason = (
            f"{name} leads and at most {remaining:.2%} of its rate could still be gained "
            f"(95th percentile of the value remaining)"
        )
        return PolicyResult("promote", weights, reason, champion, paused, best, remaining)
    if min(arm.trials for arm in arms) >= experiment.max_trials_per_arm:
        reason = (
            f"no clear winner after {experiment.max_trials_per_arm} trials per arm: "
            f"{name} leads with P(best) {best[champion]:.1%}"
        )
        return PolicyResult("no_clear_winner", weights, reason, None, paused, best, remaining)
    reason = f"exploring: {name} leads with P(best) {best[champion]:.1%}"
    return PolicyResult("exploring", weights, reason, None, paused, best, remaining)


# --- the run ------------------------------------------------------------------------------------


def run_decisions(
    session: so.Session, settings: Settings, *, now: datetime
) -> list[ExperimentOutcome]:
    """Run the policy for every running experiment and store what it decided (not committed).

    Returns one :class:`ExperimentOutcome` per experiment considered, in id order.
    """
    experiments = session.scalars(
        sa.select(Experiment).where(Experiment.status == "running").order_by(Experiment.id)
    ).all()
    return [
        decide_experiment(session, settings, experiment, now)
        for experiment in experiments
        if any(v.status == "live" for v in experiment.variants)
    ]


def decide_experiment(
    session: so.Session, settings: Settings, experiment: Experiment, now: datetime
) -> ExperimentOutcome:
    """Decide one running experiment: weights, guardrail pauses, promotion or no clear winner."""
    arms = arm_counts(session, settings, experiment, now)
    live = [arm for arm in arms if arm.variant.status == "live"]
    result = decide(experiment, live, settings)
    snapshot = posterior_snapshot(experiment, arms, live, result, now)
    stored: list[str] = []

    def record(kind: str, reason: str, variant: Variant | None = None) -> None:
        session.add(
            Decision(
                experiment_id=experiment.id,
                variant_id=variant.id if variant else None,
                kind=kind,
                actor="policy",
                reason=reason,
                snapshot=snapshot,
                created_at=now,
            )
        )
        stored.append(kind if variant is None else f"{kind} {variant.key}")

    for index, reason in result.paused.items():
        live[index].variant.status = "paused"
        record("guardrail_pause", reason, live[index].variant)
    kept = [i for i in range(len(live)) if i not in result.paused]
    weights = np.zeros(len(live))
    status = result.status
    if not kept:
        experiment.status = "paused"
        status = "paused"
        record("status", "every live variant tripped a guardrail: the experiment is paused")
    elif status == "promote" and result.winner in kept:
        experiment.status = "promoted"
        weights[result.winner] = 1.0
        record("promote", result.reason, live[result.winner].variant)
    else:
        if status == "no_clear_winner":
            experiment.status = "finished"
            record("no_clear_winner", result.reason)
        elif status == "promote":  # the winner itself tripped a guardrail: keep exploring
            status = "exploring"
        weights[kept] = result.weights[kept] / result.weights[kept].sum()
    by_id = {arm.variant.id: float(w) for arm, w in zip(live, weights, strict=True)}
    for variant in experiment.variants:
        variant.weight = by_id.get(variant.id, 0.0)
    session.add(
        AllocationSnapshot(
            experiment_id=experiment.id,
            status=status,
            weights={str(vid): w for vid, w in by_id.items()},
            created_at=now,
        )
    )
    session.flush()
    return ExperimentOutcome(
        experiment.key,
        status,
        result.reason if not result.paused else "; ".join([result.reason, *result.paused.values()]),
        {arm.variant.key: round(w, 6) for arm, w in zip(live, weights, strict=True)},
        stored,
    )


def posterior_snapshot(
    experiment: Experiment,
    arms: list[ArmCounts],
    live: list[ArmCounts],
    result: PolicyResult,
    now: datetime,
) -> dict[str, Any]:
    """Counts, effective trials and posterior of every variant, and the policy's answer."""
    alpha, beta = _posterior(experiment, arms)
    low, high = stats.credible_interval(alpha, beta)
    means = stats.posterior_mean(alpha, beta)
    p_best = {arm.variant.id: float(p) for arm, p in zip(live, result.p_best, strict=True)}
    variants = {}
    for i, arm in enumerate(arms):
        variants[str(arm.variant.id)] = {
            "key": arm.variant.key,
            "status": arm.variant.status,
            "trials": arm.trials,
            "effective_trials": round(arm.effective_trials, 3),
            "successes": arm.successes,
            "unsubscribes": arm.unsubscribes,
            "spam_reports": arm.spam_reports,
            "alpha": round(float(alpha[i]), 6),
            "beta": round(float(beta[i]), 6),
            "mean": round(float(means[i]), 6),
            "ci95": [round(float(low[i]), 6), round(float(high[i]), 6)],
            "p_best": round(p_best.get(arm.variant.id, 0.0), 6),
        }
    return {
        "at": now.isoformat(),
        "epoch": experiment.epoch,
        "metric": experiment.metric,
        "policy_status": result.status,
        "reason": result.reason,
        "value_remaining": result.value_remaining,
        "variants": variants,
    }
