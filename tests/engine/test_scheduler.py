"""The scheduler's job configuration: fixed ids, coalesce, one instance, grace, time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from engine.scheduler import (
    DECISIONS_JOB_ID,
    MAILING_JOB_ID,
    build_scheduler,
    cron_trigger,
    next_run_times,
)
from engine.settings import SchedulerSettings

NEW_YORK = ZoneInfo("America/New_York")


def noop() -> None:
    """A job that does nothing."""


def build(settings: SchedulerSettings | None = None, **kwargs: object):
    return build_scheduler(
        settings or SchedulerSettings(), mailing_job=noop, decisions_job=noop, **kwargs
    )


def test_jobs_have_fixed_ids_coalesce_one_instance_and_grace() -> None:
    scheduler = build()
    assert isinstance(scheduler, BlockingScheduler)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {MAILING_JOB_ID, DECISIONS_JOB_ID}
    for job in jobs.values():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == SchedulerSettings().misfire_grace_seconds
        assert job.trigger.timezone == NEW_YORK


def test_next_mailing_is_tuesday_ten_in_new_york_across_daylight_saving() -> None:
    scheduler = build()
    # Friday 2026-10-30 in EDT (UTC-4); the next Tuesday (Nov 3) is already EST (UTC-5).
    with time_machine.travel(datetime(2026, 10, 30, 12, 5, tzinfo=UTC), tick=False):
        now = datetime.now(UTC)
        upcoming = next_run_times(scheduler, now)
    mailing = upcoming[MAILING_JOB_ID]
    assert mailing == datetime(2026, 11, 3, 10, 0, tzinfo=NEW_YORK)
    assert mailing.utcoffset().total_seconds() == -5 * 3600
    assert mailing.astimezone(UTC) == datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
    assert upcoming[DECISIONS_JOB_ID] == datetime(2026, 10, 30, 8, 30, tzinfo=NEW_YORK)


def test_started_scheduler_reports_the_same_next_run_time() -> None:
    with time_machine.travel(datetime(2026, 11, 24, 16, 0, tzinfo=UTC), tick=False):
        scheduler = build(scheduler_factory=BackgroundScheduler)
        scheduler.start(paused=True)
        try:
            job = scheduler.get_job(MAILING_JOB_ID)
            # Tuesday 11:00 New York has passed the 10:00 send: next is a week later
            assert job.next_run_time == datetime(2026, 12, 1, 10, 0, tzinfo=NEW_YORK)
            # a fixed id: adding the job again replaces it, never doubles the mailing
            scheduler.add_job(
                noop, cron_trigger("0 10 * * tue", "UTC"), id=MAILING_JOB_ID, replace_existing=True
            )
            assert sorted(j.id for j in scheduler.get_jobs()) == [DECISIONS_JOB_ID, MAILING_JOB_ID]
        finally:
            scheduler.shutdown(wait=False)


def test_a_bad_cron_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cron '61 10 \\* \\* tue'"):
        build(SchedulerSettings(mailing_cron="61 10 * * tue"))
