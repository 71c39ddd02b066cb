"""SQLite specifics of the landing write: each writer thread keeps a connection of its own,
writers take turns, and the WAL is checkpointed off the request path.

All three only apply to an SQLite file; PostgreSQL and in-memory databases pass through untouched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)


def sqlite_file(engine: sa.Engine) -> str | None:
    """The database file of an SQLite engine, or ``None`` (another database, or in memory)."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:" or "mode=memory" in path:
        return None
    return path


# --- connections ---------------------------------------------------------------------------------


class _Writers(threading.local):
    connection: Any = None  # the pool's handle, detached: closing it closes the connection
    pid: int = 0


_WRITERS: weakref.WeakKeyDictionary[sa.Engine, tuple[_Writers, list[Any]]] = (
    weakref.WeakKeyDictionary()
)
_WRITERS_LOCK = threading.Lock()


def own_connection(engine: sa.Engine) -> Any:
    """This thread's own connection to the engine's SQLite file, kept open between landing
    writes and closed when the engine is disposed; ``None`` for other databases.

    Why: checking a connection out of the pool and back in cost ~20 µs of a ~90 µs write. The
    connection is made by the pool (so it gets the engine's PRAGMAs) and then detached from it,
    so it never counts against the pool's size. A forked process opens its own.
    """
    if sqlite_file(engine) is None:
        return None
    entry = _WRITERS.get(engine)
    if entry is None:
        with _WRITERS_LOCK:
            entry = _WRITERS.get(engine)
            if entry is None:
                entry = _WRITERS[engine] = (_Writers(), [])
                sa.event.listen(engine, "engine_disposed", _close_writers)
    writers, opened = entry
    if writers.connection is None or writers.pid != os.getpid():
        connection = engine.raw_connection()
        connection.detach()
        writers.connection, writers.pid = connection, os.getpid()
        with _WRITERS_LOCK:
            opened.append(connection)
    return writers.connection


def drop_own_connection(engine: sa.Engine) -> None:
    """Close this thread's own connection (after an error that may have broken it)."""
    entry = _WRITERS.get(engine)
    if entry is None or entry[0].connection is None:
        return
    connection, entry[0].connection = entry[0].connection, None
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


@dataclass
class _Turn:
    threads: threading.Lock
    file: int  # descriptor of the lock file, opened by this process


_TURNS: dict[tuple[int, str], _Turn] = {}
_TURNS_LOCK = threading.Lock()


@contextmanager
def write_turn(engine: sa.Engine) -> Iterator[None]:
    """Queue landing writers for an SQLite file: threads on a lock, processes on ``flock``.

    SQLite's busy handler polls: a writer that finds the lock taken sleeps 1, 2, 5, 10… ms
    before it looks again, although a landing write holds the lock for about 0.2 ms. Measured
    with two gunicorn workers, each landing view waited 350–450 µs on average for the lock.
    A blocking ``flock`` on ``<database>-landing-lock`` hands the turn to the next writer as
    soon as the previous one commits (200–250 µs measured, about the other's commit). Other
    writers (webhook, scheduler) do not take the turn and meet landing writers on SQLite's own
    lock and busy timeout, as before: the turn only orders the landing writers among themselves.
    """
    path = sqlite_file(engine)
    if path is None:
        yield
        return
    with _holding_turn(path):
        yield


@contextmanager
def _holding_turn(path: str) -> Iterator[None]:
    turn = _turn(path)
    with turn.threads:  # flock is per open file: threads of one process need their own lock
        fcntl.flock(turn.file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(turn.file, fcntl.LOCK_UN)


def _turn(path: str) -> _Turn:
    # Per process: a descriptor inherited through fork would share one lock between processes.
    key = (os.getpid(), path)
    turn = _TURNS.get(key)
    if turn is None:
        with _TURNS_LOCK:
            turn = _TURNS.get(key)
            if turn is None:
                file = os.open(f"{path}-landing-lock", os.O_RDWR | os.O_CREAT, 0o600)
                turn = _TURNS[key] = _Turn(threading.Lock(), file)
    return turn


# --- checkpoints ---------------------------------------------------------------------------------


class Checkpointer(threading.Thread):
    """Copies the WAL back into the database file every ``interval`` seconds.

    Why: with automatic checkpoints, the commit that crosses ``wal_autocheckpoint`` pages runs
    the checkpoint (page copies and two fsyncs, about 3 ms here) before it returns, while its
    writer still holds the landing turn, so every landing view queued behind it waits too;
    measured (bench/landing.py, three alternating pairs), landing p99 was 23–27 ms with
    automatic checkpoints and 16–19 ms with this thread (one pair disturbed by other load).

    How: a PASSIVE checkpoint copies what the WAL holds while writers go on. SQLite only starts
    the WAL file over when a writer begins right after a checkpoint that copied everything, which
    never happens while landing writers append continuously (the WAL grew by 60 MB/s in a
    benchmark). So once the WAL holds ``restart_frames`` frames, a second PASSIVE checkpoint
    runs while holding the landing turn: it only copies the few frames appended since the first
    (well under a millisecond), and the next landing writer then starts the WAL over.

    Why it is safe: a checkpoint only copies committed pages from the WAL into the database
    file; PASSIVE never waits for or interrupts readers and writers, and writers keep appending
    to the WAL meanwhile. Committed transactions are durable in the WAL whether or not a
    checkpoint ran (if this process dies, the next connection replays the WAL), so a late or
    failed checkpoint costs WAL size, never data. The thread runs in every process whose
    connections stopped checkpointing (see :func:`checkpoint_in_background`) until the engine
    is disposed or the process exits.
    """

    def __init__(self, path: str, interval: float, restart_frames: int = 1000) -> None:
        super().__init__(name=f"wal-checkpoint {os.path.basename(path)}", daemon=True)
        self.path = path
        self.interval = interval
        self.restart_frames = restart_frames
        self.stopped = threading.Event()
        self.checkpoints = 0  # completed runs, and the last one's (busy, WAL frames, copied)
        self.last: tuple[int, int, int] | None = None

    def run(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        failures = 0
        try:
            connection.execute("PRAGMA busy_timeout = 1000")
            while not self.stopped.wait(self.interval):
                try:
                    self.last = _checkpoint(connection)
                    if self.last[1] >= self.restart_frames:
                        with _holding_turn(self.path):
                            self.last = _checkpoint(connection)
                    self.checkpoints += 1
                except sqlite3.Error as error:  # e.g. a busy checkpointer: next time, then
                    failures += 1
                    if failures in (1, 100, 10000):
                        log.warning("WAL checkpoint failed (%d times): %s", failures, error)
        finally:
            connection.close()


def _checkpoint(connection: sqlite3.Connection) -> tuple[int, int, int]:
    """One PASSIVE checkpoint: (busy, frames in the WAL, frames copied)."""
    # fetchall: a statement left unfinished would keep a read lock on the WAL
    (result,) = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return result


_CHECKPOINTERS: dict[tuple[int, str], Checkpointer] = {}
_CHECKPOINTERS_LOCK = threading.Lock()
_ADOPTED = "resistry.landing_checkpoints"


def checkpoint_in_background(engine: sa.Engine, connection: Any, interval: float) -> None:
    """Hand ``connection``'s checkpoints to this process's :class:`Checkpointer` (started here
    on first use): the pooled connection stops checkpointing on commit, once.

    The setting stays with the pooled connection, whoever uses it next in this process; the
    process's checkpointer covers those commits too. No-op for databases other than SQLite files.
    """
    path = sqlite_file(engine)
    if path is None or connection.info.get(_ADOPTED):
        return
    key = (os.getpid(), path)
    with _CHECKPOINTERS_LOCK:
        checkpointer = _CHECKPOINTERS.get(key)
        if checkpointer is None or not checkpointer.is_alive():
            checkpointer = _CHECKPOINTERS[key] = Checkpointer(path, interval)
            checkpointer.start()
            sa.event.listen(engine, "engine_disposed", lambda _engine: _stop(key))
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA wal_autocheckpoint = 0")
    finally:
        cursor.close()
    connection.info[_ADOPTED] = True


def checkpointer_of(engine: sa.Engine) -> Checkpointer | None:
    """This process's checkpointer of the engine's SQLite file, if one was started."""
    path = sqlite_file(engine)
    return _CHECKPOINTERS.get((os.getpid(), path)) if path else None


def _stop(key: tuple[int, str]) -> None:
    with _CHECKPOINTERS_LOCK:
        checkpointer = _CHECKPOINTERS.pop(key, None)
    if checkpointer is not None:
        checkpointer.stopped.set()
