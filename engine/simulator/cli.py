"""``resistry simulator``: run the SendGrid simulator in the foreground until interrupted."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from engine.runtime import Runtime, pass_runtime
from engine.simulator.truth import TrueRatesError
from engine.simulator.wire import PUBLIC_KEY_FILE, load_or_create_key_pair


@click.command("simulator")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: simulator.port).")
@click.option("--webhook-url", help="Where to post events (default: simulator.webhook_url).")
@click.option("--no-webhook", is_flag=True, help="Generate events but post nothing.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed (default: simulator.seed).")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    help="Simulated seconds per real second (default: simulator.time_scale).",
)
@click.option(
    "--keys-only",
    is_flag=True,
    help="Create the webhook key pair in instance/ (if missing) and exit, so the app can start.",
)
@pass_runtime
def simulator(
    runtime: Runtime,
    port: int | None,
    webhook_url: str | None,
    no_webhook: bool,
    seed: int | None,
    time_scale: float | None,
    keys_only: bool,
) -> None:
    """Serve a local SendGrid: Mail Send on loopback, signed Event Webhook posts back."""
    from engine.simulator.handle import start_simulator

    settings = runtime.settings
    public_key_path = settings.base_dir / "instance" / PUBLIC_KEY_FILE
    if keys_only:
        try:
            load_or_create_key_pair(public_key_path.parent)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"webhook public key: {public_key_path}")
        return
    config = settings.simulator
    target = None if no_webhook else (webhook_url or config.webhook_url)
    if target is not None and not target.startswith(("http://", "https://")):
        raise click.UsageError("--webhook-url must be an http(s) URL")
    try:
        handle = start_simulator(
            settings,
            webhook_url=target,
            seed=seed,
            port=config.port if port is None else port,
            time_scale=time_scale,
        )
    except OSError as exc:
        chosen = config.port if port is None else port
        where = f" ({exc.filename})" if exc.filename else ""
        raise click.ClickException(
            f"cannot serve on {config.host}:{chosen}: {exc.strerror or exc}{where}"
        ) from None
    except (TrueRatesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None

    def stop(_signal: int, _frame: FrameType | None) -> None:
        handle.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    click.echo(f"SendGrid simulator on {handle.url} (API key: sendgrid.api_key)")
    click.echo(f"events → {target or 'nowhere (--no-webhook)'}; public key: {public_key_path}")
    try:
        handle.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
        stats = handle.stats()
        click.echo(
            f"stopped: {stats['messages_accepted']} messages, "
            f"{stats['events_delivered']} events delivered, {stats['events_pending']} pending"
        )
