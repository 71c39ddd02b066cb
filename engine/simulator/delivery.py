"""Posting signed Event Webhook batches back to the app, the way SendGrid does.

Events wait in a queue until their due time (their simulated time plus a random jitter, so
they arrive out of order); a share is queued twice (SendGrid delivers at least once). Due events
go out in batches of at most ``max_batch_events`` events and ``max_batch_bytes`` bytes, in a
shuffled order. A batch answered with a non-2xx status, or not answered, is retried whole with
a doubling backoff, for at most ``max_delivery_attempts`` attempts (SendGrid keeps trying for
24 hours; a simulator need not).

Without a webhook URL nothing is posted: :meth:`WebhookDelivery.drain` hands the events over
instead, for offline simulation.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from engine.settings import SimulatorSettings
from engine.simulator import wire

log = logging.getLogger(__name__)
# The webhook is a local peer: never route it through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class _Batch:
    body: bytes
    count: int
    attempts: int = 0
    retry_at: float = 0.0


@dataclass(frozen=True)
class DeliveryStats:
    events_queued: int  # including duplicates
    duplicates_queued: int
    events_delivered: int  # accepted by the webhook with a 2xx, including duplicates
    batches_delivered: int
    failed_posts: int
    events_dropped: int  # gave up after max_delivery_attempts
    events_pending: int


class WebhookDelivery:
    """The queue of events not yet posted, and the poster. Safe to use from several threads."""

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        webhook_url: str | None,
        private_key: ec.EllipticCurvePrivateKey,
        rng: np.random.Generator,
        clock: Callable[[], float] = time.time,
        bearer_token: str = "",
    ) -> None:
        self.settings = settings
        self.webhook_url = webhook_url
        self._private_key = private_key
        self._rng = rng
        self._clock = clock
        self._bearer_token = bearer_token
        self._queue: list[tuple[float, int, dict[str, Any]]] = []
        self._retries: list[_Batch] = []
        self._sequence = itertools.count()
        self._lock = threading.Lock()  # guards the queue, the retries and the counters
        self._post_lock = threading.Lock()  # one post at a time keeps retries in order
        self._counts = dict.fromkeys(
            ("queued", "duplicates", "delivered", "batches", "failed_posts", "dropped"), 0
        )

    def schedule(self, events: Iterable[dict[str, Any]]) -> None:
        """Queue wire events; each is due ``jitter_seconds`` (random) after its timestamp."""
        jitter = self.settings.jitter_seconds
        with self._lock:
            for event in events:
                due = event["timestamp"] + self._rng.uniform(0.0, jitter)
                self._push(due, event)
                if self._rng.random() < self.settings.duplicate_rate:
                    # The copy comes later, usually in another batch.
                    extra = self._rng.uniform(0.0, 2 * self.settings.batch_interval_seconds)
                    self._push(due + jitter + extra, event)
                    self._counts["duplicates"] += 1

    def deliver_due(self) -> int:
        """Post the events due by now and the retries whose wait is over; returns events posted."""
        return self._deliver(self._clock(), everything=False)

    def flush(self) -> int:
        """Post every queued event and every waiting retry now; returns events delivered.

        Batches the webhook refuses stay queued for a later retry (their attempt is counted).
        """
        return self._deliver(self._clock(), everything=True)

    def drain(self) -> list[dict[str, Any]]:
        """Remove and return every queued event in due order (duplicates included).

        Meant for runs without a webhook URL; batches already waiting for a retry are not
        returned.
        """
        with self._lock:
            events = [event for _, _, event in sorted(self._queue)]
            self._queue.clear()
        return events

    def stats(self) -> DeliveryStats:
        with self._lock:
            pending = len(self._queue) + sum(batch.count for batch in self._retries)
            return DeliveryStats(
                events_queued=self._counts["queued"],
                duplicates_queued=self._counts["duplicates"],
                events_delivered=self._counts["delivered"],
                batches_delivered=self._counts["batches"],
                failed_posts=self._counts["failed_posts"],
                events_dropped=self._counts["dropped"],
                events_pending=pending,
            )

    # --- internals ---------------------------------------------------------------------------

    def _push(self, due: float, event: dict[str, Any]) -> None:
        heapq.heappush(self._queue, (due, next(self._sequence), event))
        self._counts["queued"] += 1

    def _deliver(self, now: float, *, everything: bool) -> int:
        if self.webhook_url is None:
            return 0
        with self._post_lock:
            with self._lock:
                retries, waiting = [], []
                for batch in self._retries:
                    (retries if everything or batch.retry_at <= now else waiting).append(batch)
                self._retries = waiting
                due: list[dict[str, Any]] = []
                while self._queue and (everything or self._queue[0][0] <= now):
                    due.append(heapq.heappop(self._queue)[2])
            delivered = 0
            for batch in [*retries, *self._batches(due)]:
                delivered += self._post(batch, now)
            return delivered

    def _batches(self, events: list[dict[str, Any]]) -> list[_Batch]:
        """Cut ``events`` (in due order) into size-limited batches, each in shuffled order."""
        batches: list[_Batch] = []
        current: list[bytes] = []
        size = 0
        for event in events:
            encoded = wire.encode_event(event)
            too_many = len(current) >= self.settings.max_batch_events
            too_big = wire.framed_size(size + len(encoded), len(current) + 1)
            if current and (too_many or too_big > self.settings.max_batch_bytes):
                batches.append(self._shuffled_batch(current))
                current, size = [], 0
            current.append(encoded)
            size += len(encoded)
        if current:
            batches.append(self._shuffled_batch(current))
        return batches

    def _shuffled_batch(self, encoded: list[bytes]) -> _Batch:
        with self._lock:
            order = self._rng.permutation(len(encoded))
        return _Batch(body=wire.frame(encoded[i] for i in order), count=len(encoded))

    def _post(self, batch: _Batch, now: float) -> int:
        batch.attempts += 1
        status = self._send(batch.body)
        with self._lock:
            if status is not None and 200 <= status < 300:
                self._counts["delivered"] += batch.count
                self._counts["batches"] += 1
                return batch.count
            self._counts["failed_posts"] += 1
            if batch.attempts >= self.settings.max_delivery_attempts:
                self._counts["dropped"] += batch.count
                log.warning(
                    "simulator: dropped a batch of %d events after %d attempts",
                    batch.count,
                    batch.attempts,
                )
            else:
                backoff = self.settings.retry_backoff_seconds * 2 ** (batch.attempts - 1)
                batch.retry_at = now + backoff
                self._retries.append(batch)
        return 0

    def _send(self, body: bytes) -> int | None:
        """POST one body; returns the HTTP status, or None when the webhook did not answer."""
        assert self.webhook_url is not None
        # The signature timestamp is the real time of the post, as receivers check freshness.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            **wire.signed_headers(self._private_key, timestamp, body),
        }
        if self._bearer_token:
            headers["Authorization"] = f"Bearer {self._bearer_token}"
        request = urllib.request.Request(
            self.webhook_url, data=body, headers=headers, method="POST"
        )
        try:
            with _OPENER.open(request, timeout=self.settings.post_timeout_seconds) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            log.info("simulator: webhook answered %d", exc.code)
            exc.close()
            return exc.code
        except (urllib.error.URLError, OSError) as exc:
            log.info("simulator: webhook unreachable: %s", exc.__class__.__name__)
            return None
