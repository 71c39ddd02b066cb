"""The landing benchmark's app and server: the production app plus a hello-world route (only
here), served exactly as ``resistry serve`` serves (:func:`engine.server.serve`).

    python -m bench.landing_app --port 8000 --workers 2

Settings come from the environment the benchmark sets (database URL, secret key, base URL).
"""

from __future__ import annotations

import sys

from flask import Flask

from engine.app import create_app


def build() -> Flask:
    """The app with ``GET /hello``: the same middleware and server, minimal work."""
    app = create_app()

    @app.get("/hello")
    def hello() -> str:
        return "Hello, world!"

    return app


def main(argv: list[str]) -> int:
    from bench.common import serve_bench_app

    return serve_bench_app(build, "Serve the landing benchmark's app.", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
