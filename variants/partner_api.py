"""Partner API: tested variants for the emails partner groups send themselves.

``GET /api/v1/assign?experiment=<key>&unit=<recipient id>`` returns the variant for that unit:
sticky per (experiment, group, unit), chosen by Thompson sampling while the experiment runs and
the winner once it is promoted; each new assignment is a trial. ``POST /api/v1/convert`` with
``{"experiment": key, "unit": id}`` records the unit's conversion once (idempotent) and credits
its variant with the experiment's metric. Both need the group's API token as a bearer token;
errors are JSON ``{"error", "message"}`` with a 4xx status.
"""

from __future__ import annotations

from typing import Any, NoReturn

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from engine.auth import require_group_token
from engine.db import get_session
from engine.models import Experiment, Group
from variants import assignment
from variants.api_support import unstorable_text
from variants.landing_state import runtime_of

bp = Blueprint("partner_api", __name__, url_prefix="/api/v1")

# Partners send their own emails: subject lines, bodies and share texts are theirs to test.
# Landing experiments are served by the site itself.
PARTNER_KINDS = ("subject", "body", "share")
MAX_UNIT_LENGTH = 200
MAX_KEY_LENGTH = 64


def init_app(app: Flask) -> None:
    """Nothing per app: the partner API shares the landing runtime's cache and generator."""


@bp.get("/assign")
@require_group_token
def assign(group: Group) -> ResponseReturnValue:
    key = _experiment_key(request.args.get("experiment"))
    unit = _unit(request.args.get("unit"))
    snapshot = _partner_experiment(key)
    if snapshot.status not in assignment.SERVING_STATUSES:
        _fail(409, f"experiment {key!r} is {snapshot.status}: it serves no variants now")
    runtime = runtime_of(current_app)
    db = get_session()
    result = assignment.assign_unit(
        db, snapshot, group.id, unit, runtime.chooser.choose, runtime.now()
    )
    if result is None:
        _fail(409, f"experiment {key!r} has no live variant")
    db.commit()
    arm = result.arm
    return jsonify(
        experiment=key,
        unit=unit,
        variant={"key": arm.key, "name": arm.name, "content": dict(arm.content)},
        new=result.created,
    )


@bp.post("/convert")
@require_group_token
def convert(group: Group) -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        _fail(400, 'the body must be a JSON object: {"experiment": "<key>", "unit": "<id>"}')
    problem = unstorable_text(body)
    if problem:
        _fail(400, problem)
    key = _experiment_key(body.get("experiment"))
    unit = _unit(body.get("unit"))
    snapshot = _partner_experiment(key)
    db = get_session()
    try:
        first = assignment.convert_unit(db, snapshot, group.id, unit, runtime_of(current_app).now())
    except assignment.UnknownUnit:
        _fail(404, f"unit {unit!r} was never assigned in experiment {key!r} for your group")
    db.commit()
    return jsonify(experiment=key, unit=unit, converted=True, first_time=first)


# --- helpers -----------------------------------------------------------------------------------


def _fail(status: int, message: str) -> NoReturn:
    abort(status, description=message)


def _experiment_key(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        _fail(400, "'experiment' is required: the key of the experiment")
    if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH:
        _fail(400, f"'experiment' must be a string of at most {MAX_KEY_LENGTH} characters")
    return value.strip()


def _unit(value: Any) -> str:
    """A unit id: a non-empty string (or an integer, taken as its decimal string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        _fail(400, "'unit' is required: your id for the recipient")
    if not isinstance(value, str) or len(value.strip()) > MAX_UNIT_LENGTH:
        _fail(400, f"'unit' must be a string of at most {MAX_UNIT_LENGTH} characters")
    return value.strip()


def _partner_experiment(key: str) -> assignment.ExperimentSnapshot:
    """The cached snapshot of experiment ``key``; 404 if unknown, 400 if not a partner kind."""

    def load() -> assignment.ExperimentSnapshot | None:
        db = get_session()
        experiment = db.scalar(sa.select(Experiment).where(Experiment.key == key))
        return assignment.load_snapshot(db, experiment) if experiment is not None else None

    snapshot = runtime_of(current_app).cache.get(f"experiment:{key}", load)
    if snapshot is None:
        _fail(404, f"no experiment with key {key!r}")
    if snapshot.kind not in PARTNER_KINDS:
        _fail(
            400,
            f"experiment {key!r} is a {snapshot.kind} experiment; "
            f"partners can use {', '.join(PARTNER_KINDS)} experiments",
        )
    return snapshot
