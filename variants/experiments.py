"""Experiments and their variants: create, change and look up (staff decisions: decisions.py).

A variant that has served traffic is never edited in place, because its results would then
describe content nobody saw: editing it creates a new variant (``replaces_id`` points back) and
retires the old one, which keeps its rows and counts. Keys never change; a revision of variant
``a`` is ``a-r2``, ``a-r3``…, and :func:`current_revision` follows the chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Assignment, Experiment, Send, Variant, Visit
from engine.settings import ExperimentSettings
from variants.validation import (
    ConflictError,
    NotFound,
    ValidationError,
    check_experiment_consistency,
    clean_experiment,
    clean_variant,
)

# Fields an update may change; the key and kind identify what is measured.
_UPDATABLE = frozenset(
    {"name", "description", "metric", "policy_areas", "prior_alpha", "prior_beta", "burn_in",
     "p_best_threshold", "value_remaining_threshold", "floor", "max_trials_per_arm"}
)  # fmt: skip


@dataclass(frozen=True)
class ExperimentSummary:
    """An experiment with its number of variants per status, for lists."""

    experiment: Experiment
    live: int
    paused: int
    retired: int

    @property
    def total(self) -> int:
        return self.live + self.paused + self.retired


def get_experiment(session: so.Session, key: str) -> Experiment:
    """The experiment with ``key``; raises :class:`NotFound`."""
    experiment = session.scalar(sa.select(Experiment).where(Experiment.key == key))
    if experiment is None:
        raise NotFound(f"no experiment with key {key!r}")
    return experiment


def get_variant(experiment: Experiment, key: str) -> Variant:
    """The variant of ``experiment`` with ``key``; raises :class:`NotFound`."""
    for variant in experiment.variants:
        if variant.key == key:
            return variant
    raise NotFound(f"experiment {experiment.key!r} has no variant {key!r}")


def list_experiments(session: so.Session, status: str | None = None) -> list[ExperimentSummary]:
    """All experiments (or those with ``status``), newest first, with variant counts."""
    counts = (
        sa.select(
            Variant.experiment_id,
            *(
                sa.func.count().filter(Variant.status == name).label(name)
                for name in ("live", "paused", "retired")
            ),
        )
        .group_by(Variant.experiment_id)
        .subquery()
    )
    query = (
        sa.select(Experiment, counts.c.live, counts.c.paused, counts.c.retired)
        .outerjoin(counts, counts.c.experiment_id == Experiment.id)
        .order_by(Experiment.created_at.desc(), Experiment.id.desc())
    )
    if status is not None:
        query = query.where(Experiment.status == status)
    return [
        ExperimentSummary(experiment, live or 0, paused or 0, retired or 0)
        for experiment, live, paused, retired in session.execute(query)
    ]


def create_experiment(
    session: so.Session, data: Mapping[str, Any], defaults: ExperimentSettings
) -> Experiment:
    """Create a draft experiment (thresholds default to ``defaults``) and return it.

    Its status is set afterwards with :func:`variants.decisions.set_status`, once it has
    variants. Raises :class:`ValidationError` for bad fields or a key already used.
    """
    cleaned = clean_experiment(data, defaults)
    cleaned.pop("status")
    check_experiment_consistency(
        cleaned["kind"], cleaned["metric"], cleaned["burn_in"], cleaned["max_trials_per_arm"]
    )
    if session.scalar(sa.select(Experiment.id).where(Experiment.key == cleaned["key"])):
        raise ValidationError({"key": f"an experiment with key {cleaned['key']!r} exists"})
    experiment = Experiment(**cleaned, status="draft", variants=[], decisions=[])
    session.add(experiment)
    session.flush()
    return experiment


def update_experiment(
    session: so.Session, experiment: Experiment, data: Mapping[str, Any]
) -> list[str]:
    """Change the given fields of ``experiment``; returns the names of the fields that changed.

    Raises :class:`ValidationError` for bad fields, for the key, kind or status (change status
    with a decision), and for a new metric once the current epoch has trials (the counts would
    mix two metrics: restart the experiment first).
    """
    fixed = {name: "cannot be changed" for name in data if name in ("key", "kind")}
    if "status" in data:
        fixed["status"] = "change the status with a status decision (it needs a reason)"
    if fixed:
        raise ValidationError(fixed)
    cleaned = clean_experiment(data, ExperimentSettings(), partial=True)
    changes = {
        name: value
        for name, value in cleaned.items()
        if name in _UPDATABLE and getattr(experiment, name) != value
    }
    merged = {name: changes.get(name, getattr(experiment, name)) for name in _UPDATABLE}
    check_experiment_consistency(
        experiment.kind, merged["metric"], merged["burn_in"], merged["max_trials_per_arm"]
    )
    if "metric" in changes and any(variant.trials for variant in experiment.variants):
        raise ValidationError(
            {"metric": "this epoch already has trials; restart the experiment to change it"}
        )
    for name, value in changes.items():
        setattr(experiment, name, value)
    session.flush()
    return sorted(changes)


def add_variant(session: so.Session, experiment: Experiment, data: Mapping[str, Any]) -> Variant:
    """Add a live variant to ``experiment`` and return it.

    Raises :class:`ValidationError` for bad fields or content, a key already used, or a
    second control; :class:`ConflictError` if the experiment is finished.
    """
    if experiment.status == "finished":
        raise ConflictError(f"experiment {experiment.key!r} is finished; restart it first")
    cleaned = clean_variant(experiment.kind, data)
    if any(variant.key == cleaned["key"] for variant in experiment.variants):
        raise ValidationError({"key": f"variant {cleaned['key']!r} exists in this experiment"})
    _refuse_second_control(experiment, cleaned.get("is_control", False), None)
    variant = Variant(status="live", weight=0.0, **cleaned)
    experiment.variants.append(variant)
    session.flush()
    return variant


def _refuse_second_control(experiment: Experiment, is_control: bool, keep: Variant | None) -> None:
    if not is_control:
        return
    for other in experiment.variants:
        if other is not keep and other.is_control and other.status != "retired":
            raise ValidationError({"is_control": f"{other.key!r} is already the control"})


def has_served_traffic(session: so.Session, variant: Variant) -> bool:
    """Whether ``variant`` was ever shown or sent, in this epoch or an earlier one."""
    if variant.trials > 0 or variant.id is None:
        return variant.trials > 0
    uses = (
        sa.select(Send.id).where(
            sa.or_(
                Send.subject_variant_id == variant.id,
                Send.body_variant_id == variant.id,
                Send.share_variant_id == variant.id,
            )
        ),
        sa.select(Visit.id).where(
            sa.or_(Visit.landing_variant_id == variant.id, Visit.share_variant_id == variant.id)
        ),
        sa.select(Assignment.id).where(Assignment.variant_id == variant.id),
    )
    return any(session.scalar(query.limit(1)) is not None for query in uses)


def current_revision(session: so.Session, variant: Variant) -> Variant:
    """The newest variant in the chain of revisions that starts at ``variant``."""
    seen = {variant.id}
    while True:
        newer = session.scalar(
            sa.select(Variant).where(Variant.replaces_id == variant.id).order_by(Variant.id)
        )
        if newer is None or newer.id in seen:
            return variant
        seen.add(newer.id)
        variant = newer


def _revision_key(experiment: Experiment, variant: Variant) -> str:
    depth, cursor = 1, variant
    by_id = {v.id: v for v in experiment.variants}
    while cursor.replaces_id is not None and cursor.replaces_id in by_id:
        depth, cursor = depth + 1, by_id[cursor.replaces_id]
    used = {v.key for v in experiment.variants}
    number = depth + 1
    while True:
        suffix = f"-r{number}"
        key = cursor.key[: 64 - len(suffix)] + suffix
        if key not in used:
            return key
        number += 1


def _is_promoted_winner(experiment: Experiment, variant: Variant) -> bool:
    """Whether ``variant`` is what a promoted experiment serves (its latest promotion)."""
    if experiment.status != "promoted":
        return False
    promotions = [d for d in experiment.decisions if d.kind == "promote"]
    return bool(promotions) and promotions[-1].variant_id == variant.id


def edit_variant(session: so.Session, variant: Variant, data: Mapping[str, Any]) -> Variant:
    """Apply ``data`` (name, is_control, content) to ``variant``; returns the variant now current.

    New content for a variant that has served traffic makes a new variant that replaces it (the
    old one is retired, its counts kept); otherwise the variant is changed in place. Raises
    :class:`ValidationError` for bad fields or a key change, :class:`ConflictError` for a
    retired variant or new content for the served winner of a promoted experiment.
    """
    experiment = variant.experiment
    if variant.status == "retired":
        raise ConflictError(f"variant {variant.key!r} is retired; edit its replacement")
    if "key" in data and data["key"] != variant.key:
        raise ValidationError({"key": "cannot be changed"})
    cleaned = clean_variant(experiment.kind, {**data, "key": variant.key}, partial=True)
    _refuse_second_control(experiment, cleaned.get("is_control", False), variant)
    content = cleaned.get("content", variant.content)
    if content != variant.content and has_served_traffic(session, variant):
        if _is_promoted_winner(experiment, variant):
            raise ConflictError(
                f"variant {variant.key!r} is the promoted winner; restart the experiment or "
                "add a new variant to test new content"
            )
        replacement = Variant(
            key=_revision_key(experiment, variant),
            name=cleaned.get("name", variant.name),
            content=content,
            status=variant.status,
            is_control=cleaned.get("is_control", variant.is_control),
            replaces_id=variant.id,
            weight=variant.weight,
        )
        variant.status, variant.weight, variant.is_control = "retired", 0.0, False
        experiment.variants.append(replacement)
        session.flush()
        return replacement
    variant.content = content
    variant.name = cleaned.get("name", variant.name)
    variant.is_control = cleaned.get("is_control", variant.is_control)
    session.flush()
    return variant
