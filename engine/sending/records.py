"""The rows behind a mailing: planned sends in bulk, and each state change of the sends.

Every change is a conditional UPDATE (``WHERE status = <expected>``) that tells which sends it
moved, so two runners, or a stale re-run, can never move the same send twice. The changes every
send goes through (plan, claim, sent) run as plain SQL in :mod:`engine.sending.sends_sql`; the
rare ones (failed, back to planned) here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import suppressions
from engine.models import Contact, Experiment, Mailing, Recruiter, Send, Suppression, Variant
from engine.reports import rollups
from engine.sending import sends_sql
from engine.sending.composer import Arm
from engine.sending.planner import Plan, arm_of, summarize
from engine.sending.sends_sql import PlannedRow

KINDS = ("subject", "body", "share")


def store_plan(session: so.Session, mailing: Mailing, plan: Plan, now: datetime) -> None:
    """Insert one ``planned`` send per recipient, in bulk.

    Rows go in grouped by variant combination (then recruiter id): the requests of a mailing
    carry one combination each, so each request's sends are neighbours in the table and every
    later change of them touches a few pages instead of one page per send.
    """
    count = len(plan.recruiter_ids)
    columns = [plan.variants[kind] for kind in KINDS]
    rows: list[Any]
    if count and all(column is not None for column in columns):
        # NumPy sorts 100,000 rows in a few ms (sorting tuples in Python took ~1 µs a row).
        table = np.array([*columns, plan.recruiter_ids], dtype=np.int64)
        order = np.lexsort(table[::-1])  # lexsort's last key sorts first: subject, body, …
        rows = table[[3, 0, 1, 2]][:, order].T.tolist()
    else:
        # A kind without an experiment is None in every row, so sorting never compares None
        # to int.
        filled = [column or [None] * count for column in columns]
        ordered = sorted(zip(*filled, plan.recruiter_ids, strict=True))
        rows = [(recruiter, subject, body, share) for subject, body, share, recruiter in ordered]
    sends_sql.insert_planned(session, mailing.id, now, rows)


def planned_rows(session: so.Session, mailing_id: int) -> list[PlannedRow]:
    """The mailing's ``planned`` sends in id order, with recruiter code and address."""
    return sends_sql.planned_rows(session, mailing_id)


def suppressed_send_ids(session: so.Session, mailing: Mailing) -> set[int]:
    """Planned sends whose address is now suppressed (globally or for the mailing's ASM group).

    One indexed join in the database: a re-run days after planning must not mail anyone who
    unsubscribed or bounced meanwhile.
    """
    scopes = (suppressions.GLOBAL, suppressions.asm_scope(mailing.asm_group_id))
    query = (
        sa.select(Send.id)
        .join(Recruiter, Recruiter.id == Send.recruiter_id)
        .join(Contact, Contact.id == Recruiter.contact_id)
        .join(Suppression, Suppression.email == Contact.email)
        .where(
            Send.mailing_id == mailing.id,
            Send.status == "planned",
            Suppression.active,
            Suppression.scope.in_(scopes),
        )
    )
    return set(session.scalars(query))


def move(
    session: so.Session,
    ids: Sequence[int],
    *,
    from_status: str,
    to_status: str,
    error: str = "",
    **values: Any,
) -> list[int]:
    """Move sends ``from_status → to_status`` (1,000 ids a statement); returns the ids moved."""
    moved: list[int] = []
    for start in range(0, len(ids), 1000):
        moved += session.scalars(
            sa.update(Send)
            .where(Send.id.in_(ids[start : start + 1000]), Send.status == from_status)
            .values(status=to_status, error=error, **values)
            .returning(Send.id)
        )
    return moved


def mark_sent(
    session: so.Session, ids: Sequence[int], *, x_message_id: str | None, sent_at: datetime
) -> list[dict[str, Any]]:
    """Move sends ``sending → sent`` (1,000 ids a statement); returns each moved send's id,
    report bucket and outcome columns, for :func:`engine.reports.rollups.record_sent` (which
    the caller runs after crediting the variants: rollups are locked last)."""
    returned = [
        Send.id,
        *rollups.SEND_KEY_COLUMNS,
        *(getattr(Send, column) for column in rollups.SEND_OUTCOMES.values()),
    ]
    moved: list[dict[str, Any]] = []
    for start in range(0, len(ids), 1000):
        result = session.execute(
            sa.update(Send)
            .where(Send.id.in_(ids[start : start + 1000]), Send.status == "sending")
            .values(status="sent", error="", x_message_id=x_message_id, sent_at=sent_at)
            .returning(*returned)
        )
        moved += [dict(row) for row in result.mappings()]
    return moved


def status_counts(session: so.Session, mailing_id: int) -> dict[str, int]:
    """Sends of the mailing per status."""
    return dict(
        session.execute(
            sa.select(Send.status, sa.func.count())
            .where(Send.mailing_id == mailing_id)
            .group_by(Send.status)
        ).all()
    )


def arms_by_id(session: so.Session, variant_ids: set[int]) -> dict[int, Arm]:
    """The variants as the composer needs them, by id."""
    if not variant_ids:
        return {}
    pairs = session.execute(
        sa.select(Variant, Experiment)
        .join(Experiment, Experiment.id == Variant.experiment_id)
        .where(Variant.id.in_(variant_ids))
    )
    return {variant.id: arm_of(experiment, variant) for variant, experiment in pairs}


def remaining_plan(session: so.Session, mailing: Mailing) -> dict[str, Any]:
    """The plan of the sends still ``planned``: recipients per variant and per combination."""
    rows = session.execute(
        sa.select(Send.subject_variant_id, Send.body_variant_id, Send.share_variant_id).where(
            Send.mailing_id == mailing.id, Send.status == "planned"
        )
    ).all()
    variants: dict[str, list[int] | None] = {}
    for index, kind in enumerate(KINDS):
        column = [row[index] for row in rows]
        variants[kind] = column if column and all(v is not None for v in column) else None
    arms = arms_by_id(session, {v for row in rows for v in row if v is not None})
    return summarize(variants, arms, len(rows), 0)
