"""Placeholder: being written."""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("landing", __name__, url_prefix="" or None, template_folder="templates")


def init_app(app: Flask) -> None:
    """Extra per-app setup (limiters, caches); nothing yet."""
