"""The landing benchmark's app: the production app plus a hello-world route (only here).

gunicorn calls ``build()`` in each worker (``bench.landing_app:build()``); settings come from the
environment the benchmark sets (database URL, secret key, base URL).
"""

from __future__ import annotations

from flask import Flask

from engine.app import create_app


def build() -> Flask:
    """The app with ``GET /hello``: the same middleware and server, minimal work."""
    app = create_app()

    @app.get("/hello")
    def hello() -> str:
        return "Hello, world!"

    return app
