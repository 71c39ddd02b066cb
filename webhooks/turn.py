"""The webhook writers' turn: on an SQLite file, one writer at a time, across processes.

Both kinds of webhook writer take it: the endpoint storing a body in the inbox, and the applier
applying one (:mod:`webhooks.inbox`), which may run in other processes. They queue on a file
lock, woken the moment it frees, instead of in SQLite's busy handler, which sleeps up to 100 ms
between tries. PostgreSQL needs no turn: row locks order concurrent writers. Holding the turn
also hands the connection's WAL checkpoints to a background thread (:mod:`engine.sqlite_wal`):
run by the commit that crosses SQLite's threshold, one batch in eight held the turn for a
checkpoint, and every writer queued behind it waited.
"""

from __future__ import annotations

import fcntl
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import sqlite_wal

TURN_NAME = "webhooks"


class WriterTurn:
    """The turn of one database's webhook writers (a no-op off SQLite files)."""

    def __init__(self, database_url: str, checkpoint_seconds: float) -> None:
        self.lock_path = _lock_path(database_url)
        self.checkpoint_seconds = checkpoint_seconds

    @contextmanager
    def held(self, session: so.Session) -> Iterator[None]:
        """Wait for the turn, then hold it (the session's connection checkpointing in the
        background) until the block ends; commit inside the block."""
        with _locked(self.lock_path):
            if self.lock_path is not None and self.checkpoint_seconds > 0:
                self._hand_over_checkpoints(session.connection())
            yield

    def _hand_over_checkpoints(self, connection: sa.Connection) -> None:
        sqlite_wal.checkpoint_in_background(
            connection.engine,
            connection.connection,
            self.checkpoint_seconds,
            TURN_NAME,
            functools.partial(_locked, self.lock_path),
        )


def _lock_path(database_url: str) -> Path | None:
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).with_name(Path(url.database).name + ".webhook-lock")


@contextmanager
def _locked(lock_path: Path | None) -> Iterator[None]:
    if lock_path is None:
        yield
        return
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
