"""Two requests in flight: a request claimed behind one that stops the mailing is never posted
and goes back to ``planned``; everything posted is recorded."""

from __future__ import annotations

import gc
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Send
from engine.sending import handover
from engine.sending import mailing as mailings
from engine.sending.client import PostResult, SendGridAuthError
from engine.settings import Settings
from tests.engine.sending import factories

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


class FakeClient:
    """Answers each post with ``answers[n]`` (a PostResult or an exception to raise), then 202s;
    keeps the send ids of every request it was given."""

    def __init__(self, *answers: PostResult | BaseException) -> None:
        self.answers = list(answers)
        self.posted: list[list[int]] = []
        self.lock = threading.Lock()

    def post(self, body: dict[str, Any]) -> PostResult:
        with self.lock:
            self.posted.append([int(p["custom_args"]["send_id"]) for p in body["personalizations"]])
            answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, BaseException):
            raise answer
        return answer or PostResult("accepted", x_message_id=f"X{len(self.posted)}")


def run(session: so.Session, settings: Settings, client: FakeClient) -> mailings.MailingReport:
    for kind, variants in (
        ("subject", factories.SUBJECTS),
        ("body", factories.BODIES),
        ("share", factories.SHARES),
    ):  # one variant each: one combination, requests of two sends
        factories.experiment(session, kind, dict(list(variants.items())[:1]))
    factories.recruiters(session, 12)
    session.commit()
    return mailings.run_recruiter_mailing(
        session,
        settings.replace(sendgrid={"personalizations_per_request": 2}),
        renderers=factories.renderers(),
        client=client,
        key="m",
        rng=np.random.default_rng(2),
        clock=lambda: NOW,
    )


def statuses(session: so.Session) -> dict[int, str]:
    return dict(session.execute(sa.select(Send.id, Send.status)).all())


def test_nothing_is_posted_after_a_post_raised(session: so.Session, settings: Settings) -> None:
    client = FakeClient(RuntimeError("connection lost"))
    with pytest.raises(RuntimeError, match="connection lost"):
        run(session, settings, client)
    assert len(client.posted) == 1  # the request queued behind it never left
    by_status = statuses(session)
    assert {i for i, s in by_status.items() if s == "sending"} == set(client.posted[0])
    assert Counter(by_status.values()) == {"sending": 2, "planned": 10}
    assert gc.isenabled()


def test_rate_limiting_stops_the_mailing_and_the_queued_request_stays_planned(
    session: so.Session, settings: Settings
) -> None:
    client = FakeClient(PostResult("accepted", x_message_id="X1"), PostResult("rate_limited"))
    report = run(session, settings, client)
    assert len(client.posted) == 2
    assert "rate-limiting" in report.stopped
    assert (report.sent, report.remaining, report.unknown) == (2, 10, 0)
    by_status = statuses(session)
    assert {i for i, s in by_status.items() if s == "sent"} == set(client.posted[0])


def test_a_refused_key_puts_every_claimed_send_back(
    session: so.Session, settings: Settings
) -> None:
    client = FakeClient(SendGridAuthError("SendGrid refused the API key (401): bad"))
    with pytest.raises(mailings.MailingError, match="refused the API key"):
        run(session, settings, client)
    assert len(client.posted) == 1
    assert set(statuses(session).values()) == {"planned"}


def test_a_pause_while_requests_travel_records_each_posted_one(
    session: so.Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = Counter[str]()

    def paused_from_the_third_check(_session: so.Session) -> bool:
        checks["n"] += 1
        return checks["n"] >= 3

    monkeypatch.setattr(handover.suppressions, "sending_paused", paused_from_the_third_check)
    client = FakeClient()
    report = run(session, settings, client)
    assert "paused" in report.stopped
    posted = {send_id for ids in client.posted for send_id in ids}
    assert 2 <= len(posted) <= 4  # the first request, and the one queued if it had left
    by_status = statuses(session)
    assert {i for i, s in by_status.items() if s == "sent"} == posted
    assert Counter(by_status.values()) == {"sent": len(posted), "planned": 12 - len(posted)}
    assert report.sent == len(posted) and report.remaining == 12 - len(posted)


def test_every_request_is_posted_once_in_order(session: so.Session, settings: Settings) -> None:
    client = FakeClient()
    report = run(session, settings, client)
    assert (report.sent, report.remaining, report.status) == (12, 0, "sent")
    flat = [send_id for ids in client.posted for send_id in ids]
    assert flat == sorted(flat) and len(flat) == len(set(flat)) == 12
    assert gc.isenabled()
