from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import suppressions
from engine.models import Alert, Suppression

T = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
LATER = T + timedelta(minutes=5)


def test_suppress_globally_or_per_asm_group(session: so.Session) -> None:
    suppressions.suppress(session, " Ada@Example.org", "global", "bounce", T)
    suppressions.suppress(session, "bo@example.org", "asm:101", "group_unsubscribe", T)
    emails = ["ada@example.org", "BO@example.org", "cy@example.org"]
    assert suppressions.suppressed_emails(session, emails, 101) == {
        "ada@example.org",
        "BO@example.org",
    }
    assert suppressions.suppressed_emails(session, emails, 202) == {"ada@example.org"}
    assert suppressions.suppressed_emails(session, [], 101) == set()


@pytest.mark.parametrize("lift_first", [False, True])
def test_later_timestamp_wins_whatever_the_order(session: so.Session, lift_first: bool) -> None:
    steps = [
        lambda: suppressions.suppress(session, "a@example.org", "asm:7", "group_unsubscribe", T),
        lambda: suppressions.lift(session, "a@example.org", "asm:7", LATER),
    ]
    for step in reversed(steps) if lift_first else steps:
        step()
    assert suppressions.suppressed_emails(session, ["a@example.org"], 7) == set()
    suppressions.suppress(
        session, "a@example.org", "asm:7", "group_unsubscribe", LATER + timedelta(seconds=1)
    )
    assert suppressions.suppressed_emails(session, ["a@example.org"], 7) == {"a@example.org"}


def test_tie_keeps_the_address_suppressed(session: so.Session) -> None:
    suppressions.lift(session, "a@example.org", "global", T)
    suppressions.suppress(session, "a@example.org", "global", "unsubscribe", T)
    suppressions.lift(session, "a@example.org", "global", T)
    assert suppressions.suppressed_emails(session, ["a@example.org"], 1) == {"a@example.org"}


def test_one_row_per_address_and_scope(session: so.Session) -> None:
    for minute in range(3):
        suppressions.suppress(
            session, "a@example.org", "global", "spamreport", T + timedelta(minutes=minute)
        )
    rows = session.scalars(sa.select(Suppression)).all()
    assert len(rows) == 1
    assert rows[0].event_at == T + timedelta(minutes=2)


def test_batch_changes_resolve_to_the_latest(session: so.Session) -> None:
    changes = [
        suppressions.SuppressionChange("a@example.org", "asm:1", "group_unsubscribe", True, LATER),
        suppressions.SuppressionChange("A@example.org", "asm:1", "group_resubscribe", False, T),
    ]
    suppressions.apply_changes(session, changes, now=T)
    assert suppressions.suppressed_emails(session, ["a@example.org"], 1) == {"a@example.org"}


@pytest.mark.parametrize("scope", ["", "asm", "asm:", "asm:x", "group:1", "GLOBAL"])
def test_unknown_scope_is_refused(session: so.Session, scope: str) -> None:
    with pytest.raises(ValueError, match="scope"):
        suppressions.suppress(session, "a@example.org", scope, "x", T)


def test_empty_address_is_refused(session: so.Session) -> None:
    with pytest.raises(ValueError, match="email"):
        suppressions.suppress(session, "  ", "global", "x", T)


def test_active_suppressions_lists_newest_first(session: so.Session) -> None:
    suppressions.suppress(session, "old@example.org", "global", "bounce", T)
    suppressions.suppress(session, "new@example.org", "global", "bounce", LATER)
    suppressions.lift(session, "gone@example.org", "asm:1", T)
    assert [s.email for s in suppressions.active_suppressions(session)] == [
        "new@example.org",
        "old@example.org",
    ]
    assert len(suppressions.active_suppressions(session, include_lifted=True)) == 3


def test_sending_paused_by_an_open_alert(session: so.Session) -> None:
    assert suppressions.sending_paused(session) is False
    session.add(Alert(kind="info", message="fyi", pauses_sending=False))
    session.flush()
    assert suppressions.sending_paused(session) is False
    alert = Alert(kind="account_status_change", message="suspended", pauses_sending=True)
    session.add(alert)
    session.flush()
    assert suppressions.sending_paused(session) is True
    alert.resolved_at = LATER
    session.flush()
    assert suppressions.sending_paused(session) is False
