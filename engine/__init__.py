"""The conversion engine: settings, database, statistics, policy, sending, reports, CLI, app.

``flask --app engine`` finds :func:`create_app` here. Importing this package does nothing else;
the pure modules (``engine.stats``, ``engine.policy``) import no web or database code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None, **kwargs: Any) -> Flask:
    """Build the Flask application (see :func:`engine.app.create_app`)."""
    from engine.app import create_app as build

    return build(test_config, **kwargs)
