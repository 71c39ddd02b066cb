"""``POST /webhooks/sendgrid``: SendGrid's Event Webhook. The view only translates HTTP.

401 without the configured bearer token, 403 for a missing or wrong signature, 413 for a body
over ``webhooks.max_body_bytes``, 400 for a body that is not a JSON array (all before anything is
stored), 503 when the database fails (SendGrid retries), otherwise 200 with the batch's counts.
"""

from __future__ import annotations

import fcntl
import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from engine import sqlite_wal
from engine.auth import bearer_token
from engine.collector import collector_paused
from engine.db import get_session
from engine.models import utcnow
from webhooks.ingest import prepare_batch, store_batch
from webhooks.parse import BodyError
from webhooks.verify import Verifier, build_verifier
from webhooks.wire import SIGNATURE_HEADER, TIMESTAMP_HEADER

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
VERIFIER = "resistry.webhook_verifier"
WRITER_LOCK = "resistry.webhook_writer_lock"
DIALECT = "resistry.webhook_dialect"
CHECKPOINT_SECONDS = "resistry.webhook_checkpoint_seconds"  # [database] wal_checkpoint_seconds


def init_app(app: Flask) -> None:
    """Load the verification key once (logging its state) and register the blueprint."""
    from engine.app import csrf, settings_of

    settings = settings_of(app)
    app.extensions[VERIFIER] = build_verifier(settings)
    app.extensions[WRITER_LOCK] = _writer_lock_path(settings.database.url)
    app.extensions[DIALECT] = sa.make_url(settings.database.url).get_backend_name()
    app.extensions[CHECKPOINT_SECONDS] = settings.database.wal_checkpoint_seconds
    # SendGrid cannot carry a CSRF token; the signature (and bearer token) authenticate it.
    csrf.exempt(bp)
    app.register_blueprint(bp)


@bp.post("/sendgrid")
def sendgrid_events() -> ResponseReturnValue:
    from engine.app import settings_of

    verifier: Verifier = current_app.extensions[VERIFIER]
    if not verifier.bearer_ok(bearer_token()):
        abort(401, description="a valid bearer token is required")
    body = request.get_data(cache=False)  # 413 past MAX_CONTENT_LENGTH
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not verifier.signature_ok(signature, timestamp, body):
        abort(403, description="missing or invalid SendGrid event webhook signature")

    # A batch makes thousands of short-lived objects: see engine.collector.
    with collector_paused():
        try:
            # Everything that needs no database happens here, before the writer's turn.
            batch = prepare_batch(body, current_app.extensions[DIALECT])
        except BodyError as exc:
            abort(400, description=str(exc))
        settings = settings_of(current_app).webhooks
        lock_path = current_app.extensions[WRITER_LOCK]
        now = utcnow()
        session = get_session()
        try:
            with _writer_turn(lock_path):
                interval = current_app.extensions[CHECKPOINT_SECONDS]
                if lock_path is not None and interval > 0:
                    _checkpoint_in_background(session.connection(), lock_path, interval)
                result = store_batch(session, batch, settings, now=now)
                session.commit()
        except sa.exc.SQLAlchemyError as exc:
            session.rollback()
            # Nothing of the batch was kept; a 5xx makes SendGrid send it again.
            log.error("webhook batch not stored, database error: %s", exc.__class__.__name__)
            return jsonify(error="Service Unavailable", message="database unavailable; retry"), 503
    return jsonify(result.as_dict())


def _checkpoint_in_background(connection: sa.Connection, lock_path: Path, interval: float) -> None:
    """Leave this connection's WAL checkpoints to a thread (:mod:`engine.sqlite_wal`): run by
    the commit that crosses SQLite's threshold, one webhook batch in eight held the writer's
    turn for a checkpoint, and every writer queued behind it waited."""
    sqlite_wal.checkpoint_in_background(
        connection.engine,
        connection.connection,
        interval,
        "webhooks",
        functools.partial(_writer_turn, lock_path),
    )


def _writer_lock_path(database_url: str) -> Path | None:
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).with_name(Path(url.database).name + ".webhook-lock")


@contextmanager
def _writer_turn(lock_path: Path | None) -> Iterator[None]:
    """On SQLite, webhook writers (across gunicorn workers) queue on a file lock, woken the
    moment it frees, instead of in SQLite's busy handler, which sleeps up to 100 ms between
    tries. PostgreSQL needs no turn: row locks order concurrent writers."""
    if lock_path is None:
        yield
        return
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
