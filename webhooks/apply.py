"""Outcomes per send, derived from event timestamps (never arrival order), and their credits.

Each outcome column of :class:`~engine.models.Send` holds the earliest timestamp of its kind, so a
late ``deferred`` never undoes ``delivered`` and a click that arrives before its ``delivered``
still counts. Clicks are classified as human or suspected scanner (SendGrid sends no bot flag):
a click within ``scanner_seconds_after_delivery`` of delivery, or clicks on
``scanner_burst_links`` distinct links of one message within ``scanner_burst_seconds``. The
bandit's counters move when a send's first human open / first human click / spam report /
unsubscribe appears (+1) or, after a reclassification, disappears (-1): once per send, in the
caller's transaction. The report rollups of sent sends move with them, summed per bucket for the
whole batch. Send rows are locked in id order (PostgreSQL), so concurrent batches touching one
send apply one after the other; the lock is FOR NO KEY UPDATE, which does not conflict with the
key-share locks that inserting events (foreign key to sends) takes, so a batch still inserting
cannot deadlock with one applying outcomes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import outcomes
from engine.models import Event, Send
from engine.reports import rollups
from engine.settings import WebhookSettings
from engine.suppressions import chunked
from webhooks import native
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
    dialect = session.get_bind().dialect.name
    encode = native.encoder(dialect)
    # Send states hold times in the driver's native form (see webhooks.native): comparable as is.
    wanted = {e.send_id for e in relevant if e.send_id}
    locked = locked or {}
    current = {send_id: locked[send_id] for send_id in wanted if send_id in locked}
    current.update(lock_sends(session, sorted(wanted - current.keys())))
    proposed = {send_id: dict(state) for send_id, state in current.items()}
    clicked: set[int] = set()
    for event in relevant:
        state = proposed.get(event.send_id or 0)
        if state is None:  # deleted meanwhile; the event stays stored
            continue
        if event.event_type == "click":
            clicked.add(event.send_id or 0)
            continue
        column = _column_of(event)
        at = encode(event.occurred_at)
        if state[column] is None or at < state[column]:
            state[column] = at
            if column == "bounced_at":
                state["bounce_type"] = event.label
    # A new delivery time can only reclassify clicks a send already has.
    delivery_moved = {
        send_id
        for send_id, state in proposed.items()
        if state["delivered_at"] != current[send_id]["delivered_at"]
        and (state["first_click_at"] is not None or state["scanner_click_at"] is not None)
    }
    if clicked or delivery_moved:
        _reclassify_clicks(session, proposed, sorted(clicked | delivery_moved), settings)
    _write_sends(session, current, proposed)
    _credit_changes(session, current, proposed)
    # Last: rollup rows are locked after the variants' (see engine.reports.rollups).
    rollups.record_send_changes(session, current, proposed, native.decoder(dialect))


def _column_of(event: ParsedEvent) -> str:
    if event.event_type == "open":
        return "first_open_at" if event.label == "human" else "machine_open_at"
    return FIRST_OF_TYPE[event.event_type]


def lock_sends(session: so.Session, send_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Lock ``send_ids`` (in id order, PostgreSQL) and read what attribution and outcomes need;
    times come in the driver's native form. Returns ``{send_id: {column: value}}``."""
    columns = [
        Send.id,
        Send.mailing_id,
        Send.x_message_id,
        Send.status,
        sa.type_coerce(Send.sent_at, native.RAW).label("sent_at"),
        *(getattr(Send, c) for c in _VARIANT_COLUMNS),
        *(sa.type_coerce(getattr(Send, c), native.RAW).label(c) for c in OUTCOME_COLUMNS),
    ]
    names = [column.key for column in columns]
    dialect = session.get_bind().dialect.name
    connection = session.connection()
    states: dict[int, dict[str, Any]] = {}
    for chunk in chunked(send_ids, _CHUNK):
        statement = sa.select(*columns).where(native.is_in(Send.id, chunk, dialect))
        statement = statement.order_by(Send.id).with_for_update(key_share=True)
        for row in connection.execute(statement):
            states[row[0]] = dict(zip(names, row, strict=True))
    return states


def classify_clicks(
    clicks: Sequence[tuple[datetime, str]],
    delivered_at: datetime | None,
    settings: WebhookSettings,
) -> list[bool]:
    """For each ``(time, url)`` click of one send, whether it is a suspected scanner click."""
    scanner = [False] * len(clicks)
    if delivered_at is not None:
        after_delivery = timedelta(seconds=settings.scanner_seconds_after_delivery)
        for index, (at, _url) in enumerate(clicks):
            scanner[index] = timedelta(0) <= at - delivered_at <= after_delivery
    order = sorted(range(len(clicks)), key=lambda i: clicks[i][0])
    burst = timedelta(seconds=settings.scanner_burst_seconds)
    end = 0
    for start_position, start in enumerate(order):
        end = max(end, start_position)
        while end + 1 < len(order) and clicks[order[end + 1]][0] - clicks[start][0] <= burst:
            end += 1
        window = order[start_position : end + 1]
        if len({clicks[i][1] for i in window}) >= settings.scanner_burst_links:
            for i in window:
                scanner[i] = True
    return scanner


def _reclassify_clicks(
    session: so.Session,
    proposed: dict[int, dict[str, Any]],
    send_ids: list[int],
    settings: WebhookSettings,
) -> None:
    """Relabel every stored click of ``send_ids`` and recompute their first human/scanner click."""
    dialect = session.get_bind().dialect.name
    decode = native.decoder(dialect)
    clicks: dict[int, list[tuple[int, datetime, Any, str, str | None]]] = defaultdict(list)
    for chunk in chunked(send_ids, _CHUNK):
        statement = sa.select(
            Event.id,
            Event.send_id,
            sa.type_coerce(Event.occurred_at, native.RAW),
            Event.payload["url"].as_string(),
            Event.label,
        ).where(native.is_in(Event.send_id, chunk, dialect), Event.event_type == "click")
        for event_id, send_id, stored_at, url, label in session.execute(statement):
            at = decode(stored_at)
            if at is not None:
                clicks[send_id].append((event_id, at, stored_at, url or "", label))
    relabel: dict[str, list[int]] = defaultdict(list)
    for send_id in send_ids:
        state = proposed[send_id]
        of_send = clicks.get(send_id, [])
        verdicts = classify_clicks(
            [(at, url) for _, at, _, url, _ in of_send], decode(state["delivered_at"]), settings
        )
        human = [c[2] for c, scanner in zip(of_send, verdicts, strict=True) if not scanner]
        flagged = [c[2] for c, scanner in zip(of_send, verdicts, strict=True) if scanner]
        state["first_click_at"] = min(human, default=None)
        state["scanner_click_at"] = min(flagged, default=None)
        for (event_id, *_, label), scanner in zip(of_send, verdicts, strict=True):
            wanted = "scanner" if scanner else "human"
            if label != wanted:
                relabel[wanted].append(event_id)
    for label, ids in relabel.items():
        for chunk in chunked(sorted(ids), _CHUNK):
            session.execute(
                sa.update(Event).where(native.is_in(Event.id, chunk, dialect)).values(label=label),
                execution_options={"synchronize_session": False},
            )


def _write_sends(
    session: so.Session, current: dict[int, dict[str, Any]], proposed: dict[int, dict[str, Any]]
) -> None:
    table = Send.__table__
    rows = [
        {"b_id": send_id, **{f"b_{c}": state[c] for c in OUTCOME_COLUMNS}}
        for send_id, state in sorted(proposed.items())
        if any(state[c] != current[send_id][c] for c in OUTCOME_COLUMNS)
    ]
    if not rows:
        return
    statement = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"))
        .values({c: sa.type_coerce(sa.bindparam(f"b_{c}"), native.RAW) for c in OUTCOME_COLUMNS})
    )
    native.execute_many(session.connection(), statement, rows)


def _credit_changes(
    session: so.Session, current: dict[int, dict[str, Any]], proposed: dict[int, dict[str, Any]]
) -> None:
    credits: dict[str, Counter[int]] = defaultdict(Counter)
    for send_id, state in proposed.items():
        before = current[send_id]
        variant_ids = [before[c] for c in _VARIANT_COLUMNS if before[c] is not None]
        for column, outcome in CREDITED.items():
            change = (state[column] is not None) - (before[column] is not None)
            if change:
                for variant_id in variant_ids:
                    credits[outcome][variant_id] += change
    if credits:
        outcomes.credit_many(session, credits)
