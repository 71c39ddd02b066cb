"""The staff JSON API under ``/api/v1``: experiments and variants (groups, users and contacts in
:mod:`variants.api_groups`). Documented in ``variants/openapi.json``, served at
``GET /api/v1/openapi.json``.

Callers authenticate with a bearer token (``resistry users create --api-token`` or the users
page); a browser session works for reads only (see :func:`engine.auth.calling_user`). Errors are
JSON ``{"error", "message"}``; invalid fields add ``"fields"`` (422).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, current_app, jsonify, request

from engine.auth import require_roles
from engine.db import get_session
from engine.models import EXPERIMENT_STATUSES
from variants import api_groups, decisions, experiments
from variants.api_support import actor, json_object, reason_of, register_error_handlers
from variants.serialize import experiment_json, variant_json
from variants.validation import DECLARABLE_STATUSES, ValidationError

bp = Blueprint("api", __name__, url_prefix="/api/v1")
OPENAPI_FILE = Path(__file__).with_name("openapi.json")


def init_app(app: Flask) -> None:
    """Nothing per app: the routes are on ``bp``."""


register_error_handlers(bp)
api_groups.register(bp)


# --- documentation -----------------------------------------------------------------------------


@cache
def _openapi_document() -> dict[str, Any]:
    return json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))


@bp.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI description of this API; public, like any API documentation."""
    return jsonify(_openapi_document())


# --- experiments -------------------------------------------------------------------------------


@bp.get("/experiments")
@require_roles("admin", "analyst")
def list_experiments() -> Any:
    status = request.args.get("status")
    if status is not None and status not in EXPERIMENT_STATUSES:
        abort(400, description=f"status must be one of {', '.join(EXPERIMENT_STATUSES)}")
    summaries = experiments.list_experiments(get_session(), status)
    return jsonify(experiments=[experiment_json(s.experiment) for s in summaries])


@bp.post("/experiments")
@require_roles("admin")
def create_experiment() -> Any:
    data = json_object()
    variants_data = data.pop("variants", [])
    status = data.pop("status", "draft")
    if not isinstance(variants_data, list):
        raise ValidationError({"variants": "must be a list of variants"})
    # Checked before set_status, which only knows transitions (and would hash a list).
    if not isinstance(status, str) or status not in DECLARABLE_STATUSES:
        raise ValidationError({"status": f"must be one of {', '.join(DECLARABLE_STATUSES)}"})
    session = get_session()
    settings = current_app.extensions["resistry.settings"]
    experiment = experiments.create_experiment(session, data, settings.experiments)
    for index, variant_data in enumerate(variants_data):
        try:
            if not isinstance(variant_data, dict):
                raise ValidationError({"": "must be an object"})
            experiments.add_variant(session, experiment, variant_data)
        except ValidationError as exc:
            raise ValidationError(
                {f"variants[{index}].{name}".rstrip("."): m for name, m in exc.errors.items()}
            ) from None
    if status != "draft":
        decisions.set_status(session, experiment, status, actor(), f"created as {status}")
    session.commit()
    return jsonify(experiment_json(experiment, details=True)), 201


@bp.get("/experiments/<key>")
@require_roles("admin", "analyst")
def get_experiment(key: str) -> Any:
    experiment = experiments.get_experiment(get_session(), key)
    return jsonify(experiment_json(experiment, details=True))


@bp.patch("/experiments/<key>")
@require_roles("admin")
def update_experiment(key: str) -> Any:
    session = get_session()
    experiment = experiments.get_experiment(session, key)
    changed = experiments.update_experiment(session, experiment, json_object())
    session.commit()
    return jsonify({**experiment_json(experiment, details=True), "changed": changed})


@bp.post("/experiments/<key>/status")
@require_roles("admin")
def set_status(key: str) -> Any:
    data, session = json_object(), get_session()
    experiment = experiments.get_experiment(session, key)
    status = data.get("status")
    if status not in EXPERIMENT_STATUSES:
        raise ValidationError({"status": f"must be one of {', '.join(EXPERIMENT_STATUSES)}"})
    decisions.set_status(session, experiment, status, actor(), reason_of(data))
    session.commit()
    return jsonify(experiment_json(experiment, details=True))


@bp.post("/experiments/<key>/restart")
@require_roles("admin")
def restart(key: str) -> Any:
    data, session = json_object(), get_session()
    experiment = experiments.get_experiment(session, key)
    decisions.restart_experiment(session, experiment, actor(), reason_of(data))
    session.commit()
    return jsonify(experiment_json(experiment, details=True))


@bp.post("/experiments/<key>/winner")
@require_roles("admin")
def force_winner(key: str) -> Any:
    data, session = json_object(), get_session()
    experiment = experiments.get_experiment(session, key)
    variant_key = data.get("variant")
    if not isinstance(variant_key, str):
        raise ValidationError({"variant": "name the winning variant by its key"})
    variant = experiments.get_variant(experiment, variant_key)
    decisions.force_winner(session, experiment, variant, actor(), reason_of(data))
    session.commit()
    return jsonify(experiment_json(experiment, details=True))


# --- variants ----------------------------------------------------------------------------------


@bp.post("/experiments/<key>/variants")
@require_roles("admin")
def add_variant(key: str) -> Any:
    session = get_session()
    experiment = experiments.get_experiment(session, key)
    variant = experiments.add_variant(session, experiment, json_object())
    session.commit()
    return jsonify(variant_json(variant)), 201


@bp.get("/experiments/<key>/variants/<variant_key>")
@require_roles("admin", "analyst")
def get_variant(key: str, variant_key: str) -> Any:
    experiment = experiments.get_experiment(get_session(), key)
    return jsonify(variant_json(experiments.get_variant(experiment, variant_key)))


@bp.patch("/experiments/<key>/variants/<variant_key>")
@require_roles("admin")
def edit_variant(key: str, variant_key: str) -> Any:
    """Edit a variant; one that has served traffic is replaced by a new variant (201)."""
    session = get_session()
    variant = experiments.get_variant(experiments.get_experiment(session, key), variant_key)
    current = experiments.edit_variant(session, variant, json_object())
    session.commit()
    return jsonify(variant_json(current)), (201 if current is not variant else 200)


@bp.post("/experiments/<key>/variants/<variant_key>/pause")
@require_roles("admin")
def pause_variant(key: str, variant_key: str) -> Any:
    data, session = json_object(), get_session()
    variant = experiments.get_variant(experiments.get_experiment(session, key), variant_key)
    decisions.pause_variant(session, variant, actor(), reason_of(data))
    session.commit()
    return jsonify(variant_json(variant))


@bp.post("/experiments/<key>/variants/<variant_key>/resume")
@require_roles("admin")
def resume_variant(key: str, variant_key: str) -> Any:
    data, session = json_object(), get_session()
    variant = experiments.get_variant(experiments.get_experiment(session, key), variant_key)
    decisions.resume_variant(session, variant, actor(), reason_of(data))
    session.commit()
    return jsonify(variant_json(variant))
