"""The ``resistry`` command line. Every command honours RESISTRY_DATABASE_URL (via settings).

Commands live next to the code they drive and are registered here; each takes the
:class:`~engine.runtime.Runtime` through :func:`pass_runtime`.
"""

from __future__ import annotations

import importlib

import click

from engine.runtime import Runtime, pass_runtime

# Commands live next to the code they drive; they are imported only when invoked (or listed by
# --help), so `resistry stats` never loads Flask, matplotlib or the database drivers.
LAZY_COMMANDS = {
    "alerts": "engine.alerts:alerts",
    "decisions": "engine.sending.cli:decisions",
    "demo": "variants.demo:demo",
    "events": "webhooks.cli:events",
    "import": "variants.importer:import_command",
    "mailing": "engine.sending.cli:mailing",
    "reports": "engine.reports.cli:reports",
    "scheduler": "engine.sending.cli:scheduler",
    "simulate": "engine.simulate_cli:simulate",
    "simulator": "engine.simulator.cli:simulator",
    "stats": "engine.stats_cli:stats_command",
    "suppressions": "webhooks.cli:suppressions",
    "up": "engine.launcher:up",
    "users": "engine.auth:users",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module_name, attribute = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attribute)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="RESISTRY_CONFIG",
    help="Settings file (default: config.toml of the project).",
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Resistry: email-first conversion and A/B testing for progressive organizing."""
    ctx.meta["resistry.config"] = config


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_runtime
def db_upgrade(runtime: Runtime, revision: str) -> None:
    """Apply migrations up to REVISION (run once before starting web workers)."""
    from alembic.util import CommandError

    from engine import migrate

    try:
        migrate.upgrade(runtime.engine, revision)
    except CommandError as exc:  # e.g. an unknown revision: the message says which
        raise click.ClickException(str(exc)) from None
    click.echo(f"database at {migrate.current_revision(runtime.engine)}")


@db.command("current")
@pass_runtime
def db_current(runtime: Runtime) -> None:
    """Print the schema revision of the database."""
    from engine import migrate

    click.echo(migrate.current_revision(runtime.engine) or "empty")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
# Zero workers would leave gunicorn listening on nothing, forever.
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
@pass_runtime
def serve(runtime: Runtime, host: str, port: int, workers: int) -> None:
    """Serve the web app with gunicorn."""
    from engine.server import serve as run_server

    run_server(runtime.settings, host=host, port=port, workers=workers)


if __name__ == "__main__":
    main()
