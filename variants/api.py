"""Placeholder: being written."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("api", __name__, url_prefix="/api/v1" or None, template_folder="templates")


def init_app(app: Flask) -> None:
    """Extra per-app setup (limiters, caches); nothing yet."""
