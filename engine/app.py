"""The application factory: the one place where engine, variants and webhooks are assembled."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask, jsonify, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException

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

    _register_blueprints(app)
    _register_error_handlers(app)
    _register_cli(app)
    return app


def settings_of(app: Flask) -> Settings:
    return app.extensions["resistry.settings"]


def _register_blueprints(app: Flask) -> None:
    from engine import health

    app.register_blueprint(health.bp)
    for module in _feature_modules():
        module.init_app(app)


def _feature_modules() -> list[Any]:
    """Each feature package exposes ``init_app(app)`` that registers its blueprints."""
    import importlib

    names = [
        "engine.auth",
        "variants.web",
        "webhooks.web",
        "engine.sending.web",
        "engine.reports.web",
    ]
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):  # a real error inside a module
                raise
    return modules


def wants_json() -> bool:
    """API and webhook callers get JSON errors; people get a page."""
    path = request.path
    return path.startswith(("/api/", "/webhooks/")) or request.accept_mimetypes.best == (
        "application/json"
    )


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
    from engine.cli import main

    for command in main.commands.values():
        app.cli.add_command(command)
