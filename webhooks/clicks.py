"""Human or scanner: SendGrid sends no bot flag, and security scanners click every link.

A click is a suspected scanner's when it comes within ``scanner_seconds_after_delivery`` of
delivery, or with clicks on ``scanner_burst_links`` distinct links of one message within
``scanner_burst_seconds``. Verdicts depend on all of a send's clicks and on its delivery time, so
they are recomputed per send whenever either changes (:func:`reclassify_clicks`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy.orm as so

from engine.settings import WebhookSettings
from engine.suppressions import chunked
from webhooks import native
from webhooks.native import Driver
from webhooks.parse import ParsedEvent

_CHUNK = 2000


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


def reclassify_clicks(
    db: Driver,
    current: dict[int, dict[str, Any]],
    proposed: dict[int, dict[str, Any]],
    send_ids: list[int],
    new_clicks: dict[int, list[ParsedEvent]],
    settings: WebhookSettings,
) -> None:
    """Relabel every stored click of ``send_ids`` and set their first human/scanner click in
    ``proposed`` (``current`` holds the states before this batch, ``new_clicks`` the clicks this
    batch inserted).

    A send with neither click time set had no stored click before this batch (every stored,
    attributed click with a time sets one of them, under the send's lock), so its clicks are the
    batch's new ones: only sends that already had clicks are read back from the database.
    """
    dialect = db.name
    decode = native.decoder(dialect)
    had_clicks = [
        send_id
        for send_id in send_ids
        if current[send_id]["first_click_at"] is not None
        or current[send_id]["scanner_click_at"] is not None
    ]
    clicks = _stored_clicks(db, had_clicks)
    for send_id in send_ids:
        if send_id not in clicks:  # no clicks before this batch
            clicks[send_id] = [
                (e.event_id, e.occurred_at, e.occurred_native, e.url or "", e.label)
                for e in new_clicks.get(send_id, ())
                if e.event_id is not None and e.occurred_at is not None
            ]
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
    for label, ids in sorted(relabel.items()):
        for chunk in chunked(sorted(ids), _CHUNK):
            db.rows(
                f"UPDATE events SET label = {_PARAMETER[dialect]}"
                f" WHERE {native.in_list(dialect, 'id')}",
                (label, native.list_parameter(dialect, chunk)),
            )


_PARAMETER = {"sqlite": "?", "postgresql": "%s"}
StoredClick = tuple[int, datetime, Any, str, str | None]


def stored_clicks(session: so.Session, send_ids: Sequence[int]) -> dict[int, list[StoredClick]]:
    """``send_id -> [(event id, time, native time, url, label)]`` of the stored clicks of
    ``send_ids`` (every id present, with an empty list when it has none)."""
    return _stored_clicks(Driver(session.connection()), send_ids)


def _stored_clicks(db: Driver, send_ids: Sequence[int]) -> dict[int, list[StoredClick]]:
    if not send_ids:
        return {}
    dialect = db.name
    decode = native.decoder(dialect)
    url = "payload ->> 'url'" if dialect == "postgresql" else "json_extract(payload, '$.url')"
    # "event_type = 'click'" is spelled out, not bound: only then can SQLite's planner use the
    # partial index on clicks (see engine.models.events).
    sql = (
        f"SELECT id, send_id, occurred_at, {url}, label FROM events"
        f" WHERE event_type = 'click' AND {native.in_list(dialect, 'send_id')}"
    )
    clicks: dict[int, list[StoredClick]] = {send_id: [] for send_id in send_ids}
    for chunk in chunked(send_ids, _CHUNK):
        parameter = native.list_parameter(dialect, chunk)
        for event_id, send_id, stored_at, link, label in db.rows(sql, (parameter,)):
            at = decode(stored_at)
            if at is not None:
                text = "" if link is None else str(link)
                clicks[send_id].append((event_id, at, stored_at, text, label))
    return clicks
