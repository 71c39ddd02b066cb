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

from engine import delay, policy, stats
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
    aggregated in 10-minute buckets by the database."""
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
    rows: dict[int, dict[int, int]] = {}
    for variant_column, time_column, conditions in sources:
        bucket = _epoch_seconds(session, time_column) // BUCKET_SECONDS
        query = (
            sa.select(variant_column, bucket, sa.func.count())
            .where(variant_column.in_(variant_ids), time_column > since, *conditions)
            .group_by(variant_column, bucket)
        )
        for variant_id, start, count in session.execute(query):
            per_variant = rows.setdefault(variant_id, {})
            per_variant[int(start)] = per_variant.get(int(start), 0) + count
    now_seconds = now.timestamp()
    result = {}
    for variant_id, buckets in rows.items():
        starts = np.fromiter(buckets.keys(), dtype=np.float64)
        counts = np.fromiter(buckets.values(), dtype=np.float64)
        ages = np.maximum(now_seconds - (starts + 0.5) * BUCKET_SECONDS, 0.0) / 3600.0
        result[variant_id] = (ages, counts)
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
            arrived = delay.effective_trials(bucket_ages, median, sigma, weights=counts)
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
