"""The funnel: delivered → human open → click → visit → signup → groups ticked.

Counted per send cohort (sends with status ``sent`` whose hour sent is in the range, with every
outcome they reached whenever it arrived), per mailing and per email variant, each step with its
share of the step before. The counts come from the send rollups, one row per mailing, variant
combination and hour (:class:`~engine.models.SendRollup`); Python only adds those few rows up by
mailing and by variant.
A landing table does the same for visits → signups → groups ticked per landing variant, per
visit cohort (:class:`~engine.models.VisitRollup`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Experiment, Mailing, SendRollup, Variant, VisitRollup
from engine.models.rollups import NO_VARIANT
from engine.reports import DateRange
from engine.reports.tables import Column, Table, ratio

STEPS = (
    ("delivered", "Delivered"),
    ("human_opens", "Human opens"),
    ("clicks", "Human clicks"),
    ("visits", "Visits"),
    ("signups", "Signups"),
    ("groups_ticked", "Groups ticked"),
)
KEYS = ("mailing_id", "subject_variant_id", "body_variant_id", "share_variant_id")


@dataclass
class FunnelReport:
    date_range: DateRange
    total: Table
    steps: Table
    by_mailing: Table
    by_variant: Table
    landing: Table

    def tables(self) -> list[Table]:
        return [self.steps, self.total, self.by_mailing, self.by_variant, self.landing]

    def as_json(self) -> dict[str, Any]:
        return {
            "range": self.date_range.as_json(),
            "tables": {table.name: table.as_json() for table in self.tables()},
        }


def funnel_report(session: so.Session, date_range: DateRange | None = None) -> FunnelReport:
    """Build the funnel over sends sent in ``date_range`` (default: all time)."""
    date_range = date_range or DateRange()
    combos = _combination_counts(session, date_range)
    mailing_keys = dict(session.execute(sa.select(Mailing.id, Mailing.key)).all())
    variant_labels = {
        variant_id: (experiment_key, kind, variant_key)
        for variant_id, experiment_key, kind, variant_key in session.execute(
            sa.select(Variant.id, Experiment.key, Experiment.kind, Variant.key).join(
                Experiment, Variant.experiment_id == Experiment.id
            )
        )
    }
    total = _sum_by(combos, lambda key: ())
    by_mailing = _sum_by(combos, lambda key: key[0])
    by_variant: dict[int, dict[str, int]] = {}
    for position in (1, 2, 3):
        for variant_id, counts in _sum_by(combos, lambda key, p=position: key[p]).items():
            if variant_id is not None:
                by_variant[variant_id] = counts

    step_columns = _step_columns()
    total_table = Table(
        "total",
        "Funnel, all mailings",
        [Column("sent", "Sent", "int"), *step_columns],
        [_with_rates(total.get((), {}))],
    )
    mailing_rows = [
        {"mailing": mailing_keys.get(mailing_id, str(mailing_id)), **_with_rates(counts)}
        for mailing_id, counts in sorted(by_mailing.items())
    ]
    variant_rows = []
    for variant_id, counts in sorted(by_variant.items(), key=lambda item: variant_labels[item[0]]):
        experiment_key, kind, variant_key = variant_labels[variant_id]
        variant_rows.append(
            {
                "experiment": experiment_key,
                "kind": kind,
                "variant": variant_key,
                **_with_rates(counts),
            }
        )
    return FunnelReport(
        date_range=date_range,
        total=total_table,
        steps=_steps_table(total_table.rows[0]),
        by_mailing=Table(
            "by_mailing",
            "Funnel per mailing",
            [Column("mailing", "Mailing"), Column("sent", "Sent", "int"), *step_columns],
            mailing_rows,
        ),
        by_variant=Table(
            "by_variant",
            "Funnel per email variant",
            [
                Column("experiment", "Experiment"),
                Column("kind", "Kind"),
                Column("variant", "Variant"),
                Column("sent", "Sent", "int"),
                *step_columns,
            ],
            variant_rows,
            note="A send is counted once for each of its subject, body and share variants.",
        ),
        landing=_landing_table(session, date_range, variant_labels),
    )


def _step_columns() -> list[Column]:
    columns = []
    for index, (key, label) in enumerate(STEPS):
        columns.append(Column(key, label, "int"))
        if key == "groups_ticked":
            columns.append(Column("groups_per_signup", "Groups per signup", "float"))
        elif index:
            columns.append(
                Column(f"{key}_rate", f"{label} / {STEPS[index - 1][1].lower()}", "rate")
            )
        else:
            columns.append(Column("delivered_rate", "Delivered / sent", "rate"))
    return columns


def _with_rates(counts: dict[str, int]) -> dict[str, Any]:
    """Counts of each step with its share of the step before (the drop is one minus it)."""
    row: dict[str, Any] = {"sent": counts.get("sent", 0)}
    previous = "sent"
    for key, _ in STEPS:
        row[key] = counts.get(key, 0)
        rate_key = "groups_per_signup" if key == "groups_ticked" else f"{key}_rate"
        row[rate_key] = ratio(row[key], row[previous])
        previous = key
    return row


# Funnel step → send rollup counter.
_STEP_COUNTERS = {
    "sent": SendRollup.sent,
    "delivered": SendRollup.delivered,
    "human_opens": SendRollup.human_opens,
    "clicks": SendRollup.human_clicks,
    "visits": SendRollup.visited,
    "signups": SendRollup.signups,
    "groups_ticked": SendRollup.groups_ticked,
}


def _combination_counts(
    session: so.Session, date_range: DateRange
) -> dict[tuple[Any, ...], dict[str, int]]:
    """Step counts per (mailing, subject, body, share variant) combination (``None``: no
    variant of that kind), from the send rollups of the range."""
    keys = [getattr(SendRollup, name) for name in KEYS]
    statement = (
        sa.select(*keys, *(sa.func.sum(c).label(step) for step, c in _STEP_COUNTERS.items()))
        .where(*date_range.clauses(SendRollup.sent_hour))
        .group_by(*keys)
    )
    return {
        tuple(None if value == NO_VARIANT else value for value in row[: len(KEYS)]): {
            # int(): PostgreSQL's sum() is a NUMERIC (Decimal), which is not a JSON number.
            step: int(value)
            for step, value in zip(_STEP_COUNTERS, row[len(KEYS) :], strict=True)
        }
        for row in session.execute(statement)
    }


def _sum_by(
    combos: dict[tuple[Any, ...], dict[str, int]], key_of: Any
) -> dict[Any, dict[str, int]]:
    sums: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for combination, counts in combos.items():
        target = sums[key_of(combination)]
        for name, value in counts.items():
            target[name] += value
    return sums


def _landing_table(
    session: so.Session, date_range: DateRange, labels: dict[int, tuple[str, str, str]]
) -> Table:
    totals = session.execute(
        sa.select(
            VisitRollup.landing_variant_id,
            sa.func.sum(VisitRollup.visits),
            sa.func.sum(VisitRollup.signups),
            sa.func.sum(VisitRollup.groups_ticked),
        )
        .where(*date_range.clauses(VisitRollup.visit_hour))
        .group_by(VisitRollup.landing_variant_id)
    ).all()
    visits = [(variant_id, int(n), int(signups)) for variant_id, n, signups, _ in totals]
    ticked = {variant_id: int(count) for variant_id, _, _, count in totals}
    rows = []
    for variant_id, visit_count, signups in sorted(visits, key=lambda r: labels[r[0]]):
        experiment_key, _, variant_key = labels[variant_id]
        rows.append(
            {
                "experiment": experiment_key,
                "variant": variant_key,
                "visits": visit_count,
                "signups": signups,
                "signups_rate": ratio(signups, visit_count),
                "groups_ticked": ticked.get(variant_id, 0),
                "groups_per_signup": ratio(ticked.get(variant_id, 0), signups),
            }
        )
    return Table(
        "landing",
        "Landing funnel per landing variant",
        [
            Column("experiment", "Experiment"),
            Column("variant", "Variant"),
            Column("visits", "Visits", "int"),
            Column("signups", "Signups", "int"),
            Column("signups_rate", "Signups / visits", "rate"),
            Column("groups_ticked", "Groups ticked", "int"),
            Column("groups_per_signup", "Groups per signup", "float"),
        ],
        rows,
    )


def _steps_table(total: dict[str, Any]) -> Table:
    """The total funnel one step per row, with what each step lost from the one before."""
    rows = []
    previous = None
    for key, label in (("sent", "Sent"), *STEPS):
        count = total[key]
        row: dict[str, Any] = {"step": label, "count": count}
        if previous is None or key == "groups_ticked":
            # Ticking several groups multiplies signups: there is no drop to speak of.
            row.update(of_previous=None, drop=None, drop_rate=None)
        else:
            row.update(
                of_previous=ratio(count, previous),
                drop=previous - count,
                drop_rate=ratio(previous - count, previous),
            )
        rows.append(row)
        previous = count
    return Table(
        "steps",
        "Funnel steps, all mailings",
        [
            Column("step", "Step"),
            Column("count", "Count", "int"),
            Column("of_previous", "Share of previous step", "rate"),
            Column("drop", "Drop from previous step", "int"),
            Column("drop_rate", "Drop rate", "rate"),
        ],
        rows,
        note="Counts are sends of the range reaching each step, whenever they reached it; groups "
        "ticked counts signup rows.",
    )


def overall_steps(report: FunnelReport) -> list[tuple[str, int]]:
    """(label, count) of each step of the total funnel, for the chart."""
    row = report.total.rows[0]
    return [("Sent", row["sent"]), *((label, row[key]) for key, label in STEPS)]
