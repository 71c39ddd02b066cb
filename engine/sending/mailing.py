"""The recruiter mailing: plan → render → send, exactly once where it can be, at most once where
it cannot.

A send row is unique per (mailing, recruiter) and moves ``planned → sending → sent | failed``.
Each request's sends are committed as ``sending`` *before* the HTTP call; the answer moves them to
``sent`` (with SendGrid's ``X-Message-Id`` and one trial per variant, in the same transaction) or
``failed`` (with the reason). A crash between the two leaves ``sending`` rows: SendGrid may or may
not have them, so they are reported as "unknown, not retried" and never sent again (at most
once). Re-running a mailing sends only ``planned`` rows, claimed with a conditional UPDATE so two
runners cannot both take the same row. Addresses suppressed since planning are skipped, and
nothing is sent while ``engine.suppressions.sending_paused``.

These functions commit: each state change must be durable before the next step happens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import outcomes, suppressions
from engine.models import Contact, Experiment, Mailing, Recruiter, Send, Variant, utcnow
from engine.recruiters import RecruiterCounts, recruiter_counts
from engine.sending.client import MailClient, PostResult, SendGridAuthError
from engine.sending.composer import Arm, Composer, Recipient, Renderers
from engine.sending.links import LinkSigner
from engine.sending.planner import Plan, arm_of, draw_plan, summarize
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
    plan = draw_plan(session, settings, asm_group_id=asm_group_id, rng=rng, now=now)
    mailing = Mailing(
        key=key, asm_group_id=asm_group_id, scheduled_for=now, plan=plan.summary(), created_at=now
    )
    session.add(mailing)
    session.flush()
    store_plan(session, mailing, plan, now)
    session.commit()
    return mailing, len(plan.recruiter_ids)


def store_plan(session: so.Session, mailing: Mailing, plan: Plan, now: datetime) -> None:
    """Insert one ``planned`` send per recipient in bulk (executemany in chunks)."""
    columns = {kind: plan.variants[kind] for kind in ("subject", "body", "share")}
    rows = [
        {
            "mailing_id": mailing.id,
            "recruiter_id": recruiter_id,
            "subject_variant_id": columns["subject"][i] if columns["subject"] else None,
            "body_variant_id": columns["body"][i] if columns["body"] else None,
            "share_variant_id": columns["share"][i] if columns["share"] else None,
            "status": "planned",
            "error": "",
            "created_at": now,
        }
        for i, recruiter_id in enumerate(plan.recruiter_ids)
    ]
    for start in range(0, len(rows), 10_000):
        session.execute(sa.insert(Send), rows[start : start + 10_000])


@dataclass(frozen=True)
class _Row:
    send_id: int
    recruiter_id: int
    code: str
    email: str
    first_name: str
    subject_id: int | None
    body_id: int | None
    share_id: int | None


def send_mailing(
    session: so.Session,
    settings: Settings,
    mailing: Mailing,
    *,
    renderers: Renderers,
    client: MailClient,
    clock: Clock = utcnow,
    on_progress: Callable[[int], None] | None = None,
) -> MailingReport:
    """Hand every ``planned`` send of ``mailing`` to SendGrid (see the module docstring).

    Returns the run's :class:`MailingReport`. Raises :class:`MailingError` when a template cannot
    be rendered or the API key is refused (the sends concerned stay ``planned``); any other
    exception leaves the rows already handed over as ``sending`` (never re-sent).
    """
    report = MailingReport(mailing.id, mailing.key, mailing.status, plan=dict(mailing.plan))
    rows = _planned_rows(session, mailing.id)
    if rows and suppressions.sending_paused(session):
        return _finish(session, mailing, report, clock(), "sending is paused by an open alert")
    rows = _skip_suppressed(session, mailing, rows, report)
    if rows:
        mailing.status = "sending"
        session.commit()
    arms = _arms(session, rows)
    counts = recruiter_counts(session, None if len(rows) > 5000 else {r.recruiter_id for r in rows})
    composer = Composer(
        renderers, settings.sendgrid, mailing_id=mailing.id, asm_group_id=mailing.asm_group_id
    )
    links = LinkSigner(settings)
    groups: dict[tuple[int | None, int | None, int | None], list[_Row]] = {}
    for row in rows:
        groups.setdefault((row.subject_id, row.body_id, row.share_id), []).append(row)
    for (subject_id, body_id, share_id), members in groups.items():
        if subject_id is None or body_id is None:
            _mark(session, [r.send_id for r in members], "failed", "no subject or body variant")
            report.failed += len(members)
            session.commit()
            continue
        subject, body = arms[subject_id], arms[body_id]
        share = arms[share_id] if share_id is not None else None
        try:
            recipients = [
                _recipient(composer, links, row, counts, subject, share) for row in members
            ]
            requests = list(composer.requests(subject, body, share, recipients))
        except ValueError as exc:  # the renderer's TemplateError is a ValueError
            raise MailingError(f"cannot render {body.label}: {exc}") from None
        for request in requests:
            if suppressions.sending_paused(session):
                return _finish(session, mailing, report, clock(), "sending paused by an alert")
            stopped = _send_request(session, client, request.body, request.send_ids, report, clock)
            if on_progress is not None:
                on_progress(len(request.send_ids))
            if stopped:
                return _finish(session, mailing, report, clock(), stopped)
    return _finish(session, mailing, report, clock(), "")


def _send_request(
    session: so.Session,
    client: MailClient,
    body: dict[str, Any],
    send_ids: Sequence[int],
    report: MailingReport,
    clock: Clock,
) -> str:
    """Claim, post and record one request; returns why the mailing must stop, or ""."""
    claimed = set(
        session.scalars(
            sa.update(Send)
            .where(Send.id.in_(send_ids), Send.status == "planned")
            .values(status="sending")
            .returning(Send.id)
        )
    )
    session.commit()  # durable before the HTTP call: a crash now means "unknown", never twice
    if not claimed:
        return ""
    if len(claimed) < len(send_ids):  # another runner took some: send only ours
        body = dict(body)
        body["personalizations"] = [
            p for p in body["personalizations"] if int(p["custom_args"]["send_id"]) in claimed
        ]
    ids = sorted(claimed)
    try:
        result: PostResult = client.post(body)
    except SendGridAuthError as exc:
        _mark(session, ids, "planned", "", from_status="sending")
        session.commit()
        raise MailingError(str(exc)) from None
    if result.outcome == "accepted":
        sent = _mark(session, ids, "sent", "", x_message_id=result.x_message_id, sent_at=clock())
        outcomes.add_trials(session, _trial_counts(session, sent))
        report.sent += len(sent)
    elif result.outcome == "rate_limited":
        _mark(session, ids, "planned", "", from_status="sending")
        session.commit()
        return f"SendGrid kept rate-limiting ({result.message}); run again later"
    else:
        report.failed += len(_mark(session, ids, "failed", result.message))
    session.commit()
    return ""


def _mark(
    session: so.Session,
    ids: Sequence[int],
    status: str,
    error: str,
    *,
    from_status: str = "sending",
    **values: Any,
) -> list[int]:
    """Move sends ``from_status → status``; returns the ids that moved."""
    statement = (
        sa.update(Send)
        .where(Send.id.in_(ids), Send.status == from_status)
        .values(status=status, error=error, **values)
        .returning(Send.id)
    )
    if from_status == "planned" and status == "failed":
        statement = statement.where(Send.status == "planned")
    return list(session.scalars(statement))


def _trial_counts(session: so.Session, send_ids: Sequence[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    if not send_ids:
        return counts
    for column in (Send.subject_variant_id, Send.body_variant_id, Send.share_variant_id):
        for variant_id, n in session.execute(
            sa.select(column, sa.func.count())
            .where(Send.id.in_(send_ids), column.is_not(None))
            .group_by(column)
        ):
            counts[variant_id] = counts.get(variant_id, 0) + n
    return counts


def _planned_rows(session: so.Session, mailing_id: int) -> list[_Row]:
    query = (
        sa.select(
            Send.id,
            Send.recruiter_id,
            Recruiter.code,
            Contact.email,
            Contact.first_name,
            Send.subject_variant_id,
            Send.body_variant_id,
            Send.share_variant_id,
        )
        .join(Recruiter, Recruiter.id == Send.recruiter_id)
        .join(Contact, Contact.id == Recruiter.contact_id)
        .where(Send.mailing_id == mailing_id, Send.status == "planned")
        .order_by(Send.id)
    )
    return [_Row(*row) for row in session.execute(query)]


def _skip_suppressed(
    session: so.Session, mailing: Mailing, rows: list[_Row], report: MailingReport
) -> list[_Row]:
    """Fail the planned sends whose address was suppressed since planning; keep the rest."""
    blocked = suppressions.suppressed_emails(
        session, (row.email for row in rows), mailing.asm_group_id
    )
    if not blocked:
        return rows
    skipped = [row.send_id for row in rows if row.email in blocked]
    for start in range(0, len(skipped), 1000):
        _mark(
            session,
            skipped[start : start + 1000],
            "failed",
            "suppressed before sending",
            from_status="planned",
        )
    session.commit()
    report.skipped_suppressed += len(skipped)
    return [row for row in rows if row.email not in blocked]


def _arms(session: so.Session, rows: Sequence[_Row]) -> dict[int, Arm]:
    ids = {i for row in rows for i in (row.subject_id, row.body_id, row.share_id) if i}
    if not ids:
        return {}
    pairs = session.execute(
        sa.select(Variant, Experiment)
        .join(Experiment, Experiment.id == Variant.experiment_id)
        .where(Variant.id.in_(ids))
    )
    return {variant.id: arm_of(experiment, variant) for variant, experiment in pairs}


def _recipient(
    composer: Composer,
    links: LinkSigner,
    row: _Row,
    counts: dict[int, RecruiterCounts],
    subject: Arm,
    share: Arm | None,
) -> Recipient:
    brought = counts.get(row.recruiter_id, RecruiterCounts())
    context: dict[str, object] = {
        # "friend" when the name is unknown: the fallback lives in the data, not the template.
        "first_name": row.first_name or "friend",
        "referral_link": links.email_referral_link(row.code, row.send_id, row.share_id),
        "friends_count": brought.friends,
        "groups_count": brought.groups,
        "unsubscribe_url": links.unsubscribe_url(row.send_id),
        "recruiter_page_url": links.recruiter_page_url(row.recruiter_id),
    }
    recipient = Recipient(row.send_id, row.email, row.first_name, context)
    composer.fill_texts(recipient, subject, share)
    return recipient


def _finish(
    session: so.Session, mailing: Mailing, report: MailingReport, now: datetime, stopped: str
) -> MailingReport:
    by_status = dict(
        session.execute(
            sa.select(Send.status, sa.func.count())
            .where(Send.mailing_id == mailing.id)
            .group_by(Send.status)
        ).all()
    )
    report.remaining = by_status.get("planned", 0)
    report.unknown = by_status.get("sending", 0)
    report.stopped = stopped
    if not report.remaining and mailing.status != "sent":
        mailing.status = "sent"
        mailing.finished_at = now
    session.commit()
    report.status = mailing.status
    if report.unknown:
        log.warning(
            "mailing %s: %d sends unknown (sending), not retried", mailing.key, report.unknown
        )
    log.info("mailing %s: %s", mailing.key, "; ".join(report.lines()[1:]))
    return report


def run_recruiter_mailing(
    session: so.Session,
    settings: Settings,
    *,
    renderers: Renderers,
    client: MailClient,
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


def remaining_plan(session: so.Session, mailing: Mailing) -> dict[str, Any]:
    """The plan of the sends still ``planned``: recipients per variant and per combination."""
    rows = session.execute(
        sa.select(Send.subject_variant_id, Send.body_variant_id, Send.share_variant_id).where(
            Send.mailing_id == mailing.id, Send.status == "planned"
        )
    ).all()
    variants: dict[str, list[int] | None] = {
        kind: [row[i] for row in rows] if rows and rows[0][i] is not None else None
        for i, kind in enumerate(("subject", "body", "share"))
    }
    ids = {i for row in rows for i in row if i is not None}
    arms = _arms(session, [_Row(0, 0, "", "", "", *row) for row in rows[:0]]) if not ids else {}
    if ids:
        pairs = session.execute(
            sa.select(Variant, Experiment)
            .join(Experiment, Experiment.id == Variant.experiment_id)
            .where(Variant.id.in_(ids))
        )
        arms = {variant.id: arm_of(experiment, variant) for variant, experiment in pairs}
    return summarize(variants, arms, len(rows), 0)
