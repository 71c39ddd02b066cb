"""Placeholder: being written."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("admin", __name__, url_prefix="/admin" or None, template_folder="templates")


def init_app(app: Flask) -> None:
    """Extra per-app setup (limiters, caches); nothing yet."""
