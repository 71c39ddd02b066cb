from datetime import UTC, datetime

import pytest
import sqlalchemy.orm as so

from engine import outcomes
from engine.models import Contact, Experiment, Mailing, Recruiter, Send, Variant

NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)


def experiment(session: so.Session, kind: str, metric: str) -> Experiment:
    exp = Experiment(key=f"{kind}-{metric}", name=kind, kind=kind, metric=metric, status="running")
    exp.variants = [Variant(key="a", name="A"), Variant(key="b", name="B")]
    session.add(exp)
    session.flush()
    return exp


def make_send(session: so.Session) -> tuple[Send, Experiment, Experiment, Experiment]:
    subject = experiment(session, "subject", "click")
    body = experiment(session, "body", "signup")
    share = experiment(session, "share", "signup")
    contact = Contact(email="r@example.org", zip_code="10001")
    recruiter = Recruiter(contact=contact, code="abc")
    mailing = Mailing(key="m1", asm_group_id=1, scheduled_for=NOW)
    session.add_all([recruiter, mailing])
    session.flush()
    send = Send(
        mailing_id=mailing.id,
        recruiter_id=recruiter.id,
        subject_variant_id=subject.variants[0].id,
        body_variant_id=body.variants[1].id,
        share_variant_id=share.variants[0].id,
    )
    session.add(send)
    session.flush()
    return send, subject, body, share


def test_metric_outcomes_only_count_where_measured(session: so.Session) -> None:
    send, subject, body, _share = make_send(session)
    outcomes.add_trials(session, {v: 1 for v in outcomes.variant_ids_of(send)})
    outcomes.credit_sends(session, "click", [send])
    session.expire_all()
    assert [v.trials for v in subject.variants] == [1, 0]
    assert subject.variants[0].successes == 1  # subject measures clicks
    assert body.variants[1].successes == 0  # body measures signups


def test_signup_is_credited_once_per_send(session: so.Session) -> None:
    send, subject, body, share = make_send(session)
    assert outcomes.credit_signup(session, send.id, NOW) is True
    assert outcomes.credit_signup(session, send.id, NOW) is False
    session.expire_all()
    assert body.variants[1].successes == 1
    assert share.variants[0].successes == 1
    assert subject.variants[0].successes == 0
    assert send.converted_at == NOW


def test_guardrail_counters(session: so.Session) -> None:
    send, subject, body, _share = make_send(session)
    outcomes.credit_sends(session, "unsubscribe", [send])
    outcomes.credit_sends(session, "spam_report", [send])
    session.expire_all()
    assert subject.variants[0].unsubscribes == 1
    assert body.variants[1].spam_reports == 1
    assert subject.variants[0].successes == 0


def test_unknown_outcome(session: so.Session) -> None:
    with pytest.raises(ValueError, match="unknown outcome 'bounce'"):
        outcomes.credit(session, "bounce", {1: 1})


def test_loaded_variants_see_credits_without_expiring(session: so.Session) -> None:
    _send, subject, body, _share = make_send(session)
    arm = subject.variants[0]
    assert arm.successes == 0  # loaded in this session
    outcomes.credit_many(session, {"click": {arm.id: 2}, "unsubscribe": {arm.id: 1}})
    assert (arm.successes, arm.unsubscribes) == (2, 1)
    outcomes.credit_many(session, {"click": {arm.id: -1}})  # a click taken back
    assert arm.successes == 1
    assert body.variants[1].successes == 0


def test_credits_reload_the_counters_of_variants_the_session_holds(session: so.Session) -> None:
    # Credits bypass the ORM; a variant already loaded must not keep its stale counters.
    from webhooks.counters import credit_variants
    from webhooks.native import Driver

    _send, subject, _body, _share = make_send(session)
    loaded, other = subject.variants
    assert loaded.successes == 0 and other.successes == 0
    outcomes.credit_many(session, {"click": {loaded.id: 1}})
    assert loaded.successes == 1
    credit_variants(session, Driver(session.connection()), {"click": {other.id: 2}})
    assert (loaded.successes, other.successes) == (1, 2)
