"""The recruiter mailing: plan → render → send, exactly once where it can be, at most once where
it cannot.

A send row is unique per (mailing, recruiter) and moves ``planned → sending → sent | failed``.
Each request's sends are committed as ``sending`` *before* the HTTP call; the answer moves them to
``sent`` (with SendGrid's ``X-Message-Id``, trials and report rollups, in the same transaction) or
``failed`` (with the reason). A crash between the two leaves ``sending`` rows: SendGrid may or may
not have them, so they are reported as "unknown, not retried" and never sent again (at most
once). Re-running a mailing sends only ``planned`` rows, claimed by a conditional UPDATE so two
runners cannot both take the same row. Addresses suppressed since planning are skipped, and
nothing is sent while an alert pauses sending (``engine.alerts``).

To stay fast, requests are composed while earlier ones travel (see
:mod:`engine.sending.handover`: one on the wire, the next claimed and queued behind it; a single
sender thread does only the HTTP calls, every database write stays on the caller's thread).

These functions commit: each state change must be durable before the next step happens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import alerts
from engine.collector import collector_paused
from engine.models import Mailing, utcnow
from engine.recruiters import RecruiterCounts, recruiter_counts
from engine.sending import handover, records
from engine.sending.client import SendGridAuthError
from engine.sending.composer import Arm, Composer, Recipient, Renderers
from engine.sending.handover import Outgoing, Poster
from engine.sending.links import LinkSigner
from engine.sending.planner import draw_plan
from engine.sending.records import PlannedRow, remaining_plan
from engine.sending.sends_sql import Combination
from engine.settings import Settings

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class MailingError(RuntimeError):
    """The mailing cannot go on (bad template, API key refused); the message says why."""


@dataclass
class MailingReport:
    """What one run did; ``unknown`` are ``sending`` rows left by an earlier crash."""

    mailing_id: int
    key: str
    status: str
    planned_now: int = 0
    sent: int = 0
    failed: int = 0
    skipped_suppressed: int = 0
    remaining: int = 0
    unknown: int = 0
    stopped: str = ""
    plan: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The report in words, one fact a line (no addresses)."""
        lines = [
            f"mailing {self.key}: {self.status}",
            f"sent {self.sent}, failed {self.failed}, skipped (suppressed) "
            f"{self.skipped_suppressed}, still planned {self.remaining}",
        ]
        if self.unknown:
            lines.append(f"unknown, not retried: {self.unknown} (handed over before a crash?)")
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        if not self.planned_now and not self.sent and not self.remaining and not self.stopped:
            lines.append(
                f"mailing {self.key} was planned and sent before: nothing was left to send"
                " (--key names a new mailing)"
            )
        return lines


def mailing_key(now: datetime, timezone: str) -> str:
    """The natural key of the recruiter mailing of ``now``'s local date: re-runs share it."""
    return f"recruiters-{now.astimezone(ZoneInfo(timezone)).date().isoformat()}"


def prepare_mailing(
    session: so.Session,
    settings: Settings,
    *,
    key: str,
    now: datetime,
    rng: np.random.Generator,
) -> tuple[Mailing, int]:
    """The mailing ``key`` with its planned sends, created and planned once (then committed).

    A mailing that already exists keeps its plan. Returns ``(mailing, sends planned now)``.
    Raises :class:`engine.sending.planner.PlanError` when nothing can be planned.
    """
    mailing = session.scalar(sa.select(Mailing).where(Mailing.key == key))
    if mailing is not None:
        return mailing, 0
    asm_group_id = settings.sendgrid.asm_group_id
    with collector_paused():
        plan = draw_plan(session, settings, asm_group_id=asm_group_id, rng=rng, now=now)
        mailing = Mailing(
            key=key,
            asm_group_id=asm_group_id,
            scheduled_for=now,
            plan=plan.summary(),
            created_at=now,
        )
        session.add(mailing)
        session.flush()
        records.store_plan(session, mailing, plan, now)
    session.commit()
    return mailing, len(plan.recruiter_ids)


def send_mailing(
    session: so.Session,
    settings: Settings,
    mailing: Mailing,
    *,
    renderers: Renderers,
    client: Poster,
    clock: Clock = utcnow,
    on_progress: Callable[[int], None] | None = None,
) -> MailingReport:
    """Hand every ``planned`` send of ``mailing`` to SendGrid (see the module docstring).

    Returns the run's :class:`MailingReport`. Raises :class:`MailingError` when a template cannot
    be rendered or the API key is refused (the sends concerned stay ``planned``); any other
    exception leaves the rows already handed over as ``sending`` (never re-sent).
    """
    report = MailingReport(mailing.id, mailing.key, mailing.status, plan=dict(mailing.plan))
    alert = alerts.pausing_alert(session)
    if alert is not None:
        paused = f"sending is paused by open alert #{alert.id} ({alert.kind})"
        return _finish(session, mailing, report, clock(), paused)
    skipped = records.suppressed_send_ids(session, mailing)
    if skipped:
        report.skipped_suppressed = len(
            records.move(
                session,
                sorted(skipped),
                from_status="planned",
                to_status="failed",
                error="suppressed before sending",
            )
        )
        session.commit()
    rows = records.planned_rows(session, mailing.id)
    if not rows:
        return _finish(session, mailing, report, clock(), "")
    mailing.status = "sending"
    session.commit()
    try:
        with collector_paused():
            requests = _compose(session, settings, mailing, renderers, rows, report)
            stopped = handover.send_all(session, client, requests, report, clock, on_progress)
    except SendGridAuthError as exc:
        raise MailingError(str(exc)) from None
    return _finish(session, mailing, report, clock(), stopped)


def _compose(
    session: so.Session,
    settings: Settings,
    mailing: Mailing,
    renderers: Renderers,
    rows: list[PlannedRow],
    report: MailingReport,
) -> Iterator[Outgoing]:
    """Requests, composed lazily (chunk by chunk) so the previous one travels meanwhile."""
    arms = records.arms_by_id(
        session, {i for row in rows for i in (row.subject_id, row.body_id, row.share_id) if i}
    )
    many = len(rows) > 5000
    counts = recruiter_counts(session, None if many else {row.recruiter_id for row in rows})
    composer = Composer(
        renderers, settings.sendgrid, mailing_id=mailing.id, asm_group_id=mailing.asm_group_id
    )
    links = LinkSigner(settings)
    size = settings.sendgrid.personalizations_per_request
    groups: dict[Combination, list[PlannedRow]] = {}
    for row in rows:
        groups.setdefault((row.subject_id, row.body_id, row.share_id), []).append(row)
    for (subject_id, body_id, share_id), members in groups.items():
        if subject_id is None or body_id is None:
            ids = [row.send_id for row in members]
            failed = records.move(
                session, ids, from_status="planned", to_status="failed", error="no subject or body"
            )
            report.failed += len(failed)
            session.commit()
            continue
        subject, body = arms[subject_id], arms[body_id]
        share = arms[share_id] if share_id is not None else None
        trials = {i: 1 for i in (subject_id, body_id, share_id) if i is not None}
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            try:
                recipients = [
                    _recipient(composer, links, row, counts, subject, share) for row in chunk
                ]
                composed = list(composer.requests(subject, body, share, recipients))
            except ValueError as exc:  # the renderer's TemplateError is a ValueError
                raise MailingError(f"cannot render the email: {exc}") from None
            for request in composed:
                yield Outgoing(request, (subject_id, body_id, share_id), trials)


def _recipient(
    composer: Composer,
    links: LinkSigner,
    row: PlannedRow,
    counts: dict[int, RecruiterCounts],
    subject: Arm,
    share: Arm | None,
) -> Recipient:
    brought = counts.get(row.recruiter_id, _NOTHING_BROUGHT)
    referral_link, unsubscribe_url, recruiter_page_url = links.email_links(
        row.code, row.send_id, row.recruiter_id, row.share_id
    )
    context: dict[str, object] = {
        # "friend" when the name is unknown: the fallback lives in the data, not the template.
        "first_name": row.first_name or "friend",
        "referral_link": referral_link,
        "friends_count": brought.friends,
        "groups_count": brought.groups,
        "unsubscribe_url": unsubscribe_url,
        "recruiter_page_url": recruiter_page_url,
    }
    recipient = Recipient(row.send_id, row.email, row.first_name, context)
    composer.fill_texts(recipient, subject, share)
    return recipient


_NOTHING_BROUGHT = RecruiterCounts()


def _finish(
    session: so.Session, mailing: Mailing, report: MailingReport, now: datetime, stopped: str
) -> MailingReport:
    by_status = records.status_counts(session, mailing.id)
    report.remaining = by_status.get("planned", 0)
    report.unknown = by_status.get("sending", 0)
    report.stopped = stopped
    if not report.remaining and mailing.status != "sent":
        mailing.status = "sent"
        mailing.finished_at = now
    session.commit()
    report.status = mailing.status
    if report.unknown:
        log.warning("mailing %s: %d sends unknown, not retried", mailing.key, report.unknown)
    log.info("mailing %s: %s", mailing.key, "; ".join(report.lines()[1:]))
    return report


def run_recruiter_mailing(
    session: so.Session,
    settings: Settings,
    *,
    renderers: Renderers,
    client: Poster,
    key: str | None = None,
    rng: np.random.Generator | None = None,
    clock: Clock = utcnow,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> MailingReport:
    """Plan (once) and send the recruiter mailing ``key`` (default: today's, in the scheduler's
    time zone); re-running it sends only what was never handed over.

    ``on_plan`` receives the remaining plan (recipients per variant) before anything is sent.
    Raises :class:`~engine.sending.planner.PlanError` or :class:`MailingError`.
    """
    now = clock()
    key = key or mailing_key(now, settings.scheduler.timezone)
    mailing, planned_now = prepare_mailing(
        session, settings, key=key, now=now, rng=rng or np.random.default_rng()
    )
    if on_plan is not None:
        on_plan(remaining_plan(session, mailing))
    report = send_mailing(
        session,
        settings,
        mailing,
        renderers=renderers,
        client=client,
        clock=clock,
        on_progress=on_progress,
    )
    report.planned_now = planned_now
    return report
