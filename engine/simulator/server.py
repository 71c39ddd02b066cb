"""The simulator's HTTP side: SendGrid's ``POST /v3/mail/send`` and a loopback control API.

Mail Send behaves like SendGrid for what Resistry uses: Bearer API key (401), injected
429/5xx and slow answers, SendGrid-shaped 400 errors, 202 with ``X-Message-Id``. The control
API is described in :mod:`engine.simulator.control`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
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

from engine.simulator import control, mail_send
from engine.simulator.control import json_response
from engine.simulator.delivery import WebhookDelivery
from engine.simulator.planning import EventPlanner, random_ids
from engine.simulator.truth import TrueRates

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 30 * 1024 * 1024  # SendGrid's limit on a whole message


@dataclass(frozen=True)
class AcceptedRequest:
    x_message_id: str
    payload: dict[str, Any]
    recipients: int


class MailSendService:
    """What SendGrid does with Mail Send requests: check and answer them, then (after the
    answer, on the delivery side) generate their events."""

    def __init__(
        self,
        *,
        api_key: str,
        truth: TrueRates,
        delivery: WebhookDelivery,
        rng: np.random.Generator,
        message_id_rng: np.random.Generator,
        time_scale: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``rng`` draws the events, ``message_id_rng`` the X-Message-Ids: apart, the events
        do not depend on when they are generated."""
        self.api_key = api_key
        self.delivery = delivery
        self.planner = EventPlanner(truth=truth, delivery=delivery, rng=rng, time_scale=time_scale)
        self._message_id_rng = message_id_rng
        self._clock = clock
        self._active = 0  # Mail Send requests being answered: event generation gives way
        self._lock = threading.Lock()
        self._failures: deque[tuple[int, float | None]] = deque()
        self._slow: deque[float] = deque()
        self._requests: list[dict[str, Any]] = []
        self._accepted: list[AcceptedRequest] = []
        self._counts = dict.fromkeys(
            ("requests", "rejected", "unauthorized", "failed", "messages"), 0
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
            self._active += 1
            delay = self._slow.popleft() if self._slow else 0.0
        try:
            return self._answer(request, delay)
        finally:
            with self._lock:
                self._active -= 1

    def _answer(self, request: Request, delay: float) -> Response:
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
        """Take a valid request: count its messages and queue it for event generation (no work
        per recipient beyond counting). Returns its X-Message-Id."""
        now = self._clock()
        send_at = payload.get("send_at")
        start = max(now, float(send_at)) if isinstance(send_at, int) else now
        count = mail_send.recipient_count(payload)
        with self._lock:  # ids and the planning queue in the same order
            [x_message_id] = random_ids(self._message_id_rng, 1)
            self._accepted.append(AcceptedRequest(x_message_id, payload, count))
            self._counts["messages"] += count
            self.planner.queue(payload, x_message_id, start)
        return x_message_id

    def deliver_due(self) -> int:
        """Generate the events of every accepted request, then post those due by now; returns
        the events posted."""
        self.planner.plan_waiting()
        return self.delivery.deliver_due()

    def flush(self) -> int:
        """Generate every accepted request's events and post every pending event now; returns
        the events delivered."""
        self.planner.plan_waiting()
        return self.delivery.flush()

    def drain(self) -> list[dict[str, Any]]:
        """Generate every accepted request's events, then remove and return every pending
        event in due order (for runs without a webhook)."""
        self.planner.plan_waiting()
        return self.delivery.drain()

    def run_delivery(self, stop: threading.Event) -> None:
        """Every ``batch_interval_seconds`` until ``stop`` is set: generate events (giving way
        to Mail Send requests being answered) and post the due ones."""
        while not stop.wait(self.delivery.settings.batch_interval_seconds):
            try:
                self.planner.plan_waiting(keep_going=self._idle)
                self.delivery.deliver_due()
            except Exception:  # the thread must survive a bad batch; the next tick retries
                log.exception("simulator: webhook delivery failed")

    def _idle(self) -> bool:
        with self._lock:
            return self._active == 0 and not self.stopping.is_set()

    def received_payloads(self) -> list[dict[str, Any]]:
        """Payloads of every Mail Send request received (JSON objects only), rejected included."""
        with self._lock:
            return list(self._requests)

    def accepted_requests(self) -> list[AcceptedRequest]:
        """The requests answered 202, in order."""
        with self._lock:
            return list(self._accepted)

    def stats(self) -> dict[str, int]:
        """Counters of requests, accepted messages, generated and delivered events (the events
        of every accepted request are generated first)."""
        self.planner.plan_waiting()
        with self._lock:
            counts = {
                "requests": self._counts["requests"],
                "accepted_requests": len(self._accepted),
                "rejected_requests": self._counts["rejected"],
                "unauthorized_requests": self._counts["unauthorized"],
                "injected_failures": self._counts["failed"],
                "messages_accepted": self._counts["messages"],
                "events_generated": self.planner.events_generated(),
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
                response = control.answer(self.service, endpoint, request)
        except NotFound:
            response = _errors(404, [mail_send.error("resource not found", None)])
        except HTTPException as exc:
            response = _errors(exc.code or 400, [mail_send.error(exc.description or "", None)])
        except Exception:  # a simulator bug must look like a SendGrid 500, not kill the thread
            log.exception("simulator: unexpected error answering %s", request.path)
            response = _errors(500, [mail_send.error("internal error", None)])
        return response(environ, start_response)


def _errors(status: int, errors: list[dict[str, Any]], headers: dict | None = None) -> Response:
    return json_response(status, mail_send.error_body(errors), headers)
