from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy.orm as so

from engine import stats
from engine.reports import DateRange
from engine.reports.experiment import ExperimentNotFound, experiment_report, list_experiments
from tests.engine.reports import factories as f
from tests.engine.reports.factories import T0


def rows_by_variant(report) -> dict:  # type: ignore[no-untyped-def]
    return {row["variant"]: row for row in report.variants.rows}


def test_email_counts_come_from_sent_sends_and_their_outcome_columns(session: so.Session) -> None:
    exp = f.experiment(session, "subject", "click")
    a, b = exp.variants
    m = f.mailing(session)
    at = T0
    f.send(session, m, subject=a, delivered_at=at, first_open_at=at, first_click_at=at)
    f.send(session, m, subject=a, delivered_at=at, machine_open_at=at, scanner_click_at=at)
    f.send(session, m, subject=a, delivered_at=at, unsubscribed_at=at, spam_report_at=at)
    f.send(session, m, subject=a, status="failed")  # not a trial
    f.send(session, m, subject=b, delivered_at=at, first_click_at=at, converted_at=at)
    f.send(session, m, subject=b)

    report = experiment_report(f.rebuilt(session), exp.id)
    rows = rows_by_variant(report)
    assert {k: rows["a"][k] for k in ("trials", "delivered", "human_opens", "machine_opens")} == {
        "trials": 3,
        "delivered": 3,
        "human_opens": 1,
        "machine_opens": 1,
    }
    assert (rows["a"]["human_clicks"], rows["a"]["scanner_clicks"]) == (1, 1)
    assert (rows["a"]["unsubscribes"], rows["a"]["spam_reports"], rows["a"]["signups"]) == (1, 1, 0)
    assert (rows["b"]["trials"], rows["b"]["successes"], rows["b"]["signups"]) == (2, 1, 1)
    assert rows["a"]["rate"] == pytest.approx(1 / 3, rel=1e-5)

    alpha, beta = stats.posterior([3, 2], [1, 1])
    low, high = stats.credible_interval(alpha, beta)
    best = stats.p_best(alpha, beta)
    assert rows["a"]["ci_low"] == pytest.approx(low[0], rel=1e-5)
    assert rows["b"]["ci_high"] == pytest.approx(high[1], rel=1e-5)
    assert rows["b"]["p_best"] == pytest.approx(best[1], rel=1e-5)
    assert rows["a"]["p_best"] + rows["b"]["p_best"] == pytest.approx(1, abs=1e-5)
    assert rows["a"]["expected_loss"] > rows["b"]["expected_loss"]
    assert rows["a"]["value_remaining"] > rows["b"]["value_remaining"]


@pytest.mark.parametrize(("metric", "expected"), [("open", [1, 0]), ("signup", [0, 1])])
def test_successes_follow_the_experiment_metric(
    session: so.Session, metric: str, expected: list[int]
) -> None:
    exp = f.experiment(session, "body", metric)
    m = f.mailing(session)
    f.send(session, m, body=exp.variants[0], first_open_at=T0)
    f.send(session, m, body=exp.variants[1], converted_at=T0)
    rows = experiment_report(f.rebuilt(session), exp.id).variants.rows
    assert [row["successes"] for row in rows] == expected


def test_landing_trials_are_visits_and_successes_signups(session: so.Session) -> None:
    exp = f.experiment(session, "landing", "signup")
    g = f.group(session, "g1")
    for _ in range(3):
        f.visit(session, landing=exp.variants[0])
    f.visit(session, landing=exp.variants[0], joins=[g])
    f.visit(session, landing=exp.variants[1], joins=[g])
    rows = rows_by_variant(experiment_report(f.rebuilt(session), exp.id))
    assert (rows["a"]["trials"], rows["a"]["signups"], rows["a"]["successes"]) == (4, 1, 1)
    assert (rows["b"]["trials"], rows["b"]["successes"]) == (1, 1)
    assert "delivered" not in rows["a"]


def test_date_range_and_epoch_limit_the_trials(session: so.Session) -> None:
    exp = f.experiment(session, "share", "click")
    a = exp.variants[0]
    for day in range(4):
        f.send(session, f.mailing(session, T0 + timedelta(days=day)), share=a)
    rows = experiment_report(f.rebuilt(session), exp.id).variants.rows
    assert rows[0]["trials"] == 4
    in_range = DateRange((T0 + timedelta(days=1)).date(), (T0 + timedelta(days=2)).date())
    assert experiment_report(f.rebuilt(session), exp.id, in_range).variants.rows[0]["trials"] == 2
    f.decision(session, exp, "restart", T0 + timedelta(days=2, hours=-1))
    assert experiment_report(f.rebuilt(session), exp.id).variants.rows[0]["trials"] == 2


def test_a_restart_within_an_hour_leaves_that_mixed_hour_out(session: so.Session) -> None:
    exp = f.experiment(session, "subject", "click")
    a = exp.variants[0]
    m = f.mailing(session, T0)
    for minutes in (10, 50, 65):  # 12:10 and 12:50 share the hour of a 12:30 restart
        f.send(session, m, subject=a, at=T0 + timedelta(minutes=minutes))
    f.decision(session, exp, "restart", T0 + timedelta(minutes=30))
    report = experiment_report(f.rebuilt(session), exp.id)
    assert report.variants.rows[0]["trials"] == 1  # the 13:05 send only
    assert report.experiment["counted_from"] == (T0 + timedelta(hours=1)).isoformat()


def test_a_restart_on_the_hour_splits_no_hour(session: so.Session) -> None:
    exp = f.experiment(session, "subject", "click")
    m = f.mailing(session, T0)
    for minutes in (-10, 10, 50):
        f.send(session, m, subject=exp.variants[0], at=T0 + timedelta(minutes=minutes))
    f.decision(session, exp, "restart", T0)
    report = experiment_report(f.rebuilt(session), exp.id)
    assert report.variants.rows[0]["trials"] == 2
    assert report.experiment["counted_from"] == T0.isoformat()


def test_srm_leaves_out_an_hour_in_which_the_weights_changed(session: so.Session) -> None:
    exp = f.experiment(session, "subject", "click")
    a, b = exp.variants
    f.snapshot(session, exp, T0, {"a": 0.5, "b": 0.5})
    f.snapshot(session, exp, T0 + timedelta(hours=2, minutes=30), {"a": 0.9, "b": 0.1})
    m = f.mailing(session, T0)
    for hours, variant in ((0.2, a), (0.4, b), (2.2, b), (2.8, a), (3.1, a)):
        f.send(session, m, subject=variant, at=T0 + timedelta(hours=hours))
    report = experiment_report(f.rebuilt(session), exp.id)
    assert [(row["trials"], row["observed_a"], row["observed_b"]) for row in report.srm.rows] == [
        (2, 1, 1),
        (1, 1, 0),
    ]
    assert report.srm.note.endswith("Trials in such mixed hours: 2.")
    assert sum(row["trials"] for row in report.variants.rows) == 5  # counted, just not tested


def test_status_says_no_clear_winner_until_a_promotion(session: so.Session) -> None:
    exp = f.experiment(session, "subject", "click")
    m = f.mailing(session)
    f.send(session, m, subject=exp.variants[1], first_click_at=T0)
    status = experiment_report(f.rebuilt(session), exp.id).status
    assert status["decided"] is False
    assert status["headline"].startswith("No clear winner yet: b leads with P(best)")

    f.decision(session, exp, "no_clear_winner", T0 + timedelta(days=1))
    assert (
        experiment_report(f.rebuilt(session), exp.id)
        .status["headline"]
        .startswith("No clear winner:")
    )

    f.decision(session, exp, "promote", T0 + timedelta(days=2), "b")
    report = experiment_report(f.rebuilt(session), exp.id)
    assert report.status["decided"] is True
    assert report.status["winner"] == "b"
    assert [row["kind"] for row in report.decisions.rows] == ["no_clear_winner", "promote"]
    assert report.decisions.rows[1]["snapshot"] == {"p_best": {"b": 0.97}}


def test_no_trials_is_said_plainly(session: so.Session) -> None:
    exp = f.experiment(session, "subject", "click")
    report = experiment_report(f.rebuilt(session), exp.id)
    assert report.status["headline"] == "No clear winner yet: no trials recorded."
    assert [row["trials"] for row in report.variants.rows] == [0, 0]


def test_cumulative_successes_count_on_the_day_of_their_trial(session: so.Session) -> None:
    exp = f.experiment(session, "subject", "click")
    a, b = exp.variants
    first, second = f.mailing(session, T0), f.mailing(session, T0 + timedelta(days=1))
    f.send(session, first, subject=a, first_click_at=T0)
    # A click that arrives a day late still belongs to its send's day (the cohort).
    f.send(session, first, subject=a, first_click_at=T0 + timedelta(days=1))
    f.send(session, first, subject=b)
    f.send(session, second, subject=b, first_click_at=T0 + timedelta(days=3))
    rows = experiment_report(f.rebuilt(session), exp.id).cumulative.rows
    day1, day2 = T0.date().isoformat(), (T0 + timedelta(days=1)).date().isoformat()
    assert [(r["day"], r["variant"], r["conversions"], r["cumulative"]) for r in rows] == [
        (day1, "a", 2, 2),
        (day2, "b", 1, 1),
    ]


def test_allocation_history_and_srm_by_period(session: so.Session) -> None:
    exp = f.experiment(session, "subject", "click")
    a, b = exp.variants
    f.snapshot(session, exp, T0, {"a": 0.5, "b": 0.5})
    f.snapshot(session, exp, T0 + timedelta(hours=1), {"a": 0.5, "b": 0.5})  # same split: merged
    f.snapshot(session, exp, T0 + timedelta(days=1), {"a": 1.0, "b": 0.0})
    m1, m2 = f.mailing(session, T0 + timedelta(hours=2)), f.mailing(session, T0 + timedelta(days=2))
    f.send(session, m1, subject=a)
    f.send(session, m1, subject=b)
    f.send(session, m2, subject=a)
    f.send(session, m2, subject=b)  # b had weight 0 in this period
    report = experiment_report(f.rebuilt(session), exp.id)
    assert len(report.allocation.rows) == 6
    periods = report.srm.rows
    assert [(p["trials"], p["mismatch"]) for p in periods] == [(2, False), (2, True)]
    assert periods[0]["note"] == "too few trials to test"
    assert "weight 0: b" in periods[1]["note"]
    assert report.srm_mismatch is True


def test_unknown_experiment_raises(session: so.Session) -> None:
    with pytest.raises(ExperimentNotFound):
        experiment_report(f.rebuilt(session), 999_999)


def test_list_experiments_counts_variants(session: so.Session) -> None:
    f.experiment(session, "subject", "click", ("a", "b", "c"), policy_areas=["climate"])
    rows = list_experiments(session).rows
    assert rows[-1]["variants"] == 3
    assert rows[-1]["policy_areas"] == "climate"


def test_report_agrees_with_the_rollup_counters(session: so.Session) -> None:
    from engine import outcomes

    exp = f.experiment(session, "subject", "click")
    m = f.mailing(session)
    sends = [f.send(session, m, subject=exp.variants[i % 2]) for i in range(5)]
    outcomes.add_trials(session, {exp.variants[0].id: 3, exp.variants[1].id: 2})
    sends[0].first_click_at = T0
    outcomes.credit_sends(session, "click", [sends[0]])
    session.flush()
    session.expire_all()
    report = experiment_report(f.rebuilt(session), exp.id)
    cached = [(v.trials, v.successes) for v in exp.variants]
    assert [(r["trials"], r["successes"]) for r in report.variants.rows] == cached
    assert np.isclose(sum(r["p_best"] for r in report.variants.rows), 1)
