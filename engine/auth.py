"""Who is calling: staff sessions (Flask-Login), API bearer tokens, partner group tokens.

Roles: ``admin`` (everything), ``analyst`` (aggregates only, never an email address),
``group_manager`` (its own group's contacts only). Views declare who may call them with
:func:`require_roles`; a missing login is 401 (API) or a redirect to the login page (HTML),
a wrong role is 403.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar

import click
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask, abort, g, redirect, request, url_for
from flask_login import LoginManager, current_user
from werkzeug.security import check_password_hash, generate_password_hash

from engine.db import get_session
from engine.models import ROLES, Group, User
from engine.runtime import Runtime, pass_runtime

F = TypeVar("F", bound=Callable[..., Any])
login_manager = LoginManager()
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.session_protection = "strong"


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    user = get_session().get(User, int(user_id))
    return user if user is not None and user.active else None


# --- secrets -----------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def password_matches(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


def hash_token(token: str) -> str:
    """API tokens are stored as SHA-256: they are long random strings, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


# --- who is calling ----------------------------------------------------------------------------


def calling_user() -> User | None:
    """The staff user behind this request: a bearer token, or a session for safe methods only.

    Sessions are refused for unsafe API methods because the API is exempt from CSRF checks.
    """
    if "calling_user" in g:
        return g.calling_user
    user: User | None = None
    token = bearer_token()
    if token is not None:
        user = get_session().scalar(
            sa.select(User).where(User.api_token_hash == hash_token(token), User.active)
        )
    elif current_user.is_authenticated and (
        not request.path.startswith("/api/") or request.method in SAFE_METHODS
    ):
        user = current_user._get_current_object()
    g.calling_user = user
    return user


def calling_group() -> Group | None:
    """The partner group whose API token is on this request, if any."""
    token = bearer_token()
    if token is None:
        return None
    return get_session().scalar(
        sa.select(Group).where(Group.api_token_hash == hash_token(token), Group.active)
    )


def require_roles(*roles: str) -> Callable[[F], F]:
    """Allow only users with one of ``roles``: 401/login redirect without a user, 403 otherwise."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = calling_user()
            if user is None:
                if request.path.startswith("/api/"):
                    abort(401, description=_unauthenticated_message())
                return redirect(url_for(login_manager.login_view, next=request.full_path))
            if user.role not in roles:
                abort(403, description=f"role {user.role!r} may not do this")
            return view(*args, **kwargs)

        wrapper.allowed_roles = roles  # type: ignore[attr-defined]  # read by the access tests
        return wrapper  # type: ignore[return-value]

    return decorator


def _unauthenticated_message() -> str:
    if bearer_token() is None:
        return "authentication required: send a bearer token"
    if calling_group() is not None:  # the group's token serves /assign and /convert only
        return (
            "this is a partner group's token, for /api/v1/assign and /api/v1/convert; this"
            " route takes a staff user's token (for contacts: a group manager's, issued under"
            " Admin → Users)"
        )
    return "the bearer token is not valid (or its user is inactive)"


def require_group_token(view: F) -> F:
    """Partner endpoints: the group's API token is required; the group is passed as ``group``."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        group = calling_group()
        if group is None:
            abort(401, description="a valid group API token is required")
        return view(*args, group=group, **kwargs)

    return wrapper  # type: ignore[return-value]


# --- services ----------------------------------------------------------------------------------


class UserError(ValueError):
    """A user cannot be created as asked; the message says why."""


def create_user(
    session: so.Session, username: str, password: str, role: str, group_slug: str | None = None
) -> User:
    """Create a staff user; raises :class:`UserError` for a bad name, role, group or duplicate."""
    username = username.strip()
    if not username:
        raise UserError("username must not be empty")
    if len(username) > 120:  # users.username is VARCHAR(120)
        raise UserError("username must be at most 120 characters")
    # Category C: control, format, surrogate, private-use and unassigned characters.
    if any(unicodedata.category(char).startswith("C") for char in username):
        raise UserError("username must not contain control characters")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 10:
        raise UserError("password must be at least 10 characters")
    group = None
    if role == "group_manager":
        if not group_slug:
            raise UserError("a group manager needs --group")
        group = session.scalar(sa.select(Group).where(Group.slug == group_slug))
        if group is None:
            raise UserError(f"no group with slug {group_slug!r}")
    if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise UserError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role, group=group)
    session.add(user)
    session.flush()
    return user


def issue_api_token(user: User) -> str:
    """Give ``user`` a new API token (the old one stops working); returns it once, in clear."""
    token = new_token()
    user.api_token_hash = hash_token(token)
    return token


@click.group()
def users() -> None:
    """Staff users."""


@users.command("create")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(ROLES), default="admin", show_default=True)
@click.option("--group", "group_slug", help="Group slug (group managers only).")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--api-token", is_flag=True, help="Also print a new API token.")
@pass_runtime
def users_create(
    runtime: Runtime,
    username: str,
    role: str,
    group_slug: str | None,
    password: str,
    api_token: bool,
) -> None:
    """Create a user (``resistry users create --username ada`` makes the first admin)."""
    with runtime.sessions.begin() as session:
        try:
            user = create_user(session, username, password, role, group_slug)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        token = issue_api_token(user) if api_token else None
    click.echo(f"created {role} {username!r}")
    if token:
        click.echo(f"API token (shown once): {token}")
