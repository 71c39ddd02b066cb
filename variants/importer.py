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
from pathlib import Path
from typing import Any

import click
import sqlalchemy.orm as so

from engine.runtime import Runtime, pass_runtime
from engine.settings import ExperimentSettings
from variants import import_steps
from variants.import_steps import ImportReport

__all__ = ["CampaignFileError", "ImportReport", "import_campaign", "load_campaign_file"]


class CampaignFileError(ValueError):
    """The campaign file cannot be imported; ``problems`` lists each one with where it is."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def load_campaign_file(path: Path | str) -> dict[str, Any]:
    """Read a campaign file; ``mjml_file`` entries are replaced by the file's text.

    Raises :class:`CampaignFileError` if the file is missing, not TOML or not shaped right.
    """
    path = Path(path)
    try:
        # utf-8-sig: editors on Windows may start the file with a BOM, which TOML refuses.
        campaign = tomllib.loads(path.read_text(encoding="utf-8-sig"))
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
                except UnicodeDecodeError as exc:
                    problems.append(f"{where}: mjml_file: not UTF-8 text (byte {exc.start})")
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
        import_steps.collect(
            problems, where, lambda data=data: import_steps.import_group(session, data, report)
        )
    for index, data in enumerate(campaign.get("experiments", [])):
        where = f"experiments[{index}] ({data.get('key', '?')})"
        import_steps.collect(
            problems,
            where,
            lambda data=data, where=where: import_steps.import_experiment(
                session, data, defaults, actor, report, problems, where
            ),
        )
    if problems:
        savepoint.rollback()
        raise CampaignFileError(problems)
    savepoint.commit()
    return report


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
