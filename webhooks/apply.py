"""Outcomes per send, derived from event timestamps (never arrival order), and their credits.

Each outcome column of :class:`~engine.models.Send` holds the earliest timestamp of its kind, so a
late ``deferred`` never undoes ``delivered`` and a click that arrives before its ``delivered``
still counts. Clicks are classified as human or suspected scanner (:mod:`webhooks.clicks`). The
bandit's counters and the report rollups move as outcome columns are set or cleared
(:mod:`webhooks.counters`): once per send, in the caller's transaction. Send rows are locked in
id order (PostgreSQL, FOR NO KEY UPDATE) before the batch's events are inserted, so concurrent
batches touching one send apply one after the other.

Each kind of change is one statement per batch (send states read, sends written, clicks read
and relabelled, variants credited, rollups added), run on the driver's cursor with values in its
form (:mod:`webhooks.native`): per-row work through SQLAlchemy cost more than the SQL. Which
column each event may set is decided before the writer's turn (:func:`outcome_column`).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy.orm as so

from engine.models import Send
from engine.settings import WebhookSettings
from engine.suppressions import chunked
from webhooks import clicks, counters, native
from webhooks.native import Driver
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


def outcome_column(event: ParsedEvent) -> str | None:
    """The :class:`~engine.models.Send` column ``event`` may set (:data:`CLICK` for clicks,
    whose column depends on all of the send's clicks), or ``None``; needs no database, so it is
    decided before the writer's turn."""
    if event.occurred_at is None:
        return None
    if event.event_type == "open":
        return "first_open_at" if event.label == "human" else "machine_open_at"
    if event.event_type == "click":
        return CLICK
    return FIRST_OF_TYPE.get(event.event_type)


CLICK = "click"


def apply_outcomes(
    session: so.Session,
    db: Driver,
    events: Sequence[ParsedEvent],
    settings: WebhookSettings,
    locked: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Fold newly stored, attributed ``events`` (``outcome_column`` set) into their sends and
    credit the variants.

    ``locked`` holds send states already read with :func:`lock_sends` in this transaction
    (attribution does, to save a query); missing sends are locked and read here.
    """
    current = dict(locked or {})
    missing = {
        e.send_id
        for e in events
        if e.send_id is not None and e.outcome_column is not None and e.send_id not in current
    }
    current.update(lock_sends(db, sorted(missing)))
    # Send states hold times in the driver's native form (see webhooks.native): comparable as is.
    proposed: dict[int, dict[str, Any]] = {}  # copies of the states this batch touches
    moved: defaultdict[int, int] = defaultdict(int)  # their columns this batch changes (bits)
    new_clicks: defaultdict[int, list[ParsedEvent]] = defaultdict(list)
    for event in events:
        column = event.outcome_column
        send_id = event.send_id
        if column is None or send_id is None:
            continue
        state = proposed.get(send_id)
        if state is None:
            before = current.get(send_id)
            if before is None:  # no such send (never deleted, but never trust): the event stays
                continue
            state = proposed[send_id] = before.copy()
        if column is CLICK:
            new_clicks[send_id].append(event)
            continue
        at = event.occurred_native
        if state[column] is None or at < state[column]:  # earliest wins: a change, always
            state[column] = at
            moved[send_id] |= _BIT[column]
            if column == "bounced_at":
                state["bounce_type"] = event.label
                moved[send_id] |= _BIT["bounce_type"]
    # A new delivery time can only reclassify clicks a send already has.
    delivery_moved = {
        send_id
        for send_id, columns in moved.items()
        if columns & _DELIVERED
        and (
            proposed[send_id]["first_click_at"] is not None
            or proposed[send_id]["scanner_click_at"] is not None
        )
    }
    if new_clicks or delivery_moved:
        reclassify = sorted(new_clicks.keys() | delivery_moved)
        clicks.reclassify_clicks(db, current, proposed, reclassify, new_clicks, settings)
        for send_id in reclassify:
            for column in _CLICK_COLUMNS:
                if proposed[send_id][column] != current[send_id][column]:
                    moved[send_id] |= _BIT[column]
    if not moved:
        return
    # Each changed send with the columns to write, in the columns' order (see _write_sends).
    changed = {send_id: _columns_of(moved[send_id]) for send_id in sorted(moved)}
    _write_sends(db, proposed, changed)
    counters.count_changes(session, db, current, proposed, changed)


_CLICK_COLUMNS = ("first_click_at", "scanner_click_at")
# A send's changed columns as bits (one per outcome column, in their order): cheaper per event
# than a set, and the bits name their columns in order without sorting.
_BIT = {column: 1 << position for position, column in enumerate(OUTCOME_COLUMNS)}
_DELIVERED = _BIT["delivered_at"]


@functools.cache
def _columns_of(bits: int) -> tuple[str, ...]:
    return tuple(column for column in OUTCOME_COLUMNS if bits & _BIT[column])


def lock_sends(db: Driver, send_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Lock ``send_ids`` (in id order, PostgreSQL) and read what attribution and outcomes need;
    times come in the driver's native form. Returns ``{send_id: {column: value}}``."""
    if not send_ids:
        return {}
    sql = _lock_sql(db.name)
    states: dict[int, dict[str, Any]] = {}
    for chunk in chunked(send_ids, _CHUNK):
        for row in db.rows(sql, (native.list_parameter(db.name, chunk),)):
            states[row[0]] = dict(zip(_STATE_COLUMNS, row, strict=True))
    return states


@functools.cache
def _lock_sql(dialect: str) -> str:
    sql = (
        f"SELECT {', '.join(_STATE_COLUMNS)} FROM sends"
        f" WHERE {native.in_list(dialect, 'id')} ORDER BY id"
    )
    return sql + " FOR NO KEY UPDATE" if dialect == "postgresql" else sql


def _write_sends(
    db: Driver, proposed: dict[int, dict[str, Any]], changed: dict[int, tuple[str, ...]]
) -> None:
    """Write the changed outcome columns of the changed sends (in id order)."""
    table = Send.__table__
    if db.name == "postgresql":  # one statement for every send (see native.update_rows)
        rows = [(send_id, *(proposed[send_id][c] for c in OUTCOME_COLUMNS)) for send_id in changed]
        native.update_rows(db, table, OUTCOME_COLUMNS, rows)
        return
    # SQLite: one prepared UPDATE per set of changed columns (a batch has a few), so each row
    # binds only what changed; binding all eleven columns cost twice as much as the B-tree.
    by_columns: defaultdict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for send_id, columns in changed.items():
        state = proposed[send_id]
        by_columns[columns].append((send_id, *(state[c] for c in columns)))
    for columns, rows in by_columns.items():
        native.update_rows(db, table, columns, rows)
