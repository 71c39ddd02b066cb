"""The experiment report: per-variant counts, posterior statistics, decisions and allocation.

Landing experiments count visits as trials and signups as successes. Email experiments (subject,
body, share) count sends with status ``sent`` as trials and take successes from the send's
outcome column for the experiment's metric. Only the current epoch counts: rows from before the
latest ``restart`` decision are left out, as the bandit leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import AllocationSnapshot, Decision, Experiment, Send, Variant, Visit
from engine.reports import DateRange
from engine.reports.experiment_tables import (
    allocation_table,
    cumulative_table,
    decision_table,
    status_headline,
    variant_table,
)
from engine.reports.sql import period_index, tune_for_reports, utc_day
from engine.reports.srm import SrmPeriod, constant_weight_periods, srm_table
from engine.reports.tables import Column, Table, iso

EMAIL_VARIANT_COLUMNS = {
    "subject": Send.subject_variant_id,
    "body": Send.body_variant_id,
    "share": Send.share_variant_id,
}
# Send outcome columns counted per variant (labels in experiment_tables.EMAIL_COUNTS).
OUTCOME_COLUMNS = {
    "delivered": Send.delivered_at,
    "human_opens": Send.first_open_at,
    "machine_opens": Send.machine_open_at,
    "human_clicks": Send.first_click_at,
    "scanner_clicks": Send.scanner_click_at,
    "signups": Send.converted_at,
    "unsubscribes": Send.unsubscribed_at,
    "spam_reports": Send.spam_report_at,
}
METRIC_COUNTS = {"open": "human_opens", "click": "human_clicks", "signup": "signups"}


class ExperimentNotFound(LookupError):
    """No experiment has the id asked for."""


@dataclass
class ExperimentReport:
    experiment: dict[str, Any]
    date_range: DateRange
    status: dict[str, Any]
    variants: Table
    decisions: Table
    allocation: Table
    cumulative: Table
    srm: Table
    srm_mismatch: bool
    posteriors: list[tuple[str, float, float]] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [self.variants, self.decisions, self.allocation, self.cumulative, self.srm]

    def as_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "range": self.date_range.as_json(),
            "status": self.status,
            "srm_mismatch": self.srm_mismatch,
            "tables": {table.name: table.as_json() for table in self.tables()},
        }


def list_experiments(session: so.Session) -> Table:
    """Every experiment with its kind, metric, status and number of variants."""
    variant_count = (
        sa.select(sa.func.count(Variant.id))
        .where(Variant.experiment_id == Experiment.id)
        .scalar_subquery()
    )
    rows = session.execute(
        sa.select(Experiment, variant_count).order_by(Experiment.created_at, Experiment.id)
    ).all()
    return Table(
        "experiments",
        "Experiments",
        [
            Column("id", "Id", "int"),
            Column("key", "Key"),
            Column("name", "Name"),
            Column("kind", "Kind"),
            Column("metric", "Metric"),
            Column("status", "Status"),
            Column("variants", "Variants", "int"),
            Column("policy_areas", "Policy areas"),
        ],
        [
            {
                "id": experiment.id,
                "key": experiment.key,
                "name": experiment.name,
                "kind": experiment.kind,
                "metric": experiment.metric,
                "status": experiment.status,
                "variants": count,
                "policy_areas": ", ".join(experiment.policy_areas or []),
            }
            for experiment, count in rows
        ],
    )


def experiment_report(
    session: so.Session, experiment_id: int, date_range: DateRange | None = None
) -> ExperimentReport:
    """Build the report of experiment ``experiment_id`` over ``date_range`` (default: all time).

    Raises :class:`ExperimentNotFound` when no such experiment exists.
    """
    date_range = date_range or DateRange()
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise ExperimentNotFound(f"no experiment with id {experiment_id}")
    variants = list(experiment.variants)
    keys = {variant.id: variant.key for variant in variants}
    epoch_start = session.scalar(
        sa.select(sa.func.max(Decision.created_at)).where(
            Decision.experiment_id == experiment.id, Decision.kind == "restart"
        )
    )
    snapshots = session.execute(
        sa.select(AllocationSnapshot.created_at, AllocationSnapshot.weights)
        .where(AllocationSnapshot.experiment_id == experiment.id)
        .order_by(AllocationSnapshot.created_at, AllocationSnapshot.id)
    ).all()
    periods = constant_weight_periods(
        [(at, weights) for at, weights in snapshots if epoch_start is None or at >= epoch_start]
    )
    tune_for_reports(session)
    counts = _variant_counts(session, experiment, date_range, epoch_start)
    period_trials, daily = _trials_by_period_and_success_day(
        session, experiment, date_range, epoch_start, periods
    )
    arm_table, posteriors, p_best = variant_table(experiment, variants, counts)
    decisions = list(
        session.scalars(
            sa.select(Decision)
            .where(Decision.experiment_id == experiment.id)
            .order_by(Decision.created_at, Decision.id)
        )
    )
    srm, mismatch = srm_table(periods, period_trials, keys)
    return ExperimentReport(
        experiment={
            "id": experiment.id,
            "key": experiment.key,
            "name": experiment.name,
            "kind": experiment.kind,
            "metric": experiment.metric,
            "status": experiment.status,
            "policy_areas": list(experiment.policy_areas or []),
            "epoch": experiment.epoch,
            "epoch_started_at": iso(epoch_start),
            "trials_are": "visits" if experiment.kind == "landing" else "sends with status sent",
        },
        date_range=date_range,
        status=status_headline(experiment, variants, decisions, epoch_start, p_best, arm_table),
        variants=arm_table,
        decisions=decision_table(decisions, keys, date_range),
        allocation=allocation_table(snapshots, keys, date_range),
        cumulative=cumulative_table(daily, keys),
        srm=srm,
        srm_mismatch=mismatch,
        posteriors=posteriors,
    )


def _trial_source(
    experiment: Experiment, date_range: DateRange, epoch_start: datetime | None
) -> tuple[sa.ColumnElement[int], sa.ColumnElement[datetime], list[sa.ColumnElement[bool]]]:
    """The variant column, the assignment instant and the filters of this experiment's trials."""
    ids = [variant.id for variant in experiment.variants]
    if experiment.kind == "landing":
        variant_column, assigned_at, when = (
            Visit.landing_variant_id,
            Visit.created_at,
            Visit.created_at,
        )
        filters = [variant_column.in_(ids)]
    else:
        variant_column = EMAIL_VARIANT_COLUMNS[experiment.kind]
        # Variants are chosen when the send row is planned; the range counts by when it went out.
        assigned_at, when = Send.created_at, Send.sent_at
        filters = [variant_column.in_(ids), Send.status == "sent"]
    filters += date_range.clauses(when)
    if epoch_start is not None:
        filters.append(when >= epoch_start)
    return variant_column, assigned_at, filters


def _variant_counts(
    session: so.Session,
    experiment: Experiment,
    date_range: DateRange,
    epoch_start: datetime | None,
) -> dict[int, dict[str, int]]:
    """Trials and each outcome per variant, from one scan grouped by variant."""
    variant_column, _, filters = _trial_source(experiment, date_range, epoch_start)
    if experiment.kind == "landing":
        outcomes: dict[str, Any] = {"signups": Visit.converted_at}
        source: Any = Visit
        metric_key = "signups"
    else:
        outcomes, source = OUTCOME_COLUMNS, Send
        metric_key = METRIC_COUNTS[experiment.metric]
    measures = [sa.func.count(column).label(key) for key, column in outcomes.items()]
    totals: dict[int, dict[str, int]] = {}
    for row in session.execute(
        sa.select(variant_column.label("variant_id"), sa.func.count().label("trials"), *measures)
        .select_from(source)
        .where(*filters)
        .group_by(variant_column)
    ).mappings():
        total = {key: value for key, value in row.items() if key != "variant_id"}
        total["successes"] = total[metric_key]
        totals[row["variant_id"]] = total
    return totals


def _trials_by_period_and_success_day(
    session: so.Session,
    experiment: Experiment,
    date_range: DateRange,
    epoch_start: datetime | None,
    periods: list[SrmPeriod],
) -> tuple[dict[tuple[int, int], int], dict[tuple[str, int], int]]:
    """Trials per (period index, variant) and successes per (UTC day, variant), in one scan.

    The scan groups by variant, allocation period of the assignment and day of the success
    (NULL for trials without one), counting rows only, so it stays narrow.
    """
    variant_column, assigned_at, filters = _trial_source(experiment, date_range, epoch_start)
    success_at = (
        Visit.converted_at
        if experiment.kind == "landing"
        else OUTCOME_COLUMNS[METRIC_COUNTS[experiment.metric]]
    )
    period = period_index(session, assigned_at, [p.start for p in periods]).label("period")
    day = utc_day(session, success_at).label("day")
    period_trials: dict[tuple[int, int], int] = {}
    daily: dict[tuple[str, int], int] = {}
    for variant_id, in_period, on_day, count in session.execute(
        sa.select(variant_column, period, day, sa.func.count())
        .select_from(Visit if experiment.kind == "landing" else Send)
        .where(*filters)
        .group_by(variant_column, period, day)
    ):
        key = (in_period, variant_id)
        period_trials[key] = period_trials.get(key, 0) + count
        if on_day is not None:
            daily[(on_day, variant_id)] = daily.get((on_day, variant_id), 0) + count
    return period_trials, daily
