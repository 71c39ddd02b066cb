"""A SendGrid simulator per test, and a mail client pointed at it that never really sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.simulator import SimulatorHandle, start_simulator
from tests.conftest import make_settings


class Recorder:
    """An injected sleep that records each wait instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[SimulatorHandle]:
    handle = start_simulator(
        make_settings("sqlite:///:memory:"), webhook_url=None, seed=1, key_dir=tmp_path
    )
    yield handle
    handle.stop()


@pytest.fixture
def sleeps() -> Recorder:
    return Recorder()


def pointed_at(settings: Settings, simulator: SimulatorHandle, **sendgrid: object) -> Settings:
    """``settings`` whose SendGrid host is the simulator (plus any [sendgrid] overrides)."""
    return settings.replace(sendgrid={"host": simulator.url, **sendgrid})
