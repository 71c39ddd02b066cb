"""The scheduler's jobs: the mailing then a decision run; a failing job logs and returns."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Mailing
from engine.runtime import Runtime
from engine.sending.jobs import SchedulerJobs
from engine.settings import Settings
from engine.simulator import SimulatorHandle
from tests.engine.sending import factories
from tests.engine.sending.conftest import pointed_at


def test_mailing_job_sends_todays_mailing_once_then_decides(
    committed_sessions: so.sessionmaker[so.Session],
    settings: Settings,
    simulator: SimulatorHandle,
) -> None:
    with committed_sessions.begin() as session:
        factories.mail_experiments(session)
        factories.recruiters(session, 4, prefix="job")
    runtime = Runtime(pointed_at(settings, simulator))
    try:
        jobs = SchedulerJobs(runtime, factories.renderers())
        report = jobs.mailing()
        assert report is not None and report.sent == 4
        assert report.key.startswith("recruiters-")
        again = jobs.mailing()  # a coalesced or repeated run the same day sends nothing more
        assert again is not None and again.sent == 0 and again.key == report.key
        assert jobs.decisions() == 3
    finally:
        runtime.close()
    with committed_sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Mailing)) == 1
    assert sum(len(a.payload["personalizations"]) for a in simulator.accepted) == 4


def test_a_job_that_cannot_plan_logs_and_returns(
    committed_sessions: so.sessionmaker[so.Session],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = Runtime(settings)
    try:
        jobs = SchedulerJobs(runtime, factories.renderers(), client_factory=lambda: None)  # type: ignore[arg-type,return-value]
        with caplog.at_level(logging.ERROR):
            assert jobs.mailing() is None
    finally:
        runtime.close()
    assert "recruiter mailing not sent: no running or promoted" in caplog.text
