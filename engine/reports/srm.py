"""Sample-ratio-mismatch check that knows about bandit reweighting.

A bandit moves the weights on purpose, so comparing all trials with one split would always cry
wolf. Instead the allocation history (AllocationSnapshot rows) is cut into periods of constant
weights, and within each period the trials each arm received are compared with the weights in
force by a chi-square goodness-of-fit test. A period is flagged when p < 0.001, or when an arm
whose weight was zero received trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.reports.tables import Column, Table, iso, sig

MISMATCH_P_VALUE = 0.001
# The chi-square approximation needs a handful of expected trials per arm.
MIN_EXPECTED_TRIALS = 5.0
# Weights that differ by less than this are the same split (they are stored as floats).
WEIGHT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SrmPeriod:
    """Weights in force from ``start`` until the next period starts (``end``; None = still)."""

    start: datetime
    end: datetime | None
    weights: dict[int, float]


def constant_weight_periods(
    snapshots: Sequence[tuple[datetime, Mapping[str, Any]]],
) -> list[SrmPeriod]:
    """Merge consecutive snapshots with the same weights into periods, oldest first."""
    merged: list[tuple[datetime, dict[int, float]]] = []
    for at, raw in snapshots:
        weights = {int(key): float(value) for key, value in raw.items() if float(value) > 0}
        if merged and _same_split(merged[-1][1], weights):
            continue
        merged.append((at, weights))
    return [
        SrmPeriod(start, merged[i + 1][0] if i + 1 < len(merged) else None, weights)
        for i, (start, weights) in enumerate(merged)
    ]


def _same_split(first: dict[int, float], second: dict[int, float]) -> bool:
    if first.keys() != second.keys():
        return False
    return all(abs(first[key] - second[key]) <= WEIGHT_TOLERANCE for key in first)


def srm_table(
    periods: list[SrmPeriod],
    period_trials: Mapping[tuple[int, int], int],
    keys: Mapping[int, str],
    *,
    cut_by_boundaries: int = 0,
) -> tuple[Table, bool]:
    """One row per period with trials; returns the table and whether any period is flagged.

    ``period_trials[(p, variant_id)]`` counts trials assigned in period ``p`` (1-based: the
    number of period starts at or before the trial; 0 is before the first snapshot).
    ``cut_by_boundaries`` trials fell in hour buckets a period boundary cuts in two: they are
    in no period, and the note says how many.
    """
    from scipy.stats import chisquare

    columns = [
        Column("start", "From (UTC)"),
        Column("end", "Until (UTC)"),
        Column("trials", "Trials", "int"),
    ]
    for key in keys.values():
        columns += [
            Column(f"weight_{key}", f"{key} weight", "rate"),
            Column(f"observed_{key}", f"{key} observed", "int"),
            Column(f"expected_{key}", f"{key} expected", "float"),
        ]
    columns += [
        Column("chi_square", "Chi-square", "float"),
        Column("p_value", "p", "probability"),
        Column("mismatch", "Mismatch", "bool"),
        Column("note", "Note"),
    ]
    rows = []
    any_mismatch = False
    for index, period in enumerate(periods, start=1):
        observed = {vid: period_trials.get((index, vid), 0) for vid in keys}
        total = sum(observed.values())
        if total == 0:
            continue
        weight_sum = sum(period.weights.get(vid, 0.0) for vid in keys)
        expected = {
            vid: total * period.weights.get(vid, 0.0) / weight_sum if weight_sum else 0.0
            for vid in keys
        }
        row: dict[str, Any] = {"start": iso(period.start), "end": iso(period.end), "trials": total}
        for vid, key in keys.items():
            row[f"weight_{key}"] = (
                sig(period.weights.get(vid, 0.0) / weight_sum) if weight_sum else 0.0
            )
            row[f"observed_{key}"] = observed[vid]
            row[f"expected_{key}"] = sig(expected[vid])
        live = [vid for vid in keys if expected[vid] > 0]
        stray = [keys[vid] for vid in keys if expected[vid] == 0 and observed[vid] > 0]
        chi_square = p_value = None
        if stray:
            mismatch, note = True, f"trials on arms with weight 0: {', '.join(stray)}"
        elif len(live) < 2:
            mismatch, note = False, "one arm in force: nothing to compare"
        elif min(expected[vid] for vid in live) < MIN_EXPECTED_TRIALS:
            mismatch, note = False, "too few trials to test"
        else:
            result = chisquare([observed[v] for v in live], [expected[v] for v in live])
            chi_square, p_value = sig(result.statistic), sig(result.pvalue)
            mismatch = bool(result.pvalue < MISMATCH_P_VALUE)
            note = (
                f"p < {MISMATCH_P_VALUE:g}: the split is not what the weights say"
                if mismatch
                else ""
            )
        row.update(chi_square=chi_square, p_value=p_value, mismatch=mismatch, note=note)
        any_mismatch = any_mismatch or mismatch
        rows.append(row)
    note = (
        "Trials are placed in periods by the hour they were made (sends: hour sent; visits: "
        "hour of the visit). Trials before the first allocation snapshot have no known weights, "
        "and an hour in which the weights changed mixes two splits: neither is tested."
    )
    if cut_by_boundaries:
        note += f" Trials in such mixed hours: {cut_by_boundaries}."
    table = Table(
        "srm", "Sample ratio check (per period of constant weights)", columns, rows, note=note
    )
    return table, any_mismatch
