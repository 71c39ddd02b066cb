"""Keeping the report rollups (:mod:`engine.models.rollups`) in step with the rows they count:
the increments, their upsert, and the sends' side (the landing side is
:mod:`engine.reports.rollup_visits`).

Each write point collects its increments in a :class:`RollupChanges` and applies them once, at
the end of its work, in the same transaction as the rows: one prepared ``INSERT … ON CONFLICT
(key) DO UPDATE SET n = n + excluded.n`` per table, run once per key with the increments
already summed per key (SQLite and PostgreSQL). An outcome is credited to the bucket of its send
(hour sent) or visit (hour of the visit), whenever it happens.

Lock order, so that concurrent writers never deadlock on PostgreSQL: visit → send rows (id
order) → variant rows → contact → rollup rows, and the rollups last of all, table by table
(sends, visits, groups, flows, recruiters, ladder) in key order. That is why the changes are
applied only after the variants' counters moved, and why a landing view that names a send locks
it (:func:`lock_send`) before touching its landing variant. Locking the send also makes "first
visit of this send" and "the send is sent" exact while the mailer or the webhook changes it.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from engine.models import (
    GroupFlowRollup,
    GroupRollup,
    LadderRollup,
    RecruiterRollup,
    Send,
    SendRollup,
    Signup,
    Visit,
    VisitRollup,
)
from engine.models.rollups import NO_VARIANT

# Send column that marks each outcome counter of a send (set = reached, once per send).
SEND_OUTCOMES = {
    "delivered": "delivered_at",
    "bounced": "bounced_at",
    "human_opens": "first_open_at",
    "machine_opens": "machine_open_at",
    "human_clicks": "first_click_at",
    "scanner_clicks": "scanner_click_at",
    "signups": "converted_at",
    "unsubscribes": "unsubscribed_at",
    "spam_reports": "spam_report_at",
}
# What a send's bucket is made of, in the order of SendRollup's key (sent_at becomes the hour).
SEND_KEY_COLUMNS = (
    Send.mailing_id,
    Send.subject_variant_id,
    Send.body_variant_id,
    Send.share_variant_id,
    Send.sent_at,
)
SendKey = tuple[int, int, int, int, datetime]
# The state columns of a send that make its bucket, as send_key takes them.
_STATE_KEY = (
    "status",
    "mailing_id",
    "subject_variant_id",
    "body_variant_id",
    "share_variant_id",
    "sent_at",
)


def hour_of(at: datetime) -> datetime:
    """The UTC hour bucket holding ``at``."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_of(at: datetime) -> date:
    """The UTC day holding ``at``."""
    return at.astimezone(UTC).date()


def send_key(
    status: str, mailing_id: int, subject_id: Any, body_id: Any, share_id: Any, sent_at: Any
) -> SendKey | None:
    """The bucket of a send, or ``None`` when it is not (yet) a trial: only ``sent`` counts."""
    if status != "sent" or sent_at is None:
        return None
    return (
        mailing_id,
        subject_id or NO_VARIANT,
        body_id or NO_VARIANT,
        share_id or NO_VARIANT,
        hour_of(sent_at),
    )


def _changes() -> defaultdict[tuple[Any, ...], Counter[str]]:
    return defaultdict(Counter)


@dataclass
class RollupChanges:
    """Increments collected during one transaction, per rollup table and key (the table's primary
    key, as a tuple); :meth:`apply` writes them."""

    sends: defaultdict[tuple[Any, ...], Counter[str]] = field(default_factory=_changes)
    visits: defaultdict[tuple[Any, ...], Counter[str]] = field(default_factory=_changes)
    groups: defaultdict[tuple[Any, ...], Counter[str]] = field(default_factory=_changes)
    flows: defaultdict[tuple[Any, ...], Counter[str]] = field(default_factory=_changes)
    recruiters: defaultdict[tuple[Any, ...], Counter[str]] = field(default_factory=_changes)
    ladder: defaultdict[tuple[Any, ...], Counter[str]] = field(default_factory=_changes)

    def apply(self, session: so.Session) -> None:
        """Write every increment (one upsert per table, in a fixed table order, keys sorted),
        then forget them."""
        for table, changes in (
            (SendRollup.__table__, self.sends),
            (VisitRollup.__table__, self.visits),
            (GroupRollup.__table__, self.groups),
            (GroupFlowRollup.__table__, self.flows),
            (RecruiterRollup.__table__, self.recruiters),
            (LadderRollup.__table__, self.ladder),
        ):
            if changes:
                _upsert(session, table, changes)
                changes.clear()


def _upsert(
    session: so.Session, table: Any, changes: Mapping[tuple[Any, ...], Counter[str]]
) -> None:
    sql, rows = upsert_rows(session.get_bind().dialect, table, changes)
    if rows:
        session.connection().exec_driver_sql(sql, rows)


def upsert_rows(
    dialect: sa.Dialect, table: Any, changes: Mapping[tuple[Any, ...], Counter[str]]
) -> tuple[str, list[Any]]:
    """The one-row upsert of ``table`` for ``dialect`` and its parameter rows for ``changes``,
    in the driver's form and key order (the rollups' lock order), for the driver's executemany.

    One prepared statement run once per key: a many-row statement would be compiled once per
    number of rows (about 10 ms each), and writers meet a different number in nearly every
    transaction.
    """
    sql, parameters = _one_row_upsert(dialect, table)
    named = parameters[0][0] is not None
    rows: list[Any] = []
    converted: dict[tuple[int, Any], Any] = {}  # keys share a few hours: converted once each
    for key in sorted(changes):
        counts = changes[key]
        if not any(counts.values()):
            continue
        values = []
        for _name, position, counter, convert in parameters:
            if counter is not None:
                value = counts[counter]
                values.append(value if convert is None else convert(value))
            elif convert is None:
                values.append(key[position])
            else:
                value = converted.get((position, key[position]), _UNSET)
                if value is _UNSET:
                    value = converted[position, key[position]] = convert(key[position])
                values.append(value)
        if named:
            rows.append({p[0]: value for p, value in zip(parameters, values, strict=True)})
        else:
            rows.append(tuple(values))
    return sql, rows


_UNSET = object()


@functools.lru_cache(maxsize=32)
def _one_row_upsert(
    dialect: sa.Dialect, table: Any
) -> tuple[str, list[tuple[str | None, int, str | None, Any]]]:
    """The one-row upsert's SQL and, per parameter in the driver's order, its name (``None``
    when positional), the position of its key column, or its counter, and its conversion."""
    keys = tuple(column.key for column in table.primary_key.columns)
    counters = tuple(column.key for column in table.columns if not column.primary_key)
    sql, order, process = _upsert_sql(dialect, table, keys, counters, 1)
    names = order if order is not None else tuple(f"{name}_0" for name in (*keys, *counters))
    parameters = []
    for parameter in names:
        column = parameter.removesuffix("_0")
        parameters.append(
            (
                None if order is not None else parameter,
                keys.index(column) if column in keys else -1,
                None if column in keys else column,
                process[column],
            )
        )
    return sql, parameters


@functools.lru_cache(maxsize=256)
def _upsert_sql(
    dialect: sa.Dialect, table: Any, keys: tuple[str, ...], counters: tuple[str, ...], rows: int
) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    """``INSERT … VALUES (…), … ON CONFLICT (keys) DO UPDATE SET n = n + excluded.n`` for
    ``rows`` rows, compiled once per size: its SQL, the order of its positional parameters
    (``<column>_<row>``; ``None`` when they are named) and each column's bind conversion.

    Going through SQLAlchemy's execution with hundreds of parameters costs more than running the
    statement (milliseconds per webhook batch), so the driver gets the compiled SQL directly.
    """
    names = [column.key for column in table.columns]
    values = [{name: sa.bindparam(f"{name}_{i}") for name in names} for i in range(rows)]
    insert = _insert(dialect.name, table).values(values)
    compiled = _on_conflict_add(insert, table, keys, counters).compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    # dialect_impl: the backend's own conversion (SQLite stores datetimes as "…:00.000000" text),
    # so live writes and rebuild-rollups agree on every key.
    process = {
        name: table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    }
    return compiled.string, order, process


def _insert(dialect: str, table: Any) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database {dialect!r}")  # pragma: no cover


def _on_conflict_add(
    statement: Any, table: Any, keys: Sequence[str], counters: Sequence[str]
) -> Any:
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.c[name] + statement.excluded[name] for name in counters},
    )


# --- sends -------------------------------------------------------------------------------------


def send_outcome_counts(state: Mapping[str, Any]) -> Counter[str]:
    """The outcome counters a send in ``state`` (its outcome columns) contributes."""
    return Counter(
        {name: 1 for name, column in SEND_OUTCOMES.items() if state.get(column) is not None}
    )


def lock_send(session: so.Session, send_id: int) -> SendKey | None:
    """Lock the send (PostgreSQL; released at commit) and return its bucket, or ``None`` when
    it is not ``sent`` or does not exist."""
    row = session.execute(
        sa.select(Send.status, *SEND_KEY_COLUMNS)
        .where(Send.id == send_id)
        .with_for_update(key_share=True)
    ).first()
    return send_key(*row) if row is not None else None


def record_sent(session: so.Session, sends: Sequence[Mapping[str, Any]]) -> None:
    """Count sends just moved to ``sent`` (``sends``: their id, bucket and outcome columns).

    Whatever they already reached (events or visits that came before the mailer recorded the
    answer) is counted with them, so the bucket equals what a rebuild would find.
    """
    if not sends:
        return
    visits = _visits_of(session, [send["id"] for send in sends])
    changes = RollupChanges()
    for send in sends:
        key = send_key(
            "sent",
            *(send[column.key] for column in SEND_KEY_COLUMNS),  # type: ignore[arg-type]
        )
        if key is None:
            continue
        counts = changes.sends[key]
        counts["sent"] += 1
        counts.update(send_outcome_counts(send))
        visit_count, ticked = visits.get(send["id"], (0, 0))
        counts["visited"] += visit_count > 0
        counts["groups_ticked"] += ticked
    changes.apply(session)


def _visits_of(session: so.Session, send_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Visits and signup rows per send, for the few sends that have any."""
    found: dict[int, tuple[int, int]] = {}
    for start in range(0, len(send_ids), 1000):
        chunk = send_ids[start : start + 1000]
        for send_id, visit_count, ticked in session.execute(
            sa.select(Visit.send_id, sa.func.count(sa.distinct(Visit.id)), sa.func.count(Signup.id))
            .outerjoin(Signup, Signup.visit_id == Visit.id)
            .where(Visit.send_id.in_(chunk))
            .group_by(Visit.send_id)
        ):
            found[send_id] = (visit_count, ticked)
    return found


def record_send_changes(
    session: so.Session,
    before: Mapping[int, Mapping[str, Any]],
    after: Mapping[int, Mapping[str, Any]],
    decode_time: Callable[[Any], datetime | None],
) -> None:
    """Count how the outcome columns of sends moved from ``before`` to ``after`` (states keyed by
    send id with status, bucket columns and outcome columns; times as ``decode_time`` reads them).
    A click reclassified as a scanner's moves one count from human to scanner clicks."""
    changes = RollupChanges()
    buckets: dict[tuple[Any, ...], SendKey | None] = {}  # a batch's sends share few buckets
    columns: list[tuple[str, str]] | None = None
    for send_id, new in after.items():
        old = before[send_id]
        if columns is None:
            columns = [(name, column) for name, column in SEND_OUTCOMES.items() if column in new]
        moved = [
            (name, 1 if old[column] is None else -1)
            for name, column in columns
            if (new[column] is None) != (old[column] is None)
        ]
        if not moved:
            continue
        raw = tuple(old[column] for column in _STATE_KEY)
        if raw not in buckets:
            buckets[raw] = send_key(*raw[:-1], decode_time(raw[-1]))
        key = buckets[raw]
        if key is not None:
            counts = changes.sends[key]
            for name, step in moved:
                counts[name] += step
    changes.apply(session)
