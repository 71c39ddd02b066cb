import copy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from click.testing import CliRunner

from engine import migrate
from engine.cli import main
from engine.db import create_db_engine, session_factory
from engine.models import Decision, Experiment, Group, Variant
from engine.runtime import Runtime
from engine.settings import Settings
from tests.conftest import make_settings
from tests.variants.staff_support import MJML
from variants import decisions
from variants.importer import CampaignFileError, import_campaign, load_campaign_file

ACTOR = "import:campaign.toml"
CAMPAIGN: dict[str, Any] = {
    "groups": [
        {"slug": "swing-left", "name": "Swing Left", "roles": ["Canvasser"]},
        {"slug": "indivisible", "name": "Indivisible", "policy_areas": ["voting rights"]},
    ],
    "experiments": [
        {
            "key": "subjects",
            "name": "Subject lines",
            "kind": "subject",
            "metric": "click",
            "status": "running",
            "burn_in": 100,
            "variants": [
                {"key": "a", "name": "A", "is_control": True, "subject": "Not yet active?"},
                {"key": "b", "name": "B", "subject": "{{ friends_count }} friends joined"},
                {"key": "c", "name": "C", "subject": "One evening is enough"},
            ],
        },
        {
            "key": "bodies",
            "name": "Bodies",
            "kind": "body",
            "metric": "click",
            "variants": [{"key": "short", "name": "Short", "mjml": MJML}],
        },
    ],
}


def run(session: so.Session, settings: Settings, campaign: dict[str, Any]):  # type: ignore[no-untyped-def]
    return import_campaign(session, campaign, settings.experiments, ACTOR)


def state(session: so.Session) -> list[tuple]:
    """Everything an import may touch, for before/after comparisons."""
    session.expire_all()
    rows: list[tuple] = []
    for group in session.scalars(sa.select(Group).order_by(Group.slug)):
        rows.append((group.slug, group.name, group.description, group.roles, group.active))
    for experiment in session.scalars(sa.select(Experiment).order_by(Experiment.key)):
        rows.append((experiment.key, experiment.status, experiment.burn_in, experiment.epoch))
    for variant in session.scalars(sa.select(Variant).order_by(Variant.id)):
        rows.append((variant.key, variant.status, variant.content, variant.replaces_id))
    rows.append(("decisions", session.scalar(sa.select(sa.func.count()).select_from(Decision))))
    return rows


def variant(session: so.Session, experiment_key: str, key: str) -> Variant:
    return session.scalars(
        sa.select(Variant)
        .join(Experiment)
        .where(Experiment.key == experiment_key, Variant.key == key)
    ).one()


def test_first_import_creates_everything(session: so.Session, settings: Settings) -> None:
    report = run(session, settings, CAMPAIGN)
    assert "group swing-left" in report.created
    assert "variant subjects/c" in report.created
    subjects = session.scalars(sa.select(Experiment).where(Experiment.key == "subjects")).one()
    assert (subjects.status, subjects.burn_in) == ("running", 100)
    assert subjects.p_best_threshold == settings.experiments.p_best_threshold
    assert [v.key for v in subjects.variants] == ["a", "b", "c"]
    assert subjects.variants[0].is_control
    bodies = session.scalars(sa.select(Experiment).where(Experiment.key == "bodies")).one()
    assert bodies.status == "draft"  # no status declared
    status_decision = subjects.decisions[-1]
    assert (status_decision.kind, status_decision.actor) == ("status", ACTOR)


def test_reimporting_the_same_file_changes_nothing(session: so.Session, settings: Settings) -> None:
    run(session, settings, CAMPAIGN)
    before = state(session)
    report = run(session, settings, copy.deepcopy(CAMPAIGN))
    assert not report.changed
    assert report.lines() == []
    assert state(session) == before


def test_changed_file_updates_in_place(session: so.Session, settings: Settings) -> None:
    run(session, settings, CAMPAIGN)
    changed = copy.deepcopy(CAMPAIGN)
    changed["groups"][0]["description"] = "Win the House"
    changed["experiments"][0]["burn_in"] = 300
    changed["experiments"][0]["variants"][2]["subject"] = "One evening a month"
    report = run(session, settings, changed)
    assert report.updated == [
        "group swing-left (description)",
        "experiment subjects (burn_in)",
        "variant subjects/c (content)",
    ]
    assert variant(session, "subjects", "c").content == {"subject": "One evening a month"}
    assert not run(session, settings, changed).changed


def test_changed_content_of_a_served_variant_becomes_a_revision(
    session: so.Session, settings: Settings
) -> None:
    run(session, settings, CAMPAIGN)
    served = variant(session, "subjects", "b")
    served.trials, served.successes = 80, 8
    changed = copy.deepcopy(CAMPAIGN)
    changed["experiments"][0]["variants"][1]["subject"] = "{{ friends_count }} friends and counting"
    report = run(session, settings, changed)
    assert report.revised == ["variant subjects/b → b-r2 (it had served traffic)"]
    assert (served.status, served.trials, served.content["subject"]) == (
        "retired",
        80,
        "{{ friends_count }} friends joined",
    )
    revision = variant(session, "subjects", "b-r2")
    assert revision.replaces_id == served.id and revision.status == "live"
    before = state(session)
    assert not run(session, settings, changed).changed  # the lineage is matched, not re-revised
    assert state(session) == before


def test_removed_variant_is_paused_not_deleted_and_comes_back(
    session: so.Session, settings: Settings
) -> None:
    run(session, settings, CAMPAIGN)
    removed = variant(session, "subjects", "c")
    removed.trials = 12
    smaller = copy.deepcopy(CAMPAIGN)
    del smaller["experiments"][0]["variants"][2]
    report = run(session, settings, smaller)
    assert report.paused == ["variant subjects/c"]
    assert (removed.status, removed.trials) == ("paused", 12)
    pause = session.scalars(sa.select(Decision).where(Decision.variant_id == removed.id)).one()
    assert (pause.kind, pause.actor, pause.reason) == (
        "pause",
        ACTOR,
        "removed from the campaign file",
    )
    assert not run(session, settings, smaller).changed
    report = run(session, settings, CAMPAIGN)
    assert report.resumed == ["variant subjects/c"]
    assert removed.status == "live"


def test_the_control_can_move_when_the_old_one_is_removed(
    session: so.Session, settings: Settings
) -> None:
    run(session, settings, CAMPAIGN)
    changed = copy.deepcopy(CAMPAIGN)
    variants = changed["experiments"][0]["variants"]
    del variants[0]
    variants[0]["is_control"] = True
    report = run(session, settings, changed)
    assert report.paused == ["variant subjects/a"]
    assert report.updated == ["variant subjects/b (is_control)"]
    assert not variant(session, "subjects", "a").is_control
    assert variant(session, "subjects", "b").is_control
    assert not run(session, settings, changed).changed


def test_a_variant_paused_by_staff_stays_paused(session: so.Session, settings: Settings) -> None:
    run(session, settings, CAMPAIGN)
    decisions.pause_variant(session, variant(session, "subjects", "b"), "ana", "tone is off")
    assert not run(session, settings, CAMPAIGN).changed
    assert variant(session, "subjects", "b").status == "paused"


def test_declared_status_applies_when_the_file_changes_it(
    session: so.Session, settings: Settings
) -> None:
    run(session, settings, CAMPAIGN)
    subjects = session.scalars(sa.select(Experiment).where(Experiment.key == "subjects")).one()
    decisions.set_status(session, subjects, "paused", "ana", "holiday")
    assert not run(session, settings, CAMPAIGN).changed  # the file still says running
    assert subjects.status == "paused"
    finished = copy.deepcopy(CAMPAIGN)
    finished["experiments"][0]["status"] = "finished"
    report = run(session, settings, finished)
    assert report.statuses == ["experiment subjects → finished"]
    assert subjects.status == "finished"


def test_problems_are_all_listed_and_nothing_changes(
    session: so.Session, settings: Settings
) -> None:
    run(session, settings, CAMPAIGN)
    before = state(session)
    broken = copy.deepcopy(CAMPAIGN)
    broken["groups"][0]["website"] = "not a url"
    broken["groups"][1]["description"] = "Changed, but must not be saved"
    broken["experiments"][0]["variants"][1]["subject"] = "Hi {{ nope }}"
    broken["experiments"][1]["kind"] = "share"
    broken["experiments"].append(
        {"key": "x", "name": "X", "kind": "subject", "metric": "click", "variants": []}
    )
    with pytest.raises(CampaignFileError) as caught:
        run(session, settings, broken)
    problems = caught.value.problems
    assert any(p.startswith("groups[0] (swing-left): website:") for p in problems)
    assert any("experiments[0] (subjects).variants[1] (b): content.subject" in p for p in problems)
    assert any(p.startswith("experiments[1] (bodies): kind:") for p in problems)
    assert any("at least one variant" in p for p in problems)
    assert state(session) == before


def test_load_campaign_file_reads_mjml_files(tmp_path: Path) -> None:
    (tmp_path / "bodies").mkdir()
    (tmp_path / "bodies" / "short.mjml").write_text(MJML)
    path = tmp_path / "campaign.toml"
    path.write_text(
        '[[experiments]]\nkey = "bodies"\nname = "Bodies"\nkind = "body"\nmetric = "click"\n'
        '[[experiments.variants]]\nkey = "short"\nname = "Short"\nmjml_file = "bodies/short.mjml"\n'
    )
    campaign = load_campaign_file(path)
    assert campaign["experiments"][0]["variants"][0]["mjml"] == MJML


def test_load_campaign_file_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text('[[groups]]\nslug = "flippable"\nname = "Flippable"\n', encoding="utf-8-sig")
    assert load_campaign_file(path)["groups"] == [{"slug": "flippable", "name": "Flippable"}]


def test_an_mjml_file_that_is_not_utf8_is_a_campaign_file_problem(tmp_path: Path) -> None:
    (tmp_path / "body.mjml").write_bytes(b"<mjml>\xff\xfe</mjml>")
    path = tmp_path / "campaign.toml"
    path.write_text(
        '[[experiments]]\nkey="b"\n[[experiments.variants]]\nkey="s"\nmjml_file="body.mjml"'
    )
    with pytest.raises(CampaignFileError, match=r"variants\[0\]: mjml_file: not UTF-8 text"):
        load_campaign_file(path)
    result = CliRunner().invoke(
        main, ["import", str(path)], obj=Runtime(make_settings("sqlite://"))
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "nothing imported" in result.output and "not UTF-8" in result.output


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("groups = 3", "array of tables"),
        ("[[groups]\nslug=", "not valid TOML"),
        ("[extras]\nx = 1", "unknown top-level key"),
        (
            '[[experiments]]\nkey="b"\n[[experiments.variants]]\nkey="s"\nmjml_file="none.mjml"',
            "cannot read",
        ),
    ],
)
def test_load_campaign_file_problems(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "campaign.toml"
    path.write_text(text)
    with pytest.raises(CampaignFileError, match=problem):
        load_campaign_file(path)


def test_cli_import_twice_then_a_bad_file(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    good = tmp_path / "campaign.toml"
    good.write_text(
        '[[groups]]\nslug = "flippable"\nname = "Flippable"\n\n'
        '[[experiments]]\nkey = "share"\nname = "Share"\nkind = "share"\nmetric = "signup"\n'
        'status = "running"\n[[experiments.variants]]\nkey = "a"\nname = "A"\n'
        'text = "Join me: {{ referral_link }}"\n'
    )
    runner = CliRunner()
    first = runner.invoke(main, ["import", str(good)], obj=Runtime(settings))
    assert first.exit_code == 0, first.output
    assert "created: group flippable" in first.output
    assert first.output.strip().endswith("campaign.toml: changed")
    second = runner.invoke(main, ["import", str(good)], obj=Runtime(settings))
    assert second.output.strip() == "campaign.toml: no changes"
    dry = runner.invoke(main, ["import", "--dry-run", str(good)], obj=Runtime(settings))
    assert dry.exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("{{ referral_link }}", "{{ link }}"))
    failed = runner.invoke(main, ["import", str(bad)], obj=Runtime(settings))
    assert failed.exit_code == 1
    assert "nothing imported" in failed.output and "unknown placeholder" in failed.output
    assert len(failed.output.strip().splitlines()) == 1
    with session_factory(engine)() as session:
        share = session.scalars(sa.select(Variant).where(Variant.key == "a")).one()
        assert share.content == {"text": "Join me: {{ referral_link }}"}
    engine.dispose()
