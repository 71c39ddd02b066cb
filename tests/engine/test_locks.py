import threading

import pytest
import sqlalchemy as sa

from engine.locks import lock_key, singleton


def test_lock_key_is_stable_and_signed_64_bit() -> None:
    assert lock_key("scheduler") == lock_key("scheduler")
    assert lock_key("scheduler") != lock_key("other")
    assert -(2**63) <= lock_key("scheduler") < 2**63


def test_second_holder_waits_until_first_releases(migrated_engine: sa.Engine) -> None:
    """Two schedulers: the second waits instead of running, and runs once the first is gone."""
    events: list[str] = []
    first_holds = threading.Event()
    release_first = threading.Event()

    def first() -> None:
        with singleton(migrated_engine, "scheduler-test", poll_seconds=0.01):
            events.append("first in")
            first_holds.set()
            release_first.wait(5)
            events.append("first out")

    def second() -> None:
        first_holds.wait(5)
        with singleton(
            migrated_engine,
            "scheduler-test",
            poll_seconds=0.01,
            on_wait=lambda: events.append("second waits"),
        ):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_holds.wait(5)
    while "second waits" not in events:
        threading.Event().wait(0.01)
    release_first.set()
    for thread in threads:
        thread.join(10)
    assert events == ["first in", "second waits", "first out", "second in"]


def test_timeout_while_held(migrated_engine: sa.Engine) -> None:
    with (
        singleton(migrated_engine, "held"),
        pytest.raises(TimeoutError),
        singleton(migrated_engine, "held", poll_seconds=0.01, timeout=0.05),
    ):
        pass
