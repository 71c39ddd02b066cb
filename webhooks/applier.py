"""The applier (``resistry events apply --follow``): applies inbox bodies as they arrive.

It runs as a process of its own, beside the web server and the scheduler; stopped by SIGINT or
SIGTERM, it rolls back the body in hand, which stays pending. Several may run at once (each body
is still applied once, see :mod:`webhooks.inbox`): on PostgreSQL they apply side by side; on
SQLite they take turns, and measured on two cores a second one gained nothing (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

import sqlalchemy as sa

from engine.runtime import Runtime
from engine.settings import Settings
from webhooks.inbox import DrainResult, drain
from webhooks.turn import WriterTurn

log = logging.getLogger(__name__)


def summary(result: DrainResult) -> str:
    """One line saying what a drain did."""
    bodies = "body" if result.applied == 1 else "bodies"
    text = (
        f"applied {result.applied} webhook {bodies}: {result.received} events,"
        f" {result.stored} new, {result.duplicates} duplicates, {result.quarantined} quarantined"
    )
    if result.set_aside:
        text += f"; {result.set_aside} set aside (see `resistry events stats`)"
    return text


def follow(settings: Settings) -> None:
    """Apply bodies as they arrive, until KeyboardInterrupt. A database error is logged and
    retried after the poll interval."""
    runtime = Runtime(settings)
    turn = WriterTurn(settings.database.url, settings.database.wal_checkpoint_seconds)
    try:
        while True:
            try:
                with runtime.sessions() as session:
                    result = drain(session, settings.webhooks, turn)
            except sa.exc.SQLAlchemyError as exc:
                log.error("webhook bodies not applied, database error: %s", exc.__class__.__name__)
                result = DrainResult()
            if result.applied or result.set_aside:
                log.info("%s", summary(result))
            else:
                time.sleep(settings.webhooks.apply_poll_seconds)
    finally:
        runtime.close()


def run_applier(settings: Settings) -> None:
    """Apply bodies as they arrive, at a lower CPU priority, until SIGINT or SIGTERM."""
    # SIGTERM stops like Ctrl-C: the body in hand is rolled back and stays pending.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # Answering SendGrid fast matters more than applying at once: on a shared machine the web
    # workers get the CPU first (measured: endpoint p99 57-83 ms instead of 66-101, and the
    # applier itself faster, with less contention; BENCHMARKS.md).
    os.nice(settings.webhooks.applier_nice)
    with contextlib.suppress(KeyboardInterrupt):
        follow(settings)
