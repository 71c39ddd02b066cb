"""``resistry up``'s process handling, with small dummy children: a stop request stops every
part with its own signal, a part that dies stops the others (exit 1), a stubborn part is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.launcher import Part, parts_for, run_parts, stop_parts

# A child that says it is ready, then waits; "die" exits at once with code 3, "ignore-term"
# shrugs off SIGTERM, "exit-on-int" exits 0 on SIGINT (as the scheduler does) and ignores SIGTERM.
CHILD = """
import pathlib, signal, sys, time
ready, mode = sys.argv[1], sys.argv[2]
if mode in ("ignore-term", "exit-on-int"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(ready).touch()
if mode == "die":
    sys.exit(3)
try:
    time.sleep(60)
except KeyboardInterrupt:
    sys.exit(0)
"""


def child(tmp_path: Path, name: str, mode: str = "sleep", **options: int) -> Part:
    return Part(
        name, [sys.executable, "-c", CHILD, str(tmp_path / f"{name}.ready"), mode], **options
    )


def when_ready(tmp_path: Path, names: list[str], then: object) -> threading.Thread:
    """Call ``then()`` from a thread once every named child has started (at most 20 s)."""

    def wait() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all((tmp_path / f"{name}.ready").exists() for name in names):
                then()  # type: ignore[operator]
                return
            time.sleep(0.02)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_sigterm_stops_every_part_with_its_own_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = [
        child(tmp_path, "simulator"),
        child(tmp_path, "web"),
        child(tmp_path, "scheduler", "exit-on-int", stop_signal=signal.SIGINT),
    ]
    names = [part.name for part in parts]
    before = signal.getsignal(signal.SIGTERM)
    when_ready(tmp_path, names, lambda: os.kill(os.getpid(), signal.SIGTERM))
    began = time.monotonic()

    assert run_parts(parts, dict(os.environ), grace_seconds=10) == 0

    assert time.monotonic() - began < 10  # nobody waited for the grace period
    codes = {part.name: part.process.returncode for part in parts}  # type: ignore[union-attr]
    assert codes == {"simulator": -signal.SIGTERM, "web": -signal.SIGTERM, "scheduler": 0}
    output = capsys.readouterr().out
    assert "stopped simulator (signal SIGTERM), web (signal SIGTERM), scheduler (exit 0)" in output
    assert signal.getsignal(signal.SIGTERM) == before  # the launcher's handler is gone again


def test_a_part_that_dies_stops_the_others_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = [child(tmp_path, "simulator"), child(tmp_path, "web", "die"), child(tmp_path, "sch")]

    assert run_parts(parts, dict(os.environ), grace_seconds=10) == 1

    assert all(part.process.poll() is not None for part in parts)  # type: ignore[union-attr]
    assert parts[1].process.returncode == 3  # type: ignore[union-attr]
    assert parts[0].process.returncode == parts[2].process.returncode == -signal.SIGTERM  # type: ignore[union-attr]
    assert "web exited with code 3; stopping the others" in capsys.readouterr().out


def test_a_part_that_ignores_its_stop_signal_is_killed_after_the_grace_period(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = [child(tmp_path, "stubborn", "ignore-term"), child(tmp_path, "polite")]
    for part in parts:
        part.process = subprocess.Popen(part.argv)
    ready = threading.Event()
    when_ready(tmp_path, ["stubborn", "polite"], ready.set).join()
    assert ready.is_set()

    assert stop_parts(parts, grace_seconds=0.5) == ["stubborn"]

    assert parts[0].process.returncode == -signal.SIGKILL  # type: ignore[union-attr]
    assert parts[1].process.returncode == -signal.SIGTERM  # type: ignore[union-attr]
    assert "stubborn (killed after the grace period)" in capsys.readouterr().out


def test_parts_already_started_are_stopped_when_a_later_one_cannot_start(tmp_path: Path) -> None:
    parts = [child(tmp_path, "simulator"), Part("web", [str(tmp_path / "no-such-program")])]

    with pytest.raises(FileNotFoundError):
        run_parts(parts, dict(os.environ), grace_seconds=10)

    assert parts[0].process is not None and parts[0].process.poll() is not None


def test_the_simulator_posts_to_the_web_app_started_with_it() -> None:
    simulator, web, applier, scheduler = parts_for("0.0.0.0", 9100)
    assert simulator.argv[-2:] == ["--webhook-url", "http://127.0.0.1:9100/webhooks/sendgrid"]
    assert web.argv[-4:] == ["--host", "0.0.0.0", "--port", "9100"]
    assert applier.argv[-3:] == ["events", "apply", "--follow"]
    assert (web.stop_signal, applier.stop_signal, scheduler.stop_signal) == (
        signal.SIGTERM,
        signal.SIGTERM,
        signal.SIGINT,
    )
    assert parts_for("::1", 8000)[0].argv[-1] == "http://[::1]:8000/webhooks/sendgrid"
