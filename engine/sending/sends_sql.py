"""The mailer's hot statements on the ``sends`` table, as plain SQL on the session's DBAPI cursor.

A mailing writes every send three times (planned, sending, sent). Through SQLAlchemy's execution
each row costs more Python than the database spends on it (parameter processing, result rows,
an expanding ``IN`` of 1,000 parameters compiled per call), so these statements take their rows
or ids as a single parameter (a JSON array read by ``json_each`` on SQLite, arrays on
PostgreSQL), keep one statement text whatever the count (the driver's statement cache and
prepared statements apply) and return only what the mailer needs. They run inside the session's
transaction; driver errors are raised as SQLAlchemy's, as the ORM would raise them.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Send
from engine.reports import rollups

Combination = tuple[int | None, int | None, int | None]  # subject, body, share variant ids


class PlannedRow(NamedTuple):
    """A planned send with what composing it needs (the address is never logged)."""

    send_id: int
    recruiter_id: int
    code: str
    email: str
    first_name: str
    subject_id: int | None
    body_id: int | None
    share_id: int | None


@dataclass(frozen=True)
class _Sql:
    """The statements for one dialect, and how it takes lists and times."""

    insert_planned: str  # PostgreSQL: rows as four arrays
    insert_combination: str | None  # SQLite: one combination's recruiter ids as a flat list
    planned: str
    claim: str
    mark_sent: str
    earlier: str
    add_trials: str
    ids: Callable[[Sequence[int]], Any]  # a list of ids as the one parameter
    rows: Callable[[Sequence[Sequence[Any]]], tuple[Any, ...]]  # rows as parameters
    time: Callable[[datetime], Any]  # an aware datetime as Send's columns store it


# Templates: {p} is the dialect's placeholder, {ids} its test of "id is in the one list".
_PLANNED = (
    "SELECT sends.id, sends.recruiter_id, recruiters.code, contacts.email, contacts.first_name,"
    " sends.subject_variant_id, sends.body_variant_id, sends.share_variant_id"
    " FROM sends JOIN recruiters ON recruiters.id = sends.recruiter_id"
    " JOIN contacts ON contacts.id = recruiters.contact_id"
    " WHERE sends.mailing_id = {p} AND sends.status = 'planned' ORDER BY sends.id"
)
_INSERT = (
    "INSERT INTO sends (mailing_id, recruiter_id, subject_variant_id, body_variant_id,"
    " share_variant_id, status, error, created_at) SELECT {p}, {rows}"
)
# Rows of one variant combination: a flat JSON array of recruiter ids, whose elements json_each
# gives as integers, instead of an array per row that json_extract parses four times (measured:
# ~2 µs less per row on SQLite).
_INSERT_COMBINATION = (
    "INSERT INTO sends (mailing_id, recruiter_id, subject_variant_id, body_variant_id,"
    " share_variant_id, status, error, created_at)"
    " SELECT ?, value, ?, ?, ?, 'planned', '', ? FROM json_each(?)"
)
_CLAIM = "UPDATE sends SET status = 'sending', error = '' WHERE {ids} AND status = 'planned'"
_MARK_SENT = (
    "UPDATE sends SET status = 'sent', error = '', x_message_id = {p}, sent_at = {p}"
    " WHERE {ids} AND status = 'sending'"
)
# Sent sends among the ids that reached an outcome, or were visited, before the mailer recorded
# them (rare): their rollup increments need their columns. A query of its own: RETURNING costs
# more, and in it SQLite 3.40 evaluates a bare ``column IS NULL`` wrongly.
_EARLIER = (
    "SELECT id FROM sends WHERE {ids} AND status = 'sent' AND coalesce({outcomes}) IS NOT NULL"
    " UNION SELECT sends.id FROM visits JOIN sends ON sends.id = visits.send_id"
    " WHERE {visit_ids} AND sends.status = 'sent'"
)
_ADD_TRIALS = "UPDATE variants SET trials = trials + {p} WHERE id = {p}"
_DIALECTS = {
    "sqlite": {
        "p": "?",
        "ids": "id IN (SELECT value FROM json_each(?))",
        "visit_ids": "visits.send_id IN (SELECT value FROM json_each(?))",
    },
    "postgresql": {
        "p": "%s",
        "ids": "id = ANY(%s)",
        "visit_ids": "visits.send_id = ANY(%s)",
        "rows": "r, s, b, sh, 'planned', '', %s"
        " FROM unnest(%s::integer[], %s::integer[], %s::integer[], %s::integer[])"
        " WITH ORDINALITY AS t(r, s, b, sh, n) ORDER BY n",
    },
}


@functools.lru_cache(maxsize=4)
def _sql(dialect: sa.Dialect) -> _Sql:
    parts = _DIALECTS.get(dialect.name)
    if parts is None:
        raise RuntimeError(f"unsupported database {dialect.name!r}")  # pragma: no cover
    process = Send.__table__.c.sent_at.type.dialect_impl(dialect).bind_processor(dialect)
    sqlite = dialect.name == "sqlite"
    return _Sql(
        insert_planned="" if sqlite else _INSERT.format(**parts),
        insert_combination=_INSERT_COMBINATION if sqlite else None,
        planned=_PLANNED.format(**parts),
        claim=_CLAIM.format(**parts),
        mark_sent=_MARK_SENT.format(**parts),
        earlier=_EARLIER.format(**parts, outcomes=", ".join(rollups.SEND_OUTCOMES.values())),
        add_trials=_ADD_TRIALS.format(**parts),
        ids=_json_list if sqlite else list,
        rows=_row_arrays,
        time=process or _unchanged,
    )


def _json_list(values: Sequence[int]) -> str:
    return orjson.dumps(list(values)).decode()


def _row_arrays(rows: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    return tuple(map(list, zip(*rows, strict=True)))


def _unchanged(value: Any) -> Any:
    return value


@contextmanager
def _cursor(session: so.Session) -> Iterator[tuple[Any, _Sql]]:
    """A DBAPI cursor inside the session's transaction, with the dialect's statements."""
    connection = session.connection()
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        yield cursor, _sql(dialect)
    except dialect.loaded_dbapi.Error as error:
        raise sa.exc.DBAPIError.instance(
            None, None, error, dialect.loaded_dbapi.Error, dialect=dialect
        ) from error
    finally:
        cursor.close()


def plain_rows(session: so.Session, statement: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of a query of many rows as the driver returns them, without SQLAlchemy's result
    rows (half the cost of planning 100,000 recipients): only for columns the driver already
    returns as wanted (integers; SQLite's booleans come back as 0/1) and parameters it takes
    as they are (integers, strings)."""
    dialect = session.connection().dialect
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    parameters: Any = compiled.construct_params()
    if compiled.positiontup is not None:
        parameters = tuple(parameters[name] for name in compiled.positiontup)
    with _cursor(session) as (cursor, _):
        cursor.execute(compiled.string, parameters)
        return cursor.fetchall()


INSERT_CHUNK = 20_000


def insert_planned(
    session: so.Session,
    mailing_id: int,
    created_at: datetime,
    rows: Sequence[Sequence[int | None]],
) -> None:
    """Insert one ``planned`` send per ``(recruiter id, subject, body, share variant id)`` row,
    in the order given (ids ascend with it)."""
    with _cursor(session) as (cursor, sql):
        created = sql.time(created_at)
        if sql.insert_combination is not None:  # rows come grouped by combination
            for combination, group in itertools.groupby(rows, key=_COMBINATION):
                ids = [row[0] for row in group]
                for start in range(0, len(ids), INSERT_CHUNK):
                    chunk = _json_list(ids[start : start + INSERT_CHUNK])
                    cursor.execute(
                        sql.insert_combination, (mailing_id, *combination, created, chunk)
                    )
            return
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            cursor.execute(sql.insert_planned, (mailing_id, created, *sql.rows(chunk)))


_COMBINATION = operator.itemgetter(1, 2, 3)


def planned_rows(session: so.Session, mailing_id: int) -> list[PlannedRow]:
    """The mailing's ``planned`` sends in id order, with recruiter code and address."""
    with _cursor(session) as (cursor, sql):
        cursor.execute(sql.planned, (mailing_id,))
        return list(map(PlannedRow._make, cursor.fetchall()))


def claim(session: so.Session, ids: Sequence[int]) -> list[int]:
    """``planned → sending`` for those of ``ids`` still planned; returns them in id order.

    Nearly always every one is taken, which the count of rows changed tells (``ids`` are
    distinct) without returning them; only when another runner took some first is the claim
    undone and run again, returning the ids it takes.
    """
    with _cursor(session) as (cursor, sql):
        cursor.execute("SAVEPOINT mailer_claim")
        cursor.execute(sql.claim, (sql.ids(ids),))
        if cursor.rowcount == len(ids):
            cursor.execute("RELEASE SAVEPOINT mailer_claim")
            return sorted(ids)
        cursor.execute("ROLLBACK TO SAVEPOINT mailer_claim")
        cursor.execute(f"{sql.claim} RETURNING id", (sql.ids(ids),))
        claimed = sorted(row[0] for row in cursor.fetchall())
        cursor.execute("RELEASE SAVEPOINT mailer_claim")
        return claimed


@dataclass(frozen=True)
class Marked:
    """Sends moved ``sending → sent``: how many, and those that already had an outcome or a
    visit (their rollup increments need their columns)."""

    count: int
    earlier: list[int]


def mark_sent(
    session: so.Session, ids: Sequence[int], *, x_message_id: str | None, sent_at: datetime
) -> Marked:
    """``sending → sent`` with the request's ``X-Message-Id`` and time, for those of ``ids``
    still ``sending`` (all of them: only the runner that claimed a send moves it on)."""
    with _cursor(session) as (cursor, sql):
        listed = sql.ids(ids)
        cursor.execute(sql.mark_sent, (x_message_id, sql.time(sent_at), listed))
        count = cursor.rowcount
        cursor.execute(sql.earlier, (listed, listed))
        return Marked(count, sorted(row[0] for row in cursor.fetchall()))


def add_trials(session: so.Session, trials: dict[int, int]) -> None:
    """Add ``trials[variant_id]`` to each variant, in id order (the lock order of variants)."""
    rows = [(count, variant_id) for variant_id, count in sorted(trials.items()) if count]
    if rows:
        with _cursor(session) as (cursor, sql):
            cursor.executemany(sql.add_trials, rows)


def record_sent(
    session: so.Session,
    mailing_id: int,
    combination: Combination,
    sent_at: datetime,
    marked: Marked,
) -> None:
    """The report rollups of sends just marked sent by :func:`mark_sent`, all of one mailing,
    variant combination and time: one bucket, known without reading the rows back. Sends that
    had an outcome or a visit before are counted by :func:`engine.reports.rollups.record_sent`
    from their columns (as a rebuild counts them); the others add only to ``sent``."""
    if marked.earlier:
        columns = [
            Send.id,
            *rollups.SEND_KEY_COLUMNS,
            *(getattr(Send, column) for column in rollups.SEND_OUTCOMES.values()),
        ]
        earlier = session.execute(sa.select(*columns).where(Send.id.in_(marked.earlier)))
        rollups.record_sent(session, [dict(row) for row in earlier.mappings()])
    plain = marked.count - len(marked.earlier)
    key = rollups.send_key("sent", mailing_id, *combination, sent_at)
    if plain and key is not None:
        changes = rollups.RollupChanges()
        changes.sends[key]["sent"] += plain
        changes.apply(session)
