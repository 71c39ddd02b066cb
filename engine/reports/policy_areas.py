"""How messaging tagged with each policy area converts, across experiments.

Each experiment's trials and successes are counted as in the experiment report (sends with status
``sent`` for email kinds, visits for landing pages, read from the rollups by the hour of the
trial) over every epoch, then pooled per policy area
(``Experiment.policy_areas``) and metric: rates of different metrics are never mixed. The pooled
rate carries a 95% credible interval under a Beta(1, 1) prior.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import stats
from engine.models import Experiment, SendRollup, Variant, VisitRollup
from engine.models.rollups import NO_VARIANT
from engine.reports import DateRange
from engine.reports.tables import Column, Table, ratio, sig

UNTAGGED = "(untagged)"
# Send rollup counter of the successes of each metric.
SUCCESS_COUNTERS = {
    "open": SendRollup.human_opens,
    "click": SendRollup.human_clicks,
    "signup": SendRollup.signups,
}


@dataclass
class PolicyAreaReport:
    date_range: DateRange
    areas: Table
    experiments: Table

    def tables(self) -> list[Table]:
        return [self.areas, self.experiments]

    def as_json(self) -> dict[str, Any]:
        return {
            "range": self.date_range.as_json(),
            "tables": {table.name: table.as_json() for table in self.tables()},
        }


def policy_area_report(
    session: so.Session, date_range: DateRange | None = None
) -> PolicyAreaReport:
    """Pool trials and successes by policy area and metric over ``date_range`` (default: all)."""
    date_range = date_range or DateRange()
    experiments = list(session.scalars(sa.select(Experiment).order_by(Experiment.key)))
    experiment_of = dict(session.execute(sa.select(Variant.id, Variant.experiment_id)).all())
    by_metric = {e.id: e.metric for e in experiments}
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # experiment id → trials, successes
    columns = (
        SendRollup.subject_variant_id,
        SendRollup.body_variant_id,
        SendRollup.share_variant_id,
    )
    outcomes = [sa.func.sum(counter).label(metric) for metric, counter in SUCCESS_COUNTERS.items()]
    for row in session.execute(
        sa.select(*columns, sa.func.sum(SendRollup.sent).label("trials"), *outcomes)
        .where(*date_range.clauses(SendRollup.sent_hour))
        .group_by(*columns)
    ).mappings():
        for column in columns:
            variant_id = row[column.key]
            if variant_id != NO_VARIANT:
                experiment_id = experiment_of[variant_id]
                counts[experiment_id][0] += int(row["trials"])
                counts[experiment_id][1] += int(row[by_metric[experiment_id]])
    for variant_id, visits, signups in session.execute(
        sa.select(
            VisitRollup.landing_variant_id,
            sa.func.sum(VisitRollup.visits),
            sa.func.sum(VisitRollup.signups),
        )
        .where(*date_range.clauses(VisitRollup.visit_hour))
        .group_by(VisitRollup.landing_variant_id)
    ):
        counts[experiment_of[variant_id]][0] += int(visits)
        counts[experiment_of[variant_id]][1] += int(signups)

    experiment_rows = []
    pooled: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for experiment in experiments:
        trials, successes = counts.get(experiment.id, (0, 0))
        areas = list(experiment.policy_areas or []) or [UNTAGGED]
        metric = "signup" if experiment.kind == "landing" else experiment.metric
        experiment_rows.append(
            {
                "experiment": experiment.key,
                "kind": experiment.kind,
                "metric": metric,
                "policy_areas": ", ".join(areas),
                "trials": trials,
                "successes": successes,
                "rate": ratio(successes, trials),
            }
        )
        for area in areas:
            totals = pooled[(area, metric)]
            totals[0] += 1
            totals[1] += trials
            totals[2] += successes
    area_rows = []
    for (area, metric), (experiment_count, trials, successes) in sorted(pooled.items()):
        alpha, beta = stats.posterior([trials], [successes])
        low, high = stats.credible_interval(alpha, beta)
        area_rows.append(
            {
                "policy_area": area,
                "metric": metric,
                "experiments": experiment_count,
                "trials": trials,
                "successes": successes,
                "rate": ratio(successes, trials),
                "ci_low": sig(low[0]),
                "ci_high": sig(high[0]),
            }
        )
    return PolicyAreaReport(
        date_range,
        Table(
            "areas",
            "Conversion by policy area",
            [
                Column("policy_area", "Policy area"),
                Column("metric", "Metric"),
                Column("experiments", "Experiments", "int"),
                Column("trials", "Trials", "int"),
                Column("successes", "Successes", "int"),
                Column("rate", "Rate", "rate"),
                Column("ci_low", "95% CI low", "rate"),
                Column("ci_high", "95% CI high", "rate"),
            ],
            area_rows,
            note="An experiment tagged with several areas counts in each of them.",
        ),
        Table(
            "experiments",
            "Experiments and their policy areas",
            [
                Column("experiment", "Experiment"),
                Column("kind", "Kind"),
                Column("metric", "Metric"),
                Column("policy_areas", "Policy areas"),
                Column("trials", "Trials", "int"),
                Column("successes", "Successes", "int"),
                Column("rate", "Rate", "rate"),
            ],
            experiment_rows,
        ),
    )
