"""The application factory: the one place where engine, variants and webhooks are assembled."""

from __future__ import annotations

import logging
from typing import Any

import click
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask, abort, jsonify, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from engine import db
from engine.settings import Settings, load_settings

log = logging.getLogger(__name__)
csrf = CSRFProtect()


def create_app(
    test_config: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    sessions: so.sessionmaker[so.Session] | None = None,
) -> Flask:
    """Build the app from ``settings`` (default: ``config.toml`` + environment).

    ``sessions`` lets tests hand in a session factory bound to a rolled-back transaction.
    """
    settings = settings or load_settings()
    app = Flask(__name__, instance_path=str(settings.base_dir / "instance"))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.webhooks.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.web.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["resistry.settings"] = settings
    if sessions is None:
        sessions = db.session_factory(db.create_db_engine(settings))
    db.init_app(app, sessions)
    csrf.init_app(app)
    app.url_map.converters["int"] = RowId  # before any route is added

    _register_blueprints(app)
    _register_error_handlers(app)
    app.before_request(_refuse_nul_characters)
    _register_cli(app)
    if settings.web.trusted_proxies:
        # Behind a proxy every request comes from the proxy's address: without this, one
        # visitor's rate limit would be everyone's.
        n = settings.web.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    return app


def settings_of(app: Flask) -> Settings:
    return app.extensions["resistry.settings"]


def _register_blueprints(app: Flask) -> None:
    from engine import auth, health
    from engine.reports import web as reports_web
    from engine.sending import web as sending_web
    from variants import web as variants_web
    from webhooks import web as webhooks_web

    app.register_blueprint(health.bp)
    for feature in (auth, variants_web, webhooks_web, sending_web, reports_web):
        feature.init_app(app)


def wants_json() -> bool:
    """API and webhook callers get JSON errors; people get a page."""
    path = request.path
    return path.startswith(("/api/", "/webhooks/")) or request.accept_mimetypes.best == (
        "application/json"
    )


class RowId(IntegerConverter):
    """``<int:…>`` bounded to the ids' INTEGER columns (PostgreSQL's int4): a larger number is
    a 404, not a value the database refuses."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _refuse_nul_characters() -> None:
    """400 for a NUL character in the path, the query or a form field: PostgreSQL's text cannot
    hold one, so it would otherwise fail deep in a query (SQLite would store it)."""
    sources = [request.args, request.form] if request.mimetype in _FORM_TYPES else [request.args]
    fields = [request.path, *(f"{k}={v}" for data in sources for k, v in data.items(multi=True))]
    if any("\x00" in field for field in fields):
        abort(400, description="The request contains a NUL character (%00), which no field allows.")


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        if wants_json():
            return jsonify(error=error.name, message=error.description), error.code
        return error

    @app.errorhandler(sa.exc.OperationalError)
    def database_unavailable(error: sa.exc.OperationalError) -> Any:
        # A locked or unreachable database is a temporary condition: 503 makes callers
        # (SendGrid included) retry instead of dropping what they sent.
        log.error("database unavailable: %s", error.__class__.__name__)
        return jsonify(error="Service Unavailable", message="database unavailable; retry"), 503


def _register_cli(app: Flask) -> None:
    """``flask --app engine <command>`` offers the same commands as ``resistry``."""
    from engine.cli import main

    context = click.Context(main)
    for name in main.list_commands(context):
        command = main.get_command(context, name)
        if command is not None:
            app.cli.add_command(command, name)
