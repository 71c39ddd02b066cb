from datetime import timedelta

import pytest
import sqlalchemy.orm as so

from engine.reports import DateRange
from engine.reports.recruiters import recruiter_report
from tests.engine.reports import factories as f
from tests.engine.reports.factories import T0


def test_leaderboard_counts_friends_by_code(session: so.Session) -> None:
    g = f.group(session, "g")
    star, newcomer = f.recruiter(session, "star"), f.recruiter(session, "new")
    idle = f.recruiter(session, "idle")
    for day in range(3):
        f.visit(session, T0 + timedelta(days=day), recruiter_row=star, joins=[g])
    f.visit(session, T0, recruiter_row=star)
    f.visit(session, T0, recruiter_row=newcomer, joins=[g])
    report = recruiter_report(f.rebuilt(session), leader_min_friends=3)
    rows = report.leaderboard.rows
    assert [(r["rank"], r["code"], r["friends"], r["visits"]) for r in rows] == [
        (1, "star", 3, 4),
        (2, "new", 1, 1),
    ]
    assert [r["leader"] for r in rows] == [True, False]
    assert idle.code not in [r["code"] for r in rows]
    assert recruiter_report(f.rebuilt(session), leader_min_friends=3, limit=1).leaderboard.rows[0][
        "code"
    ] == ("star")
    first_day = DateRange(T0.date(), T0.date())
    in_range = recruiter_report(f.rebuilt(session), leader_min_friends=3, date_range=first_day)
    assert in_range.leaderboard.rows[0]["friends"] == 1


def test_engagement_ladder_over_time(session: so.Session) -> None:
    g = f.group(session, "g")
    one, two = f.recruiter(session, "one", T0), f.recruiter(session, "two", T0)
    f.visit(session, T0 + timedelta(days=1), recruiter_row=one, joins=[g])
    f.visit(session, T0 + timedelta(days=2), recruiter_row=one, joins=[g])
    f.visit(session, T0 + timedelta(days=2), recruiter_row=two, joins=[g])
    ladder = recruiter_report(f.rebuilt(session), leader_min_friends=2).ladder.rows
    by_day = {row["day"]: row for row in ladder}
    day0, day1, day2 = (str((T0 + timedelta(days=n)).date()) for n in range(3))
    assert [
        by_day[day0][k] for k in ("contacts", "recruiters", "active_recruiters", "leaders")
    ] == [
        2,
        2,
        0,
        0,
    ]
    assert (by_day[day1]["contacts"], by_day[day1]["active_recruiters"]) == (3, 1)
    assert [by_day[day2][k] for k in ("contacts", "active_recruiters", "leaders")] == [5, 2, 1]
    assert by_day[day2]["leaders_per_active"] == 0.5


def test_leaderboard_names_no_email(session: so.Session) -> None:
    g = f.group(session, "g")
    person = f.recruiter(session, "code-1")
    f.visit(session, T0, recruiter_row=person, joins=[g])
    document = str(recruiter_report(f.rebuilt(session), leader_min_friends=1).as_json())
    assert "@" not in document
    assert person.contact.email not in document


def test_limit_must_be_positive(session: so.Session) -> None:
    with pytest.raises(ValueError, match="limit"):
        recruiter_report(f.rebuilt(session), leader_min_friends=1, limit=0)
