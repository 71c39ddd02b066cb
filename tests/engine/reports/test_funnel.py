from datetime import timedelta

import sqlalchemy.orm as so

from engine.reports import DateRange
from engine.reports.funnel import funnel_report, overall_steps
from tests.engine.reports import factories as f
from tests.engine.reports.factories import T0


def test_steps_per_mailing_and_variant_with_rates(session: so.Session) -> None:
    subject = f.experiment(session, "subject", "click")
    body = f.experiment(session, "body", "signup", ("x",))
    g1, g2 = f.group(session, "g1"), f.group(session, "g2")
    m1 = f.mailing(session, T0, key="first")
    m2 = f.mailing(session, T0 + timedelta(days=7), key="second")
    a, b = subject.variants
    at = T0
    full = {"delivered_at": at, "first_open_at": at, "first_click_at": at}
    s1 = f.send(session, m1, subject=a, body=body.variants[0], **full, converted_at=at)
    f.visit(session, at, send_row=s1, joins=[g1, g2])
    s2 = f.send(session, m1, subject=a, body=body.variants[0], **full)
    f.visit(session, at, send_row=s2)
    f.visit(session, at, send_row=s2)  # a second visit from the same send counts once
    f.send(session, m1, subject=b, delivered_at=at, first_open_at=at)
    f.send(session, m1, subject=b)
    f.send(session, m1, subject=b, status="failed")
    f.send(session, m2, subject=b, delivered_at=m2.scheduled_for)

    report = funnel_report(f.rebuilt(session))
    total = report.total.rows[0]
    assert {k: total[k] for k in ("sent", "delivered", "human_opens", "clicks")} == {
        "sent": 5,
        "delivered": 4,
        "human_opens": 3,
        "clicks": 2,
    }
    assert (total["visits"], total["signups"], total["groups_ticked"]) == (2, 1, 2)
    assert total["human_opens_rate"] == 0.75
    assert total["signups_rate"] == 0.5
    assert total["groups_per_signup"] == 2.0
    assert type(total["groups_ticked"]) is int  # not PostgreSQL's Decimal
    steps = {row["step"]: row for row in report.steps.rows}
    assert (steps["Human opens"]["drop"], steps["Human opens"]["drop_rate"]) == (1, 0.25)
    assert steps["Sent"]["drop"] is None
    assert steps["Groups ticked"]["count"] == 2

    by_mailing = {row["mailing"]: row for row in report.by_mailing.rows}
    assert (by_mailing["first"]["sent"], by_mailing["second"]["sent"]) == (4, 1)
    by_variant = {(row["kind"], row["variant"]): row for row in report.by_variant.rows}
    assert by_variant[("subject", "a")]["clicks"] == 2
    assert by_variant[("subject", "b")]["sent"] == 3
    assert by_variant[("body", "x")]["groups_ticked"] == 2
    assert overall_steps(report)[0] == ("Sent", 5)

    only_second = funnel_report(f.rebuilt(session), DateRange(m2.scheduled_for.date(), None))
    assert only_second.total.rows[0]["sent"] == 1


def test_landing_funnel(session: so.Session) -> None:
    landing = f.experiment(session, "landing", "signup")
    g = f.group(session, "g")
    f.visit(session, landing=landing.variants[0], joins=[g])
    f.visit(session, landing=landing.variants[0])
    rows = funnel_report(f.rebuilt(session)).landing.rows
    assert rows == [
        {
            "experiment": landing.key,
            "variant": "a",
            "visits": 2,
            "signups": 1,
            "signups_rate": 0.5,
            "groups_ticked": 1,
            "groups_per_signup": 1.0,
        }
    ]


def test_empty_database_gives_zero_funnel(session: so.Session) -> None:
    report = funnel_report(f.rebuilt(session))
    assert report.total.rows[0]["sent"] == 0
    assert report.total.rows[0]["delivered_rate"] is None
    assert report.by_mailing.rows == []
