"""Registers the variants blueprints: landing and signup, partner API, staff API, admin UI."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from engine.app import csrf
    from variants import admin, api, landing, partner_api

    app.register_blueprint(landing.bp)
    app.register_blueprint(admin.bp)
    # The JSON APIs authenticate with bearer tokens, never cookies, so CSRF does not apply.
    csrf.exempt(api.bp)
    csrf.exempt(partner_api.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(partner_api.bp)
    for hook in (landing.init_app, admin.init_app, api.init_app, partner_api.init_app):
        hook(app)
