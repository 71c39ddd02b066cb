"""Addresses that must not be emailed, and the switch that pauses all sending.

A suppression is global (hard bounce, spam report, unsubscribe) or scoped to one SendGrid ASM
group (``asm:<id>``). Each (address, scope) has one row whose state is decided by the event with
the latest timestamp, whatever order the events arrive in; on a tie, suppressing wins, because
mailing a suppressed address is the costlier mistake. Addresses are compared normalized
(trimmed, lower-cased), as contacts store them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from engine import alerts
from engine.models import Suppression, utcnow

GLOBAL = "global"
# Stays well under SQLite's bound-parameter limit and PostgreSQL's planner sweet spot.
_CHUNK = 2000
T = TypeVar("T")


@dataclass(frozen=True)
class SuppressionChange:
    """One event's effect on an address: suppress (``active``) or lift, at time ``at``."""

    email: str
    scope: str
    reason: str
    active: bool
    at: datetime


def normalize_email(email: str) -> str:
    """The form contacts store: trimmed and lower-cased. Raises ``ValueError`` when empty."""
    normalized = email.strip().lower()
    if not normalized:
        raise ValueError("email must not be empty")
    return normalized


def asm_scope(asm_group_id: int) -> str:
    """The scope string of one SendGrid ASM (unsubscribe) group."""
    return f"asm:{int(asm_group_id)}"


def _check_scope(scope: str) -> None:
    if scope == GLOBAL:
        return
    prefix, _, number = scope.partition(":")
    if prefix != "asm" or not (number.isascii() and number.isdigit()):
        raise ValueError(f"scope must be 'global' or 'asm:<group id>', got {scope!r}")


def suppress(session: so.Session, email: str, scope: str, reason: str, at: datetime) -> None:
    """Suppress ``email`` in ``scope`` as of ``at`` (ignored if a later lift is recorded).

    Raises ``ValueError`` for an empty address or an unknown scope.
    """
    apply_changes(session, [SuppressionChange(email, scope, reason, True, at)], now=utcnow())


def lift(session: so.Session, email: str, scope: str, at: datetime) -> None:
    """Lift the suppression of ``email`` in ``scope`` as of ``at`` (ignored if a later
    suppression is recorded). Raises ``ValueError`` for an empty address or an unknown scope."""
    apply_changes(session, [SuppressionChange(email, scope, "lifted", False, at)], now=utcnow())


def apply_changes(
    session: so.Session, changes: Iterable[SuppressionChange], *, now: datetime
) -> None:
    """Record many changes in one statement per chunk; the latest timestamp wins per address.

    Raises ``ValueError`` for an empty address or an unknown scope.
    """
    latest: dict[tuple[str, str], SuppressionChange] = {}
    for change in changes:
        _check_scope(change.scope)
        key = (normalize_email(change.email), change.scope)
        current = latest.get(key)
        if current is None or (change.at, change.active) > (current.at, current.active):
            latest[key] = change
    # Sorted rows take row locks in one order, so concurrent ingests cannot deadlock.
    rows = [
        {
            "email": email,
            "scope": scope,
            "reason": change.reason[:32],
            "active": change.active,
            "event_at": change.at,
            "created_at": now,
        }
        for (email, scope), change in sorted(latest.items())
    ]
    if not rows:
        return
    connection = session.connection()
    statement = _upsert_statement(connection.dialect.name)
    for chunk in chunked(rows, _CHUNK):
        connection.execute(statement, chunk)


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    # Built once per database: SQLAlchemy then finds its compiled form without rebuilding the
    # statement's cache key on every webhook batch.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Suppression.__table__)
    table = Suppression.__table__.c
    newer = sa.or_(
        statement.excluded.event_at > table.event_at,
        sa.and_(
            statement.excluded.event_at == table.event_at,
            statement.excluded.active,
            sa.not_(table.active),
        ),
    )
    return statement.on_conflict_do_update(
        index_elements=["email", "scope"],
        set_={
            "reason": statement.excluded.reason,
            "active": statement.excluded.active,
            "event_at": statement.excluded.event_at,
        },
        where=newer,
    )


def suppressed_emails(session: so.Session, emails: Iterable[str], asm_group_id: int) -> set[str]:
    """Those of ``emails`` (as given) that are actively suppressed globally or in the ASM group."""
    by_normalized: dict[str, list[str]] = {}
    for email in emails:
        normalized = email.strip().lower()
        if normalized:
            by_normalized.setdefault(normalized, []).append(email)
    scopes = (GLOBAL, asm_scope(asm_group_id))
    found: set[str] = set()
    for chunk in chunked(sorted(by_normalized), _CHUNK):
        found.update(
            session.scalars(
                sa.select(Suppression.email).where(
                    Suppression.active,
                    Suppression.scope.in_(scopes),
                    Suppression.email.in_(chunk),
                )
            )
        )
    return {original for normalized in found for original in by_normalized[normalized]}


def active_suppressions(session: so.Session, include_lifted: bool = False) -> list[Suppression]:
    """Suppression rows ordered by time (newest first); lifted ones only when asked."""
    statement = sa.select(Suppression).order_by(Suppression.event_at.desc(), Suppression.id)
    if not include_lifted:
        statement = statement.where(Suppression.active)
    return list(session.scalars(statement))


def sending_paused(session: so.Session) -> bool:
    """Whether an unresolved alert that pauses sending exists (e.g. a SendGrid account change)."""
    return alerts.pausing_alert(session) is not None


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
