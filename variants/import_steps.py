"""The steps of a campaign import, one group, experiment or variant at a time (see
:mod:`variants.importer` for the file format and the rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Decision, Experiment, Group, Variant
from engine.settings import ExperimentSettings
from variants import decisions, experiments, groups
from variants.validation import (
    CONTENT_FIELDS,
    EXPERIMENT_FIELDS,
    ConflictError,
    ValidationError,
    clean_experiment,
    clean_group,
    clean_variant,
)

GROUP_DEFAULTS: Mapping[str, Any] = {
    "description": "", "roles": [], "website": "", "logo_url": "", "policy_areas": [],
    "active": True,
}  # fmt: skip
EXPERIMENT_DEFAULTS: Mapping[str, Any] = {"description": "", "policy_areas": []}
VARIANT_KEYS = ("key", "name", "is_control")


@dataclass
class ImportReport:
    """What an import changed (empty lists: nothing)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    revised: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(
            (self.created, self.updated, self.revised, self.paused, self.resumed, self.statuses)
        )

    def lines(self) -> list[str]:
        """One line per change, for people."""
        labels = ("created", "updated", "revised", "paused", "resumed", "statuses", "notes")
        return [f"{label}: {item}" for label in labels for item in getattr(self, label)]


def collect(problems: list[str], where: str, action: Any) -> None:
    """Run ``action``; a problem it raises is added to ``problems``, prefixed with ``where``."""
    try:
        action()
    except ValidationError as exc:
        problems.extend(f"{where}: {name}: {message}" for name, message in exc.errors.items())
    except (ConflictError, ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")


def import_group(session: so.Session, data: Mapping[str, Any], report: ImportReport) -> None:
    """Create the group or bring its fields in line with ``data``; raises ValidationError."""
    desired = clean_group({**GROUP_DEFAULTS, **data})
    group = session.scalar(sa.select(Group).where(Group.slug == desired["slug"]))
    if group is None:
        groups.create_group(session, desired)
        report.created.append(f"group {desired['slug']}")
    elif changed := groups.update_group(session, group, desired):
        report.updated.append(f"group {group.slug} ({', '.join(changed)})")


def import_experiment(
    session: so.Session,
    data: Mapping[str, Any],
    defaults: ExperimentSettings,
    actor: str,
    report: ImportReport,
    problems: list[str],
    where: str,
) -> None:
    """Create or update one experiment, its variants (problems collected per variant), pause
    variants no longer listed, and apply a newly declared status. Raises ValidationError or
    ConflictError for a problem with the experiment itself."""
    fields = {name: value for name, value in data.items() if name != "variants"}
    desired = clean_experiment({**EXPERIMENT_DEFAULTS, **fields}, defaults)
    declared_status = fields.get("status")
    if not data.get("variants"):
        raise ValidationError({"variants": "an experiment needs at least one variant"})
    experiment = session.scalar(sa.select(Experiment).where(Experiment.key == desired["key"]))
    if experiment is None:
        experiment = experiments.create_experiment(session, desired, defaults)
        report.created.append(f"experiment {experiment.key}")
    elif experiment.kind != desired["kind"]:
        raise ValidationError({"kind": f"is {experiment.kind} in the database; it cannot change"})
    else:
        updates = {name: desired[name] for name in EXPERIMENT_FIELDS if name in desired}
        for fixed in ("key", "kind", "status"):
            updates.pop(fixed, None)
        if changed := experiments.update_experiment(session, experiment, updates):
            report.updated.append(f"experiment {experiment.key} ({', '.join(changed)})")
    kept: set[int] = set()
    existing = {variant.key for variant in experiment.variants}
    _release_removed_control(experiment, {v.get("key") for v in data["variants"]})
    # An existing variant that becomes the control goes last, after the old control let go.
    order = sorted(
        enumerate(data["variants"]),
        key=lambda item: bool(item[1].get("is_control")) and item[1].get("key") in existing,
    )
    for number, variant_data in order:
        label = f"{where}.variants[{number}] ({variant_data.get('key', '?')})"
        collect(
            problems,
            label,
            lambda variant_data=variant_data: kept.add(
                _import_variant(session, experiment, variant_data, actor, report)
            ),
        )
    _pause_removed(session, experiment, kept, actor, report)
    if declared_status is not None:
        _apply_declared_status(session, experiment, declared_status, actor, report)


def _import_variant(
    session: so.Session,
    experiment: Experiment,
    data: Mapping[str, Any],
    actor: str,
    report: ImportReport,
) -> int:
    """Create or update one variant; returns the id of the lineage's current variant."""
    known = (*VARIANT_KEYS, *CONTENT_FIELDS[experiment.kind])
    unknown = [name for name in data if name not in known]
    if unknown:
        expected = ", ".join(known)
        raise ValidationError({name: f"unknown field (expected {expected})" for name in unknown})
    content = {name: data[name] for name in CONTENT_FIELDS[experiment.kind] if name in data}
    desired = clean_variant(
        experiment.kind,
        {
            "key": data.get("key"),
            "name": data.get("name"),
            "is_control": data.get("is_control", False),
            "content": content,
        },
    )
    label = f"variant {experiment.key}/{desired['key']}"
    root = next((v for v in experiment.variants if v.key == desired["key"]), None)
    if root is None:
        variant = experiments.add_variant(session, experiment, desired)
        report.created.append(label)
        return variant.id
    current = experiments.current_revision(session, root)
    changes = {
        name: desired[name]
        for name in ("name", "is_control", "content")
        if getattr(current, name) != desired[name]
    }
    if changes:
        updated = experiments.edit_variant(session, current, changes)
        if updated is not current:
            report.revised.append(f"{label} → {updated.key} (it had served traffic)")
        else:
            report.updated.append(f"{label} ({', '.join(sorted(changes))})")
        current = updated
    if current.status == "paused" and _paused_by_import(session, current):
        decisions.resume_variant(session, current, actor, "listed again in the campaign file")
        report.resumed.append(label)
    return current.id


def _release_removed_control(experiment: Experiment, file_keys: set[Any]) -> None:
    """A control left out of the file stops being the control, so another may take its place."""
    by_id = {variant.id: variant for variant in experiment.variants}
    for variant in experiment.variants:
        root = variant
        while root.replaces_id in by_id:
            root = by_id[root.replaces_id]
        if variant.is_control and root.key not in file_keys:
            variant.is_control = False


def _paused_by_import(session: so.Session, variant: Variant) -> bool:
    last = session.scalar(
        sa.select(Decision)
        .where(Decision.variant_id == variant.id, Decision.kind.in_(("pause", "resume")))
        .order_by(Decision.id.desc())
        .limit(1)
    )
    return last is not None and last.kind == "pause" and last.actor.startswith("import:")


def _pause_removed(
    session: so.Session, experiment: Experiment, kept: set[int], actor: str, report: ImportReport
) -> None:
    for variant in list(experiment.variants):
        if variant.status == "live" and variant.id not in kept:
            decisions.pause_variant(session, variant, actor, "removed from the campaign file")
            report.paused.append(f"variant {experiment.key}/{variant.key}")


def _apply_declared_status(
    session: so.Session, experiment: Experiment, declared: str, actor: str, report: ImportReport
) -> None:
    last_declared = session.scalar(
        sa.select(Decision.snapshot)
        .where(
            Decision.experiment_id == experiment.id,
            Decision.kind == "status",
            Decision.actor.startswith("import:"),
        )
        .order_by(Decision.id.desc())
        .limit(1)
    )
    if last_declared is not None and last_declared.get("declared") == declared:
        return  # unchanged in the file: keep what staff or the policy decided since
    if experiment.status == declared:
        return
    path = _status_path(experiment.status, declared)
    if path is None:
        report.notes.append(
            f"experiment {experiment.key} stays {experiment.status} (the file says {declared}; "
            "restart it to run it again)"
        )
        return
    for status in path:
        decision = decisions.set_status(
            session, experiment, status, actor, f"declared {declared} in the campaign file"
        )
        decision.snapshot = {**decision.snapshot, "declared": declared}
    report.statuses.append(f"experiment {experiment.key} → {declared}")


def _status_path(start: str, goal: str) -> list[str] | None:
    """The shortest sequence of allowed status changes from ``start`` to ``goal``."""
    frontier, seen = [[start]], {start}
    while frontier:
        path = frontier.pop(0)
        for status in sorted(decisions.STATUS_CHANGES[path[-1]]):
            if status == goal:
                return [*path[1:], status]
            if status not in seen:
                seen.add(status)
                frontier.append([*path, status])
    return None
