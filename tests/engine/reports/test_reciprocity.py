from datetime import timedelta

import pytest
import sqlalchemy.orm as so

from engine.reports import DateRange
from engine.reports.reciprocity import reciprocity_report
from tests.engine.reports import factories as f
from tests.engine.reports.factories import T0


def test_a_group_can_receive_more_than_it_sends(session: so.Session) -> None:
    big, small = f.group(session, "big"), f.group(session, "small")
    for _ in range(3):
        f.visit(session, T0, source=big, joins=[big, small])
    f.visit(session, T0, source=big)  # a visitor who did not sign up
    f.visit(session, T0 + timedelta(days=1), source=small, joins=[small])

    report = reciprocity_report(f.rebuilt(session), visibility_floor=2)
    ledger = {row["group"]: row for row in report.ledger.rows}
    assert (ledger["big"]["visitors_sent"], ledger["big"]["contacts_generated"]) == (4, 3)
    assert ledger["big"]["contacts_received"] == 3
    assert (ledger["small"]["contacts_generated"], ledger["small"]["contacts_received"]) == (1, 4)
    assert ledger["small"]["received_per_generated"] == 4.0
    # Visibility: max(2, 3) = 3 for big, max(2, 1) = 2 for small.
    assert ledger["big"]["visibility_share"] == pytest.approx(0.6)
    assert ledger["small"]["visibility_share"] == pytest.approx(0.4)

    flow = {(r["source_group"], r["joined_group"]): r["signups"] for r in report.flow.rows}
    assert flow == {("big", "big"): 3, ("big", "small"): 3, ("small", "small"): 1}
    diversification = {row["source_group"]: row for row in report.diversification.rows}
    assert diversification["big"]["other_share"] == 0.5
    assert diversification["big"]["other_groups_reached"] == 1
    assert diversification["small"]["to_other_groups"] == 0


def test_visibility_over_time_is_cumulative(session: so.Session) -> None:
    a, b = f.group(session, "a"), f.group(session, "b")
    f.visit(session, T0, source=a, joins=[a])
    f.visit(session, T0 + timedelta(days=2), source=b, joins=[b])
    f.visit(session, T0 + timedelta(days=2), source=b, joins=[b])
    rows = reciprocity_report(f.rebuilt(session), visibility_floor=1).visibility.rows
    series = {(row["day"], row["group"]): row for row in rows}
    day0, day1, day2 = (str((T0 + timedelta(days=n)).date()) for n in range(3))
    assert series[(day0, "a")]["visibility_share"] == 0.5  # 1 vs the floor of 1
    assert series[(day1, "b")]["contacts_generated"] == 0
    assert series[(day2, "b")]["contacts_generated"] == 2
    assert series[(day2, "a")]["visibility_share"] == pytest.approx(1 / 3, rel=1e-5)


def test_range_limits_counts_but_visibility_keeps_history(session: so.Session) -> None:
    a, b = f.group(session, "a"), f.group(session, "b")
    f.visit(session, T0, source=a, joins=[a])
    f.visit(session, T0 + timedelta(days=5), source=b, joins=[a])
    later = DateRange((T0 + timedelta(days=5)).date(), (T0 + timedelta(days=5)).date())
    report = reciprocity_report(f.rebuilt(session), visibility_floor=1, date_range=later)
    ledger = {row["group"]: row for row in report.ledger.rows}
    assert ledger["a"]["contacts_generated"] == 0
    assert ledger["a"]["contacts_received"] == 1
    assert ledger["a"]["visibility_share"] == 0.5  # a's earlier contact still counts
    assert [row["day"] for row in report.visibility.rows] == [str(later.start)] * 2


def test_inactive_groups_earn_no_visibility(session: so.Session) -> None:
    f.group(session, "on")
    f.group(session, "off", active=False)
    f.visit(session, T0, source=None)
    report = reciprocity_report(
        f.rebuilt(session), visibility_floor=1, date_range=DateRange(T0.date(), T0.date())
    )
    shares = {row["group"]: row["visibility_share"] for row in report.ledger.rows}
    assert shares == {"on": 1.0, "off": None}


def test_a_range_counts_visitors_and_contacts_a_group_brought_for_the_first_time(
    session: so.Session,
) -> None:
    g = f.group(session, "g")
    first = f.visit(session, T0, source=g)
    returning = f.visit(session, T0 + timedelta(days=5), source=g, joins=[g])
    returning.visitor_id = first.visitor_id  # the same browser, five days later
    f.visit(session, T0 + timedelta(days=5), source=g)  # someone new that day
    later = DateRange((T0 + timedelta(days=5)).date(), None)
    ledger = reciprocity_report(f.rebuilt(session), visibility_floor=1, date_range=later)
    row = ledger.ledger.rows[0]
    # The returning visitor was first sent on day 0; their contact was first generated on day 5.
    assert (row["visitors_sent"], row["contacts_generated"], row["contacts_received"]) == (1, 1, 1)
    everything = reciprocity_report(session, visibility_floor=1).ledger.rows[0]
    assert everything["visitors_sent"] == 2
