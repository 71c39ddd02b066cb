"""The ``resistry`` command line. Every command honours RESISTRY_DATABASE_URL (via settings).

Commands live next to the code they drive and are registered here; each takes the
:class:`~engine.runtime.Runtime` through :func:`pass_runtime`.
"""

from __future__ import annotations

import click

from engine.runtime import Runtime, pass_runtime


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    from engine import migrate

    migrate.upgrade(runtime.engine, revision)
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
@click.option("--workers", default=2, show_default=True, type=int)
@pass_runtime
def serve(runtime: Runtime, host: str, port: int, workers: int) -> None:
    """Serve the web app with gunicorn."""
    from engine.server import serve as run_server

    run_server(runtime.settings, host=host, port=port, workers=workers)


def _register_commands() -> None:
    """Attach the commands that live with the features they drive."""
    import importlib

    for module_name, attribute in [
        ("engine.stats_cli", "stats_command"),
        ("variants.demo", "demo"),
        ("variants.importer", "import_command"),
        ("engine.auth", "users"),
        ("webhooks.cli", "events"),
        ("webhooks.cli", "suppressions"),
        ("engine.simulator.cli", "simulator"),
        ("engine.sending.cli", "mailing"),
        ("engine.sending.cli", "decisions"),
        ("engine.sending.cli", "scheduler"),
        ("engine.launcher", "up"),
    ]:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not (exc.name and module_name.startswith(exc.name)):
                raise
            continue
        main.add_command(getattr(module, attribute))


_register_commands()

if __name__ == "__main__":
    main()
