"""The mailer's plain-SQL statements on sends: the same states, trials and rollups as the ORM."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Send, Variant, Visit
from engine.reports.rebuild import rebuild_rollups
from engine.sending import records, sends_sql
from engine.sending.mailing import prepare_mailing
from engine.settings import Settings
from tests.engine.reports.rollup_support import assert_rollups_match_rebuild, totals
from tests.engine.sending import factories

SENT_AT = datetime(2026, 11, 24, 15, 20, tzinfo=UTC)
EARLIER = datetime(2026, 11, 24, 15, 21, tzinfo=UTC)


def planned(session: so.Session, settings: Settings, count: int) -> list[records.PlannedRow]:
    factories.mail_experiments(session)
    factories.recruiters(session, count)
    rebuild_rollups(session)  # recruiters went in in bulk, without their rollups
    session.commit()
    mailing, _ = prepare_mailing(
        session, settings, key="m", now=SENT_AT, rng=np.random.default_rng(4)
    )
    return records.planned_rows(session, mailing.id)


def test_the_plan_is_stored_grouped_by_variant_combination(
    session: so.Session, settings: Settings
) -> None:
    rows = planned(session, settings, 40)
    assert len(rows) == 40 and [row.send_id for row in rows] == sorted(r.send_id for r in rows)
    combinations = [(row.subject_id, row.body_id, row.share_id) for row in rows]
    assert combinations == sorted(combinations)  # each combination's sends are neighbours
    assert len(set(combinations)) > 1
    stored = session.execute(
        sa.select(Send.status, Send.error, Send.created_at, Send.x_message_id, Send.sent_at)
    ).all()
    assert set(stored) == {("planned", "", SENT_AT, None, None)}
    recruiters = {row.recruiter_id for row in rows}
    assert len(recruiters) == 40  # one send per recruiter
    assert all(row.email.endswith("@example.org") and row.code for row in rows)


def test_claim_takes_only_planned_sends(session: so.Session, settings: Settings) -> None:
    ids = [row.send_id for row in planned(session, settings, 6)]
    assert sends_sql.claim(session, ids[:4]) == ids[:4]
    assert sends_sql.claim(session, list(reversed(ids))) == ids[4:]  # in id order
    assert sends_sql.claim(session, ids) == []
    assert set(session.scalars(sa.select(Send.status))) == {"sending"}


def test_marking_sent_counts_trials_and_rollups_with_what_came_before(
    session: so.Session, settings: Settings
) -> None:
    """Sends that reached an outcome or had a visit while ``sending`` are counted with it, as
    a rebuild counts them; the others only as sent (SQLite's RETURNING must not be fooled)."""
    rows = planned(session, settings, 12)
    first = rows[0]
    same = [row for row in rows if row.subject_id == first.subject_id]
    same = [row for row in same if (row.body_id, row.share_id) == (first.body_id, first.share_id)]
    ids = [row.send_id for row in same]
    assert len(ids) >= 3
    sends_sql.claim(session, ids)
    session.execute(
        sa.update(Send).where(Send.id == ids[0]).values(delivered_at=EARLIER, first_open_at=EARLIER)
    )
    session.add(Visit(visitor_id="v-1", send_id=ids[1], created_at=EARLIER))
    session.flush()
    marked = sends_sql.mark_sent(session, ids, x_message_id="XMSG", sent_at=SENT_AT)
    assert (marked.count, marked.earlier) == (len(ids), ids[:2])
    trials = {first.subject_id: len(ids), first.body_id: len(ids), first.share_id: len(ids)}
    before = {v.id: v.trials for v in session.scalars(sa.select(Variant))}
    sends_sql.add_trials(session, trials)
    combination = (first.subject_id, first.body_id, first.share_id)
    sends_sql.record_sent(session, _mailing(session), combination, SENT_AT, marked)
    session.commit()
    session.expire_all()
    for variant in session.scalars(sa.select(Variant)):
        assert variant.trials == before[variant.id] + trials.get(variant.id, 0)
    sent = session.execute(
        sa.select(Send.status, Send.x_message_id, Send.sent_at).where(Send.id.in_(ids))
    ).all()
    assert set(sent) == {("sent", "XMSG", SENT_AT)}
    live = assert_rollups_match_rebuild(session)
    counters = ("sent", "delivered", "human_opens", "visited")
    assert [totals(live, "send_rollups", c) for c in counters] == [len(ids), 1, 1, 1]


def test_marking_sent_skips_sends_not_sending(session: so.Session, settings: Settings) -> None:
    ids = [row.send_id for row in planned(session, settings, 3)]
    sends_sql.claim(session, ids[:2])
    marked = sends_sql.mark_sent(session, ids, x_message_id=None, sent_at=SENT_AT)
    assert (marked.count, marked.earlier) == (2, [])
    statuses = dict(session.execute(sa.select(Send.id, Send.status)).all())
    assert statuses == {ids[0]: "sent", ids[1]: "sent", ids[2]: "planned"}


def _mailing(session: so.Session) -> int:
    return session.scalar(sa.select(Send.mailing_id).limit(1))


def test_plan_rows_are_sorted_by_combination_then_recruiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NumPy's sort when every kind has variants, Python's when one is None: same order."""
    from types import SimpleNamespace

    from engine.sending.planner import Plan

    captured: list[list[tuple[int | None, ...]]] = []
    monkeypatch.setattr(
        sends_sql,
        "insert_planned",
        lambda _session, _mailing_id, _now, rows: captured.append([tuple(r) for r in rows]),
    )
    rng = np.random.default_rng(9)
    recruiter_ids = sorted(rng.choice(10_000, 300, replace=False).tolist())
    subjects = rng.integers(1, 4, 300).tolist()
    bodies = rng.integers(4, 6, 300).tolist()
    shares = rng.integers(6, 9, 300).tolist()
    mailing = SimpleNamespace(id=1)
    for share in (shares, None):
        variants = {"subject": subjects, "body": bodies, "share": share}
        records.store_plan(None, mailing, Plan(recruiter_ids, variants, {}), SENT_AT)  # type: ignore[arg-type]
        expected = sorted(
            zip(subjects, bodies, share or [None] * 300, recruiter_ids, strict=True),
            key=lambda row: (row[0], row[1], row[2] or 0, row[3]),
        )
        rows = captured.pop()
        assert rows == [(r, s, b, sh) for s, b, sh, r in expected]
        assert {type(value) for row in rows for value in row} <= {int, type(None)}
