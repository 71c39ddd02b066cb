"""``resistry mailing send [--dry-run]``, ``resistry decisions run`` and ``resistry scheduler``.

These commands are assembly points: they hand the mailer ``variants.rendering``'s functions
(engine code never imports variants; the import happens here, at run time, like the app factory).
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
from typing import Any

import click
import numpy as np

from engine.logs import configure_logging
from engine.models import utcnow
from engine.runtime import Runtime, pass_runtime

log = logging.getLogger(__name__)


def default_renderers() -> Any:
    """``variants.rendering`` as the mailer's :class:`~engine.sending.composer.Renderers`."""
    from engine.sending.composer import Renderers

    rendering = importlib.import_module("variants.rendering")
    return Renderers(compile_body=rendering.compile_body, render_text=rendering.render_text)


def print_plan(plan: dict[str, Any]) -> None:
    """Recipients per variant of each kind, as staff read it before anything is sent."""
    click.echo(f"recipients: {plan.get('recipients', 0)}")
    if plan.get("suppressed"):
        click.echo(f"left out (suppressed): {plan['suppressed']}")
    for kind, counts in plan.get("by_variant", {}).items():
        click.echo(f"{kind}:")
        for label, n in counts.items():
            click.echo(f"  {label:<40} {n:>8}")


@click.group()
def mailing() -> None:
    """Recruiter mailings."""


@mailing.command("send")
@click.option("--dry-run", is_flag=True, help="Print the plan; send and store nothing.")
@click.option("--key", help="Mailing key (default: today's recruiter mailing).")
@click.option("--seed", type=int, help="Seed of the Thompson draws (default: random).")
@pass_runtime
def send_command(runtime: Runtime, dry_run: bool, key: str | None, seed: int | None) -> None:
    """Plan and send the recruiter mailing; a re-run sends only what was never handed over."""
    from engine.decisions import run_decisions
    from engine.sending import mailing as mailings
    from engine.sending.client import MailClient
    from engine.sending.planner import PlanError, draw_plan
    from engine.sending.records import remaining_plan

    settings = runtime.settings
    rng = np.random.default_rng(seed)
    if dry_run:
        with runtime.sessions() as session:
            earlier = _existing_mailing(session, settings, key)
            if earlier is not None:  # a send resumes it; its plan is stored, not drawn again
                click.echo(
                    f"mailing {earlier.key} was planned before ({earlier.status}); a send hands"
                    " over only its sends still planned (--key names a new mailing)"
                )
                print_plan(remaining_plan(session, earlier))
                click.echo("dry run: nothing stored, nothing sent")
                return
            try:
                plan = draw_plan(
                    session,
                    settings,
                    asm_group_id=settings.sendgrid.asm_group_id,
                    rng=rng,
                    now=utcnow(),
                )
            except PlanError as exc:
                raise click.ClickException(str(exc)) from None
            paused = _pause_notice(session)
        print_plan(plan.summary())
        click.echo("dry run: nothing stored, nothing sent")
        if paused:
            click.echo(f"warning: nothing would be sent now: {paused}", err=True)
        return
    renderers = default_renderers()
    client = MailClient(settings.sendgrid)
    with runtime.sessions() as session:
        bar: Any = None

        def on_plan(plan: dict[str, Any]) -> None:
            nonlocal bar
            print_plan(plan)
            bar = click.progressbar(length=plan["recipients"], label="sending")
            bar.__enter__()

        def on_progress(count: int) -> None:
            bar.update(count)

        try:
            report = mailings.run_recruiter_mailing(
                session,
                settings,
                renderers=renderers,
                client=client,
                key=key,
                rng=rng,
                on_plan=on_plan,
                on_progress=on_progress,
            )
        except (PlanError, mailings.MailingError) as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        for line in report.lines():
            click.echo(line)
        outcomes = run_decisions(session, settings, now=utcnow())
        session.commit()
        paused = _pause_notice(session) if report.remaining else None
    for outcome in outcomes:
        click.echo(outcome.summary())
    if paused:
        raise click.ClickException(paused)


def _existing_mailing(session: Any, settings: Any, key: str | None) -> Any:
    """The mailing a send would resume (``key``, default today's), if it was planned before."""
    import sqlalchemy as sa

    from engine.models import Mailing
    from engine.sending.mailing import mailing_key

    key = key or mailing_key(utcnow(), settings.scheduler.timezone)
    return session.scalar(sa.select(Mailing).where(Mailing.key == key))


def _pause_notice(session: Any) -> str | None:
    """What staff must do while an alert pauses sending, or None when nothing does."""
    from engine.alerts import pausing_alert

    alert = pausing_alert(session)
    if alert is None:
        return None
    return (
        f"sending is paused by alert #{alert.id}: {alert.message}. Once its cause is dealt"
        f" with, run `resistry alerts resolve {alert.id}` (open alerts: `resistry alerts list`)."
    )


@click.group()
def decisions() -> None:
    """The bandit's decisions: promote winners, pause arms that trip a guardrail."""


@decisions.command("run")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@pass_runtime
def decisions_run(runtime: Runtime, as_json: bool) -> None:
    """Run the policy once for every running experiment and store what it decides."""
    from engine.decisions import run_decisions

    with runtime.sessions.begin() as session:
        outcomes = run_decisions(session, runtime.settings, now=utcnow())
    if as_json:
        click.echo(json.dumps([outcome.as_dict() for outcome in outcomes], indent=2))
    else:
        for outcome in outcomes:
            click.echo(outcome.summary())
        if not outcomes:
            click.echo("no running experiment")


@click.command("scheduler")
@pass_runtime
def scheduler(runtime: Runtime) -> None:
    """Run the recurring recruiter mailing and decision runs (one process; Ctrl-C stops)."""
    from engine import locks
    from engine.scheduler import build_scheduler
    from engine.sending.jobs import SchedulerJobs

    configure_logging(runtime.settings.web.log_format)
    jobs = SchedulerJobs(runtime, default_renderers())
    try:
        built = build_scheduler(
            runtime.settings.scheduler,
            mailing_job=jobs.mailing,
            decisions_job=jobs.decisions,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    # SIGTERM (systemd, a container stop) stops like Ctrl-C: a job already running (a mailing
    # mid-request) finishes before the process exits, so no send is left unknown. Set first: a
    # supervisor may send it at any moment, also while this one waits for its turn.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with locks.singleton(
            runtime.engine,
            "scheduler",
            on_wait=lambda: click.echo("another scheduler is running; waiting to take over"),
        ):
            click.echo(
                f"scheduler running: mailing '{runtime.settings.scheduler.mailing_cron}',"
                f" decisions '{runtime.settings.scheduler.decisions_cron}'"
                f" ({runtime.settings.scheduler.timezone})"
            )
            try:
                built.start()
            except (KeyboardInterrupt, SystemExit):
                if built.running:
                    built.shutdown(wait=True)
    except KeyboardInterrupt:
        pass  # stopped before it started
    click.echo("scheduler stopped")
