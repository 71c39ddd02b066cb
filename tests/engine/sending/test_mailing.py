"""The mailing state machine against the simulator: exactly once, at most once, failures."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import suppressions
from engine.models import Alert, Mailing, Send, Variant
from engine.sending import mailing as mailings
from engine.sending.client import MailClient, PostResult
from engine.settings import Settings
from engine.simulator import SimulatorHandle
from tests.engine.sending import factories
from tests.engine.sending.conftest import Recorder, pointed_at

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def run(
    session: so.Session,
    settings: Settings,
    client: Any,
    key: str = "recruiters-test",
) -> mailings.MailingReport:
    return mailings.run_recruiter_mailing(
        session,
        settings,
        renderers=factories.renderers(),
        client=client,
        key=key,
        rng=np.random.default_rng(11),
        clock=lambda: NOW,
    )


def setup(session: so.Session, count: int) -> dict[str, Any]:
    exps = factories.mail_experiments(session)
    factories.recruiters(session, count)
    session.commit()
    return exps


def statuses(session: so.Session) -> Counter[str]:
    return Counter(session.scalars(sa.select(Send.status)))


def received_emails(simulator: SimulatorHandle) -> list[str]:
    """Every address the simulator accepted, once per accepted personalization."""
    return [
        to["email"]
        for accepted in simulator.accepted
        for p in accepted.payload["personalizations"]
        for to in p["to"]
    ]


def test_a_mailing_sends_each_recruiter_once_with_message_ids_and_trials(
    session: so.Session, settings: Settings, simulator: SimulatorHandle, sleeps: Recorder
) -> None:
    exps = setup(session, 25)
    settings = pointed_at(settings, simulator, personalizations_per_request=4)
    report = run(session, settings, MailClient(settings.sendgrid, sleep=sleeps))
    assert (report.sent, report.failed, report.remaining, report.unknown) == (25, 0, 0, 0)
    assert report.status == "sent"
    emails = received_emails(simulator)
    assert sorted(emails) == sorted(f"r{i}@example.org" for i in range(25))
    assert all(len(a.payload["personalizations"]) <= 4 for a in simulator.accepted)
    sends = session.scalars(sa.select(Send)).all()
    ids_by_request = {
        a.x_message_id: {int(p["custom_args"]["send_id"]) for p in a.payload["personalizations"]}
        for a in simulator.accepted
    }
    for send in sends:
        assert send.status == "sent" and send.sent_at == NOW
        assert send.id in ids_by_request[send.x_message_id]
    session.expire_all()
    for kind, exp in exps.items():
        column = {"subject": Send.subject_variant_id, "body": Send.body_variant_id}.get(
            kind, Send.share_variant_id
        )
        for variant in exp.variants:
            sent = session.scalar(sa.select(sa.func.count()).where(column == variant.id))
            assert session.get(Variant, variant.id).trials == sent
    mailing = session.scalar(sa.select(Mailing))
    assert mailing.plan["recipients"] == 25
    assert mailing.status == "sent" and mailing.finished_at == NOW
    # running it again sends nothing more
    again = run(session, settings, MailClient(settings.sendgrid, sleep=sleeps))
    assert (again.sent, again.planned_now) == (0, 0)
    assert len(received_emails(simulator)) == 25


class CrashingClient:
    """Hands ``crash_after`` requests over, then dies right after SendGrid accepted the next."""

    def __init__(self, inner: MailClient, crash_after: int) -> None:
        self.inner = inner
        self.crash_after = crash_after
        self.calls = 0

    def post(self, body: dict[str, Any]) -> PostResult:
        self.calls += 1
        result = self.inner.post(body)
        if self.calls > self.crash_after:
            raise RuntimeError("process killed")
        return result


def test_crash_and_rerun_never_sends_twice(
    session: so.Session, settings: Settings, simulator: SimulatorHandle, sleeps: Recorder
) -> None:
    setup(session, 30)
    settings = pointed_at(settings, simulator, personalizations_per_request=5)
    crashing = CrashingClient(MailClient(settings.sendgrid, sleep=sleeps), crash_after=2)
    with pytest.raises(RuntimeError, match="process killed"):
        run(session, settings, crashing)
    session.rollback()
    sizes = [len(a.payload["personalizations"]) for a in simulator.accepted]
    assert len(sizes) == 3  # two recorded, the third handed over just before the crash
    handed_over = sum(sizes[:2])
    assert statuses(session) == {
        "sent": handed_over,
        "sending": sizes[2],
        "planned": 30 - handed_over - sizes[2],
    }
    report = run(session, settings, MailClient(settings.sendgrid, sleep=sleeps))
    assert (report.sent, report.unknown, report.remaining) == (
        30 - handed_over - sizes[2],
        sizes[2],
        0,
    )
    assert f"unknown, not retried: {sizes[2]}" in "\n".join(report.lines())
    emails = received_emails(simulator)
    assert len(emails) == len(set(emails)) == 30  # everyone once: the crashed request counted
    assert statuses(session) == {"sent": 30 - sizes[2], "sending": sizes[2]}


def test_400_fails_the_request_with_sendgrids_message_not_retried(
    session: so.Session, settings: Settings, simulator: SimulatorHandle, sleeps: Recorder
) -> None:
    setup(session, 6)
    session.execute(
        sa.text("UPDATE contacts SET email = 'broken-address' WHERE email = 'r0@example.org'")
    )
    session.commit()
    settings = pointed_at(settings, simulator, personalizations_per_request=3)
    report = run(session, settings, MailClient(settings.sendgrid, sleep=sleeps))
    failed = session.scalars(sa.select(Send).where(Send.status == "failed")).all()
    assert report.failed == len(failed) >= 1
    assert all("Does not contain a valid address" in send.error for send in failed)
    assert all(send.error.startswith("400:") for send in failed)
    assert report.sent == 6 - len(failed)
    assert sleeps.waits == []
    assert len(simulator.requests) == len(simulator.accepted) + 1  # the bad one, once


def test_5xx_is_retried_with_backoff_then_fails_when_retries_run_out(
    session: so.Session, settings: Settings, simulator: SimulatorHandle, sleeps: Recorder
) -> None:
    setup(session, 4)
    settings = pointed_at(
        settings, simulator, personalizations_per_request=2, max_retries=2, backoff_seconds=1.0
    )
    client = MailClient(settings.sendgrid, sleep=sleeps)
    simulator.inject_failure(500, count=2)  # the first request: two failures, then accepted
    report = run(session, settings, client)
    assert report.sent == 4
    assert sleeps.waits == [1.0, 2.0]

    simulator.inject_failure(503, count=3)  # the next request fails every attempt
    report = run(session, settings, client, key="recruiters-second")
    failed = session.scalars(sa.select(Send).where(Send.status == "failed")).all()
    assert report.failed == len(failed) >= 1 and report.sent == 4 - len(failed)
    assert all("503" in send.error for send in failed)
    attempts = Counter(
        tuple(p["custom_args"]["send_id"] for p in payload["personalizations"])
        for payload in simulator.requests
    )
    assert attempts[tuple(str(send.id) for send in failed)] == 3
    assert sleeps.waits == [1.0, 2.0, 1.0, 2.0]


def test_429_beyond_the_allowed_waits_leaves_sends_planned_for_a_rerun(
    session: so.Session, settings: Settings, simulator: SimulatorHandle, sleeps: Recorder
) -> None:
    setup(session, 3)
    settings = pointed_at(settings, simulator, max_retries=1, max_rate_limit_wait_seconds=5.0)
    simulator.inject_failure(429, count=2, retry_after=3)
    client = MailClient(settings.sendgrid, sleep=sleeps)
    report = run(session, settings, client)
    assert report.remaining == 3 and report.sent == 0
    assert "rate-limiting" in report.stopped
    assert len(sleeps.waits) == 1 and 0 <= sleeps.waits[0] <= 5.0
    assert run(session, settings, client).sent == 3
    assert len(received_emails(simulator)) == 3


def test_nothing_is_sent_while_sending_is_paused(
    session: so.Session, settings: Settings, simulator: SimulatorHandle, sleeps: Recorder
) -> None:
    setup(session, 3)
    session.add(Alert(kind="account_status_change", message="SendGrid", pauses_sending=True))
    session.commit()
    settings = pointed_at(settings, simulator)
    report = run(session, settings, MailClient(settings.sendgrid, sleep=sleeps))
    assert report.sent == 0 and report.remaining == 3
    assert "paused" in report.stopped
    assert simulator.requests == []


def test_addresses_suppressed_after_planning_are_skipped(
    session: so.Session, settings: Settings, simulator: SimulatorHandle, sleeps: Recorder
) -> None:
    setup(session, 3)
    settings = pointed_at(settings, simulator)
    mailing, planned = mailings.prepare_mailing(
        session, settings, key="m", now=NOW, rng=np.random.default_rng(1)
    )
    assert planned == 3
    suppressions.suppress(session, "r1@example.org", "global", "unsubscribe", NOW)
    session.commit()
    report = mailings.send_mailing(
        session,
        settings,
        mailing,
        renderers=factories.renderers(),
        client=MailClient(settings.sendgrid, sleep=sleeps),
        clock=lambda: NOW,
    )
    assert (report.sent, report.skipped_suppressed) == (2, 1)
    assert "r1@example.org" not in received_emails(simulator)


def test_a_bad_template_or_refused_key_stops_with_sends_still_planned(
    session: so.Session, settings: Settings, simulator: SimulatorHandle, sleeps: Recorder
) -> None:
    exps = setup(session, 2)
    settings = pointed_at(settings, simulator, api_key="SG.wrong")
    with pytest.raises(mailings.MailingError, match="refused the API key"):
        run(session, settings, MailClient(settings.sendgrid, sleep=sleeps))
    assert statuses(session) == {"planned": 2}
    for variant in exps["body"].variants:
        variant.content = {"mjml": "<mjml><mj-body>{{ nope }}</mj-body></mjml>"}
    session.commit()
    settings = pointed_at(settings, simulator)
    with pytest.raises(mailings.MailingError, match="cannot render"):
        run(session, settings, MailClient(settings.sendgrid, sleep=sleeps))
    assert statuses(session) == {"planned": 2}
