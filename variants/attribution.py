"""Who sent a visitor, the visit that records it, and the credit when the visit converts.

A landing link may carry, in any combination:

- ``?g=<group slug>``: the partner group that sent the visitor (an active group, else ignored);
- ``?r=<recruiter code>``: the recruiter whose personal link it is (an active recruiter);
- ``?t=<token>``: a signed send token (:data:`engine.tokens.SEND`) from a link in one of our
  emails, valid for ``[web] send_token_days``;
- ``?s=<token>``: a signed share token (:data:`engine.tokens.SHARE`) naming the share-text
  variant that carried a recruiter's link; it only counts together with a valid ``?r=``.

Anything forged, tampered, expired or unknown is dropped silently: it is never credited.
Each visit is one trial of its landing variant. When the visit leads to a signup,
:func:`credit_conversion` credits, once per visit, the landing variant (outcome ``signup``), the
send (:func:`engine.outcomes.credit_signup`) and the share-text variant of a friend who came
through a recruiter's link (not the recruiter signing up through their own link).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import outcomes, tokens
from engine.models import Experiment, Recruiter, Send, Variant, Visit
from engine.reports import rollup_visits, rollups
from variants import landing_visits

MAX_PARAM_LENGTH = 512


@dataclass(frozen=True)
class Attribution:
    """The verified sources of a visit (``None`` where the link named nothing valid)."""

    source_group_id: int | None = None
    recruiter_id: int | None = None
    send_id: int | None = None
    share_variant_id: int | None = None

    @property
    def is_empty(self) -> bool:
        return self == Attribution()


def resolve_attribution(
    session: so.Session,
    params: Mapping[str, str],
    *,
    secret_key: str,
    send_token_max_age_seconds: float,
    group_ids_by_slug: Mapping[str, int],
) -> Attribution:
    """Verify ``g``, ``r``, ``t`` and ``s`` from a landing URL; return what checks out.

    ``group_ids_by_slug`` holds the active groups (the landing page has them cached), so a plain
    ``?g=`` link costs no query. Never raises for bad input: bad parts are dropped.
    """

    def param(name: str) -> str:
        value = params.get(name) or ""
        return value.strip() if len(value) <= MAX_PARAM_LENGTH else ""

    source_group_id = group_ids_by_slug.get(param("g")) if param("g") else None

    recruiter_id = None
    code = param("r")
    if code and len(code) <= 32:
        recruiter_id = session.scalar(
            sa.select(Recruiter.id).where(Recruiter.code == code, Recruiter.active)
        )

    send_id = None
    if param("t"):
        claimed = tokens.read(secret_key, tokens.SEND, param("t"), send_token_max_age_seconds)
        if claimed is not None:
            send_id = session.scalar(sa.select(Send.id).where(Send.id == claimed))

    share_variant_id = None
    if recruiter_id is not None and param("s"):
        # Shared links live on in posts and chats, so share tokens do not expire.
        claimed = tokens.read(secret_key, tokens.SHARE, param("s"), None)
        if claimed is not None:
            share_variant_id = session.scalar(
                sa.select(Variant.id)
                .join(Experiment, Experiment.id == Variant.experiment_id)
                .where(Variant.id == claimed, Experiment.kind == "share")
            )
    return Attribution(source_group_id, recruiter_id, send_id, share_variant_id)


def new_visit(
    visitor_id: str, landing_variant_id: int | None, attribution: Attribution, now: datetime
) -> landing_visits.NewVisit:
    """The visit to record for a view of ``landing_variant_id`` attributed to ``attribution``
    (:mod:`variants.landing_visits` writes it: the site's hottest write)."""
    return landing_visits.NewVisit(
        visitor_id=visitor_id,
        landing_variant_id=landing_variant_id,
        created_at=now,
        source_group_id=attribution.source_group_id,
        recruiter_id=attribution.recruiter_id,
        send_id=attribution.send_id,
        share_variant_id=attribution.share_variant_id,
    )


def credit_conversion(
    session: so.Session,
    visit_id: int,
    contact_id: int,
    now: datetime,
    changes: rollups.RollupChanges | None = None,
) -> bool:
    """Mark the visit converted by ``contact_id`` and credit what attributed it, once per visit.

    Returns ``True`` if this call converted the visit, ``False`` if it had converted before or
    does not exist. The report rollups' increments go to ``changes`` when given (the caller
    applies them last, see :mod:`engine.reports.rollups`), else they are applied here.
    """
    converted = session.execute(
        sa.update(Visit)
        .where(Visit.id == visit_id, Visit.converted_at.is_(None))
        .values(contact_id=contact_id, converted_at=now)
        .returning(
            Visit.landing_variant_id,
            Visit.send_id,
            Visit.recruiter_id,
            Visit.share_variant_id,
            Visit.source_group_id,
            Visit.created_at,
        )
    ).first()
    if converted is None:
        return False
    own = changes is None
    changes = changes or rollups.RollupChanges()
    if converted.send_id is not None:
        rollups.lock_send(session, converted.send_id)  # sends before variants
    if converted.landing_variant_id is not None:
        outcomes.credit(session, "signup", {converted.landing_variant_id: 1})
    if converted.send_id is not None:
        outcomes.credit_signup(session, converted.send_id, now, changes)
    if converted.share_variant_id is not None and converted.recruiter_id is not None:
        recruiter_contact = session.scalar(
            sa.select(Recruiter.contact_id).where(Recruiter.id == converted.recruiter_id)
        )
        if recruiter_contact != contact_id:  # a friend, not the recruiter themself
            outcomes.credit(session, "signup", {converted.share_variant_id: 1})
    visit = rollup_visits.VisitFacts(
        visit_id,
        converted.created_at,
        converted.landing_variant_id,
        converted.source_group_id,
        converted.recruiter_id,
        converted.send_id,
    )
    rollup_visits.record_conversion(session, changes, visit, contact_id, now)
    if own:
        changes.apply(session)
    return True
