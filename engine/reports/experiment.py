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

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import stats
from engine.models import AllocationSnapshot, Decision, Experiment, Send, Variant, Visit
from engine.reports import DateRange
from engine.reports.sql import period_index, utc_day
from engine.reports.srm import SrmPeriod, constant_weight_periods, srm_table
from engine.reports.tables import Column, Table, iso, ratio, sig

EMAIL_VARIANT_COLUMNS = {
    "subject": Send.subject_variant_id,
    "body": Send.body_variant_id,
    "share": Send.share_variant_id,
}
METRIC_COLUMNS = {
    "open": Send.first_open_at,
    "click": Send.first_click_at,
    "signup": Send.converted_at,
}
# Send outcome columns counted per variant, in report order: key, label, column.
EMAIL_COUNTS = (
    ("delivered", "Delivered", Send.delivered_at),
    ("human_opens", "Human opens", Send.first_open_at),
    ("machine_opens", "Machine opens", Send.machine_open_at),
    ("human_clicks", "Human clicks", Send.first_click_at),
    ("scanner_clicks", "Suspected scanner clicks", Send.scanner_click_at),
    ("signups", "Signups", Send.converted_at),
    ("unsubscribes", "Unsubscribes", Send.unsubscribed_at),
    ("spam_reports", "Spam reports", Send.spam_report_at),
)
# Value remaining is Monte Carlo: the champion gets the policy's full draw count, the other arms
# a screening precision, so a 20-arm report stays fast.
SCREENING_DRAWS = 5_000


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
    counts, period_trials = _count_trials(session, experiment, date_range, epoch_start, periods)
    arm_table, posteriors, p_best = _variant_table(experiment, variants, counts)
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
        status=_status(experiment, variants, decisions, epoch_start, p_best, arm_table),
        variants=arm_table,
        decisions=_decision_table(decisions, keys, date_range),
        allocation=_allocation_table(snapshots, keys, date_range),
        cumulative=_cumulative_table(session, experiment, date_range, epoch_start, keys),
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


def _count_trials(
    session: so.Session,
    experiment: Experiment,
    date_range: DateRange,
    epoch_start: datetime | None,
    periods: list[SrmPeriod],
) -> tuple[dict[int, dict[str, int]], dict[tuple[int, int], int]]:
    """Per-variant totals, and trials per (period index, variant), from one grouped scan."""
    variant_column, assigned_at, filters = _trial_source(experiment, date_range, epoch_start)
    period = period_index(assigned_at, [p.start for p in periods]).label("period")
    if experiment.kind == "landing":
        measures = [
            sa.func.count().label("trials"),
            sa.func.count(Visit.converted_at).label("signups"),
        ]
        source: Any = Visit
    else:
        measures = [sa.func.count().label("trials")]
        measures += [sa.func.count(column).label(key) for key, _, column in EMAIL_COUNTS]
        source = Send
    rows = session.execute(
        sa.select(variant_column.label("variant_id"), period, *measures)
        .select_from(source)
        .where(*filters)
        .group_by(variant_column, period)
    ).mappings()
    totals: dict[int, dict[str, int]] = {}
    period_trials: dict[tuple[int, int], int] = {}
    for row in rows:
        total = totals.setdefault(row["variant_id"], {})
        for key, value in row.items():
            if key not in ("variant_id", "period"):
                total[key] = total.get(key, 0) + value
        period_trials[(row["period"], row["variant_id"])] = row["trials"]
    metric_key = "signups" if experiment.kind == "landing" else _metric_count_key(experiment.metric)
    for total in totals.values():
        total["successes"] = total[metric_key]
    return totals, period_trials


def _metric_count_key(metric: str) -> str:
    return {"open": "human_opens", "click": "human_clicks", "signup": "signups"}[metric]


def _variant_table(
    experiment: Experiment, variants: list[Variant], counts: dict[int, dict[str, int]]
) -> tuple[Table, list[tuple[str, float, float]], dict[int, float]]:
    """The per-variant table; arms compared are the variants that are not retired."""
    email = experiment.kind != "landing"
    arms = [variant for variant in variants if variant.status != "retired"]
    trials = np.array([counts.get(v.id, {}).get("trials", 0) for v in arms], dtype=float)
    successes = np.array([counts.get(v.id, {}).get("successes", 0) for v in arms], dtype=float)
    by_arm: dict[int, dict[str, float]] = {}
    posteriors: list[tuple[str, float, float]] = []
    p_best_of: dict[int, float] = {}
    if arms:
        alpha, beta = stats.posterior(
            trials, successes, experiment.prior_alpha, experiment.prior_beta
        )
        mean = stats.posterior_mean(alpha, beta)
        low, high = stats.credible_interval(alpha, beta, 0.95)
        best = stats.p_best(alpha, beta)
        loss = stats.expected_loss(alpha, beta)
        champion = int(np.argmax(best))
        for index, variant in enumerate(arms):
            remaining = stats.value_remaining(
                alpha,
                beta,
                champion=index,
                draws=stats.VALUE_REMAINING_DRAWS if index == champion else SCREENING_DRAWS,
            )
            by_arm[variant.id] = {
                "posterior_mean": sig(mean[index]),
                "ci_low": sig(low[index]),
                "ci_high": sig(high[index]),
                "p_best": sig(best[index]),
                "expected_loss": sig(loss[index]),
                "value_remaining": sig(remaining),
            }
            posteriors.append((variant.key, float(alpha[index]), float(beta[index])))
            p_best_of[variant.id] = float(best[index])
    columns = [
        Column("variant", "Variant"),
        Column("name", "Name"),
        Column("status", "Status"),
        Column("is_control", "Control", "bool"),
        Column("trials", "Trials", "int"),
    ]
    if email:
        columns += [Column(key, label, "int") for key, label, _ in EMAIL_COUNTS]
    else:
        columns.append(Column("signups", "Signups", "int"))
    columns += [
        Column("successes", f"Successes ({experiment.metric if email else 'signup'})", "int"),
        Column("rate", "Observed rate", "rate"),
        Column("posterior_mean", "Posterior mean", "rate"),
        Column("ci_low", "95% CI low", "rate"),
        Column("ci_high", "95% CI high", "rate"),
        Column("p_best", "P(best)", "probability"),
        Column("expected_loss", "Expected loss", "rate"),
        Column("value_remaining", "Value remaining (95th pct, relative)", "rate"),
        Column("allocation", "Current allocation", "rate"),
    ]
    rows = []
    for variant in variants:
        count = counts.get(variant.id, {})
        row: dict[str, Any] = {
            "variant": variant.key,
            "name": variant.name,
            "status": variant.status,
            "is_control": variant.is_control,
            "trials": count.get("trials", 0),
        }
        if email:
            row.update({key: count.get(key, 0) for key, _, _ in EMAIL_COUNTS})
        else:
            row["signups"] = count.get("signups", 0)
        row["successes"] = count.get("successes", 0)
        row["rate"] = ratio(row["successes"], row["trials"])
        row.update(
            by_arm.get(
                variant.id,
                dict.fromkeys(
                    ("posterior_mean", "ci_low", "ci_high", "p_best", "expected_loss"), None
                )
                | {"value_remaining": None},
            )
        )
        row["allocation"] = sig(variant.weight)
        rows.append(row)
    table = Table(
        "variants",
        "Variants",
        columns,
        rows,
        note="Rates are per trial; the interval is the equal-tailed 95% credible interval of the "
        f"Beta({experiment.prior_alpha:g}, {experiment.prior_beta:g}) posterior. Retired variants "
        "are listed but not compared.",
    )
    return table, posteriors, p_best_of


def _status(
    experiment: Experiment,
    variants: list[Variant],
    decisions: list[Decision],
    epoch_start: datetime | None,
    p_best: dict[int, float],
    arm_table: Table,
) -> dict[str, Any]:
    """A plain-language headline: the winner, or "no clear winner" and why."""
    current = [d for d in decisions if epoch_start is None or d.created_at >= epoch_start]
    keys = {variant.id: variant.key for variant in variants}
    final = next((d for d in reversed(current) if d.kind in ("promote", "no_clear_winner")), None)
    if final is not None and final.kind == "promote":
        winner = keys.get(final.variant_id or -1)
        return {
            "decided": True,
            "winner": winner,
            "headline": f"Winner: {winner}, promoted {final.created_at:%Y-%m-%d %H:%M} UTC "
            f"by {final.actor}: {final.reason}",
        }
    if final is not None:
        headline = f"No clear winner: {final.reason}"
    elif not p_best or sum(row["trials"] for row in arm_table.rows) == 0:
        headline = "No clear winner yet: no trials recorded."
    else:
        leader = max(p_best, key=lambda variant_id: p_best[variant_id])
        headline = (
            f"No clear winner yet: {keys[leader]} leads with P(best) {p_best[leader]:.3f}; "
            f"promotion needs {experiment.p_best_threshold:g}."
        )
    return {"decided": False, "winner": None, "headline": headline}


def _decision_table(
    decisions: list[Decision], keys: dict[int, str], date_range: DateRange
) -> Table:
    rows = [
        {
            "at": iso(decision.created_at),
            "kind": decision.kind,
            "variant": keys.get(decision.variant_id) if decision.variant_id else None,
            "actor": decision.actor,
            "reason": decision.reason,
            "snapshot": decision.snapshot,
        }
        for decision in decisions
        if _in_range(decision.created_at, date_range)
    ]
    columns = [
        Column("at", "When (UTC)"),
        Column("kind", "Decision"),
        Column("variant", "Variant"),
        Column("actor", "By"),
        Column("reason", "Reason"),
        Column("snapshot", "Posterior snapshot"),
    ]
    return Table("decisions", "Decision history", columns, rows)


def _allocation_table(snapshots: list[Any], keys: dict[int, str], date_range: DateRange) -> Table:
    rows = []
    for at, weights in snapshots:
        if not _in_range(at, date_range):
            continue
        for variant_id, key in keys.items():
            rows.append(
                {"at": iso(at), "variant": key, "weight": sig(weights.get(str(variant_id), 0.0))}
            )
    columns = [
        Column("at", "When (UTC)"),
        Column("variant", "Variant"),
        Column("weight", "Share", "rate"),
    ]
    return Table("allocation", "Allocation share over time", columns, rows)


def _cumulative_table(
    session: so.Session,
    experiment: Experiment,
    date_range: DateRange,
    epoch_start: datetime | None,
    keys: dict[int, str],
) -> Table:
    """Successes per variant per UTC day of the success, with the running total."""
    variant_column, _, filters = _trial_source(experiment, date_range, epoch_start)
    success_at = (
        Visit.converted_at if experiment.kind == "landing" else METRIC_COLUMNS[experiment.metric]
    )
    day = utc_day(session, success_at).label("day")
    rows = session.execute(
        sa.select(variant_column, day, sa.func.count())
        .select_from(Visit if experiment.kind == "landing" else Send)
        .where(*filters, success_at.is_not(None))
        .group_by(variant_column, day)
        .order_by(day, variant_column)
    ).all()
    running: dict[int, int] = {}
    out = []
    for variant_id, on_day, count in rows:
        running[variant_id] = running.get(variant_id, 0) + count
        out.append(
            {
                "day": on_day,
                "variant": keys[variant_id],
                "conversions": count,
                "cumulative": running[variant_id],
            }
        )
    columns = [
        Column("day", "Day (UTC)"),
        Column("variant", "Variant"),
        Column("conversions", "Successes that day", "int"),
        Column("cumulative", "Cumulative", "int"),
    ]
    return Table("cumulative", "Cumulative successes per variant", columns, out)


def _in_range(at: datetime, date_range: DateRange) -> bool:
    start, stop = date_range.start_at, date_range.stop_at
    return (start is None or at >= start) and (stop is None or at < stop)
