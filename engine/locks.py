"""A process-wide singleton lock, so exactly one scheduler sends mail.

PostgreSQL: a session-level advisory lock held on a dedicated connection for as long as the
process runs; a second scheduler waits (polling) instead of sending twice, and takes over when the
first one dies (the server releases the lock with the connection). SQLite: an exclusive ``flock``
on a file next to the database, with the same semantics on one machine.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` derived from ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def singleton(
    engine: sa.Engine,
    name: str,
    *,
    poll_seconds: float = 5.0,
    on_wait: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> Iterator[None]:
    """Hold the lock ``name`` for the duration of the block, waiting while another holder runs.

    ``on_wait`` is called once when the lock is busy. Raises ``TimeoutError`` after ``timeout``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            key = lock_key(name)
            _wait(
                lambda: bool(connection.scalar(sa.select(sa.func.pg_try_advisory_lock(key)))),
                poll_seconds,
                on_wait,
                deadline,
            )
            connection.commit()
            try:
                yield
            finally:
                connection.scalar(sa.select(sa.func.pg_advisory_unlock(key)))
                connection.commit()
        return
    path = _lock_path(engine, name)
    with path.open("a") as handle:
        _wait(lambda: _try_flock(handle.fileno()), poll_seconds, on_wait, deadline)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _wait(
    try_lock: Callable[[], bool],
    poll_seconds: float,
    on_wait: Callable[[], None] | None,
    deadline: float | None,
) -> None:
    told = False
    while not try_lock():
        if not told and on_wait is not None:
            on_wait()
            told = True
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("another process holds the lock")
        time.sleep(poll_seconds)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock_path(engine: sa.Engine, name: str) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise ValueError("a singleton lock needs a file-backed SQLite database or PostgreSQL")
    return Path(database).with_name(f"{Path(database).name}.{name}.lock")
