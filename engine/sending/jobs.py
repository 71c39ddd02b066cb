"""What the scheduler runs: the recruiter mailing (then a decision run) and the decision run.

Each job opens its own session and logs its result; a failing job logs the error and waits for
its next time (the scheduler keeps running). Logs carry counts and keys, never an address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from engine.decisions import run_decisions
from engine.models import utcnow
from engine.runtime import Runtime
from engine.sending.client import MailClient
from engine.sending.composer import Renderers
from engine.sending.mailing import MailingError, MailingReport, run_recruiter_mailing
from engine.sending.planner import PlanError

log = logging.getLogger(__name__)


class SchedulerJobs:
    """The scheduler's two jobs, bound to one process's runtime and renderers."""

    def __init__(
        self,
        runtime: Runtime,
        renderers: Renderers,
        *,
        client_factory: Callable[[], MailClient] | None = None,
    ) -> None:
        self._runtime = runtime
        self._renderers = renderers
        self._client_factory = client_factory or (lambda: MailClient(runtime.settings.sendgrid))

    def mailing(self) -> MailingReport | None:
        """Send today's recruiter mailing (a no-op re-run if it went out), then decide.

        Returns the report, or ``None`` when nothing could be planned or sent.
        """
        settings = self._runtime.settings
        with self._runtime.sessions() as session:
            try:
                report = run_recruiter_mailing(
                    session, settings, renderers=self._renderers, client=self._client_factory()
                )
            except (PlanError, MailingError) as exc:
                log.error("recruiter mailing not sent: %s", exc)
                return None
            for line in report.lines():
                log.info("%s", line)
            run_decisions(session, settings, now=utcnow())
            session.commit()
            return report

    def decisions(self) -> int:
        """Run the policy for every running experiment; returns how many were considered."""
        with self._runtime.sessions.begin() as session:
            outcomes = run_decisions(session, self._runtime.settings, now=utcnow())
        for outcome in outcomes:
            log.info("%s", outcome.summary())
        return len(outcomes)
