"""``resistry up``: the whole loop on one machine — web app, webhook applier, scheduler and
SendGrid simulator.

Each part is its own process (the scheduler must be exactly one process; see DESIGN.md). Ctrl-C
or SIGTERM stops them all, each with the signal it shuts down cleanly on (gunicorn and the
simulator SIGTERM, so in-flight requests finish; the applier SIGTERM, which rolls back the body
in hand; the scheduler SIGINT, so a running mailing finishes), and SIGKILL after a grace period.
If one part dies, the others are stopped too and the exit code says so.
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
    """One process of the loop. ``stop_signal`` is the signal it treats as "finish and exit"."""

    name: str
    argv: list[str]
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = None


def parts_for(host: str, port: int) -> list[Part]:
    """The simulator (posting events to this web app), the web app, the webhook applier and
    the scheduler."""
    resistry = [sys.executable, "-m", "engine.cli"]
    # The simulator must post to the app started here, whatever port it was given; a wildcard
    # bind address is reached on loopback.
    webhook_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in webhook_host:
        webhook_host = f"[{webhook_host}]"
    webhook_url = f"http://{webhook_host}:{port}/webhooks/sendgrid"
    return [
        Part("simulator", [*resistry, "simulator", "--webhook-url", webhook_url]),
        Part("web", [*resistry, "serve", "--host", host, "--port", str(port)]),
        # Applies the webhook bodies the web app stores; on SIGTERM it rolls back the body in
        # hand, which stays pending.
        Part("applier", [*resistry, "events", "apply", "--follow"]),
        # SIGTERM would kill the scheduler on the spot, possibly in the middle of a mailing;
        # on SIGINT it stops scheduling and lets a running job finish.
        Part("scheduler", [*resistry, "scheduler"], stop_signal=signal.SIGINT),
    ]


def run_parts(
    parts: list[Part], environment: dict[str, str], *, grace_seconds: float = GRACE_SECONDS
) -> int:
    """Start ``parts``, wait until one exits or SIGINT/SIGTERM arrives, then stop them all.

    Returns 0 after a requested stop in which every part exited within ``grace_seconds``, and 1
    when a part exited on its own (the others are stopped) or had to be killed.
    """
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed: Part | None = None
    try:
        for part in parts:
            part.process = subprocess.Popen(part.argv, env=environment)
        while not stopping and failed is None:
            time.sleep(0.2)
            failed = next((p for p in parts if p.process and p.process.poll() is not None), None)
        if failed is not None:
            code = failed.process.returncode  # type: ignore[union-attr]
            click.echo(f"{failed.name} exited with code {code}; stopping the others")
    finally:
        # Also when starting a part failed: never leave the parts already started behind.
        killed = stop_parts(parts, grace_seconds=grace_seconds)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed is not None or killed else 0


def stop_parts(parts: list[Part], *, grace_seconds: float = GRACE_SECONDS) -> list[str]:
    """Send each running part its stop signal, wait up to ``grace_seconds`` in all, then kill
    what is left. Prints each part's exit code; returns the names of the parts killed."""
    running = [p for p in parts if p.process and p.process.poll() is None]
    for part in running:
        part.process.send_signal(part.stop_signal)  # type: ignore[union-attr]
    deadline = time.monotonic() + grace_seconds
    killed = []
    for part in running:
        try:
            part.process.wait(max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            part.process.kill()  # type: ignore[union-attr]
            part.process.wait()  # type: ignore[union-attr]
            killed.append(part.name)
    started = [p for p in parts if p.process is not None]
    if started:
        click.echo("stopped " + ", ".join(f"{p.name} ({_exit_status(p, killed)})" for p in started))
    return killed


def _exit_status(part: Part, killed: list[str]) -> str:
    if part.name in killed:
        return "killed after the grace period"
    code = part.process.returncode  # type: ignore[union-attr]
    if code >= 0:
        return f"exit {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@pass_runtime
def up(runtime: Runtime, host: str, port: int) -> None:
    """Start the web app, the webhook applier, the scheduler and the SendGrid simulator; Ctrl-C
    stops them all."""
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
