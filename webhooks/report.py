"""What the webhook has received, for staff: totals, duplicates, quarantine, types and labels.

Every figure is counted from stored rows (events, quarantined events, batch records, the inbox).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Event, QuarantinedEvent, WebhookBatch
from webhooks.inbox import inbox_stats


def event_stats(session: so.Session) -> dict[str, Any]:
    """Counts of everything received: ``received`` elements, ``unique`` stored events,
    ``duplicates``, ``quarantined``, ``by_type`` (bounces split as ``bounce:bounce`` and
    ``bounce:blocked``), human vs machine ``opens``, human vs suspected-scanner ``clicks``, and
    ``unattributed`` events (matching no send), and the ``inbox``: bodies received but not yet
    applied (see :func:`webhooks.inbox.inbox_stats`)."""
    received, duplicates = session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(WebhookBatch.received), 0),
            sa.func.coalesce(sa.func.sum(WebhookBatch.duplicates), 0),
        )
    ).one()
    by_type: dict[str, int] = {}
    opens = {"human": 0, "machine": 0}
    clicks = {"human": 0, "scanner": 0}
    statement = sa.select(Event.event_type, Event.label, sa.func.count()).group_by(
        Event.event_type, Event.label
    )
    for event_type, label, count in session.execute(statement):
        name = f"bounce:{label}" if event_type == "bounce" else event_type
        by_type[name] = by_type.get(name, 0) + count
        if event_type == "open" and label in opens:
            opens[label] += count
        elif event_type == "click" and label in clicks:
            clicks[label] += count
    return {
        "received": int(received),
        "unique": sum(by_type.values()),
        "duplicates": int(duplicates),
        "quarantined": _count(session, QuarantinedEvent),
        "by_type": dict(sorted(by_type.items())),
        "opens": opens,
        "clicks": clicks,
        "unattributed": session.scalar(
            sa.select(sa.func.count()).select_from(Event).where(Event.send_id.is_(None))
        )
        or 0,
        "inbox": inbox_stats(session),
    }


def _count(session: so.Session, model: type) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
