"""The counters that move with sends' outcomes: the variants' (what the bandit reads) and the
send rollups (what the reports read), in the caller's transaction.

An outcome column first set on a send credits each of the send's variants once and adds one to
its rollup bucket (the hour it was sent); one cleared (a click reclassified as a scanner's)
takes them back. Variants are updated before rollups, each in key order: the lock order of
:mod:`engine.reports.rollups`. Statements run on the driver's cursor (:mod:`webhooks.native`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy.orm as so

from engine import outcomes
from engine.models import SendRollup
from engine.reports import rollups
from webhooks import native
from webhooks.native import Driver

# Send outcome column -> the credited outcome when it is first set.
CREDITED = {
    "first_open_at": "open",
    "first_click_at": "click",
    "spam_report_at": "spam_report",
    "unsubscribed_at": "unsubscribe",
}
# Send outcome column -> its rollup counter (signups have their own write point).
_ROLLED_UP = {column: name for name, column in rollups.SEND_OUTCOMES.items()}


def count_changes(
    session: so.Session,
    db: Driver,
    current: dict[int, dict[str, Any]],
    proposed: dict[int, dict[str, Any]],
    changed: Mapping[int, tuple[str, ...]],
) -> None:
    """Credit the variants and move the send rollups as the ``changed`` sends' outcome columns
    (named per send) moved from ``current`` to ``proposed`` (states as
    :func:`webhooks.apply.lock_sends` reads them): +1 when set, -1 when cleared."""
    hour_key = native.hour_key(db.name)
    # Sends share few (status, mailing, variants, hour sent) groups: count per group first.
    tally: Counter[tuple[tuple[Any, ...], str]] = Counter()
    sent_at_of: dict[Any, Any] = {}  # hour key -> the send time of one send of that hour
    for send_id, columns in changed.items():
        before, after = current[send_id], proposed[send_id]
        group = None
        for column in columns:
            was_set = before[column] is not None
            if was_set == (after[column] is not None):
                continue  # only the time moved: counters count sends, not times
            if group is None:
                sent_at = before["sent_at"]
                hour = None if sent_at is None else hour_key(sent_at)
                sent_at_of.setdefault(hour, sent_at)
                group = (
                    before["status"],
                    before["mailing_id"],
                    before["subject_variant_id"],
                    before["body_variant_id"],
                    before["share_variant_id"],
                    hour,
                )
            tally[group, column] += -1 if was_set else 1
    decode = native.decoder(db.name)
    hours = {hour: decode(at) for hour, at in sent_at_of.items()}
    # Only a sent send is a trial (see rollups.send_key).
    groups = {group for group, _column in tally}
    keys = {group: rollups.send_key(*group[:5], hours[group[5]]) for group in groups}
    credits: defaultdict[str, Counter[int]] = defaultdict(Counter)
    changes = rollups.RollupChanges()
    for (group, column), step in tally.items():
        if not step:
            continue
        counter, outcome = _ROLLED_UP.get(column), CREDITED.get(column)
        if outcome is not None:
            for variant_id in group[2:5]:
                if variant_id is not None:
                    credits[outcome][variant_id] += step
        key = keys[group]
        if counter is not None and key is not None:
            changes.sends[key][counter] += step
    if credits:
        credit_variants(session, db, credits)
    if changes.sends:
        db.run_many(*rollups.upsert_rows(db.dialect, SendRollup.__table__, changes.sends))


def credit_variants(
    session: so.Session, db: Driver, credits: Mapping[str, Mapping[int, int]]
) -> None:
    """:func:`engine.outcomes.credit_many` on the driver's cursor: the same rule
    (:func:`engine.outcomes.credited_deltas`), one UPDATE per variant in id order (the variants'
    lock order). Raises ``ValueError`` for an unknown outcome."""
    outcomes.check_outcomes(credits)
    metric_of: dict[int, str] = {}
    if wanted := outcomes.metric_variant_ids(credits):
        sql = _METRICS_SQL.format(in_list=native.in_list(db.name, "v.id"))
        metric_of = dict(db.rows(sql, (native.list_parameter(db.name, wanted),)))
    deltas = outcomes.credited_deltas(credits, metric_of)
    rows = [
        (*(deltas[variant_id][c] for c in outcomes.CREDITED_COLUMNS), variant_id)
        for variant_id in sorted(deltas)
    ]
    if not rows:
        return
    mark = "%s" if db.name == "postgresql" else "?"
    assignments = ", ".join(f"{c} = {c} + {mark}" for c in outcomes.CREDITED_COLUMNS)
    db.run_many(f"UPDATE variants SET {assignments} WHERE id = {mark}", rows)
    outcomes.expire_counters(session, [variant_id for *_, variant_id in rows])


_METRICS_SQL = (
    "SELECT v.id, e.metric FROM variants v JOIN experiments e ON e.id = v.experiment_id"
    " WHERE {in_list}"
)
