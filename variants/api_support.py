"""Helpers shared by the JSON API modules: request parsing and error responses."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from engine.auth import calling_user
from engine.db import get_session
from engine.models import User
from variants.contacts_export import CursorError
from variants.validation import ConflictError, NotFound, ValidationError


def register_error_handlers(bp: Blueprint) -> None:
    """Service errors become JSON: invalid fields 422, unknown names 404, wrong state 409."""
    bp.register_error_handler(ValidationError, _invalid)
    bp.register_error_handler(NotFound, _not_found)
    bp.register_error_handler(ConflictError, _conflict)
    bp.register_error_handler(CursorError, _bad_cursor)


def _error(status: int, error: str, message: str, **extra: Any) -> Any:
    get_session().rollback()  # a failed request leaves nothing half-done
    return jsonify(error=error, message=message, **extra), status


def _invalid(exc: ValidationError) -> Any:
    return _error(422, "Unprocessable Entity", str(exc), fields=exc.errors)


def _not_found(exc: NotFound) -> Any:
    return _error(404, "Not Found", str(exc.args[0]))


def _conflict(exc: ConflictError) -> Any:
    return _error(409, "Conflict", str(exc))


def json_object() -> dict[str, Any]:
    """The request's JSON object; aborts with 400 if the body is not one."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, description="send a JSON object with Content-Type: application/json")
    return data


def actor() -> str:
    """The username of the calling staff user (views run after ``require_roles``)."""
    user: User | None = calling_user()
    assert user is not None  # require_roles ran first
    return user.username


def reason_of(data: dict[str, Any]) -> str:
    """The ``reason`` of a decision request; raises :class:`ValidationError` without one."""
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError({"reason": "say why: a reason is required"})
    return reason


def _bad_cursor(exc: CursorError) -> Any:
    return _error(400, "Bad Request", str(exc))
