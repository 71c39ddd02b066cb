"""Tables of the experiment report: variants with their posterior statistics, status, history.

Built from the per-variant counts :mod:`engine.reports.experiment` reads; the statistics are the
pure functions of :mod:`engine.stats`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from engine import stats
from engine.models import Decision, Experiment, Variant
from engine.reports import DateRange
from engine.reports.tables import Column, Table, iso, ratio, sig

# Send outcome columns counted per variant, in report order: key and label.
EMAIL_COUNTS = (
    ("delivered", "Delivered"),
    ("human_opens", "Human opens"),
    ("machine_opens", "Machine opens"),
    ("human_clicks", "Human clicks"),
    ("scanner_clicks", "Suspected scanner clicks"),
    ("signups", "Signups"),
    ("unsubscribes", "Unsubscribes"),
    ("spam_reports", "Spam reports"),
)


def variant_table(
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
        # Per arm i: the 95th percentile of (θ_max − θ_i) / θ_i (Scott 2015 for the champion).
        remaining = np.atleast_1d(stats.value_remaining(alpha, beta))
        for index, variant in enumerate(arms):
            by_arm[variant.id] = {
                "posterior_mean": sig(mean[index]),
                "ci_low": sig(low[index]),
                "ci_high": sig(high[index]),
                "p_best": sig(best[index]),
                "expected_loss": sig(loss[index]),
                "value_remaining": sig(remaining[index]),
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
        columns += [Column(key, label, "int") for key, label in EMAIL_COUNTS]
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
            row.update({key: count.get(key, 0) for key, _ in EMAIL_COUNTS})
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


def status_headline(
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


def decision_table(decisions: list[Decision], keys: dict[int, str], date_range: DateRange) -> Table:
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


def allocation_table(snapshots: list[Any], keys: dict[int, str], date_range: DateRange) -> Table:
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


def cumulative_table(daily: dict[tuple[str, int], int], keys: dict[int, str]) -> Table:
    """Successes per variant per cohort day (the UTC day of the trial), with the running total."""
    running: dict[int, int] = {}
    rows = []
    for (day, variant_id), count in sorted(daily.items()):
        running[variant_id] = running.get(variant_id, 0) + count
        rows.append(
            {
                "day": day,
                "variant": keys[variant_id],
                "conversions": count,
                "cumulative": running[variant_id],
            }
        )
    columns = [
        Column("day", "Cohort day (UTC)"),
        Column("variant", "Variant"),
        Column("conversions", "Successes of that day's trials", "int"),
        Column("cumulative", "Cumulative", "int"),
    ]
    return Table(
        "cumulative",
        "Cumulative successes per variant, by cohort day",
        columns,
        rows,
        note="A success counts on the day of its trial (the send went out, the visit happened), "
        "not the day it arrived: recent days are still filling in as late conversions arrive.",
    )


def _in_range(at: datetime, date_range: DateRange) -> bool:
    start, stop = date_range.start_at, date_range.stop_at
    return (start is None or at >= start) and (stop is None or at < stop)
