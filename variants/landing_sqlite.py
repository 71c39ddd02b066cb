"""SQLite specifics of the landing write: each writer thread keeps a connection of its own,
whose trigger counts each visit's trial and visit rollup; writers take turns; and the WAL is
checkpointed off the request path.

All of it only applies to an SQLite file; PostgreSQL and in-memory databases pass through untouched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import sqlalchemy as sa

from engine import sqlite_wal
from engine.sqlite_wal import sqlite_file
from variants import forks

log = logging.getLogger(__name__)


# --- connections ---------------------------------------------------------------------------------


class _Writers(threading.local):
    connection: Any = None  # the pool's handle, detached: closing it closes the connection
    generation: int = -1  # the process that opened it (variants.forks)
    turn: Any = None  # the file's turn (_Turn) in this process
    checkpointer: Any = None  # the Checkpointer the connection's checkpoints were handed to


_WRITERS: weakref.WeakKeyDictionary[sa.Engine, tuple[_Writers, list[Any]]] = (
    weakref.WeakKeyDictionary()
)
_WRITERS_LOCK = threading.Lock()


def own_connection(engine: sa.Engine) -> Any:
    """This thread's own connection to the engine's SQLite file, kept open between landing
    writes and closed when the engine is disposed; ``None`` for other databases.

    Why: checking a connection out of the pool and back in cost ~20 µs of a ~90 µs write. The
    connection is made by the pool (so it gets the engine's PRAGMAs) and then detached from it,
    so it never counts against the pool's size. A forked process opens its own. Visits
    inserted on it count their trial and visit rollup themselves (:data:`COUNT_VISITS_TRIGGER`).
    """
    writers = _writers(engine)
    return writers.connection if writers is not None else None


def own_writer(
    engine: sa.Engine, checkpoint_seconds: float = 0.0
) -> tuple[Any, AbstractContextManager[None]] | None:
    """This thread's own connection (:func:`own_connection`) and the landing writers' turn
    (:func:`write_turn`), with the connection's checkpoints handed to the background
    checkpointer when ``checkpoint_seconds`` > 0 (:func:`checkpoint_in_background`);
    ``None`` for other databases. One lookup for all three: every landing write asks."""
    writers = _writers(engine)
    if writers is None:
        return None
    if checkpoint_seconds > 0:
        checkpointer = writers.checkpointer
        if checkpointer is None or not checkpointer.is_alive():
            checkpoint_in_background(engine, writers.connection, checkpoint_seconds)
            writers.checkpointer = sqlite_wal.checkpointer_of(engine)
    return writers.connection, writers.turn


def _writers(engine: sa.Engine) -> _Writers | None:
    """This thread's landing writer state for the engine, connected; ``None`` unless the engine
    is an SQLite file."""
    entry = _WRITERS.get(engine)
    if entry is None:
        if sqlite_file(engine) is None:
            return None
        with _WRITERS_LOCK:
            entry = _WRITERS.get(engine)
            if entry is None:
                entry = _WRITERS[engine] = (_Writers(), [])
                sa.event.listen(engine, "engine_disposed", _close_writers)
    writers, opened = entry
    generation = forks.generation()
    if writers.connection is None or writers.generation != generation:
        connection = engine.raw_connection()
        connection.detach()
        connection.dbapi_connection.execute(COUNT_VISITS_TRIGGER)
        writers.connection, writers.generation, writers.checkpointer = connection, generation, None
        path = sqlite_file(engine)
        assert path is not None  # entries are only made for SQLite files
        writers.turn = _turn(path)
        with _WRITERS_LOCK:
            opened.append(connection)
    return writers


# The trial and the visit rollup of every visit inserted on a writer's own connection (TEMP: that
# connection only, so every other writer of visits keeps counting in its own statements). Why:
# a visit without attribution is then one INSERT in autocommit mode, a single call into SQLite,
# instead of BEGIN, three statements and COMMIT: each call releases the GIL and takes it back,
# and with gunicorn's poller thread awake the worker thread often waited for it (landing views
# +9 % per second, measured side by side). The rules are those of landing_visits._plan: a visit
# of a landing variant is one trial and one visit in its (variant, UTC hour) bucket; the hour key
# is the visit's stored time ('YYYY-MM-DD HH:MM:SS.ffffff', UTC) cut to the hour, the same text
# engine.reports.rollups writes (tests compare both with a rebuild).
COUNT_VISITS_TRIGGER = """
CREATE TEMP TRIGGER IF NOT EXISTS count_landing_visit AFTER INSERT ON main.visits
WHEN NEW.landing_variant_id IS NOT NULL
BEGIN
    UPDATE variants SET trials = trials + 1 WHERE id = NEW.landing_variant_id;
    INSERT INTO visit_rollups (landing_variant_id, visit_hour, visits, signups, groups_ticked)
    VALUES (NEW.landing_variant_id, substr(NEW.created_at, 1, 13) || ':00:00.000000', 1, 0, 0)
    ON CONFLICT (landing_variant_id, visit_hour) DO UPDATE SET visits = visits + 1;
END
"""


def drop_own_connection(engine: sa.Engine) -> None:
    """Close this thread's own connection (after an error that may have broken it)."""
    entry = _WRITERS.get(engine)
    if entry is None or entry[0].connection is None:
        return
    connection, entry[0].connection = entry[0].connection, None
    entry[0].checkpointer = None
    with _WRITERS_LOCK:
        if connection in entry[1]:
            entry[1].remove(connection)
    _close_quietly(connection)


def _close_writers(engine: sa.Engine) -> None:
    with _WRITERS_LOCK:
        entry = _WRITERS.pop(engine, None)
    if entry is None:
        return
    for connection in entry[1]:
        _close_quietly(connection)


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except sqlite3.Error:  # pragma: no cover - closing a broken connection
        log.warning("could not close a landing writer's connection", exc_info=True)


# --- turns ---------------------------------------------------------------------------------------


class _Turn:
    """The landing writers' turn on one file, in one process: a context manager.

    A class rather than a generator-based context manager: entering and leaving one of those
    costs several µs, on every landing view.
    """

    def __init__(self, file: int) -> None:
        self.threads = threading.Lock()  # flock is per open file: threads need their own lock
        self.file = file  # descriptor of the lock file, opened by this process

    def __enter__(self) -> None:
        self.threads.acquire()
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX)
        except BaseException:
            self.threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            fcntl.flock(self.file, fcntl.LOCK_UN)
        finally:
            self.threads.release()


_TURNS: dict[tuple[int, str], _Turn] = {}
_TURNS_LOCK = threading.Lock()
_NO_TURN = nullcontext()


def write_turn(engine: sa.Engine) -> AbstractContextManager[None]:
    """Queue landing writers for an SQLite file: threads on a lock, processes on ``flock``.

    SQLite's busy handler polls: a writer that finds the lock taken sleeps 1, 2, 5, 10… ms
    before it looks again, although a landing write holds the lock for about 0.2 ms. Measured
    with two gunicorn workers, each landing view waited 350–450 µs on average for the lock.
    A blocking ``flock`` on ``<database>-landing-lock`` hands the turn to the next writer as
    soon as the previous one commits (200–250 µs measured, about the other's commit). Other
    writers (webhook, scheduler) do not take the turn and meet landing writers on SQLite's own
    lock and busy timeout, as before: the turn only orders the landing writers among themselves.
    Not re-entrant.
    """
    path = sqlite_file(engine)
    return _NO_TURN if path is None else _turn(path)


def _turn(path: str) -> _Turn:
    # Per process: a descriptor inherited through fork would share one lock between processes.
    key = (os.getpid(), path)
    turn = _TURNS.get(key)
    if turn is None:
        with _TURNS_LOCK:
            turn = _TURNS.get(key)
            if turn is None:
                file = os.open(f"{path}-landing-lock", os.O_RDWR | os.O_CREAT, 0o600)
                turn = _TURNS[key] = _Turn(file)
    return turn


# --- checkpoints ---------------------------------------------------------------------------------


def checkpoint_in_background(engine: sa.Engine, connection: Any, interval: float) -> None:
    """Hand ``connection``'s WAL checkpoints to the process's checkpointer of the file
    (:mod:`engine.sqlite_wal`, where the reasons and measurements are), registering the landing
    writers' turn: the step that lets the WAL start over holds it, so no landing write waits on
    a checkpoint's page copies and fsyncs. No-op for databases other than SQLite files."""
    path = sqlite_file(engine)
    if path is not None:
        sqlite_wal.checkpoint_in_background(
            engine, connection, interval, "landing", lambda: _turn(path)
        )
