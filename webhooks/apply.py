"""Outcomes per send, derived from event timestamps (never arrival order), and their credits.

Each outcome column of :class:`~engine.models.Send` holds the earliest timestamp of its kind, so a
late ``deferred`` never undoes ``delivered`` and a click that arrives before its ``delivered``
still counts. Clicks are classified as human or suspected scanner (:mod:`webhooks.clicks`). The
bandit's counters move when a send's first human open / first human click / spam report /
unsubscribe appears (+1) or, after a reclassification, disappears (-1): once per send, in the
caller's transaction. The report rollups of sent sends move with them, summed per bucket for the
whole batch. Send rows are locked in id order (PostgreSQL, FOR NO KEY UPDATE) before the batch's
events are inserted, so concurrent batches touching one send apply one after the other.

Each kind of change is one statement per batch (send states read, sends written, clicks read
and relabelled, variants credited, rollups added), with values in the driver's form
(:mod:`webhooks.native`): per-row work through SQLAlchemy's type layer cost more than the SQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy.orm as so

from engine import outcomes
from engine.models import Send
from engine.reports import rollups
from engine.settings import WebhookSettings
from engine.suppressions import chunked
from webhooks import clicks, native
from webhooks.parse import ParsedEvent

_CHUNK = 2000
# Event type -> the Send column holding the earliest event of that type.
FIRST_OF_TYPE = {
    "delivered": "delivered_at",
    "deferred": "deferred_at",
    "dropped": "dropped_at",
    "bounce": "bounced_at",
    "spamreport": "spam_report_at",
    "unsubscribe": "unsubscribed_at",
    "group_unsubscribe": "unsubscribed_at",
}
# Send column -> the outcome credited to the send's variants when it is first set.
CREDITED = {
    "first_open_at": "open",
    "first_click_at": "click",
    "spam_report_at": "spam_report",
    "unsubscribed_at": "unsubscribe",
}
OUTCOME_COLUMNS = (
    "delivered_at",
    "bounced_at",
    "bounce_type",
    "dropped_at",
    "deferred_at",
    "first_open_at",
    "machine_open_at",
    "first_click_at",
    "scanner_click_at",
    "spam_report_at",
    "unsubscribed_at",
)
_VARIANT_COLUMNS = ("subject_variant_id", "body_variant_id", "share_variant_id")
_STATE_COLUMNS = (
    "id",
    "mailing_id",
    "x_message_id",
    "status",
    "sent_at",
    *_VARIANT_COLUMNS,
    *OUTCOME_COLUMNS,
)


def apply_outcomes(
    session: so.Session,
    events: Sequence[ParsedEvent],
    settings: WebhookSettings,
    locked: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Fold newly stored, attributed ``events`` into their sends and credit the variants.

    ``locked`` holds send states already read with :func:`lock_sends` in this transaction
    (attribution does, to save a query); missing sends are locked and read here.
    """
    relevant = [
        e
        for e in events
        if e.send_id is not None
        and e.occurred_at is not None
        and (e.event_type in FIRST_OF_TYPE or e.event_type in ("open", "click"))
    ]
    if not relevant:
        return
    # Send states hold times in the driver's native form (see webhooks.native): comparable as is.
    wanted = {e.send_id for e in relevant if e.send_id}
    locked = locked or {}
    current = {send_id: locked[send_id] for send_id in wanted if send_id in locked}
    current.update(lock_sends(session, sorted(wanted - current.keys())))
    proposed = {send_id: dict(state) for send_id, state in current.items()}
    new_clicks: defaultdict[int, list[ParsedEvent]] = defaultdict(list)
    moved: set[int] = set()
    for event in relevant:
        state = proposed.get(event.send_id or 0)
        if state is None:  # no such send (never deleted, but never trust): the event stays stored
            continue
        if event.event_type == "click":
            new_clicks[event.send_id or 0].append(event)
            continue
        column = _column_of(event)
        at = event.occurred_native
        if state[column] is None or at < state[column]:
            state[column] = at
            if column == "bounced_at":
                state["bounce_type"] = event.label
            moved.add(event.send_id or 0)
    # A new delivery time can only reclassify clicks a send already has.
    delivery_moved = {
        send_id
        for send_id in moved
        if proposed[send_id]["delivered_at"] != current[send_id]["delivered_at"]
        and (
            proposed[send_id]["first_click_at"] is not None
            or proposed[send_id]["scanner_click_at"] is not None
        )
    }
    if new_clicks or delivery_moved:
        reclassify = sorted(new_clicks.keys() | delivery_moved)
        clicks.reclassify_clicks(session, current, proposed, reclassify, new_clicks, settings)
        moved.update(
            send_id
            for send_id in reclassify
            if proposed[send_id]["first_click_at"] != current[send_id]["first_click_at"]
            or proposed[send_id]["scanner_click_at"] != current[send_id]["scanner_click_at"]
        )
    changed = sorted(moved)  # each has an outcome column that differs from before
    _write_sends(session, proposed, changed)
    _credit_changes(session, current, proposed, changed)
    # Last: rollup rows are locked after the variants' (see engine.reports.rollups).
    _record_rollups(session, current, proposed, changed)


def _column_of(event: ParsedEvent) -> str:
    if event.event_type == "open":
        return "first_open_at" if event.label == "human" else "machine_open_at"
    return FIRST_OF_TYPE[event.event_type]


def lock_sends(session: so.Session, send_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Lock ``send_ids`` (in id order, PostgreSQL) and read what attribution and outcomes need;
    times come in the driver's native form. Returns ``{send_id: {column: value}}``."""
    if not send_ids:
        return {}
    connection = session.connection()
    dialect = connection.dialect.name
    sql = (
        f"SELECT {', '.join(_STATE_COLUMNS)} FROM sends"
        f" WHERE {native.in_list(dialect, 'id')} ORDER BY id"
    )
    if dialect == "postgresql":
        sql += " FOR NO KEY UPDATE"
    states: dict[int, dict[str, Any]] = {}
    for chunk in chunked(send_ids, _CHUNK):
        for row in connection.exec_driver_sql(sql, (native.list_parameter(dialect, chunk),)):
            states[row[0]] = dict(zip(_STATE_COLUMNS, row, strict=True))
    return states


def _write_sends(
    session: so.Session, proposed: dict[int, dict[str, Any]], changed: Sequence[int]
) -> None:
    rows = [(send_id, *(proposed[send_id][c] for c in OUTCOME_COLUMNS)) for send_id in changed]
    native.update_by_id(session.connection(), Send.__table__, OUTCOME_COLUMNS, rows)


def _credit_changes(
    session: so.Session,
    current: dict[int, dict[str, Any]],
    proposed: dict[int, dict[str, Any]],
    changed: Sequence[int],
) -> None:
    credits: dict[str, Counter[int]] = defaultdict(Counter)
    for send_id in changed:
        state, before = proposed[send_id], current[send_id]
        variant_ids = [before[c] for c in _VARIANT_COLUMNS if before[c] is not None]
        for column, outcome in CREDITED.items():
            change = (state[column] is not None) - (before[column] is not None)
            if change:
                for variant_id in variant_ids:
                    credits[outcome][variant_id] += change
    if credits:
        outcomes.credit_many(session, credits)


# Send outcome column -> its counter in the send rollups (signups have their own write point).
_ROLLUP_COUNTERS = tuple(
    (column, name) for name, column in rollups.SEND_OUTCOMES.items() if column in OUTCOME_COLUMNS
)
# engine.reports.rollups compiles its upsert once per number of rows (and caches it). A batch's
# sends fall into a varying number of hourly buckets, so applying them at once compiled a new
# statement (about 10 ms) for most of the batches a fresh worker served; in groups of at most
# this many buckets there are only this many statements to compile.
_ROLLUP_GROUP = 16


def _record_rollups(
    session: so.Session,
    current: dict[int, dict[str, Any]],
    proposed: dict[int, dict[str, Any]],
    changed: Sequence[int],
) -> None:
    """Move the send rollups as the changed sends' outcome columns moved (+1 when set, -1 when
    cleared: a click reclassified as a scanner's moves from human to scanner clicks), applied in
    bucket order, the rollups' lock order."""
    dialect = session.get_bind().dialect.name
    hour_key, decode = native.hour_key(dialect), native.decoder(dialect)
    buckets: dict[tuple[Any, ...], rollups.SendKey | None] = {}  # sends share few buckets
    moved: defaultdict[rollups.SendKey, Counter[str]] = defaultdict(Counter)
    for send_id in changed:
        before, after = current[send_id], proposed[send_id]
        sent_at = before["sent_at"]
        if before["status"] != "sent" or sent_at is None:
            continue  # not a trial (yet): not counted, see rollups.send_key
        raw = (
            before["mailing_id"],
            before["subject_variant_id"],
            before["body_variant_id"],
            before["share_variant_id"],
            hour_key(sent_at),
        )
        if raw not in buckets:
            buckets[raw] = rollups.send_key("sent", *raw[:4], decode(sent_at))
        key = buckets[raw]
        if key is None:
            continue
        counts = moved[key]
        for column, name in _ROLLUP_COUNTERS:
            was_set, is_set = before[column] is not None, after[column] is not None
            if was_set != is_set:
                counts[name] += 1 if is_set else -1
    ordered = sorted(moved)
    for start in range(0, len(ordered), _ROLLUP_GROUP):
        group = rollups.RollupChanges()
        group.sends.update((key, moved[key]) for key in ordered[start : start + _ROLLUP_GROUP])
        group.apply(session)
