"""The landing view's write: a visit, its trial and its report-rollup increments.

This is the site's hottest write (every new landing view), and on SQLite it holds the database's
one write lock, so it is kept short: every statement is compiled once per database dialect
(:mod:`variants.prepared_sql`) and runs on the session's DBAPI cursor, inside the session's
transaction. Going through SQLAlchemy's execution costs 8–40 µs per statement and a rollup
collected in :class:`~engine.reports.rollups.RollupChanges` about 50 µs
more; here the whole write costs about as much as SQLite itself.

What is counted follows the rollup definitions of :mod:`engine.reports.rebuild` exactly (the
tests compare the live counts against a rebuild): the visit is a trial of its landing variant and
one visit in its ``(variant, hour)`` bucket; the first visit of a send marks the send visited;
the first visit of a visitor from a group counts one visitor sent that day; a recruiter's link
counts one visit of the recruiter that day. Row locks are taken in the rollups' lock order
(send, visit, variant, then the rollup tables in table order), so PostgreSQL never deadlocks
with the mailer or the webhook.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import (
    GroupRollup,
    RecruiterRollup,
    Send,
    SendRollup,
    Variant,
    Visit,
    VisitRollup,
)
from engine.reports import rollups
from engine.reports.rollups import SEND_KEY_COLUMNS, day_of, hour_of, send_key
from variants import landing_sqlite
from variants.prepared_sql import Prepared, prepare, sqlalchemy_errors

_VISITS = Visit.__table__
_VARIANTS = Variant.__table__
_SENDS = Send.__table__


@dataclass(frozen=True)
class _Statements:
    lock_send: Prepared
    insert_visit: Prepared
    # On SQLite the visit's id is the cursor's lastrowid (the rowid of an INTEGER PRIMARY KEY):
    # RETURNING costs SQLite more work and the driver a fetch.
    visit_id_is_rowid: bool
    add_trial: Prepared
    other_visit_of_send: Prepared
    other_visit_from_group: Prepared
    upserts: Mapping[str, Prepared]  # rollup table name → one-row upsert
    # (variant id, UTC year, month, day, hour) → a visit's visit_rollups upsert parameters
    visit_rollups_by_hour: dict[tuple[int, ...], Any] = field(default_factory=dict)


def _one_row_upsert(dialect: sa.Dialect, table: sa.Table) -> Prepared:
    """The rollups module's own one-row ``INSERT … ON CONFLICT (key) DO UPDATE SET n = n +
    excluded.n``, so a bucket's key is stored exactly as its other writers store it (on SQLite
    the key is text: one bucket written two ways would become two rows). Its parameters are
    named ``<column>_0``."""
    keys = tuple(column.key for column in table.primary_key.columns)
    counters = tuple(column.key for column in table.columns if not column.primary_key)
    sql, order, process = rollups._upsert_sql(dialect, table, keys, counters, 1)
    return Prepared(sql, order, {f"{name}_0": convert for name, convert in process.items()}, {})


@functools.lru_cache(maxsize=8)
def _statements(dialect: sa.Dialect) -> _Statements:
    if dialect.name not in ("sqlite", "postgresql"):
        raise RuntimeError(f"unsupported database {dialect.name!r}")  # pragma: no cover
    rowid = dialect.name == "sqlite"
    insert_visit = sa.insert(_VISITS)
    insert_visit = insert_visit if rowid else insert_visit.returning(_VISITS.c.id)
    insert_visit = insert_visit.values({name: sa.bindparam(name) for name in _VISIT_COLUMNS})
    add_trial = (
        sa.update(_VARIANTS)
        .where(_VARIANTS.c.id == sa.bindparam("variant_id"))
        .values(trials=_VARIANTS.c.trials + 1)
    )
    other_of_send = (
        sa.select(_VISITS.c.id)
        .where(_VISITS.c.send_id == sa.bindparam("send_id"), _VISITS.c.id != sa.bindparam("id"))
        .limit(1)
    )
    other_from_group = (
        sa.select(_VISITS.c.id)
        .where(
            _VISITS.c.visitor_id == sa.bindparam("visitor_id"),
            _VISITS.c.source_group_id == sa.bindparam("group_id"),
            _VISITS.c.id != sa.bindparam("id"),
        )
        .limit(1)
    )
    lock_send = (
        sa.select(_SENDS.c.status, *(_SENDS.c[column.key] for column in SEND_KEY_COLUMNS))
        .where(_SENDS.c.id == sa.bindparam("send_id"))
        .with_for_update(key_share=True)
    )
    tables = (SendRollup, VisitRollup, GroupRollup, RecruiterRollup)
    return _Statements(
        lock_send=prepare(lock_send, dialect),
        insert_visit=prepare(insert_visit, dialect),
        visit_id_is_rowid=rowid,
        add_trial=prepare(add_trial, dialect),
        other_visit_of_send=prepare(other_of_send, dialect),
        other_visit_from_group=prepare(other_from_group, dialect),
        upserts={
            model.__tablename__: _one_row_upsert(dialect, model.__table__) for model in tables
        },
    )


def cursor_of(connection: Any) -> Any:
    """A DBAPI cursor on ``connection`` (a SQLAlchemy or pooled DBAPI connection), inside its
    transaction (tests wrap this to watch the statements)."""
    raw = connection.connection if isinstance(connection, sa.Connection) else connection
    return raw.cursor()


@dataclass(frozen=True)
class NewVisit:
    """A landing view to record: who, which landing variant, what attributed it, when."""

    visitor_id: str
    landing_variant_id: int | None
    created_at: datetime
    source_group_id: int | None = None
    recruiter_id: int | None = None
    send_id: int | None = None
    share_variant_id: int | None = None


def record_visit(session: so.Session, visit: NewVisit) -> int:
    """Insert the visit, count its trial and its rollup increments in the session's
    transaction; returns the visit id. The caller commits."""
    connection = session.connection()
    statements = _statements(connection.dialect)
    plan = _plan(statements, visit)
    cursor = cursor_of(connection)
    try:
        with sqlalchemy_errors(connection.dialect):
            return _write(cursor, statements, plan)
    finally:
        cursor.close()


def record_visit_committed(
    engine: sa.Engine, visit: NewVisit, *, checkpoint_seconds: float = 0.0
) -> int:
    """The same write in a transaction of its own, committed before it returns the visit id
    (rolled back, and the error raised, if anything fails).

    The landing view's write needs no ORM session: its bookkeeping (begin, commit, close) costs
    more than the write itself, and on SQLite the lock is held throughout. On an SQLite file the
    write runs on the thread's own connection, whose trigger counts the trial and the visit
    rollup: a visit nothing attributed is a single INSERT in autocommit mode, any other takes
    the lock with ``BEGIN IMMEDIATE`` right before its first statement and releases it by the
    commit. Landing writers queue for it in turn, and with ``checkpoint_seconds`` > 0 the WAL
    is checkpointed off the request path (:func:`~variants.landing_sqlite.own_writer`). Other
    databases use a pooled connection.
    Parameters are converted before the turn is taken, so it is held for the statements only.
    """
    writer = landing_sqlite.own_writer(engine, checkpoint_seconds)
    if writer is None:
        return _record_on_pooled_connection(engine, visit)
    own, turn = writer
    connection = own.dbapi_connection
    statements = _statements(engine.dialect)
    # The connection's trigger counts the trial and the visit rollup (landing_sqlite).
    plan = _plan(statements, visit, counted_by_trigger=True)
    with sqlalchemy_errors(engine.dialect), turn:
        cursor = connection.cursor()
        try:
            if plan.insert_only:
                # The driver runs in autocommit mode (engine.db): one statement, one transaction.
                cursor.execute(statements.insert_visit.sql, plan.insert)
                return cursor.lastrowid
            cursor.execute("BEGIN IMMEDIATE")
            visit_id = _write(cursor, statements, plan)
            connection.commit()
        except BaseException:
            _roll_back(engine, connection)
            raise
        finally:
            cursor.close()
    return visit_id


def _roll_back(engine: sa.Engine, connection: Any) -> None:
    """Roll the thread's own connection back; one that cannot even do that is replaced."""
    try:
        if connection.in_transaction:
            connection.rollback()
    except engine.dialect.loaded_dbapi.Error:
        landing_sqlite.drop_own_connection(engine)


def _record_on_pooled_connection(engine: sa.Engine, visit: NewVisit) -> int:
    statements = _statements(engine.dialect)
    plan = _plan(statements, visit)
    raw = engine.raw_connection()
    cursor = None
    try:
        with sqlalchemy_errors(engine.dialect):
            cursor = cursor_of(raw)
            if engine.dialect.name == "sqlite":  # an in-memory database; autocommit, as above
                cursor.execute("BEGIN IMMEDIATE")
            visit_id = _write(cursor, statements, plan)
            raw.commit()
        return visit_id
    except BaseException:
        raw.rollback()
        raise
    finally:
        if cursor is not None:
            cursor.close()
        raw.close()


class _Plan(NamedTuple):
    """What a visit's write sends without needing an answer from the database: parameters
    already converted for the driver (``None``: the statement does not run)."""

    visit: NewVisit
    insert: Any
    trial: Any
    visit_rollup: Any
    recruiter_rollup: Any

    @property
    def insert_only(self) -> bool:
        """Whether the visit's INSERT is the whole write (nothing attributed it)."""
        visit = self.visit
        return (
            self.trial is None
            and self.visit_rollup is None
            and self.recruiter_rollup is None
            and visit.send_id is None
            and visit.source_group_id is None
        )


def _plan(statements: _Statements, visit: NewVisit, *, counted_by_trigger: bool = False) -> _Plan:
    """The write's parameters; with ``counted_by_trigger``, the connection's trigger counts the
    trial and the visit rollup (see :data:`variants.landing_sqlite.COUNT_VISITS_TRIGGER`)."""
    variant_id, now = visit.landing_variant_id, visit.created_at
    insert = statements.insert_visit.parameters(
        {name: getattr(visit, name) for name in _VISIT_COLUMNS}
    )
    trial = visit_rollup = recruiter_rollup = None
    # Each upsert lists every counter of its table; those this visit does not move add 0.
    if variant_id is not None and not counted_by_trigger:
        trial = statements.add_trial.parameters({"variant_id": variant_id})
        visit_rollup = _visit_rollup(statements, variant_id, now)
    if visit.recruiter_id is not None:
        row = {"recruiter_id": visit.recruiter_id, "day": day_of(now), "visits": 1, "friends": 0}
        recruiter_rollup = statements.upserts["recruiter_rollups"].parameters(_upsert_row(row))
    return _Plan(visit, insert, trial, visit_rollup, recruiter_rollup)


def _visit_rollup(statements: _Statements, variant_id: int, at: datetime) -> Any:
    """The parameters of a visit's ``visit_rollups`` upsert: the same for every visit of the
    variant in that hour, so converted once (the hour's conversion is most of the cost)."""
    utc = at if at.tzinfo is UTC else at.astimezone(UTC)
    key = (variant_id, utc.year, utc.month, utc.day, utc.hour)
    cache = statements.visit_rollups_by_hour
    parameters = cache.get(key)
    if parameters is None:
        row = {"landing_variant_id": variant_id, "visit_hour": hour_of(at)}
        row = {**row, "visits": 1, "signups": 0, "groups_ticked": 0}
        parameters = statements.upserts["visit_rollups"].parameters(_upsert_row(row))
        if isinstance(parameters, list):
            parameters = tuple(parameters)  # shared: never changed
        if len(cache) >= 256:  # old hours
            cache.clear()
        cache[key] = parameters
    return parameters


def _write(cursor: Any, statements: _Statements, plan: _Plan) -> int:
    visit = plan.visit
    send = None
    if visit.send_id is not None:  # locked first: the rollups' lock order
        row = statements.lock_send.fetch_row(cursor, {"send_id": visit.send_id})
        send = send_key(*row) if row is not None else None
    cursor.execute(statements.insert_visit.sql, plan.insert)
    visit_id = cursor.lastrowid if statements.visit_id_is_rowid else cursor.fetchone()[0]
    if plan.trial is not None:
        cursor.execute(statements.add_trial.sql, plan.trial)
    upserts = statements.upserts
    # The rollup tables in table order (the rollups' lock order).
    if send is not None:
        other = statements.other_visit_of_send.run(
            cursor, {"send_id": visit.send_id, "id": visit_id}
        )
        if other.fetchone() is None:
            upserts["send_rollups"].run(cursor, _upsert_row(_send_row(send)))
    if plan.visit_rollup is not None:
        cursor.execute(upserts["visit_rollups"].sql, plan.visit_rollup)
    if visit.source_group_id is not None:
        other = statements.other_visit_from_group.run(
            cursor,
            {"visitor_id": visit.visitor_id, "group_id": visit.source_group_id, "id": visit_id},
        )
        if other.fetchone() is None:
            day = day_of(visit.created_at)
            row = {"group_id": visit.source_group_id, "day": day, "visitors_sent": 1}
            upserts["group_rollups"].run(cursor, _upsert_row({**row, **_ZERO_GROUP}))
    if plan.recruiter_rollup is not None:
        cursor.execute(upserts["recruiter_rollups"].sql, plan.recruiter_rollup)
    return visit_id


def _upsert_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """A one-row upsert's parameters (named ``<column>_0``)."""
    return {f"{name}_0": value for name, value in values.items()}


_VISIT_COLUMNS = (
    "visitor_id",
    "landing_variant_id",
    "source_group_id",
    "recruiter_id",
    "send_id",
    "share_variant_id",
    "created_at",
)
_ZERO_GROUP = {"contacts_generated": 0, "contacts_received": 0}
_SEND_COUNTERS = [c.key for c in SendRollup.__table__.columns if not c.primary_key]


def _send_row(send: tuple[Any, ...]) -> dict[str, Any]:
    mailing_id, subject_id, body_id, share_id, hour = send
    return {
        "mailing_id": mailing_id,
        "subject_variant_id": subject_id,
        "body_variant_id": body_id,
        "share_variant_id": share_id,
        "sent_hour": hour,
        **{name: 0 for name in _SEND_COUNTERS},
        "visited": 1,
    }
