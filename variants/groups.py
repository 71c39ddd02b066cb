"""Partner groups: create, change, look up, and issue the API token of their partner endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.auth import hash_token, new_token
from engine.models import Group, Signup
from variants.validation import NotFound, ValidationError, clean_group


@dataclass(frozen=True)
class GroupSummary:
    """A group with the number of contacts who ticked it (an aggregate, no PII)."""

    group: Group
    signups: int


def get_group(session: so.Session, slug: str) -> Group:
    """The group with ``slug``; raises :class:`NotFound`."""
    group = session.scalar(sa.select(Group).where(Group.slug == slug))
    if group is None:
        raise NotFound(f"no group with slug {slug!r}")
    return group


def list_groups(session: so.Session) -> list[GroupSummary]:
    """Every group, by name, with its signup count."""
    signups = (
        sa.select(Signup.group_id, sa.func.count().label("n")).group_by(Signup.group_id).subquery()
    )
    rows = session.execute(
        sa.select(Group, signups.c.n)
        .outerjoin(signups, signups.c.group_id == Group.id)
        .order_by(Group.name, Group.id)
    )
    return [GroupSummary(group, count or 0) for group, count in rows]


def signup_count(session: so.Session, group: Group) -> int:
    """How many contacts ticked ``group``."""
    return session.scalar(
        sa.select(sa.func.count()).select_from(Signup).where(Signup.group_id == group.id)
    )


def create_group(session: so.Session, data: Mapping[str, Any]) -> Group:
    """Create a group from ``data`` and return it.

    Raises :class:`ValidationError` for bad fields or a slug already used.
    """
    cleaned = clean_group(data)
    if session.scalar(sa.select(Group.id).where(Group.slug == cleaned["slug"])) is not None:
        raise ValidationError({"slug": f"a group with slug {cleaned['slug']!r} exists"})
    group = Group(**{"roles": [], "policy_areas": [], **cleaned})
    session.add(group)
    session.flush()
    return group


def update_group(session: so.Session, group: Group, data: Mapping[str, Any]) -> list[str]:
    """Change the given fields of ``group``; returns the names of the fields that changed.

    The slug cannot change: partners' links (``?g=slug``) and API paths carry it. Raises
    :class:`ValidationError` for bad fields or a new slug.
    """
    if "slug" in data and data["slug"] != group.slug:
        raise ValidationError({"slug": "cannot be changed (partners' links carry it)"})
    cleaned = clean_group(data, partial=True)
    cleaned.pop("slug", None)
    changed = sorted(name for name, value in cleaned.items() if getattr(group, name) != value)
    for name in changed:
        setattr(group, name, cleaned[name])
    session.flush()
    return changed


def issue_group_token(session: so.Session, group: Group) -> str:
    """Give ``group`` a new API token for the partner endpoints (the old one stops working).

    Returns the token in clear: it is stored only as a hash, so this is the one time it is seen.
    """
    token = new_token()
    group.api_token_hash = hash_token(token)
    session.flush()
    return token
