"""Counts for the policy: each variant's rollup counters with delay-weighted effective trials.

Counts are the variants' rollup counters of the current epoch (what the bandit reads). Fresh
trials have not had their chance to convert yet, so trials younger than the delay horizon count
through :func:`engine.delay.effective_trials` (a log-normal delay with [delay] sigma and
click_median_hours for click and open metrics, signup_median_hours for signups):

    effective trials = (trials − recent) + Σ_recent [successes + (sends − successes)·F(age)]

Ages come from the database already aggregated: recent sends (email kinds), or visits and
partner assignments (landing), are grouped per 10-minute bucket in SQL (mean age, count,
converted count), so a large table costs one GROUP BY, not a Python loop over rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import delay
from engine.models import Assignment, Decision, Experiment, Send, Variant, Visit
from engine.settings import Settings

BUCKET_SECONDS = 600
EMAIL_KINDS = ("subject", "body", "share")
SEND_COLUMN = {
    "subject": Send.subject_variant_id,
    "body": Send.body_variant_id,
    "share": Send.share_variant_id,
}
# The send column that records a first success of each metric.
SEND_SUCCESS = {
    "click": Send.first_click_at,
    "open": Send.first_open_at,
    "signup": Send.converted_at,
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


def delay_cdf(settings: Settings, metric: str) -> tuple[delay.DelayCdf, float]:
    """The delay CDF of ``metric``'s conversions and the age (hours) by which 99.9 % arrived."""
    config = settings.delay
    median = config.signup_median_hours if metric == "signup" else config.click_median_hours
    return delay.lognormal_delay_cdf(median, config.sigma), median * math.exp(3.0902 * config.sigma)


def _sources(experiment: Experiment) -> list[tuple[Any, Any, Any, list[Any]]]:
    """(variant column, time column, success column, conditions) of the rows that are trials."""
    if experiment.kind in EMAIL_KINDS:
        success = SEND_SUCCESS.get(experiment.metric, Send.converted_at)
        return [(SEND_COLUMN[experiment.kind], Send.sent_at, success, [Send.status == "sent"])]
    return [
        (Visit.landing_variant_id, Visit.created_at, Visit.converted_at, []),
        (Assignment.variant_id, Assignment.created_at, Assignment.converted_at, []),
    ]


def recent_trials(
    session: so.Session,
    experiment: Experiment,
    variant_ids: list[int],
    now: datetime,
    horizon_hours: float,
) -> dict[int, np.ndarray]:
    """Per variant, rows (age hours, trials, successes) of its trials younger than the horizon,
    aggregated per 10-minute bucket by the database (mean age per bucket)."""
    since = now - timedelta(hours=horizon_hours)
    started = _epoch_start(session, experiment)
    if started is not None and started > since:
        since = started
    rows: dict[int, list[tuple[float, int, int]]] = {}
    for variant_column, time_column, success_column, conditions in _sources(experiment):
        seconds = _epoch_seconds(session, time_column)
        converted = sa.func.sum(sa.case((success_column.is_not(None), 1), else_=0))
        query = (
            sa.select(variant_column, sa.func.avg(seconds), sa.func.count(), converted)
            .where(variant_column.in_(variant_ids), time_column > since, *conditions)
            .group_by(variant_column, seconds // BUCKET_SECONDS)
        )
        for variant_id, mean_seconds, count, successes in session.execute(query):
            age = max(now.timestamp() - float(mean_seconds), 0.0) / 3600.0
            rows.setdefault(variant_id, []).append((age, count, int(successes or 0)))
    return {variant_id: np.array(buckets, dtype=np.float64) for variant_id, buckets in rows.items()}


def arm_counts(
    session: so.Session, settings: Settings, experiment: Experiment, now: datetime
) -> list[ArmCounts]:
    """Counts of every variant that is not retired, with delay-weighted effective trials."""
    variants = [v for v in experiment.variants if v.status != "retired"]
    cdf, horizon = delay_cdf(settings, experiment.metric)
    recent = recent_trials(session, experiment, [v.id for v in variants], now, horizon)
    arms = []
    for variant in variants:
        effective = float(variant.trials)
        buckets = recent.get(variant.id)
        if buckets is not None:
            ages, sends, successes = buckets.T
            arrived = delay.effective_trials(ages, cdf, sends=sends, successes=successes)
            effective += arrived - float(sends.sum())
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
