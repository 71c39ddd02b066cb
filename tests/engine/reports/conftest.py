"""The ``site`` fixture: the app and a SendGrid simulator, for the rollup scenarios."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy.orm as so

from engine.app import create_app
from engine.settings import Settings
from engine.simulator import start_simulator
from engine.simulator.truth import Rates, TrueRates
from tests.conftest import make_settings
from tests.engine.reports.rollup_support import Site
from variants.landing_state import LockedGenerator, runtime_of

# Generous rates, so a few dozen recipients reach every outcome the webhook reports.
BUSY = TrueRates(
    defaults=Rates(
        bounce=0.1,
        machine_open=0.4,
        open=0.5,
        click=0.3,
        scanner_click=0.2,
        unsubscribe=0.1,
        spam_report=0.05,
    )
)


@pytest.fixture
def site(
    settings: Settings, sessions: so.sessionmaker[so.Session], tmp_path: Path
) -> Iterator[Site]:
    """The app on the test's rolled-back transaction, accepting the simulator's signed posts;
    landing views happen at ``site.now[0]`` and draw their arms from a seeded generator."""
    simulator = start_simulator(
        make_settings("sqlite:///:memory:"),
        webhook_url=None,
        seed=7,
        key_dir=tmp_path,
        true_rates=BUSY,
    )
    site_settings = settings.replace(
        sendgrid={
            "host": simulator.url,
            "webhook_public_key": simulator.public_key,
            "personalizations_per_request": 7,
        },
        web={"signup_rate_limit": "1000 per minute"},
    )
    app = create_app({"TESTING": True}, settings=site_settings, sessions=sessions)
    now: list[datetime] = []
    runtime = runtime_of(app)
    runtime.chooser = LockedGenerator(np.random.default_rng(2026))
    runtime.now = lambda: now[0]
    try:
        yield Site(site_settings, app, simulator, tmp_path, now)
    finally:
        simulator.stop()
