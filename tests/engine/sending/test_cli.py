"""``resistry mailing send [--dry-run]`` and ``resistry decisions run`` on a committed database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from click.testing import CliRunner

from engine.cli import main
from engine.models import Alert, Mailing, Send, utcnow
from engine.runtime import Runtime
from engine.settings import Settings
from engine.simulator import SimulatorHandle
from tests.engine.sending import factories
from tests.engine.sending.conftest import pointed_at


@pytest.fixture
def runtime(
    committed_sessions: so.sessionmaker[so.Session], settings: Settings, simulator: SimulatorHandle
) -> Iterator[Runtime]:
    runtime = Runtime(pointed_at(settings, simulator))
    yield runtime
    runtime.close()


def seed(sessions: so.sessionmaker[so.Session], recruiters: int = 3) -> None:
    with sessions.begin() as session:
        factories.mail_experiments(session)
        factories.recruiters(session, recruiters, prefix="cli")


def invoke(runtime: Runtime, *args: str):
    return CliRunner().invoke(main, list(args), obj=runtime, catch_exceptions=False)


def test_dry_run_prints_the_plan_and_stores_nothing(
    runtime: Runtime, committed_sessions: so.sessionmaker[so.Session]
) -> None:
    seed(committed_sessions)
    result = invoke(runtime, "mailing", "send", "--dry-run", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "recipients: 3" in result.output
    assert (
        "recruiter-subject/urgent" in result.output or "recruiter-subject/friendly" in result.output
    )
    assert "dry run: nothing stored, nothing sent" in result.output
    with committed_sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Mailing)) == 0


def test_send_prints_plan_progress_report_and_decisions(
    runtime: Runtime,
    committed_sessions: so.sessionmaker[so.Session],
    simulator: SimulatorHandle,
) -> None:
    seed(committed_sessions)
    result = invoke(runtime, "mailing", "send", "--key", "cli-1", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "recipients: 3" in result.output
    assert "mailing cli-1: sent" in result.output
    assert "sent 3, failed 0" in result.output
    assert "recruiter-subject: " in result.output  # the decision run after the mailing
    assert "@example.org" not in result.output
    with committed_sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).where(Send.status == "sent")) == 3
    again = invoke(runtime, "mailing", "send", "--key", "cli-1")
    assert "sent 0, failed 0" in again.output
    assert "cli-1 was planned and sent before: nothing was left to send" in again.output
    dry = invoke(runtime, "mailing", "send", "--key", "cli-1", "--dry-run")
    assert "mailing cli-1 was planned before (sent)" in dry.output
    assert "recipients: 0" in dry.output
    assert len(simulator.accepted) >= 1
    assert sum(len(a.payload["personalizations"]) for a in simulator.accepted) == 3


def test_nothing_to_send_is_a_one_line_error(runtime: Runtime) -> None:
    result = CliRunner().invoke(main, ["mailing", "send"], obj=runtime)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: no running or promoted subject or body experiment: nothing to send"
    )


def test_decisions_run_prints_json(
    runtime: Runtime, committed_sessions: so.sessionmaker[so.Session]
) -> None:
    seed(committed_sessions, recruiters=0)
    result = invoke(runtime, "decisions", "run", "--json")
    assert result.exit_code == 0, result.output
    outcomes = json.loads(result.output)
    assert {o["experiment"] for o in outcomes} == {
        "recruiter-subject",
        "recruiter-body",
        "recruiter-share",
    }


def test_an_account_alert_pauses_sending_until_staff_resolve_it(
    runtime: Runtime,
    committed_sessions: so.sessionmaker[so.Session],
    simulator: SimulatorHandle,
) -> None:
    seed(committed_sessions)
    with committed_sessions.begin() as session:
        session.add(
            Alert(
                kind="account_status_change",
                message="SendGrid account status changed: compliance_suspend",
                pauses_sending=True,
            )
        )
        session.add(Alert(kind="note", message="resolved long ago", resolved_at=utcnow()))
    listed = json.loads(invoke(runtime, "alerts", "list", "--json").output)
    assert [(a["kind"], a["pauses_sending"]) for a in listed] == [("account_status_change", True)]
    alert_id = listed[0]["id"]
    assert len(json.loads(invoke(runtime, "alerts", "list", "--all", "--json").output)) == 2

    dry = CliRunner().invoke(main, ["mailing", "send", "--dry-run"], obj=runtime)
    assert dry.exit_code == 0 and f"paused by alert #{alert_id}" in dry.output
    paused = CliRunner().invoke(main, ["mailing", "send", "--key", "cli-a"], obj=runtime)
    assert paused.exit_code == 1
    assert "still planned 3" in paused.output
    assert f"run `resistry alerts resolve {alert_id}`" in paused.output
    assert simulator.accepted == []

    unknown = CliRunner().invoke(main, ["alerts", "resolve", "999999"], obj=runtime)
    assert unknown.exit_code == 1 and "no alert #999999" in unknown.output
    assert invoke(runtime, "alerts", "resolve", str(alert_id)).output == (
        f"alert #{alert_id} resolved\n"
    )
    assert invoke(runtime, "alerts", "list").output == "no open alerts\n"
    resumed = invoke(runtime, "mailing", "send", "--key", "cli-a")
    assert resumed.exit_code == 0 and "sent 3, failed 0" in resumed.output
