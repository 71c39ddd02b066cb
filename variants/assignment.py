"""Which variant a visitor or a partner's unit gets, from a per-process cached posterior.

The landing page must not read the database to choose a variant: an :class:`ExperimentSnapshot`
(live variant ids, Beta posterior α/β per variant, Thompson weights, status, winner) is loaded
once and kept by a :class:`~variants.landing_state.PosteriorCache` for ``[landing]
posterior_refresh_seconds``. Choosing is Thompson sampling on the experiment's metric (signups
per visit for landing pages): the snapshot holds :mod:`engine.policy`'s Thompson weights (each
arm's P(best) with the experiment's floor; an even split during burn-in), and each new visitor or
unit is one draw from them with an explicit ``numpy.random.Generator`` (:func:`choose_arm`).

Rules:
- Only experiments with status ``running`` (explore: Thompson sampling over the live variants)
  or ``promoted`` (exploit: the winner only) serve variants.
- A stored choice (a visitor's cookie, a partner's :class:`~engine.models.Assignment`) is kept as
  long as it is still servable: its variant is live and, once an experiment is promoted, is the
  winner. Otherwise a new choice is made and counted as a new trial, so paused variants (a
  guardrail) and promotions take effect for everyone.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import nh3
import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import outcomes, policy
from engine.models import Assignment, Decision, Experiment, Variant
from variants.signup import insert_unless_exists

SERVING_STATUSES = ("running", "promoted")


@dataclass(frozen=True)
class ArmSnapshot:
    """One live variant as the chooser sees it: posterior Beta(alpha, beta) and its content."""

    variant_id: int
    key: str
    name: str
    content: Mapping[str, Any]
    alpha: float
    beta: float
    trials: int
    weight: float


@dataclass(frozen=True)
class ExperimentSnapshot:
    """An experiment's live arms at load time; ``winner_id`` is set once it is promoted."""

    experiment_id: int
    key: str
    kind: str
    metric: str
    status: str
    burn_in: int
    floor: float
    arms: tuple[ArmSnapshot, ...]
    winner_id: int | None = None
    _by_id: dict[int, ArmSnapshot] = field(default_factory=dict, repr=False, compare=False)
    # Each arm's share of new units (see allocation()), computed once when the snapshot is made.
    weights: np.ndarray = field(init=False, repr=False, compare=False)
    # Running sums of the weights, so one draw is a uniform number and a bisection.
    cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({arm.variant_id: arm for arm in self.arms})
        weights = allocation(self.arms, burn_in=self.burn_in, floor=self.floor)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "cumulative", tuple(np.cumsum(weights).tolist()))

    def arm(self, variant_id: int | None) -> ArmSnapshot | None:
        """The live arm with this variant id, or ``None``."""
        return self._by_id.get(variant_id) if variant_id is not None else None

    def servable(self, variant_id: int | None) -> ArmSnapshot | None:
        """The arm if a stored choice of ``variant_id`` may still be served, else ``None``."""
        if self.winner_id is not None and variant_id != self.winner_id:
            return None
        return self.arm(variant_id)


def winner_of(session: so.Session, experiment: Experiment) -> int | None:
    """The promoted variant: the latest ``promote`` decision, else the live variant of most weight.

    Returns ``None`` for an experiment that is not promoted or has no live variant.
    """
    if experiment.status != "promoted":
        return None
    decided = session.scalar(
        sa.select(Decision.variant_id)
        .where(Decision.experiment_id == experiment.id, Decision.kind == "promote")
        .order_by(Decision.created_at.desc(), Decision.id.desc())
        .limit(1)
    )
    if decided is not None:
        return decided
    return session.scalar(
        sa.select(Variant.id)
        .where(Variant.experiment_id == experiment.id, Variant.status == "live")
        .order_by(Variant.weight.desc(), Variant.id)
        .limit(1)
    )


def load_snapshot(session: so.Session, experiment: Experiment) -> ExperimentSnapshot:
    """Read the experiment's live variants and their counters into a detached snapshot.

    Landing content is sanitized here (once per refresh), so pages can mark it safe.
    """
    winner_id = winner_of(session, experiment)
    variants = session.scalars(
        sa.select(Variant)
        .where(Variant.experiment_id == experiment.id, Variant.status == "live")
        .order_by(Variant.id)
    ).all()
    if winner_id is not None and all(v.id != winner_id for v in variants):
        winner = session.get(Variant, winner_id)
        variants = [winner] if winner is not None else []
    arms = tuple(
        ArmSnapshot(
            variant_id=v.id,
            key=v.key,
            name=v.name,
            content=_safe_content(experiment.kind, v.content or {}),
            alpha=experiment.prior_alpha + v.successes,
            beta=experiment.prior_beta + max(v.trials - v.successes, 0),
            trials=v.trials,
            weight=v.weight,
        )
        for v in variants
    )
    return ExperimentSnapshot(
        experiment_id=experiment.id,
        key=experiment.key,
        kind=experiment.kind,
        metric=experiment.metric,
        status=experiment.status,
        burn_in=experiment.burn_in,
        floor=experiment.floor,
        arms=arms,
        winner_id=winner_id,
    )


def _safe_content(kind: str, content: Mapping[str, Any]) -> dict[str, Any]:
    if kind != "landing":
        return dict(content)
    safe = dict(content)
    if isinstance(safe.get("body"), str):
        safe["body"] = nh3.clean(safe["body"])
    return safe


def load_landing_snapshot(session: so.Session) -> ExperimentSnapshot | None:
    """The landing experiment to serve: a running one first (newest), else the newest promoted.

    Returns ``None`` when no landing experiment is running or promoted.
    """
    experiment = session.scalar(
        sa.select(Experiment)
        .where(Experiment.kind == "landing", Experiment.status.in_(SERVING_STATUSES))
        .order_by((Experiment.status == "running").desc(), Experiment.id.desc())
        .limit(1)
    )
    return load_snapshot(session, experiment) if experiment is not None else None


def choose_arm(snapshot: ExperimentSnapshot, rng: np.random.Generator) -> ArmSnapshot | None:
    """Pick an arm: the winner once promoted, else one Thompson draw over the live arms.

    Returns ``None`` when the experiment has no live variant.
    """
    if not snapshot.arms:
        return None
    if snapshot.winner_id is not None:
        return snapshot.arm(snapshot.winner_id)
    # For one unit, engine.policy.assign_batch is exactly this draw (arm i with probability
    # weight i), but its array set-up costs 20 µs on every landing view; this costs 1 µs.
    cumulative = snapshot.cumulative
    index = bisect.bisect_right(cumulative, float(rng.random()) * cumulative[-1])
    return snapshot.arms[min(index, len(cumulative) - 1)]


def allocation(arms: tuple[ArmSnapshot, ...], *, burn_in: int, floor: float) -> np.ndarray:
    """Each live arm's share of new units: even during burn-in, then Thompson weights.

    Burn-in lasts until every live arm has ``burn_in`` trials. Thompson weights
    (:func:`engine.policy.thompson_weights`) are each arm's P(best) with ``floor`` for every
    arm, computed by quadrature once per refresh; a unit then goes to arm i with probability
    weight i (:func:`engine.policy.assign_batch`), which is a Thompson draw in distribution.
    """
    if not arms:
        return np.zeros(0)
    if min(arm.trials for arm in arms) < burn_in:
        return np.full(len(arms), 1.0 / len(arms))
    return policy.thompson_weights(
        [arm.alpha for arm in arms], [arm.beta for arm in arms], floor=min(floor, 0.999)
    )


# --- partner units -----------------------------------------------------------------------------


class UnknownUnit(LookupError):
    """No assignment exists for this (experiment, group, unit)."""


@dataclass(frozen=True)
class UnitAssignment:
    arm: ArmSnapshot
    created: bool  # a new trial was counted


def assign_unit(
    session: so.Session,
    snapshot: ExperimentSnapshot,
    group_id: int,
    unit: str,
    chooser: Callable[[ExperimentSnapshot], ArmSnapshot | None],
    now: datetime,
) -> UnitAssignment | None:
    """The variant for a partner's unit: its stored one while servable, else a new choice.

    A new choice is a trial of its variant. Concurrent first requests for one unit agree: the
    unique (experiment, group, unit) index lets one insert win and the other reads its row.
    Returns ``None`` when the experiment has no live variant.
    """
    where = (
        Assignment.experiment_id == snapshot.experiment_id,
        Assignment.group_id == group_id,
        Assignment.unit == unit,
    )
    existing = session.execute(
        sa.select(Assignment.id, Assignment.variant_id, Assignment.converted_at).where(*where)
    ).first()
    if existing is not None:
        arm = snapshot.servable(existing.variant_id)
        if arm is not None:
            return UnitAssignment(arm, created=False)
    arm = chooser(snapshot)
    if arm is None:
        return None
    if existing is not None:
        reassign = sa.update(Assignment).where(Assignment.id == existing.id)
        session.execute(reassign.values(variant_id=arm.variant_id))
        if existing.converted_at is None:  # a converted unit can succeed no more
            outcomes.add_trials(session, {arm.variant_id: 1})
        return UnitAssignment(arm, created=existing.converted_at is None)
    values = {
        "experiment_id": snapshot.experiment_id,
        "group_id": group_id,
        "unit": unit,
        "variant_id": arm.variant_id,
        "created_at": now,
    }
    if insert_unless_exists(session, Assignment, values, ["experiment_id", "group_id", "unit"]):
        outcomes.add_trials(session, {arm.variant_id: 1})
        return UnitAssignment(arm, created=True)
    won = session.scalar(sa.select(Assignment.variant_id).where(*where))
    return UnitAssignment(snapshot.arm(won) or arm, created=False)


def convert_unit(
    session: so.Session, snapshot: ExperimentSnapshot, group_id: int, unit: str, now: datetime
) -> bool:
    """Record the unit's conversion once and credit its variant with the experiment's metric.

    Returns ``True`` the first time, ``False`` when it had already converted.
    Raises :class:`UnknownUnit` when the unit was never assigned in this experiment by this group.
    """
    where = (
        Assignment.experiment_id == snapshot.experiment_id,
        Assignment.group_id == group_id,
        Assignment.unit == unit,
    )
    converted = session.execute(
        sa.update(Assignment)
        .where(*where, Assignment.converted_at.is_(None))
        .values(converted_at=now)
        .returning(Assignment.variant_id)
    ).first()
    if converted is not None:
        outcomes.credit(session, snapshot.metric, {converted.variant_id: 1})
        return True
    if session.scalar(sa.select(Assignment.id).where(*where)) is None:
        raise UnknownUnit(unit)
    return False
