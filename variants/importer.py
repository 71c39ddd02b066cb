"""``resistry import FILE.toml``: a declarative campaign file (groups, experiments, variants).

The file can live in version control. Importing the same file again changes nothing; a changed
file updates in place through the same services as the API and the admin UI, so the same rules
hold: a variant that has served traffic gets a new revision instead of new content, and a
variant removed from the file is paused, never deleted. Groups and experiments missing from the
file are left alone. An experiment's ``status`` applies when it is created and whenever the
file declares a different status than at its last import, so a re-import never undoes what staff
or the policy decided meanwhile. Everything is checked first; one problem means no change.

Format (see variants/demo_campaign.toml)::

    [[groups]]
    slug = "swing-left"
    name = "Swing Left"

    [[experiments]]
    key = "recruiter-subject"
    name = "Recruiter subject lines"
    kind = "subject"            # landing | subject | body | share
    metric = "click"            # signup | click | open
    status = "running"          # draft | running | paused | finished

    [[experiments.variants]]
    key = "not-yet-active"
    name = "Not yet active?"
    is_control = true
    subject = "Not yet active? Find the role that works best for you"

Variant content fields sit in the variant table: landing ``headline``, ``body``,
``call_to_action``, ``hero_image``, ``hero_alt``; subject ``subject``, ``preheader``; body
``mjml`` (or ``mjml_file``, relative to the campaign file); share ``text``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Decision, Experiment, Group, Variant
from engine.runtime import Runtime, pass_runtime
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


class CampaignFileError(ValueError):
    """The campaign file cannot be imported; ``problems`` lists each one with where it is."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


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


def load_campaign_file(path: Path | str) -> dict[str, Any]:
    """Read a campaign file; ``mjml_file`` entries are replaced by the file's text.

    Raises :class:`CampaignFileError` if the file is missing, not TOML or not shaped right.
    """
    path = Path(path)
    try:
        campaign = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CampaignFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CampaignFileError([f"{path}: not valid TOML: {exc}"]) from None
    problems = [
        f"unknown top-level key {name!r} (expected groups, experiments)"
        for name in campaign
        if name not in ("groups", "experiments")
    ]
    for index, experiment in enumerate(_tables(campaign, "experiments", problems)):
        for number, variant in enumerate(_tables(experiment, "variants", problems)):
            if "mjml_file" in variant:
                where = f"experiments[{index}].variants[{number}]"
                try:
                    variant["mjml"] = (path.parent / str(variant.pop("mjml_file"))).read_text(
                        encoding="utf-8"
                    )
                except OSError as exc:
                    problems.append(f"{where}: mjml_file: cannot read: {exc.strerror or exc}")
    _tables(campaign, "groups", problems)
    if problems:
        raise CampaignFileError(problems)
    return campaign


def _tables(container: Mapping[str, Any], name: str, problems: list[str]) -> list[dict]:
    value = container.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.append(f"{name} must be an array of tables ([[{name}]])")
        return []
    return value


def import_campaign(
    session: so.Session, campaign: Mapping[str, Any], defaults: ExperimentSettings, actor: str
) -> ImportReport:
    """Make the database match ``campaign``; returns what changed.

    Runs inside a savepoint: on any problem nothing changes and :class:`CampaignFileError`
    lists every problem found. ``actor`` names the import in decisions (``import:<file>``).
    """
    report, problems = ImportReport(), []
    savepoint = session.begin_nested()
    for index, data in enumerate(campaign.get("groups", [])):
        where = f"groups[{index}] ({data.get('slug', '?')})"
        _collect(problems, where, lambda data=data: _import_group(session, data, report))
    for index, data in enumerate(campaign.get("experiments", [])):
        where = f"experiments[{index}] ({data.get('key', '?')})"
        _collect(
            problems,
            where,
            lambda data=data, where=where: _import_experiment(
                session, data, defaults, actor, report, problems, where
            ),
        )
    if problems:
        savepoint.rollback()
        raise CampaignFileError(problems)
    savepoint.commit()
    return report


def _collect(problems: list[str], where: str, action: Any) -> None:
    try:
        action()
    except ValidationError as exc:
        problems.extend(f"{where}: {name}: {message}" for name, message in exc.errors.items())
    except (ConflictError, ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")


def _import_group(session: so.Session, data: Mapping[str, Any], report: ImportReport) -> None:
    desired = clean_group({**GROUP_DEFAULTS, **data})
    group = session.scalar(sa.select(Group).where(Group.slug == desired["slug"]))
    if group is None:
        groups.create_group(session, desired)
        report.created.append(f"group {desired['slug']}")
    elif changed := groups.update_group(session, group, desired):
        report.updated.append(f"group {group.slug} ({', '.join(changed)})")


def _import_experiment(
    session: so.Session,
    data: Mapping[str, Any],
    defaults: ExperimentSettings,
    actor: str,
    report: ImportReport,
    problems: list[str],
    where: str,
) -> None:
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
    # An existing variant that becomes the control goes last, after the old control let go.
    order = sorted(
        enumerate(data["variants"]),
        key=lambda item: bool(item[1].get("is_control")) and item[1].get("key") in existing,
    )
    for number, variant_data in order:
        label = f"{where}.variants[{number}] ({variant_data.get('key', '?')})"
        _collect(
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


@click.command("import")
@click.argument("campaign_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and show the changes, then roll back.")
@pass_runtime
def import_command(runtime: Runtime, campaign_file: Path, dry_run: bool) -> None:
    """Import groups, experiments and variants from CAMPAIGN_FILE (a TOML campaign file)."""
    actor = f"import:{campaign_file.name}"[:120]
    try:
        campaign = load_campaign_file(campaign_file)
        with runtime.sessions() as session:
            report = import_campaign(session, campaign, runtime.settings.experiments, actor)
            if dry_run:
                session.rollback()
            else:
                session.commit()
    except CampaignFileError as exc:
        raise click.ClickException(
            f"{campaign_file}: nothing imported: {'; '.join(exc.problems)}"
        ) from None
    for line in report.lines():
        click.echo(line)
    outcome = ("would change" if dry_run else "changed") if report.changed else "no changes"
    click.echo(f"{campaign_file.name}: {outcome}")
