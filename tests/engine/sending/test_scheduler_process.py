"""The scheduler as a process: it holds the singleton lock and stops cleanly on SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start_scheduler(environment: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "scheduler"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(process: subprocess.Popen[str], needle: str, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    seen = ""
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen += line
        if needle in line:
            return seen
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"{needle!r} not printed; output so far:\n{seen}")


def test_second_scheduler_waits_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "RESISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "RESISTRY_SECRET_KEY": "resistry-test-secret-key-0123456789abcdef",
    }
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "db", "upgrade"],
        env=environment,
        check=True,
        capture_output=True,
    )
    first = start_scheduler(environment)
    second = None
    try:
        wait_for_line(first, "scheduler running")
        second = start_scheduler(environment)
        wait_for_line(second, "another scheduler is running; waiting")
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
        assert "scheduler stopped" in first.stdout.read()  # type: ignore[union-attr]
        wait_for_line(second, "scheduler running")  # takes over once the first is gone
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        for process in (first, second):
            if process is None:
                continue
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()  # type: ignore[union-attr]


def test_sigterm_stops_a_waiting_scheduler_cleanly(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "RESISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "RESISTRY_SECRET_KEY": "resistry-test-secret-key-0123456789abcdef",
    }
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "db", "upgrade"],
        env=environment,
        check=True,
        capture_output=True,
    )
    first = start_scheduler(environment)
    second = None
    try:
        wait_for_line(first, "scheduler running")
        second = start_scheduler(environment)
        wait_for_line(second, "another scheduler is running; waiting")
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0  # not killed by the signal: it stopped
        assert "scheduler stopped" in second.stdout.read()  # type: ignore[union-attr]
        assert first.poll() is None  # the running one goes on
    finally:
        for process in (first, second):
            if process is None:
                continue
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()  # type: ignore[union-attr]
