"""``resistry simulate``: an offline campaign run with time compressed, on a throwaway database.

Everything real except the people: the demo campaign in a temporary SQLite database (never the
configured one), the app served in a thread on ``127.0.0.1:0``, the SendGrid simulator posting
signed webhook batches to the app's real ``/webhooks/sendgrid``, the real mailer and the real
policy. A simulated clock moves hour by hour: the simulator stamps events with it and posts
those that are due, mailings go out at 10:00 on their days, and the policy runs after each
mailing and at the end of each day. Everything random is seeded, so a seed gives one outcome.

Engine code never imports ``variants`` or ``webhooks`` at module level; like the app factory and
``engine.sending.cli``, this assembly point loads them by name at run time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import sqlalchemy.orm as so

from engine.decisions import run_decisions
from engine.models import Experiment
from engine.settings import Settings
from engine.simulate_setup import Campaign, SimulationError, open_campaign, quiet_request_logs
from engine.simulate_summary import DayShares, SimulationResult, summarize

MAILING_HOUR = 10
__all__ = ["SimulationError", "SimulationOptions", "mailing_days", "run_simulation"]


@dataclass(frozen=True)
class SimulationOptions:
    """What to simulate. ``recruiters`` demo recruiters (among 1.5× as many demo contacts)."""

    days: int = 30
    seed: int = 0
    recruiters: int = 2000
    mailings_per_week: int = 1

    def validate(self) -> None:
        """Raise :class:`SimulationError` naming the first impossible option."""
        checks = {
            "days must be between 1 and 366": 1 <= self.days <= 366,
            "seed must be ≥ 0": self.seed >= 0,
            "recruiters must be between 1 and 100,000": 1 <= self.recruiters <= 100_000,
            "mailings per week must be between 1 and 7": 1 <= self.mailings_per_week <= 7,
        }
        for message, ok in checks.items():
            if not ok:
                raise SimulationError(message)


def mailing_days(days: int, per_week: int) -> list[int]:
    """Day indexes (0-based) of the mailings: ``per_week`` evenly spaced in each week."""
    offsets = sorted({(7 * index) // per_week for index in range(per_week)})
    return [
        week + offset for week in range(0, days, 7) for offset in offsets if week + offset < days
    ]


def run_simulation(
    settings: Settings,
    options: SimulationOptions,
    *,
    on_day: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run the campaign for ``options.days`` simulated days; returns the summary.

    ``settings`` supply the policy, mailer and simulator settings; the database URL, secret key,
    base URL and webhook key are replaced by throwaway ones. ``on_day`` is called after each
    simulated day with the number of days done. Raises :class:`SimulationError`.
    """
    options.validate()
    with (
        tempfile.TemporaryDirectory(prefix="resistry-simulate-") as directory,
        quiet_request_logs(),
        open_campaign(
            settings, Path(directory), seed=options.seed, recruiters=options.recruiters
        ) as campaign,
    ):
        return _Run(campaign, options).play(on_day)


class _Run:
    """One run on a staged campaign: the simulated days, mailings and decisions."""

    def __init__(self, campaign: Campaign, options: SimulationOptions) -> None:
        self.campaign = campaign
        self.options = options
        self.settings = campaign.settings
        self.sessions = campaign.sessions
        self.simulator = campaign.simulator
        self.clock = campaign.clock
        self.start = campaign.start

    def deliver_due(self) -> None:
        """The events due by now reach the app's webhook, and the applier applies them."""
        self.simulator.deliver_due()
        self.campaign.apply_webhooks()

    def play(self, on_day: Callable[[int], None] | None) -> SimulationResult:
        rng = np.random.default_rng(self.options.seed)  # the mailings' Thompson draws
        scheduled = set(mailing_days(self.options.days, self.options.mailings_per_week))
        shares: list[DayShares] = []
        skipped: list[str] = []
        for day in range(self.options.days):
            day_start = self.start + timedelta(days=day)
            for hour in range(24):
                self.clock.now = day_start + timedelta(hours=hour)
                if day in scheduled and hour == MAILING_HOUR:
                    problem = self.mail(rng)
                    if problem:
                        skipped.append(f"day {day + 1}: mailing not sent: {problem}")
                self.deliver_due()
            # The day's last second: its decisions and shares belong to this day.
            self.clock.now = day_start + timedelta(days=1, seconds=-1)
            self.deliver_due()
            with self.sessions.begin() as session:
                run_decisions(session, self.settings, now=self.clock.now)
                shares.append(DayShares(day + 1, self.weights(session)))
            if on_day is not None:
                on_day(day + 1)
        # Events still in flight at the end arrive, so observed counts are final (no more
        # decisions are taken on them).
        self.simulator.flush()
        self.campaign.apply_webhooks()
        with self.sessions() as session:
            return summarize(
                session,
                truth=self.campaign.truth,
                experiment_ids=self.campaign.experiments,
                start=self.start,
                days=self.options.days,
                seed=self.options.seed,
                recruiters=self.options.recruiters,
                shares=shares,
                notes=skipped,
                simulator_stats=self.simulator.stats(),
            )

    def mail(self, rng: np.random.Generator) -> str:
        """Send the day's recruiter mailing and run the policy; returns why it failed, or ""."""
        from engine.sending.mailing import MailingError, run_recruiter_mailing
        from engine.sending.planner import PlanError

        with self.sessions() as session:
            try:
                run_recruiter_mailing(
                    session,
                    self.settings,
                    renderers=self.campaign.renderers,
                    client=self.campaign.client,
                    rng=rng,
                    clock=self.clock,
                )
            except (PlanError, MailingError) as exc:
                session.rollback()
                return str(exc)
            run_decisions(session, self.settings, now=self.clock.now)
            session.commit()
        return ""

    def weights(self, session: so.Session) -> dict[str, dict[str, float]]:
        """Each mail experiment's allocation for the next mailing: the policy's weights, or the
        winner alone once promoted."""
        shares: dict[str, dict[str, float]] = {}
        for experiment_id in self.campaign.experiments.values():
            experiment = session.get(Experiment, experiment_id)
            assert experiment is not None
            shares[experiment.key] = {
                variant.key: float(variant.weight)
                for variant in experiment.variants
                if variant.status != "retired"
            }
        return shares
