"""Run the app under gunicorn from Python (``resistry serve``), so one entry point serves all."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from engine.settings import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from engine.app import create_app
        from engine.logs import configure_logging

        configure_logging(self.settings.web.log_format)
        return create_app(settings=self.settings)


def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 2
) -> None:
    """Serve until SIGINT/SIGTERM; gunicorn finishes in-flight requests (graceful shutdown)."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "graceful_timeout": 20,
        "timeout": 60,
        "accesslog": "-",
        # The access log must not carry addresses: tokens and emails live in POST bodies, but
        # query strings can hold a recruiter code, so log the path only.
        "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
    }
    _Gunicorn(settings, options).run()
