"""``resistry up``: the whole loop on one machine — web app, scheduler and SendGrid simulator.

Each part is its own process (the scheduler must be exactly one process; see DESIGN.md). Ctrl-C
or SIGTERM stops all three: SIGTERM first so gunicorn finishes in-flight requests, SIGKILL after a
grace period. If one part dies, the others are stopped too and the exit code says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import click

from engine.runtime import Runtime, pass_runtime

GRACE_SECONDS = 15.0


@dataclass
class Part:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


def parts_for(host: str, port: int) -> list[Part]:
    resistry = [sys.executable, "-m", "engine.cli"]
    return [
        Part("simulator", [*resistry, "simulator"]),
        Part("web", [*resistry, "serve", "--host", host, "--port", str(port)]),
        Part("scheduler", [*resistry, "scheduler"]),
    ]


def run_parts(parts: list[Part], environment: dict[str, str]) -> int:
    """Start ``parts``, wait until one exits or a signal arrives, stop the rest; exit code."""
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for part in parts:
            part.process = subprocess.Popen(part.argv, env=environment)
        failed: Part | None = None
        while not stopping and failed is None:
            time.sleep(0.2)
            failed = next((p for p in parts if p.process and p.process.poll() is not None), None)
        if failed is not None:
            click.echo(f"{failed.name} exited with code {failed.process.returncode}; stopping")
        stop_parts(parts)
        return 0 if failed is None else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_parts(parts: list[Part]) -> None:
    running = [p for p in parts if p.process and p.process.poll() is None]
    for part in running:
        part.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    deadline = time.monotonic() + GRACE_SECONDS
    for part in running:
        try:
            part.process.wait(max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            part.process.kill()  # type: ignore[union-attr]
            part.process.wait()  # type: ignore[union-attr]
    click.echo("stopped " + ", ".join(p.name for p in parts))


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@pass_runtime
def up(runtime: Runtime, host: str, port: int) -> None:
    """Start the web app, the scheduler and the SendGrid simulator; Ctrl-C stops all three."""
    from engine.simulator.wire import load_or_create_key_pair

    # The web app reads the webhook verification key at start-up: create it before anything runs.
    load_or_create_key_pair(runtime.settings.base_dir / "instance")
    base = f"http://{host}:{port}"
    environment = dict(os.environ)
    environment.setdefault("RESISTRY_BASE_URL", base)
    click.echo(
        "\n".join(
            [
                "Resistry is starting:",
                f"  landing page     {base}/",
                f"  admin            {base}/admin/  (demo login: admin / resistry-demo)",
                f"  reports          {base}/reports/  (analyst login: analyst / resistry-demo)",
                f"  health           {base}/healthz",
                f"  SendGrid sim     {runtime.settings.sendgrid.host}/_sim/stats",
                "Press Ctrl-C to stop.",
            ]
        )
    )
    raise SystemExit(run_parts(parts_for(host, port), environment))
