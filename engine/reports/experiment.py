"""The experiment report: per-variant counts, posterior statistics, decisions and allocation.

Landing experiments count visits as trials and signups as successes. Email experiments (subject,
body, share) count sends with status ``sent`` as trials and take successes from the send's
outcome for the experiment's metric. The counts come from the rollups, per hour bucket of the
trial (:mod:`engine.reports.experiment_counts`): outcomes belong to their trial's cohort. Only
the current epoch counts: buckets from before the latest ``restart`` decision are left out, as
the bandit leaves them out (the restart's own hour is left out too unless it began on the hour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import AllocationSnapshot, Decision, Experiment, Variant
from engine.reports import DateRange
from engine.reports.experiment_counts import epoch_cutoff, experiment_counts
from engine.reports.experiment_tables import (
    allocation_table,
    cumulative_table,
    decision_table,
    status_headline,
    variant_table,
)
from engine.reports.srm import constant_weight_periods, srm_table
from engine.reports.tables import Column, Table, iso


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
    counts = experiment_counts(session, experiment, date_range, epoch_start, periods)
    arm_table, posteriors, p_best = variant_table(experiment, variants, counts.per_variant)
    decisions = list(
        session.scalars(
            sa.select(Decision)
            .where(Decision.experiment_id == experiment.id)
            .order_by(Decision.created_at, Decision.id)
        )
    )
    srm, mismatch = srm_table(
        periods, counts.period_trials, keys, cut_by_boundaries=counts.trials_cut_by_boundaries
    )
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
            "counted_from": iso(epoch_cutoff(epoch_start)),
            "trials_are": "visits" if experiment.kind == "landing" else "sends with status sent",
        },
        date_range=date_range,
        status=status_headline(experiment, variants, decisions, epoch_start, p_best, arm_table),
        variants=arm_table,
        decisions=decision_table(decisions, keys, date_range),
        allocation=allocation_table(snapshots, keys, date_range),
        cumulative=cumulative_table(counts.daily, keys),
        srm=srm,
        srm_mismatch=mismatch,
        posteriors=posteriors,
    )
