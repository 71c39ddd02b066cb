"""Admin UI page for alerts: every one, newest first, and resolving one (admins only).

While an alert pauses sending, every admin page says so (the banner reads ``pausing_alert``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from engine import alerts
from engine.auth import calling_user, require_roles
from engine.db import get_session
from engine.models import Alert, utcnow
from variants.admin_forms import ActionForm
from variants.validation import NotFound


def register(bp: Blueprint) -> None:
    """Add the alert pages, and the banner's alert, to the admin blueprint."""
    bp.add_url_rule("/alerts", endpoint="alerts", view_func=alerts_page, methods=["GET"])
    bp.add_url_rule(
        "/alerts/<int:alert_id>/resolve",
        endpoint="resolve_alert",
        view_func=resolve_alert,
        methods=["POST"],
    )
    bp.context_processor(_banner)


def _banner() -> dict[str, Alert | None]:
    user = calling_user()
    if user is None or user.role not in ("admin", "analyst"):
        return {"pausing_alert": None}
    return {"pausing_alert": alerts.pausing_alert(get_session())}


@require_roles("admin", "analyst")
def alerts_page() -> Any:
    rows = alerts.list_alerts(get_session(), include_resolved=True)
    return render_template("admin/alerts.html", alerts=rows, action=ActionForm())


@require_roles("admin")
def resolve_alert(alert_id: int) -> Any:
    if not ActionForm().validate_on_submit():
        abort(400, description="the form expired; reload the page and try again")
    session = get_session()
    try:
        alert = alerts.resolve_alert(session, alert_id, utcnow())
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    session.commit()
    flash(f"Alert #{alert.id} resolved.", "success")
    return redirect(url_for("admin.alerts"))
