"""Who gets which variants in a recruiter mailing: one vectorized Thompson draw per experiment.

Experiments considered: kinds ``subject``, ``body`` and ``share`` with status ``running`` or
``promoted``. When several qualify for one kind, a running experiment is preferred to a promoted
one (it still has something to learn) and, among equals, the oldest (lowest id) is used: it has
the most data and should finish first; the others wait their turn. A subject and a body are
required (an email needs both); the share text is optional.

Per experiment: promoted → the winner only; running → live variants only (paused and retired
get nothing), allocated in one vectorized draw (:func:`engine.policy.assign_batch`) by the
policy's Thompson weights over the current posteriors (:func:`engine.decisions.allocate`:
delay-weighted trials, burn-in, floors, guardrails), with a seeded ``numpy.random.Generator``
when the caller wants repeatable plans.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import decisions, suppressions
from engine.models import Contact, Experiment, Recruiter, Send, Suppression, Variant
from engine.sending import sends_sql
from engine.sending.composer import Arm
from engine.settings import Settings

MAIL_KINDS = ("subject", "body", "share")
REQUIRED_KINDS = ("subject", "body")


class PlanError(RuntimeError):
    """Nothing can be planned (no subject or body experiment to send); the message says why."""


@dataclass
class Plan:
    """Recipients and the variant ids drawn for each, per kind (``None`` when no experiment)."""

    recruiter_ids: list[int]
    variants: dict[str, list[int] | None]
    arms: dict[int, Arm]
    suppressed: int = 0
    experiments: dict[str, str] = field(default_factory=dict)  # kind → experiment key

    def summary(self) -> dict[str, Any]:
        """Recipients per variant of each kind, and per variant combination (for the record)."""
        return summarize(self.variants, self.arms, len(self.recruiter_ids), self.suppressed)


def summarize(
    variants: dict[str, list[int] | None], arms: dict[int, Arm], recipients: int, suppressed: int
) -> dict[str, Any]:
    """The plan as stored on the mailing and printed by ``resistry mailing send``."""
    by_variant = {
        kind: {arms[vid].label: n for vid, n in sorted(Counter(ids).items())}
        for kind, ids in variants.items()
        if ids is not None
    }
    columns = [(kind, ids) for kind, ids in variants.items() if ids is not None]
    combos = Counter(zip(*(ids for _, ids in columns), strict=True)) if columns else Counter()
    by_combination = [
        {**{kind: arms[vid].label for (kind, _), vid in zip(columns, combo, strict=True)}, "n": n}
        for combo, n in sorted(combos.items())
    ]
    return {
        "recipients": recipients,
        "suppressed": suppressed,
        "by_variant": by_variant,
        "by_combination": by_combination,
    }


def chosen_experiments(session: so.Session) -> dict[str, Experiment]:
    """The experiment used for each mail kind (see the module docstring for the rule)."""
    candidates = session.scalars(
        sa.select(Experiment)
        .where(Experiment.kind.in_(MAIL_KINDS), Experiment.status.in_(("running", "promoted")))
        .order_by(Experiment.id)
    )
    chosen: dict[str, Experiment] = {}
    for experiment in candidates:
        current = chosen.get(experiment.kind)
        if current is None or (current.status == "promoted" and experiment.status == "running"):
            chosen[experiment.kind] = experiment
    return chosen


def arm_of(experiment: Experiment, variant: Variant) -> Arm:
    return Arm(
        variant_id=variant.id,
        label=f"{experiment.key}/{variant.key}",
        name=f"{experiment.key}/{variant.key}",
        content=dict(variant.content),
    )


def eligible_recruiters(
    session: so.Session, asm_group_id: int, mailing_id: int | None = None
) -> tuple[list[int], int]:
    """Active recruiters who may be mailed, and how many were left out as suppressed.

    Excludes addresses suppressed globally or for ``asm_group_id`` and recruiters who already
    have a send in ``mailing_id``. Returns ``(recruiter ids in id order, suppressed count)``.
    The database matches the suppressions (contact addresses are stored normalized, as
    suppressions are), so 100,000 addresses never travel to Python and back.
    """
    scopes = (suppressions.GLOBAL, suppressions.asm_scope(asm_group_id))
    suppressed = (
        sa.select(Suppression.id)
        .where(
            Suppression.email == Contact.email,
            Suppression.active,
            Suppression.scope.in_(scopes),
        )
        .exists()
    )
    query = (
        sa.select(Recruiter.id, suppressed)
        .join(Contact, Contact.id == Recruiter.contact_id)
        .where(Recruiter.active)
        .order_by(Recruiter.id)
    )
    if mailing_id is not None:
        already = sa.select(Send.recruiter_id).where(Send.mailing_id == mailing_id)
        query = query.where(Recruiter.id.not_in(already))
    rows = sends_sql.plain_rows(session, query)
    kept = [recruiter_id for recruiter_id, blocked in rows if not blocked]
    return kept, len(rows) - len(kept)


def draw_variants(
    session: so.Session,
    settings: Settings,
    experiment: Experiment,
    count: int,
    rng: np.random.Generator,
    now: datetime,
) -> tuple[list[int], list[Variant]]:
    """Variant ids for ``count`` recipients from one experiment, and the variants that may win.

    Raises :class:`PlanError` when the experiment has no variant that may be sent.
    """
    if experiment.status == "promoted":
        winner = decisions.winner_of(session, experiment)
        if winner is None:
            raise PlanError(f"experiment {experiment.key!r} is promoted but names no winner")
        return [winner.id] * count, [winner]
    try:
        drawn_from, ids = decisions.allocate(session, settings, experiment, count, rng, now)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    return ids, drawn_from


def draw_plan(
    session: so.Session,
    settings: Settings,
    *,
    asm_group_id: int,
    rng: np.random.Generator,
    now: datetime,
    mailing_id: int | None = None,
) -> Plan:
    """Pick recipients and draw their variants; reads only (nothing is stored).

    Raises :class:`PlanError` when a required kind has no experiment to send.
    """
    experiments = chosen_experiments(session)
    missing = [kind for kind in REQUIRED_KINDS if kind not in experiments]
    if missing:
        raise PlanError(
            f"no running or promoted {' or '.join(missing)} experiment: nothing to send"
        )
    recruiter_ids, suppressed = eligible_recruiters(session, asm_group_id, mailing_id)
    variants: dict[str, list[int] | None] = {}
    arms: dict[int, Arm] = {}
    for kind in MAIL_KINDS:
        experiment = experiments.get(kind)
        if experiment is None:
            variants[kind] = None
            continue
        ids, drawn_from = draw_variants(session, settings, experiment, len(recruiter_ids), rng, now)
        variants[kind] = ids
        arms.update({variant.id: arm_of(experiment, variant) for variant in drawn_from})
    return Plan(
        recruiter_ids=recruiter_ids,
        variants=variants,
        arms=arms,
        suppressed=suppressed,
        experiments={kind: experiment.key for kind, experiment in experiments.items()},
    )
