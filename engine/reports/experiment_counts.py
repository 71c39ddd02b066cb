"""The experiment report's numbers, read from the rollups: per variant, per SRM period, per day.

Trials are read per variant and hour bucket (sends: the hour sent; visits: the hour of the visit)
and added up here, so one small query serves the variant table, the sample-ratio check and the
cumulative chart. Outcomes belong to their trial's bucket (cohorts).

- Epoch: the report counts the buckets that start at or after the latest restart. The hour the
  restart fell in holds trials of both epochs, so it is left out unless the restart was exactly
  on the hour (the bandit's own counters do count the new epoch's trials of that hour).
- Sample ratio: allocation periods start at snapshot instants; a bucket belongs to the period
  it lies in, and a bucket a period boundary cuts in two is left out of every chi-square test
  (its trials were drawn under two different splits).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Experiment, SendRollup, VisitRollup
from engine.reports import DateRange
from engine.reports.rollups import hour_of
from engine.reports.srm import SrmPeriod

HOUR = timedelta(hours=1)
EMAIL_VARIANT_COLUMNS = {
    "subject": SendRollup.subject_variant_id,
    "body": SendRollup.body_variant_id,
    "share": SendRollup.share_variant_id,
}
# Send counters shown per variant (labels in experiment_tables.EMAIL_COUNTS).
EMAIL_COUNTERS = (
    "delivered",
    "human_opens",
    "machine_opens",
    "human_clicks",
    "scanner_clicks",
    "signups",
    "unsubscribes",
    "spam_reports",
)
METRIC_COUNTS = {"open": "human_opens", "click": "human_clicks", "signup": "signups"}


@dataclass
class ExperimentCounts:
    """``per_variant[variant_id]``: trials, successes and each counter; ``period_trials[(p,
    variant_id)]``: trials per SRM period (see :func:`engine.reports.srm.srm_table`);
    ``daily[(day, variant_id)]``: successes of the trials made that UTC day."""

    per_variant: dict[int, dict[str, int]] = field(default_factory=dict)
    period_trials: dict[tuple[int, int], int] = field(default_factory=dict)
    daily: dict[tuple[str, int], int] = field(default_factory=dict)
    trials_cut_by_boundaries: int = 0


def epoch_cutoff(epoch_start: datetime | None) -> datetime | None:
    """The first bucket of the current epoch: the restart's hour if it began on the hour, else
    the next one."""
    if epoch_start is None:
        return None
    hour = hour_of(epoch_start)
    return hour if hour == epoch_start else hour + HOUR


def experiment_counts(
    session: so.Session,
    experiment: Experiment,
    date_range: DateRange,
    epoch_start: datetime | None,
    periods: list[SrmPeriod],
) -> ExperimentCounts:
    """Read the experiment's buckets in the range and the current epoch and add them up."""
    ids = [variant.id for variant in experiment.variants]
    if experiment.kind == "landing":
        variant: Any = VisitRollup.landing_variant_id
        hour: Any = VisitRollup.visit_hour
        measures = {"trials": VisitRollup.visits, "signups": VisitRollup.signups}
        metric_key = "signups"
    else:
        variant, hour = EMAIL_VARIANT_COLUMNS[experiment.kind], SendRollup.sent_hour
        measures = {"trials": SendRollup.sent}
        measures.update({name: getattr(SendRollup, name) for name in EMAIL_COUNTERS})
        metric_key = METRIC_COUNTS[experiment.metric]
    filters = [variant.in_(ids), *date_range.clauses(hour)]
    cutoff = epoch_cutoff(epoch_start)
    if cutoff is not None:
        filters.append(hour >= cutoff)
    statement = (
        sa.select(variant, hour, *(sa.func.sum(c).label(name) for name, c in measures.items()))
        .where(*filters)
        .group_by(variant, hour)
    )
    boundaries = [period.start for period in periods]
    counts = ExperimentCounts()
    totals: dict[int, Counter[str]] = {}
    for row in session.execute(statement):
        variant_id, bucket = row[0], row[1]
        values = {name: int(value) for name, value in zip(measures, row[2:], strict=True)}
        values["successes"] = values[metric_key]
        totals.setdefault(variant_id, Counter()).update(values)
        period = period_of(bucket, boundaries)
        if period is None:
            counts.trials_cut_by_boundaries += values["trials"]
        else:
            key = (period, variant_id)
            counts.period_trials[key] = counts.period_trials.get(key, 0) + values["trials"]
        if values["successes"]:
            day = (bucket.date().isoformat(), variant_id)
            counts.daily[day] = counts.daily.get(day, 0) + values["successes"]
    counts.per_variant = {variant_id: dict(total) for variant_id, total in totals.items()}
    return counts


def period_of(bucket: datetime, boundaries: list[datetime]) -> int | None:
    """How many period starts are at or before the bucket's start (0: before the first
    snapshot), or ``None`` when a period starts inside the bucket."""
    before = bisect.bisect_right(boundaries, bucket)
    if before < len(boundaries) and boundaries[before] < bucket + HOUR:
        return None
    return before
