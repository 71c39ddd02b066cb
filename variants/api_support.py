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
    """The request's JSON object; aborts with 400 if the body is not one, or if any text in it
    could not be stored (see :func:`unstorable_text`)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, description="send a JSON object with Content-Type: application/json")
    problem = unstorable_text(data)
    if problem:
        abort(400, description=problem)
    return data


def unstorable_text(data: Any) -> str | None:
    """What makes a text in decoded JSON unstorable, or None: a NUL character (PostgreSQL's text
    cannot hold one) or an unpaired surrogate escape such as ``"\\ud800"`` (not a character at
    all: it cannot be encoded, so a page showing it would fail)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "the JSON holds a NUL character (\\u0000), which no field allows"
            if not item.isascii() and any(0xD800 <= ord(ch) <= 0xDFFF for ch in item):
                return "the JSON holds an unpaired surrogate (\\ud800-\\udfff), not a character"
    return None


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
