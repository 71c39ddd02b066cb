"""The stage of a simulation run: a throwaway database, the app in a thread, the simulator.

:func:`open_campaign` builds it in a directory the caller owns and tears it all down afterwards:
a migrated SQLite database there (never the configured one), the demo campaign and people, the app
served by werkzeug on ``127.0.0.1:0`` trusting a key pair made there, and the SendGrid simulator
posting to the app's ``/webhooks/sendgrid`` only when told to (``deliver_due``), dating events by a
:class:`SimulatedClock`; what the app stored is applied when told to (``apply_webhooks``).
``variants`` and ``webhooks`` are loaded at run time (engine never imports them at module level).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy.orm as so
from werkzeug.serving import BaseWSGIServer, make_server

from engine import migrate
from engine.db import create_db_engine, session_factory
from engine.settings import Settings
from engine.simulator.truth import TrueRates, TrueRatesError, load_true_rates

# A Tuesday, the default mailing day: a fixed calendar keeps runs comparable and repeatable.
START_DATE = date(2026, 9, 1)
MAIL_KINDS = ("subject", "body", "share")


class SimulationError(RuntimeError):
    """The simulation cannot run (bad options, a port or file problem); the message says why."""


class SimulatedClock:
    """The run's notion of now: services get ``clock()``, the simulator ``clock.timestamp``."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def timestamp(self) -> float:
        return self.now.timestamp()


@dataclass
class Campaign:
    """A staged run: settings pointing at the stage, its sessions, simulator, mailer and clock."""

    settings: Settings
    sessions: so.sessionmaker[so.Session]
    simulator: Any  # engine.simulator.SimulatorHandle
    client: Any  # engine.sending.client.MailClient
    renderers: Any  # engine.sending.composer.Renderers of variants.rendering
    truth: TrueRates
    clock: SimulatedClock
    start: datetime
    experiments: dict[str, int]  # mail kind → id of the experiment the mailings use
    apply_webhooks: Callable[[], object]  # what `resistry events apply` does, once


@contextlib.contextmanager
def open_campaign(
    settings: Settings, directory: Path, *, seed: int, recruiters: int
) -> Iterator[Campaign]:
    """Stage a run in ``directory`` (see the module docstring); torn down on leaving.

    Raises :class:`SimulationError` when a server cannot start or the true rates are unusable.
    """
    from engine.app import create_app
    from engine.sending.cli import default_renderers
    from engine.sending.client import MailClient
    from engine.simulator import start_simulator
    from engine.simulator.wire import load_or_create_key_pair, public_key_base64

    truth = _true_rates(settings)
    timezone = ZoneInfo(settings.scheduler.timezone)
    start = datetime.combine(START_DATE, time(0, 0), timezone)
    settings = settings.replace(
        database={"url": f"sqlite:///{directory / 'simulation.sqlite3'}"},
        secret_key=secrets.token_hex(32),  # links of a throwaway run are worth nothing
    )
    engine = create_db_engine(settings)
    with contextlib.ExitStack() as stack:
        stack.callback(engine.dispose)
        migrate.upgrade(engine)
        sessions = session_factory(engine)
        public_key = public_key_base64(load_or_create_key_pair(directory))
        try:
            server = _serve(stack)
        except OSError as exc:
            raise SimulationError(f"cannot serve the app on 127.0.0.1: {exc}") from None
        app_url = f"http://127.0.0.1:{server.server_port}"
        settings = settings.replace(
            web={"base_url": app_url},
            sendgrid={"webhook_public_key": public_key, "verify_webhook_signature": True},
        )
        server.app.app = create_app(settings=settings, sessions=sessions)  # type: ignore[attr-defined]
        clock = SimulatedClock(start)
        try:
            simulator = start_simulator(
                settings,
                webhook_url=f"{app_url}/webhooks/sendgrid",
                seed=seed,
                port=0,
                time_scale=1.0,  # the clock is simulated already: events carry simulated times
                clock=clock.timestamp,
                key_dir=directory,
                true_rates=truth,
                auto_deliver=False,
            )
        except OSError as exc:
            raise SimulationError(f"cannot start the SendGrid simulator: {exc}") from None
        stack.callback(simulator.stop)
        settings = settings.replace(sendgrid={"host": simulator.url})
        yield Campaign(
            settings=settings,
            sessions=sessions,
            simulator=simulator,
            client=MailClient(settings.sendgrid),
            renderers=default_renderers(),
            truth=truth,
            clock=clock,
            start=start,
            experiments=_load_demo(sessions, settings, start, recruiters),
            apply_webhooks=_webhook_applier(settings, sessions),
        )


def _webhook_applier(
    settings: Settings, sessions: so.sessionmaker[so.Session]
) -> Callable[[], object]:
    """Apply the webhook bodies the app stored (the applier process's work, on demand)."""
    from webhooks.inbox import drain
    from webhooks.turn import WriterTurn

    turn = WriterTurn(settings.database.url, settings.database.wal_checkpoint_seconds)

    def apply() -> object:
        with sessions() as session:
            return drain(session, settings.webhooks, turn)

    return apply


def _load_demo(
    sessions: so.sessionmaker[so.Session], settings: Settings, now: datetime, recruiters: int
) -> dict[str, int]:
    """Load the demo campaign and people; returns the id of the experiment mailed per kind."""
    from engine.sending.planner import chosen_experiments

    demo = importlib.import_module("variants.demo")
    with sessions.begin() as session:
        demo.load_demo(
            session,
            settings,
            now=now,
            contacts=math.ceil(recruiters * 1.5),
            recruiters=recruiters,
        )
        chosen = chosen_experiments(session)
    return {kind: chosen[kind].id for kind in MAIL_KINDS if kind in chosen}


class _LateApp:
    """A WSGI callable whose app is set once the server knows its port (the base URL)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


def _serve(stack: contextlib.ExitStack) -> BaseWSGIServer:
    server = make_server("127.0.0.1", 0, _LateApp(), threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    stack.callback(stop)
    return server


@contextlib.contextmanager
def quiet_request_logs() -> Iterator[None]:
    """werkzeug logs every request of both servers; thousands of lines would bury the summary."""
    logger = logging.getLogger("werkzeug")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _true_rates(settings: Settings) -> TrueRates:
    """The simulator's hidden truth, loaded here so the summary judges by the same rates."""
    name = settings.simulator.true_rates_file
    path = None
    if name:
        path = Path(name) if Path(name).is_absolute() else settings.base_dir / name
    try:
        return load_true_rates(path)
    except TrueRatesError as exc:
        raise SimulationError(str(exc)) from None
