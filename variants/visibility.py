"""Earned visibility: the order in which the signup form lists the partner groups.

Groups that bring people to the shared site earn a better place on it. The formula, for each
active group g and each visitor v:

    generated(g) = number of distinct contacts who signed up during a visit that g sent (?g=g)
    score(g, v)  = max(floor, generated(g)) × exp(sigma × z(g, v))
    z(g, v)      = Φ⁻¹(u),  u = (first 8 bytes of SHA-256("<v>:<slug of g>") + 0.5) / 2⁶⁴

Groups are listed by descending score; ties go to the alphabetically first slug.

- ``floor`` (config ``[landing] visibility_floor``) lets a new or small group compete with groups
  that have brought up to ``floor`` contacts: below it, everyone is equal.
- ``z(g, v)`` is standard normal noise, so the ratio of two groups' scores is log-normal with
  ``sigma`` (``[landing] visibility_noise_sigma``): a group with half the contacts of another is
  still listed above it for a fair share of visitors. ``sigma = 0`` gives a strict ranking.
- The noise is a pure function of the visitor id and the group slug: the same visitor sees the
  same order on every visit, anyone holding the counts can recompute any visitor's order, and
  adding a group never reshuffles the noise of the others.

The order each signer saw is stored with each signup (``Signup.groups_order`` and ``position``),
so the effect of position on choice can be audited later.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Group, Signup, Visit

_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class GroupCard:
    """What the landing page shows of a group (a detached copy, safe to cache across requests)."""

    id: int
    slug: str
    name: str
    description: str
    roles: tuple[str, ...]
    website: str
    logo_url: str
    policy_areas: tuple[str, ...]
    generated: int


def generated_contacts(session: so.Session) -> dict[int, int]:
    """Return {group id: distinct contacts who signed up in a visit that group sent}.

    Counts only visits that led to at least one signup row, so a merged signup that added no new
    group does not count twice for the same person.
    """
    rows = session.execute(
        sa.select(Visit.source_group_id, sa.func.count(sa.distinct(Visit.contact_id)))
        .join(Signup, Signup.visit_id == Visit.id)
        .where(Visit.source_group_id.is_not(None))
        .group_by(Visit.source_group_id)
    )
    return {group_id: count for group_id, count in rows}


def load_group_cards(session: so.Session) -> list[GroupCard]:
    """Return the active groups, alphabetically by slug, with their generated-contact counts."""
    counts = generated_contacts(session)
    groups = session.scalars(sa.select(Group).where(Group.active).order_by(Group.slug))
    return [
        GroupCard(
            id=group.id,
            slug=group.slug,
            name=group.name,
            description=group.description,
            roles=tuple(group.roles or ()),
            website=group.website,
            logo_url=group.logo_url,
            policy_areas=tuple(group.policy_areas or ()),
            generated=counts.get(group.id, 0),
        )
        for group in groups
    ]


def noise(visitor_id: str, slug: str) -> float:
    """Return z(g, v): the visitor's standard normal draw for the group (see the module doc)."""
    return _noise(hashlib.sha256(f"{visitor_id}:{slug}".encode()).digest())


def _noise(digest: bytes) -> float:
    u = (int.from_bytes(digest[:8], "big") + 0.5) / 2.0**64
    return _STANDARD_NORMAL.inv_cdf(u)


def score(generated: int, z: float, *, floor: int, sigma: float) -> float:
    """Return max(floor, generated) × exp(sigma × z)."""
    return max(floor, generated) * math.exp(sigma * z)


def order_for_visitor(
    cards: Sequence[GroupCard], visitor_id: str, *, floor: int, sigma: float
) -> list[GroupCard]:
    """Return ``cards`` in the visitor's earned-visibility order (descending score, then slug)."""
    # Every new landing view orders the groups: the visitor's part of the hash is taken once,
    # and each group's digest continues from a copy of it (the same SHA-256 as noise()).
    visitor = hashlib.sha256(f"{visitor_id}:".encode())
    keyed = []
    for card in cards:
        digest = visitor.copy()
        digest.update(card.slug.encode())
        z = _noise(digest.digest())
        keyed.append((-score(card.generated, z, floor=floor, sigma=sigma), card.slug, card))
    keyed.sort(key=_SCORE_THEN_SLUG)
    return [card for _, _, card in keyed]


_SCORE_THEN_SLUG = operator.itemgetter(0, 1)


def explain(
    cards: Sequence[GroupCard], visitor_id: str, *, floor: int, sigma: float
) -> list[Mapping[str, object]]:
    """Return, per group in the visitor's order, the terms of the formula (for the audit page)."""
    rows = []
    for card in order_for_visitor(cards, visitor_id, floor=floor, sigma=sigma):
        z = noise(visitor_id, card.slug)
        rows.append(
            {
                "slug": card.slug,
                "name": card.name,
                "generated": card.generated,
                "base": max(floor, card.generated),
                "noise": z,
                "score": score(card.generated, z, floor=floor, sigma=sigma),
            }
        )
    return rows
