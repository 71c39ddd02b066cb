"""The staff admin UI under ``/admin``: login, home, users (experiments in
:mod:`variants.admin_experiments`, groups in :mod:`variants.admin_groups`).

Plain HTML forms that work without JavaScript; every form carries a CSRF token (Flask-WTF) and
every view declares its roles with :func:`engine.auth.require_roles`. Views only translate HTTP:
the rules are in the services, whose field errors are shown next to the fields.
"""

from __future__ import annotations

import functools
import secrets
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from engine.auth import (
    UserError,
    calling_user,
    create_user,
    issue_api_token,
    password_matches,
    require_roles,
)
from engine.db import get_session
from engine.models import Group, User
from engine.rate_limits import RateLimit
from variants import admin_alerts, admin_experiments, admin_groups
from variants.admin_forms import ActionForm, LoginForm, UserForm, choices
from variants.validation import NotFound

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")
ALL_ROLES = ("admin", "analyst", "group_manager")


LOGIN_LIMIT = "resistry.login_limit"


def init_app(app: Flask) -> None:
    """Rate-limit login attempts per client IP ([admin] login_rate_limit) against guessing."""
    settings = app.extensions["resistry.settings"]
    # One limit per app, so each app (and each test) starts with empty counters.
    app.extensions[LOGIN_LIMIT] = RateLimit(
        "login", settings.admin.login_rate_limit, settings.web.rate_limit_storage
    )


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Any:
    get_session().rollback()
    return render_template("admin/error.html", title="Not found", message=exc.args[0]), 404


def current_staff() -> User:
    """The logged-in user (views run after ``require_roles``)."""
    user = calling_user()
    assert user is not None
    return user


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_hex(16))


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: an open redirect would make the login page a phishing tool."""
    if not target:
        return None
    parts = urlsplit(target)
    unsafe = "\\" in target or not target.isprintable()  # a newline would split the header
    if parts.scheme or parts.netloc or not target.startswith("/") or unsafe:
        return None
    return None if target.startswith("//") else target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Public: the login form."""
    form = LoginForm()
    limit: RateLimit = current_app.extensions[LOGIN_LIMIT]
    if request.method == "POST" and not limit.hit(request.remote_addr or ""):
        form.form_errors.append("Too many login attempts. Please wait a minute and try again.")
        return render_template("admin/login.html", form=form), 429
    if form.validate_on_submit():
        session = get_session()
        user = session.scalar(sa.select(User).where(User.username == form.username.data.strip()))
        if user is None:
            # Check a password anyway, so the answer takes as long as for a real username.
            check_password_hash(_dummy_hash(), form.password.data)
        elif user.active and password_matches(user, form.password.data):
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or url_for("admin.home"))
        form.form_errors.append("Wrong username or password.")
        return render_template("admin/login.html", form=form), 401
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
@require_roles(*ALL_ROLES)
def logout() -> Any:
    if ActionForm().validate_on_submit():
        logout_user()
    return redirect(url_for("admin.login"))


@bp.get("/")
@require_roles(*ALL_ROLES)
def home() -> Any:
    """Group managers land on their group; everyone else on the experiments."""
    user = current_staff()
    if user.role == "group_manager" and user.group is not None:
        return redirect(url_for("admin.group", slug=user.group.slug))
    return redirect(url_for("admin.experiments"))


# --- users (admin only) ------------------------------------------------------------------------


def _user_form() -> UserForm:
    form = UserForm()
    slugs = get_session().scalars(sa.select(Group.slug).order_by(Group.slug))
    form.group.choices = choices([("", "—"), *((slug, slug) for slug in slugs)])
    return form


def _users_page(form: UserForm, status: int = 200, token: tuple[str, str] | None = None) -> Any:
    users = get_session().scalars(sa.select(User).order_by(User.username))
    return (
        render_template(
            "admin/users.html", users=list(users), form=form, action=ActionForm(), token=token
        ),
        status,
    )


@bp.get("/users")
@require_roles("admin")
def users() -> Any:
    return _users_page(_user_form())


@bp.post("/users")
@require_roles("admin")
def create_staff_user() -> Any:
    form = _user_form()
    if not form.validate_on_submit():
        return _users_page(form, 400)
    session = get_session()
    try:
        user = create_user(
            session, form.username.data, form.password.data, form.role.data, form.group.data
        )
    except UserError as exc:
        session.rollback()
        form.form_errors.append(str(exc))
        return _users_page(form, 422)
    session.commit()
    flash(f"Created {user.role} {user.username!r}.", "success")
    return redirect(url_for("admin.users"))


def _user_by_id(user_id: int) -> User:
    user = get_session().get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


@bp.post("/users/<int:user_id>/token")
@require_roles("admin")
def issue_user_token(user_id: int) -> Any:
    """Issue a new API token and show it once (the page is not cached)."""
    if not ActionForm().validate_on_submit():
        abort(400, description="the form expired; reload the page and try again")
    session = get_session()
    user = _user_by_id(user_id)
    token = issue_api_token(user)
    session.commit()
    response = render_template(
        "admin/token.html",
        title=f"API token for {user.username}",
        token=token,
        back=url_for("admin.users"),
        usage="Send it as “Authorization: Bearer <token>” to /api/v1.",
    )
    return response, 201, {"Cache-Control": "no-store"}


@bp.post("/users/<int:user_id>/active")
@require_roles("admin")
def toggle_user(user_id: int) -> Any:
    if not ActionForm().validate_on_submit():
        abort(400, description="the form expired; reload the page and try again")
    session = get_session()
    user = _user_by_id(user_id)
    if user.id == current_staff().id:
        flash("You cannot deactivate yourself.", "error")
        return redirect(url_for("admin.users"))
    user.active = not user.active
    session.commit()
    flash(f"{user.username!r} is now {'active' if user.active else 'inactive'}.", "success")
    return redirect(url_for("admin.users"))


admin_alerts.register(bp)
admin_experiments.register(bp)
admin_groups.register(bp)
