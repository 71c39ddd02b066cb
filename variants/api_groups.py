"""JSON API for partner groups, their contacts, and staff users (registered on the ``api`` bp).

Contacts carry email addresses, so only admins (any group) and a group's own managers may pull
them; analysts never can.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, jsonify, request

from engine.auth import UserError, calling_user, create_user, issue_api_token, require_roles
from engine.db import get_session
from engine.models import User
from variants import contacts_export, groups
from variants.api_support import json_object
from variants.serialize import group_json, user_json
from variants.validation import NotFound, ValidationError


def register(bp: Blueprint) -> None:
    """Add the group, contact and user routes to ``bp``."""
    for rule, view, methods in (
        ("/me", me, ["GET"]),
        ("/groups", list_groups, ["GET"]),
        ("/groups", create_group, ["POST"]),
        ("/groups/<slug>", get_group, ["GET"]),
        ("/groups/<slug>", update_group, ["PATCH"]),
        ("/groups/<slug>/token", issue_group_token, ["POST"]),
        ("/groups/<slug>/contacts", group_contacts, ["GET"]),
        ("/users", list_users, ["GET"]),
        ("/users", create_staff_user, ["POST"]),
        ("/users/<username>", update_user, ["PATCH"]),
        ("/users/<username>/token", issue_user_token, ["POST"]),
    ):
        bp.add_url_rule(rule, view_func=view, methods=methods)


@require_roles("admin", "analyst", "group_manager")
def me() -> Any:
    """Who the token or session belongs to."""
    user = calling_user()
    assert user is not None
    return jsonify(user_json(user))


@require_roles("admin", "analyst")
def list_groups() -> Any:
    summaries = groups.list_groups(get_session())
    return jsonify(groups=[group_json(s.group, s.signups) for s in summaries])


@require_roles("admin")
def create_group() -> Any:
    session = get_session()
    group = groups.create_group(session, json_object())
    session.commit()
    return jsonify(group_json(group, 0)), 201


@require_roles("admin", "analyst")
def get_group(slug: str) -> Any:
    session = get_session()
    group = groups.get_group(session, slug)
    return jsonify(group_json(group, groups.signup_count(session, group)))


@require_roles("admin")
def update_group(slug: str) -> Any:
    session = get_session()
    group = groups.get_group(session, slug)
    changed = groups.update_group(session, group, json_object())
    session.commit()
    return jsonify({**group_json(group, groups.signup_count(session, group)), "changed": changed})


@require_roles("admin")
def issue_group_token(slug: str) -> Any:
    """A new token for the group's partner endpoints, shown this once (the old one stops)."""
    session = get_session()
    group = groups.get_group(session, slug)
    token = groups.issue_group_token(session, group)
    session.commit()
    return jsonify(group=group.slug, token=token), 201


@require_roles("admin", "group_manager")
def group_contacts(slug: str) -> Any:
    """Contacts who ticked the group, with consent text and time; paginated by ``since``."""
    session = get_session()
    group = groups.get_group(session, slug)
    user = calling_user()
    assert user is not None
    if not contacts_export.may_pull_contacts(user, group):
        abort(403, description="you may pull only your own group's contacts")
    limit_text = request.args.get("limit", str(contacts_export.PAGE_SIZE))
    if (
        not (limit_text.isascii() and limit_text.isdigit())
        or not 1 <= int(limit_text) <= contacts_export.MAX_PAGE_SIZE
    ):
        abort(400, description=f"limit must be 1-{contacts_export.MAX_PAGE_SIZE}")
    page = contacts_export.contacts_page(
        session, group, request.args.get("since") or None, int(limit_text)
    )
    return jsonify(
        group=group.slug,
        contacts=[contact.as_json() for contact in page.contacts],
        next_cursor=page.next_cursor,
        has_more=page.has_more,
    )


# --- staff users -------------------------------------------------------------------------------


def _user(username: str) -> User:
    user = get_session().scalar(sa.select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


@require_roles("admin")
def list_users() -> Any:
    users = get_session().scalars(sa.select(User).order_by(User.username))
    return jsonify(users=[user_json(user) for user in users])


@require_roles("admin")
def create_staff_user() -> Any:
    data, session = json_object(), get_session()
    fields = {name: data.get(name) for name in ("username", "password", "role", "group")}
    texts = ("username", "password", "role")
    if not all(isinstance(fields[name], str) for name in texts) or not isinstance(
        fields["group"], str | None
    ):
        raise ValidationError({"user": "username, password and role are required text fields"})
    try:
        user = create_user(
            session, fields["username"], fields["password"], fields["role"], fields["group"]
        )
    except UserError as exc:
        raise ValidationError({"user": str(exc)}) from None
    token = issue_api_token(user) if data.get("api_token") is True else None
    session.commit()
    return jsonify({**user_json(user), **({"token": token} if token else {})}), 201


@require_roles("admin")
def update_user(username: str) -> Any:
    """Activate or deactivate a user (``{"active": false}``); a deactivated user cannot log in."""
    data, session = json_object(), get_session()
    user = _user(username)
    if set(data) != {"active"} or not isinstance(data["active"], bool):
        raise ValidationError({"active": 'send {"active": true} or {"active": false}'})
    if user.id == calling_user().id and not data["active"]:  # type: ignore[union-attr]
        raise ValidationError({"active": "you cannot deactivate yourself"})
    user.active = data["active"]
    session.commit()
    return jsonify(user_json(user))


@require_roles("admin")
def issue_user_token(username: str) -> Any:
    """A new API token for the user, shown this once (the old one stops working)."""
    session = get_session()
    user = _user(username)
    token = issue_api_token(user)
    session.commit()
    return jsonify(username=user.username, token=token), 201
