"""The process-wide pieces a command or the scheduler needs: settings, engine, sessions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from engine.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # the database stack loads on first use, so light commands stay light
    import sqlalchemy as sa
    import sqlalchemy.orm as so


@dataclass
class Runtime:
    """Lazily built: creating one opens nothing; the engine connects on first use."""

    settings: Settings = field(default_factory=load_settings)

    @cached_property
    def engine(self) -> sa.Engine:
        from engine.db import create_db_engine

        return create_db_engine(self.settings)

    @cached_property
    def sessions(self) -> so.sessionmaker[so.Session]:
        from engine.db import session_factory

        return session_factory(self.engine)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def pass_runtime(command: Callable[..., Any]) -> Callable[..., Any]:
    """Hand the command a Runtime, built on first use (also under ``flask --app engine``)."""

    @click.pass_context
    @functools.wraps(command)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        runtime = ctx.find_object(Runtime)
        if runtime is None:
            try:
                runtime = Runtime(load_settings(ctx.meta.get("resistry.config")))
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
            ctx.call_on_close(runtime.close)
            ctx.obj = runtime if ctx.obj is None else ctx.obj
            ctx.meta["resistry.runtime"] = runtime
        return ctx.invoke(command, runtime, *args, **kwargs)

    return wrapper
