"""SQLite's WAL checkpointed off the request path, for every kind of writer that hands it over.

Why: with automatic checkpoints, the commit that crosses ``wal_autocheckpoint`` pages copies the
WAL back into the database file (page copies and two fsyncs) before it returns, while its writer
still holds its turn, so every writer queued behind it waits too. Measured: landing p99 was
23–27 ms with automatic checkpoints and 16–19 ms with this thread (bench/landing.py); on webhook
batches of 1,000 events (about 500 WAL pages each), automatic checkpoints added a third to the
average commit and tens of milliseconds to one batch in eight.

A :class:`Checkpointer` thread per process and database file runs a PASSIVE checkpoint every
``interval`` seconds (it copies committed pages while writers go on). SQLite only starts the WAL
file over when a writer begins right after a checkpoint that copied everything, which never
happens while writers append continuously; so once the WAL holds ``restart_frames`` frames, a
second PASSIVE checkpoint runs while holding every registered writers' turn (the locks each kind
of writer queues on, taken in name order: a writer takes one turn, so this cannot deadlock). It
only copies the few frames appended since the first, and the next writer starts the WAL over.

Safety: a checkpoint only copies committed pages; committed transactions are durable in the WAL
whether or not a checkpoint ran (the next connection replays it), so a late or failed checkpoint
costs WAL size, never data. Connections handed over stop checkpointing on commit, once; the
thread runs until the engine is disposed or the process exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

Turn = Callable[[], AbstractContextManager[Any]]


def sqlite_file(engine: sa.Engine) -> str | None:
    """The database file of an SQLite engine, or ``None`` (another database, or in memory)."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:" or "mode=memory" in path:
        return None
    return path


class Checkpointer(threading.Thread):
    """Checkpoints one database file's WAL every ``interval`` seconds (see the module)."""

    def __init__(self, path: str, interval: float, restart_frames: int = 1000) -> None:
        super().__init__(name=f"wal-checkpoint {os.path.basename(path)}", daemon=True)
        self.path = path
        self.interval = interval
        self.restart_frames = restart_frames
        self.turns: dict[str, Turn] = {}
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
                        with _LOCK:  # registered from request threads
                            registered = sorted(self.turns.items())
                        with contextlib.ExitStack() as turns:
                            for _name, turn in registered:
                                turns.enter_context(turn())
                            self.last = _checkpoint(connection)
                    self.checkpoints += 1
                except (sqlite3.Error, OSError) as error:  # busy, say: next time, then
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
_LOCK = threading.Lock()
_ADOPTED = "resistry.wal_checkpoints"


def checkpoint_in_background(
    engine: sa.Engine, connection: Any, interval: float, turn_name: str, turn: Turn
) -> None:
    """Hand the pooled DBAPI ``connection``'s checkpoints to this process's
    :class:`Checkpointer` of the engine's file (started here on first use, with ``interval``),
    and register ``turn``, the lock this kind of writer (``turn_name``) queues on.

    The setting stays with the pooled connection, whoever uses it next in this process; the
    checkpointer covers those commits too. No-op for databases other than SQLite files.
    """
    path = sqlite_file(engine)
    if path is None:
        return
    key = (os.getpid(), path)  # per process: a thread does not survive a fork
    checkpointer = _CHECKPOINTERS.get(key)
    if checkpointer is None or not checkpointer.is_alive() or turn_name not in checkpointer.turns:
        with _LOCK:
            checkpointer = _CHECKPOINTERS.get(key)
            if checkpointer is None or not checkpointer.is_alive():
                checkpointer = _CHECKPOINTERS[key] = Checkpointer(path, interval)
                checkpointer.start()
                sa.event.listen(engine, "engine_disposed", lambda _engine: _stop(key))
            checkpointer.turns.setdefault(turn_name, turn)
    if not connection.info.get(_ADOPTED):
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
    with _LOCK:
        checkpointer = _CHECKPOINTERS.pop(key, None)
    if checkpointer is not None:
        checkpointer.stopped.set()
