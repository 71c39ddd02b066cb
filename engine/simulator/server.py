"""The simulator's HTTP side: SendGrid's ``POST /v3/mail/send`` and a loopback control API.

Mail Send behaves like SendGrid for what Resistry uses: Bearer API key (401), injected
429/5xx and slow answers, SendGrid-shaped 400 errors, 202 with ``X-Message-Id``. Control API
(loopback callers only): ``POST /_sim/fail`` ``{"status", "count", "retry_after"}``,
``POST /_sim/slow`` ``{"seconds", "count"}``, ``POST /_sim/flush``, ``POST /_sim/drain``,
``GET /_sim/stats``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from werkzeug.exceptions import HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from engine.simulator import mail_send
from engine.simulator.delivery import WebhookDelivery
from engine.simulator.outcomes import plan_events, stamp
from engine.simulator.truth import TrueRates

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 30 * 1024 * 1024  # SendGrid's limit on a whole message
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


@dataclass(frozen=True)
class AcceptedRequest:
    x_message_id: str
    payload: dict[str, Any]
    recipients: int


class MailSendService:
    """What SendGrid does with Mail Send requests: check, answer, and plan the events."""

    def __init__(
        self,
        *,
        api_key: str,
        truth: TrueRates,
        delivery: WebhookDelivery,
        rng: np.random.Generator,
        time_scale: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.truth = truth
        self.delivery = delivery
        self.time_scale = time_scale
        self._rng = rng
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[tuple[int, float | None]] = deque()
        self._slow: deque[float] = deque()
        self._requests: list[dict[str, Any]] = []
        self._accepted: list[AcceptedRequest] = []
        self._counts = dict.fromkeys(
            ("requests", "rejected", "unauthorized", "failed", "messages", "events"), 0
        )
        self.stopping = threading.Event()  # cuts injected slowness short on shutdown

    def inject_failure(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """The next ``count`` Mail Send requests get ``status`` (429 or 5xx).

        A 429 carries ``X-RateLimit-Reset`` = now + ``retry_after`` (default 1 s).
        Raises ``ValueError`` for another status, a count below 1 or a negative retry_after.
        """
        if not (status == 429 or 500 <= status <= 599):
            raise ValueError(f"status must be 429 or 5xx, got {status}")
        if count < 1:
            raise ValueError("count must be ≥ 1")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must be ≥ 0")
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def inject_slow(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` Mail Send requests are answered after ``seconds``.

        Raises ``ValueError`` for negative seconds or a count below 1.
        """
        if seconds < 0 or count < 1:
            raise ValueError("seconds must be ≥ 0 and count ≥ 1")
        with self._lock:
            self._slow.extend([seconds] * count)

    def handle(self, request: Request) -> Response:
        """Answer one ``POST /v3/mail/send``."""
        with self._lock:
            self._counts["requests"] += 1
            delay = self._slow.popleft() if self._slow else 0.0
        if delay:
            self.stopping.wait(delay)
        try:
            raw = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return _errors(413, [mail_send.error("Payload too large.", None)])
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            payload = None
        with self._lock:
            if isinstance(payload, dict):
                self._requests.append(payload)
        if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
            with self._lock:
                self._counts["unauthorized"] += 1
            message = "The provided authorization grant is invalid, expired, or revoked"
            return _errors(401, [mail_send.error(message, None)])
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            if failure:
                self._counts["failed"] += 1
        if failure:
            return self._failure(*failure)
        if payload is None:
            return _errors(400, [mail_send.error("Bad Request: the body is not JSON.", None)])
        errors = mail_send.validate(payload)
        if errors:
            with self._lock:
                self._counts["rejected"] += 1
            return _errors(400, errors)
        if mail_send.is_sandbox(payload):
            return Response(status=200)
        x_message_id = self.accept(payload)
        return Response(status=202, headers={"X-Message-Id": x_message_id})

    def accept(self, payload: dict[str, Any]) -> str:
        """Plan and queue the events of a valid request; returns its X-Message-Id."""
        recipients = mail_send.recipients(payload)
        now = self._clock()
        send_at = payload.get("send_at")
        start = max(now, float(send_at)) if isinstance(send_at, int) else now
        with self._lock:
            [x_message_id] = self._random_ids(1)
            planned = []
            for number, recipient in enumerate(recipients):
                sg_message_id = f"{x_message_id}.recvd-sim-{number}.0"
                planned += plan_events(recipient, sg_message_id, self.truth, self._rng)
            ids = self._random_ids(len(planned))
            events = [
                stamp(p, start=start, time_scale=self.time_scale, sg_event_id=event_id)
                for p, event_id in zip(planned, ids, strict=True)
            ]
            self._accepted.append(AcceptedRequest(x_message_id, payload, len(recipients)))
            self._counts["messages"] += len(recipients)
            self._counts["events"] += len(events)
        self.delivery.schedule(events)
        return x_message_id

    def received_payloads(self) -> list[dict[str, Any]]:
        """Payloads of every Mail Send request received (JSON objects only), rejected included."""
        with self._lock:
            return list(self._requests)

    def accepted_requests(self) -> list[AcceptedRequest]:
        """The requests answered 202, in order."""
        with self._lock:
            return list(self._accepted)

    def stats(self) -> dict[str, int]:
        """Counters of requests, accepted messages, generated and delivered events."""
        with self._lock:
            counts = {
                "requests": self._counts["requests"],
                "accepted_requests": len(self._accepted),
                "rejected_requests": self._counts["rejected"],
                "unauthorized_requests": self._counts["unauthorized"],
                "injected_failures": self._counts["failed"],
                "messages_accepted": self._counts["messages"],
                "events_generated": self._counts["events"],
            }
        return counts | dataclasses.asdict(self.delivery.stats())

    def _failure(self, status: int, retry_after: float | None) -> Response:
        if status == 429:
            reset = int(self._clock() + (1.0 if retry_after is None else retry_after))
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            }
            return _errors(429, [mail_send.error("too many requests", None)], headers)
        return _errors(status, [mail_send.error("internal error", None)])

    def _random_ids(self, count: int) -> list[str]:
        """``count`` ids of 22 URL-safe characters (128 random bits, never a dot)."""
        raw = self._rng.bytes(16 * count)
        return [
            base64.urlsafe_b64encode(raw[i : i + 16]).rstrip(b"=").decode()
            for i in range(0, len(raw), 16)
        ]


class SimulatorApp:
    """The WSGI application: Mail Send plus the control API."""

    def __init__(self, service: MailSendService) -> None:
        self.service = service
        self.routes = Map(
            [
                Rule("/v3/mail/send", endpoint="mail_send", methods=["POST"]),
                Rule("/_sim/fail", endpoint="fail", methods=["POST"]),
                Rule("/_sim/slow", endpoint="slow", methods=["POST"]),
                Rule("/_sim/flush", endpoint="flush", methods=["POST"]),
                Rule("/_sim/drain", endpoint="drain", methods=["POST"]),
                Rule("/_sim/stats", endpoint="stats", methods=["GET"]),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        request.max_content_length = MAX_REQUEST_BYTES
        try:
            endpoint, _ = self.routes.bind_to_environ(environ).match()
            if endpoint == "mail_send":
                response = self.service.handle(request)
            else:
                response = self._control(endpoint, request)
        except NotFound:
            response = _errors(404, [mail_send.error("resource not found", None)])
        except HTTPException as exc:
            response = _errors(exc.code or 400, [mail_send.error(exc.description or "", None)])
        except Exception:  # a simulator bug must look like a SendGrid 500, not kill the thread
            log.exception("simulator: unexpected error answering %s", request.path)
            response = _errors(500, [mail_send.error("internal error", None)])
        return response(environ, start_response)

    def _control(self, endpoint: str, request: Request) -> Response:
        if request.remote_addr not in LOOPBACK_ADDRESSES:
            return _control_error(403, "the control API answers loopback callers only")
        service = self.service
        if endpoint == "stats":
            return _json(200, service.stats())
        if endpoint == "flush":
            return _json(200, {"delivered": service.delivery.flush()})
        if endpoint == "drain":
            return _json(200, {"events": service.delivery.drain()})
        try:  # any content type: curl users should not need -H for a demo
            body = json.loads(request.get_data(cache=False) or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return _control_error(400, "the body must be a JSON object")
        try:
            count = _number(body, "count", 1, int)
            if endpoint == "fail":
                retry_after = _number(body, "retry_after", None, float)
                service.inject_failure(_number(body, "status", _REQUIRED, int), count, retry_after)
            else:
                service.inject_slow(_number(body, "seconds", _REQUIRED, float), count)
        except ValueError as exc:
            return _control_error(400, str(exc))
        return _json(200, {"injected": count})


_REQUIRED = object()


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


def _errors(status: int, errors: list[dict[str, Any]], headers: dict | None = None) -> Response:
    return _json(status, mail_send.error_body(errors), headers)


def _control_error(status: int, message: str) -> Response:
    return _json(
        status, {"error": "Bad Request" if status == 400 else "Forbidden", "message": message}
    )


def _json(status: int, body: Any, headers: dict | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )
