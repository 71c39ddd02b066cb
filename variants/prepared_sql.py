"""Statements compiled once per dialect and run on a DBAPI cursor, for the hottest writes.

Going through SQLAlchemy's execution (the ORM flush, a Core statement, even
``exec_driver_sql``) costs 8–40 µs per statement; a :class:`Prepared` statement converts its
parameters as SQLAlchemy would for the dialect and hands them to the driver directly, and
:func:`sqlalchemy_errors` keeps the errors callers expect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class Prepared:
    """A statement compiled for one dialect: its SQL, the order of its positional parameters
    (``None`` when the driver takes them by name) and each parameter's bind conversion."""

    sql: str
    order: tuple[str, ...] | None
    processors: Mapping[str, Callable[[Any], Any] | None]
    fixed: Mapping[str, Any]  # parameters the statement fixes itself (a LIMIT), converted
    results: tuple[Callable[[Any], Any] | None, ...] = ()  # per result column, for fetch_row
    _positions: tuple[tuple[str | None, Callable[[Any], Any] | None, Any], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Per position: the parameter's name and conversion, or (None, None, its fixed value).
        positions = tuple(
            (None, None, self.fixed[name])
            if name in self.fixed
            else (name, self.processors[name], None)
            for name in self.order or ()
        )
        object.__setattr__(self, "_positions", positions)

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        """``values`` converted for the driver, in the form its paramstyle takes."""
        if self.order is None:
            converted = dict(self.fixed)
            for name, value in values.items():
                processor = self.processors.get(name)
                converted[name] = processor(value) if processor is not None else value
            return converted
        # The hottest path of a landing view: one pass over the statement's own positions.
        return [
            fixed
            if name is None
            else (convert(values[name]) if convert is not None else values[name])
            for name, convert, fixed in self._positions
        ]

    def run(self, cursor: Any, values: Mapping[str, Any]) -> Any:
        """Execute on a DBAPI cursor; returns the cursor (fetch RETURNING rows from it)."""
        cursor.execute(self.sql, self.parameters(values))
        return cursor

    def fetch_row(self, cursor: Any, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Execute and return the first row with its columns converted, or ``None``."""
        row = self.run(cursor, values).fetchone()
        if row is None:
            return None
        return tuple(
            convert(value) if convert is not None else value
            for convert, value in zip(self.results, row, strict=True)
        )


def prepare(statement: sa.ClauseElement, dialect: sa.Dialect) -> Prepared:
    """Compile ``statement`` for ``dialect`` once (see :class:`Prepared`); values are converted
    as SQLAlchemy converts them for this dialect (on SQLite a time becomes text)."""
    compiled = statement.compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    processors = {
        name: bind.type.dialect_impl(dialect).bind_processor(dialect)
        for name, bind in binds.items()
    }
    fixed = {
        name: processors[name](bind.value) if processors[name] else bind.value
        for name, bind in binds.items()
        if not bind.required
    }
    results: tuple[Callable[[Any], Any] | None, ...] = ()
    if isinstance(statement, sa.Select):
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        )
    return Prepared(compiled.string, order, processors, fixed, results)


def sqlalchemy_errors(dialect: sa.Dialect) -> AbstractContextManager[None]:
    """Raise the driver's errors as SQLAlchemy's (``IntegrityError``, ``OperationalError``…),
    as SQLAlchemy's own execution does, so callers and the app's error handlers (a locked
    database is a 503) see the exceptions they expect."""
    return _DriverErrors(dialect)


class _DriverErrors:
    # A class: a generator-based context manager costs a few µs per landing view.
    __slots__ = ("dialect",)

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect

    def __enter__(self) -> None:
        return None

    def __exit__(self, _kind: object, error: BaseException | None, _traceback: object) -> None:
        driver_error = self.dialect.loaded_dbapi.Error
        if isinstance(error, driver_error):
            raise sa.exc.DBAPIError.instance(
                None, None, error, driver_error, dialect=self.dialect
            ) from error
