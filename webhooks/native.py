"""Values and statements in the database driver's own form, for the ingestion hot path.

Converting every timestamp through SQLAlchemy's type layer costs more than the SQL itself when a
batch touches thousands of values, and so does SQLAlchemy's execution layer for a batch's many
small statements: the hot path runs its own SQL on the driver's cursor (:class:`Driver`).

On SQLite, :class:`~engine.models.base.UTCDateTime` stores naive UTC text in SQLAlchemy's fixed
format (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts like time; on PostgreSQL the driver takes
and returns aware datetimes. Values in this "native" form can be compared, written and read back
without conversion (tests check they round-trip through the ORM).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

# Binds and selects through this type pass values to and from the driver untouched.
RAW = sa.types.NullType()

Encoder = Callable[[datetime | None], Any]
Decoder = Callable[[Any], datetime | None]


def encoder(dialect_name: str) -> Encoder:
    """Aware datetime -> the value the driver stores for a UTCDateTime column."""
    if dialect_name == "sqlite":
        return _to_sqlite_text
    return _identity


def decoder(dialect_name: str) -> Decoder:
    """A stored UTCDateTime value as the driver returns it -> an aware UTC datetime."""
    if dialect_name == "sqlite":
        return _from_sqlite_text
    return _as_utc


def hour_key(dialect_name: str) -> Callable[[Any], Any]:
    """A stored (non-NULL) UTCDateTime value as the driver returns it -> a value that is equal
    for two times exactly when they fall in the same UTC hour (cheaper than decoding)."""
    if dialect_name == "sqlite":
        return _sqlite_hour
    return _epoch_hour


def _sqlite_hour(value: str) -> str:
    return value[:13]  # "YYYY-MM-DD HH"


def _epoch_hour(value: datetime) -> int:
    return int(value.timestamp()) // 3600


def _to_sqlite_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # "YYYY-MM-DD HH:MM:SS.ffffff+00:00" without its offset (slicing beats reformatting).
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


def _from_sqlite_text(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _identity(value: datetime | None) -> Any:
    return value


def _as_utc(value: Any) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def is_in(column: Any, values: Sequence[Any], dialect_name: str) -> Any:
    """``column IN values``; on PostgreSQL as ``= ANY(array)``: one parameter instead of
    thousands, which the driver would otherwise parse out of a very long query on every call."""
    if dialect_name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def execute_many(connection: sa.Connection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Run ``statement`` once per row with the driver's executemany, skipping SQLAlchemy's
    per-row parameter processing (values must already be in driver form, see :data:`RAW`)."""
    if not rows:
        return
    compiled = statement.compile(dialect=connection.dialect)
    if compiled.positiontup is not None:
        names = compiled.positiontup
        connection.exec_driver_sql(compiled.string, [tuple(row[n] for n in names) for row in rows])
    else:
        connection.exec_driver_sql(compiled.string, list(rows))


class Driver:
    """The DBAPI cursor of a connection, inside the connection's current transaction.

    Statements written for the driver (its parameter style, values in its form) skip SQLAlchemy's
    execution layer: events, result objects and per-row processing cost more than SQLite's own
    work for a batch's statements. Database errors come out as SQLAlchemy's
    (:class:`sqlalchemy.exc.DBAPIError` subclasses), as they do through the connection.
    """

    def __init__(self, connection: sa.Connection) -> None:
        self.dialect = connection.dialect
        self.name: str = connection.dialect.name
        self._cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        self._error = connection.dialect.loaded_dbapi.Error

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement and return every row it produced (none for plain DML)."""
        try:
            self._cursor.execute(sql, parameters)
            return self._cursor.fetchall() if self._cursor.description else []
        except self._error as exc:
            raise self._wrapped(sql, parameters, exc) from exc

    def run(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        """Run one statement that returns no rows; returns how many rows it changed."""
        try:
            self._cursor.execute(sql, parameters)
        except self._error as exc:
            raise self._wrapped(sql, parameters, exc) from exc
        return int(self._cursor.rowcount)

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement per parameter row (the driver's ``executemany``)."""
        if not rows:
            return
        try:
            self._cursor.executemany(sql, rows)
        except self._error as exc:
            raise self._wrapped(sql, rows, exc) from exc

    def _wrapped(self, sql: str, parameters: Any, exc: Exception) -> sa.exc.DBAPIError:
        return sa.exc.DBAPIError.instance(  # type: ignore[return-value]
            sql, parameters, exc, self._error, hide_parameters=True, dialect=self.dialect
        )


def in_list(dialect_name: str, column: str) -> str:
    """SQL for ``column`` being one of the integers of a single parameter made by
    :func:`list_parameter`: one statement text whatever the count, so the driver's statement
    cache (SQLite) and prepared statements (PostgreSQL) apply."""
    if dialect_name == "postgresql":
        return f"{column} = ANY(%s::bigint[])"
    return f"{column} IN (SELECT value FROM json_each(?))"


def list_parameter(dialect_name: str, values: Sequence[int | None]) -> str:
    """The parameter :func:`in_list` expects: an array literal (PostgreSQL; the driver adapts a
    list element by element, several times slower) or a JSON array (SQLite)."""
    if dialect_name == "postgresql":
        return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"
    return orjson.dumps(list(values)).decode()


def update_by_id(
    connection: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple]
) -> None:
    """Set ``columns`` of the rows of ``table`` whose ``id`` is the first item of each row tuple
    (then one value per column, in driver form); see :func:`update_rows`."""
    update_rows(Driver(connection), table, columns, rows)


def update_rows(db: Driver, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Set ``columns`` of the rows of ``table`` whose ``id`` is the first item of each row tuple
    (then one value per column, in driver form). SQLite runs one prepared UPDATE per row (its
    cost is the B-tree, not the statement); PostgreSQL gets one ``UPDATE … FROM
    jsonb_to_recordset(…)``: a single round trip and parameter (the driver adapts lists of times
    element by element, at several microseconds each)."""
    if not rows:
        return
    sql = _update_sql(db.dialect, table, tuple(columns))
    if db.name == "postgresql":
        names = ("id", *columns)
        db.rows(sql, (orjson.dumps([dict(zip(names, row, strict=True)) for row in rows]).decode(),))
    else:
        db.run_many(sql, [(*row[1:], row[0]) for row in rows])


@functools.lru_cache(maxsize=256)
def _update_sql(dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...]) -> str:
    if dialect.name == "postgresql":
        assignments = ", ".join(f"{name} = v.{name}" for name in columns)
        types = ", ".join(
            f"{name} {table.c[name].type.compile(dialect=dialect)}" for name in ("id", *columns)
        )
        return (
            f"UPDATE {table.name} SET {assignments}"
            f" FROM jsonb_to_recordset(%s::jsonb) AS v({types}) WHERE {table.name}.id = v.id"
        )
    assignments = ", ".join(f"{name} = ?" for name in columns)
    return f"UPDATE {table.name} SET {assignments} WHERE id = ?"
