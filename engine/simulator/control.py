"""The simulator's control API, for loopback callers only (it has no authentication).

``POST /_sim/fail`` ``{"status", "count", "retry_after"}`` and ``POST /_sim/slow``
``{"seconds", "count"}`` inject failures and slow answers into the next Mail Send requests;
``POST /_sim/flush`` posts every pending event now, ``POST /_sim/drain`` hands them over
instead; ``GET /_sim/stats`` returns the counters.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from engine.simulator.server import MailSendService

LOOPBACK_ADDRESSES = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
_REQUIRED = object()


def answer(service: MailSendService, endpoint: str, request: Request) -> Response:
    """Answer one control request; a JSON 400 for bad input, 403 for a caller not on loopback."""
    if request.remote_addr not in LOOPBACK_ADDRESSES:
        return _error(403, "the control API answers loopback callers only")
    if endpoint == "stats":
        return json_response(200, service.stats())
    if endpoint == "flush":
        return json_response(200, {"delivered": service.flush()})
    if endpoint == "drain":
        return json_response(200, {"events": service.drain()})
    try:  # any content type: curl users should not need -H for a demo
        body = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    try:
        count = _number(body, "count", 1, int)
        if endpoint == "fail":
            retry_after = _number(body, "retry_after", None, float)
            service.inject_failure(_number(body, "status", _REQUIRED, int), count, retry_after)
        else:
            service.inject_slow(_number(body, "seconds", _REQUIRED, float), count)
    except ValueError as exc:
        return _error(400, str(exc))
    return json_response(200, {"injected": count})


def json_response(status: int, body: Any, headers: dict | None = None) -> Response:
    """A JSON response with ``status`` (and extra ``headers``)."""
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _number(body: dict[str, Any], key: str, default: Any, kind: type) -> Any:
    """``body[key]`` as ``kind``; ``default`` when absent (``_REQUIRED``: raise ValueError)."""
    value = body.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ValueError(f"{key} is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number")
    if kind is int and value != int(value):
        raise ValueError(f"{key} must be a whole number")
    return kind(value)


def _error(status: int, message: str) -> Response:
    return json_response(
        status, {"error": "Bad Request" if status == 400 else "Forbidden", "message": message}
    )
