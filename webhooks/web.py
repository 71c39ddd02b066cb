"""``POST /webhooks/sendgrid``: SendGrid's Event Webhook. The view only translates HTTP.

401 without the configured bearer token, 403 for a missing or wrong signature, 413 for a body
over ``webhooks.max_body_bytes``, 400 for a body that is not a JSON array (all before anything is
stored), 503 when the database fails (SendGrid retries), otherwise 200 once the body is stored
in the inbox, from which the applier applies it (:mod:`webhooks.inbox`).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from engine.auth import bearer_token
from engine.db import get_session
from engine.models import utcnow
from webhooks.inbox import enqueue
from webhooks.parse import BodyError, count_elements
from webhooks.turn import WriterTurn
from webhooks.verify import Verifier, build_verifier
from webhooks.wire import SIGNATURE_HEADER, TIMESTAMP_HEADER

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
VERIFIER = "resistry.webhook_verifier"
TURN = "resistry.webhook_writer_turn"


def init_app(app: Flask) -> None:
    """Load the verification key once (logging its state) and register the blueprint."""
    from engine.app import csrf, settings_of

    settings = settings_of(app)
    app.extensions[VERIFIER] = build_verifier(settings)
    app.extensions[TURN] = WriterTurn(
        settings.database.url, settings.database.wal_checkpoint_seconds
    )
    # SendGrid cannot carry a CSRF token; the signature (and bearer token) authenticate it.
    csrf.exempt(bp)
    app.register_blueprint(bp)


@bp.post("/sendgrid")
def sendgrid_events() -> ResponseReturnValue:
    verifier: Verifier = current_app.extensions[VERIFIER]
    if not verifier.bearer_ok(bearer_token()):
        abort(401, description="a valid bearer token is required")
    body = request.get_data(cache=False)  # 413 past MAX_CONTENT_LENGTH
    signature = request.headers.get(SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if not verifier.signature_ok(signature, timestamp, body):
        abort(403, description="missing or invalid SendGrid event webhook signature")
    try:
        elements = count_elements(body)
    except BodyError as exc:
        abort(400, description=str(exc))
    turn: WriterTurn = current_app.extensions[TURN]
    session = get_session()
    try:
        with turn.held(session):
            enqueue(session, body, elements, utcnow())
            session.commit()
    except sa.exc.SQLAlchemyError as exc:
        session.rollback()
        # Nothing was kept; a 5xx makes SendGrid send the batch again.
        log.error("webhook batch not stored, database error: %s", exc.__class__.__name__)
        return jsonify(error="Service Unavailable", message="database unavailable; retry"), 503
    return jsonify(received=elements, queued=True)
