"""Browser fixtures: the real app served over HTTP in a thread, and Debian's headless Chromium.

The server runs against a migrated temporary SQLite database with committed data (a browser
cannot share the rolled-back test transaction). Chromium is Debian's ``/usr/bin/chromium``
(``make test`` installs it through ``.ci/ensure-tool``); without it the browser tests skip,
except on CI (``CI=true``) where they fail.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.orm as so
from werkzeug.serving import make_server

from engine import migrate
from engine.app import create_app
from engine.db import create_db_engine, session_factory
from tests.conftest import make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass(frozen=True)
class LiveServer:
    url: str
    sessions: so.sessionmaker[so.Session]


class _LateApp:
    """A WSGI callable whose app is set once the server knows its port (for ``base_url``)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The app served on 127.0.0.1:<free port> by werkzeug in a thread, on a fresh database."""
    settings = make_settings(f"sqlite:///{tmp_path / 'browser.sqlite3'}")
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    late = _LateApp()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    late.app = create_app(settings=settings.replace(web={"base_url": url}))
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url, session_factory(engine))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        engine.dispose()


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium browser driven by Playwright (never Playwright's own download)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (install it with `make browser`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires Chromium: {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
