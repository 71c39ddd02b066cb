"""The scheduler process (``resistry scheduler``): the recruiter mailing and the decision runs.

APScheduler 3.x ``BlockingScheduler`` in exactly one process (a job store cannot be shared
between processes, and a scheduler per web worker would send every email N times; the CLI also
holds :func:`engine.locks.singleton`). Jobs have fixed ids (re-adding replaces, never doubles),
``coalesce=True`` (missed runs collapse into one), ``max_instances=1`` (a slow mailing is never
overlapped by the next) and a misfire grace from [scheduler] misfire_grace_seconds (default six
hours: a weekly send whose process was down at 10:00 still goes out that morning, but not a day
late). Crons are read in [scheduler] timezone, so "Tuesday 10:00" follows daylight saving.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from engine.settings import SchedulerSettings

MAILING_JOB_ID = "recruiter-mailing"
DECISIONS_JOB_ID = "decisions"


def cron_trigger(cron: str, timezone: str) -> CronTrigger:
    """A trigger for a five-field crontab read in ``timezone``.

    Raises ``ValueError`` naming the cron when it is not valid.
    """
    try:
        return CronTrigger.from_crontab(cron, timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise ValueError(f"cron {cron!r}: {exc}") from None


def build_scheduler(
    settings: SchedulerSettings,
    *,
    mailing_job: Callable[[], object],
    decisions_job: Callable[[], object],
    scheduler_factory: Callable[..., BaseScheduler] = BlockingScheduler,
) -> BaseScheduler:
    """A scheduler (not started) with the mailing and decision jobs configured.

    ``scheduler_factory`` lets tests inspect the same configuration without blocking.
    Raises ``ValueError`` for an invalid cron.
    """
    timezone = ZoneInfo(settings.timezone)
    scheduler = scheduler_factory(
        timezone=timezone,
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.misfire_grace_seconds,
        },
    )
    for job_id, function, cron, name in (
        (MAILING_JOB_ID, mailing_job, settings.mailing_cron, "recruiter mailing"),
        (DECISIONS_JOB_ID, decisions_job, settings.decisions_cron, "experiment decisions"),
    ):
        scheduler.add_job(
            function,
            cron_trigger(cron, settings.timezone),
            id=job_id,
            name=name,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=settings.misfire_grace_seconds,
        )
    return scheduler


def next_run_times(scheduler: BaseScheduler, now: datetime) -> dict[str, datetime | None]:
    """When each job fires next after ``now`` (aware, in the scheduler's time zone)."""
    return {job.id: job.trigger.get_next_fire_time(None, now) for job in scheduler.get_jobs()}
