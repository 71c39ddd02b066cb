"""Handing a mailing's composed requests to SendGrid and recording each answer, in order.

Each request's sends are claimed (``planned → sending``) and committed *before* its HTTP call,
and its answer moves them on (``sent`` with the ``X-Message-Id``, trials and rollups; ``failed``;
or back to ``planned`` when SendGrid never took them). Up to two requests are in flight: while
one is on the wire the next is already claimed and queued on the single sender thread, which
starts it the moment the first is answered; the caller meanwhile composes the one after and
records answers in order. Every database write stays on the caller's thread.

After a request that stops the mailing (the post raised, the API key was refused, SendGrid kept
rate-limiting) or once the caller stops it, the sender posts nothing more: a queued request is
answered "not posted" and its sends go back to ``planned``. Only a crash of the whole process can
leave a claimed request unposted; like one SendGrid may have taken, it stays ``sending`` and is
never sent again (at most once).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy.orm as so

from engine import suppressions
from engine.sending import records, sends_sql
from engine.sending.client import PostResult, SendGridAuthError
from engine.sending.composer import ComposedRequest
from engine.sending.sends_sql import Combination

IN_FLIGHT = 2  # one on the wire, one queued behind it


class Poster(Protocol):
    """What the mailing needs of :class:`engine.sending.client.MailClient`."""

    def post(self, body: dict[str, Any]) -> PostResult: ...


class Tally(Protocol):
    """The run's counters (:class:`engine.sending.mailing.MailingReport`)."""

    mailing_id: int
    sent: int
    failed: int


@dataclass(frozen=True)
class Outgoing:
    """A composed request with what recording its answer needs."""

    request: ComposedRequest
    combination: Combination  # every send of a request has the same variants
    trials: dict[int, int]  # variant id → trials per send of this request


@dataclass(frozen=True)
class _InFlight:
    future: Future[PostResult | None]  # None: never posted (the mailing stopped first)
    outgoing: Outgoing
    ids: list[int]  # the sends claimed for it (``sending``), in id order


class _Sender:
    """One thread posting requests in the order given, until something stops the mailing."""

    def __init__(self, client: Poster) -> None:
        self._client = client
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-send")

    def submit(self, body: dict[str, Any]) -> Future[PostResult | None]:
        return self._pool.submit(self._post, body)

    def stop(self) -> None:
        """Post nothing more (a request already on the wire finishes)."""
        self._stopped.set()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _post(self, body: dict[str, Any]) -> PostResult | None:
        if self._stopped.is_set():
            return None
        try:
            result = self._client.post(body)
        except BaseException:
            self._stopped.set()  # set on this thread: the next queued request sees it
            raise
        if result.outcome == "rate_limited":
            self._stopped.set()
        return result


Clock = Callable[[], datetime]
Progress = Callable[[int], None] | None


def send_all(
    session: so.Session,
    client: Poster,
    requests: Iterator[Outgoing],
    tally: Tally,
    clock: Clock,
    on_progress: Progress,
) -> str:
    """Post every request (composed lazily by ``requests``) and record the answers; returns
    why sending stopped early, or "". Raises what a post raised (the sends of that request
    stay ``sending``), including ``SendGridAuthError`` (its sends back to ``planned``)."""
    sender = _Sender(client)
    flying: deque[_InFlight] = deque()
    try:
        for outgoing in requests:  # composing this one overlaps the requests in flight
            recorded: _InFlight | None = None
            if len(flying) == IN_FLIGHT:
                recorded = flying.popleft()
                stopped = _record(session, recorded, tally, clock)
                if stopped:
                    sender.stop()
                    session.commit()
                    _settle(session, flying, tally, clock, on_progress)
                    return stopped
            paused = suppressions.sending_paused(session)
            claimed = [] if paused else sends_sql.claim(session, outgoing.request.send_ids)
            session.commit()  # one answer and the next claim, before the next HTTP call
            if recorded is not None and on_progress is not None:
                on_progress(len(recorded.ids))
            if paused:
                sender.stop()
                _settle(session, flying, tally, clock, on_progress)
                return "sending paused by an alert"
            if claimed:
                body = _only(outgoing.request.body, claimed)
                flying.append(_InFlight(sender.submit(body), outgoing, claimed))
        return _settle(session, flying, tally, clock, on_progress)
    except BaseException:
        sender.stop()  # record what was handed over, then let the error out
        # A database error leaves the transaction unusable: what it had not committed (at
        # most one answer, whose sends stay ``sending``) goes, the rest is recorded anew.
        session.rollback()
        _settle(session, flying, tally, clock, None)
        raise
    finally:
        sender.close()


def _settle(
    session: so.Session,
    flying: deque[_InFlight],
    tally: Tally,
    clock: Clock,
    on_progress: Progress,
) -> str:
    """Record every request still in flight, oldest first, each committed; returns why the
    first that stopped the mailing did, or ""."""
    stopped = ""
    while flying:
        item = flying.popleft()
        why = _record(session, item, tally, clock)
        session.commit()
        stopped = stopped or why
        if not why and on_progress is not None:
            on_progress(len(item.ids))
    return stopped


def _only(body: dict[str, Any], claimed: list[int]) -> dict[str, Any]:
    """The request without the sends another runner claimed first (rare)."""
    keep = {str(send_id) for send_id in claimed}
    personalizations = body["personalizations"]
    if len(personalizations) == len(keep):
        return body
    return {
        **body,
        "personalizations": [p for p in personalizations if p["custom_args"]["send_id"] in keep],
    }


def _record(session: so.Session, flying: _InFlight, tally: Tally, clock: Clock) -> str:
    """Store one request's answer (the caller commits); returns why the mailing must stop, or
    "". Waits for the answer; raises what the post raised."""
    ids = flying.ids
    try:
        result = flying.future.result()
    except SendGridAuthError:  # SendGrid took nothing: the sends can go once the key is fixed
        records.move(session, ids, from_status="sending", to_status="planned")
        session.commit()
        raise
    if result is None:
        records.move(session, ids, from_status="sending", to_status="planned")
        return "stopped before this request was posted"
    if result.outcome == "accepted":
        sent_at = clock()
        marked = sends_sql.mark_sent(
            session, ids, x_message_id=result.x_message_id, sent_at=sent_at
        )
        outgoing = flying.outgoing
        sends_sql.add_trials(session, {vid: n * marked.count for vid, n in outgoing.trials.items()})
        sends_sql.record_sent(session, tally.mailing_id, outgoing.combination, sent_at, marked)
        tally.sent += marked.count
    elif result.outcome == "rate_limited":
        records.move(session, ids, from_status="sending", to_status="planned")
        return f"SendGrid kept rate-limiting ({result.message}); run again later"
    else:
        failed = records.move(
            session, ids, from_status="sending", to_status="failed", error=result.message
        )
        tally.failed += len(failed)
    return ""
