"""Datetimes in the form the database driver stores them, for the ingestion hot path.

Converting every timestamp through SQLAlchemy's type layer costs more than the SQL itself when a
batch touches thousands of values. On SQLite, :class:`~engine.models.base.UTCDateTime` stores
naive UTC text in SQLAlchemy's fixed format (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts like
time; on PostgreSQL the driver takes and returns aware datetimes. Values in this "native" form can
be compared, written and read back without conversion (tests check they round-trip through the
ORM).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

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
