"""Run the app under gunicorn from Python (``resistry serve``), so one entry point serves all.

The production default, measured by ``bench/landing.py`` (which serves through these options):

- **gthread workers**: sync workers close the connection after every response, so every
  request of a visitor (and of a load balancer's connection pool) pays a new TCP connection;
  gthread keeps connections alive (``keepalive`` seconds) and parks idle ones in a poller.
- **one thread per worker on SQLite, four on PostgreSQL**: SQLite serializes every write on one
  lock, so a second thread in a worker only queues behind it while competing for the GIL
  (measured on 2 cores: landing 1,000–1,150 req/s with 2 or 4 threads against 1,140–1,340 with
  one, and hello-world's p99 up to 160 ms with 4); PostgreSQL requests wait on network round
  trips and row locks, during which another thread can run.
- **SO_REUSEPORT** (``reuse_port``): each worker listens on its own socket and the kernel spreads
  new connections across them. Without it, a gthread worker accepts every connection that
  arrives while it polls, and a burst of new keep-alive connections can all land on one worker
  (seen in 1 of 3 runs: all 16 connections on one of two workers, half the throughput).

Operators can override any of it with gunicorn's own ``GUNICORN_CMD_ARGS`` (for example
``GUNICORN_CMD_ARGS="--threads 8"``), as with the ``gunicorn`` command.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from engine.db import is_sqlite
from engine.settings import Settings

# Paths whose last segment is a bearer credential: an unsubscribe link, a recruiter's magic link.
_CREDENTIAL_PATHS = ("/unsubscribe/", "/recruiter/")


def masked_path(path: str) -> str:
    """``path`` as the access log shows it: a credential in it replaced by ``…``, so whoever
    reads the logs cannot unsubscribe a recipient or open a recruiter's page."""
    for prefix in _CREDENTIAL_PATHS:
        if path.startswith(prefix) and len(path) > len(prefix):
            return prefix + "…"
    return path


class AccessLogger(Logger):  # type: ignore[misc]
    """Gunicorn's logger, with credentials masked in the path it logs (``%(U)s``)."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = masked_path(atoms["U"])
        return atoms


# Writes serialize on SQLite's one lock; PostgreSQL requests wait on the network (see above).
SQLITE_THREADS = 1
POSTGRES_THREADS = 4


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(
        self, settings: Settings, options: dict[str, Any], build: Callable[[], Flask] | None
    ) -> None:
        self.settings = settings
        self.options = options
        self.build = build
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        # As the gunicorn command does: GUNICORN_CMD_ARGS overrides the defaults above.
        overrides = self.cfg.get_cmd_args_from_env()
        if overrides:
            parsed = self.cfg.parser().parse_args(overrides)
            for key, value in vars(parsed).items():
                if value is not None and key != "args":
                    self.cfg.set(key.lower(), value)

    def load(self) -> Any:
        from engine.app import create_app
        from engine.logs import configure_logging

        configure_logging(self.settings.web.log_format)
        app = self.build() if self.build is not None else create_app(settings=self.settings)
        # What start-up made (modules, the app, templates: ~140,000 objects) lives as long as the
        # worker; frozen, the collector stops walking it. Measured in-process, each full
        # collection was a ~90 ms pause of the worker, one every few thousand requests.
        gc.collect()
        gc.freeze()
        return app


def gunicorn_options(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 2
) -> dict[str, Any]:
    """The gunicorn settings ``resistry serve`` runs with (see the module documentation)."""
    threads = SQLITE_THREADS if is_sqlite(settings.database.url) else POSTGRES_THREADS
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "reuse_port": True,
        "graceful_timeout": 20,
        "timeout": 60,
        "accesslog": "-",
        "logger_class": AccessLogger,
        # The access log must not carry addresses: tokens and emails live in POST bodies, but
        # query strings can hold a recruiter code, so log the path only.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
    }


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 2,
    build: Callable[[], Flask] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; gunicorn finishes in-flight requests (graceful shutdown).

    ``build`` makes the app in each worker (default: :func:`engine.app.create_app` with
    ``settings``); the landing benchmark passes its own to add a hello-world route.
    """
    options = gunicorn_options(settings, host=host, port=port, workers=workers)
    _Gunicorn(settings, options, build).run()
