from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so
from click.testing import CliRunner

from engine import migrate
from engine.auth import password_matches
from engine.cli import main
from engine.db import create_db_engine, session_factory
from engine.models import Contact, Experiment, Group, Recruiter, Signup, User, Visit
from engine.runtime import Runtime
from engine.settings import Settings
from tests.conftest import make_settings
from variants.demo import DEMO_CAMPAIGN, DEMO_PASSWORD, load_demo
from variants.importer import load_campaign_file
from variants.rendering import compile_body

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
DEMO_GROUPS = {
    "swing-left", "indivisible", "sister-district", "run-for-something", "flippable",
    "latino-victory-project", "march-for-our-lives",
}  # fmt: skip


def counts(session: so.Session) -> dict[str, int]:
    return {
        model.__name__: session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (Group, Experiment, Contact, Signup, Recruiter, Visit, User)
    }


def test_demo_loads_groups_experiments_people_and_is_idempotent(
    session: so.Session, settings: Settings
) -> None:
    report = load_demo(session, settings, now=NOW, contacts=150, recruiters=100)
    assert report.users_added == ["admin", "analyst", "swing-left-manager"]
    assert (report.contacts_added, report.recruiters_added) == (150, 100)
    groups = {g.slug: g for g in session.scalars(sa.select(Group))}
    assert set(groups) == DEMO_GROUPS
    assert groups["swing-left"].roles and "voting rights" in groups["swing-left"].policy_areas
    experiments = session.scalars(sa.select(Experiment)).all()
    assert {e.kind for e in experiments} == {"landing", "subject", "body", "share"}
    assert {e.status for e in experiments} == {"running"}
    subjects = next(e for e in experiments if e.kind == "subject")
    assert any(
        v.content["subject"] == "Not yet active? Find the role that works best for you"
        for v in subjects.variants
    )
    # Every contact ticked at least one group; some came through a recruiter's link.
    assert session.scalar(sa.select(sa.func.count(sa.distinct(Signup.contact_id)))) == 150
    assert session.scalar(sa.select(sa.func.count()).select_from(Visit)) > 0
    assert session.scalar(
        sa.select(sa.func.count()).select_from(Signup).where(Signup.visit_id.is_not(None))
    )
    signup = session.scalars(sa.select(Signup).limit(1)).one()
    assert signup.consent_text.startswith("Yes, ") and len(signup.groups_order) == 7
    admin = session.scalars(sa.select(User).where(User.username == "admin")).one()
    assert admin.role == "admin" and password_matches(admin, DEMO_PASSWORD)
    before = counts(session)

    edited = next(v for v in subjects.variants if v.content["subject"].startswith("Not yet"))
    edited.content = {"subject": "Edited by staff"}
    session.flush()

    again = load_demo(session, settings, now=NOW, contacts=150, recruiters=100)
    assert not again.campaign.changed
    assert "loaded before and is left as it is now" in again.campaign.notes[0]
    session.refresh(edited)
    assert edited.content == {"subject": "Edited by staff"}  # a re-run undoes no staff edit
    assert (again.contacts_added, again.recruiters_added, again.users_added) == (0, 0, [])
    assert counts(session) == before


def test_demo_campaign_bodies_use_the_documented_placeholders() -> None:
    campaign = load_campaign_file(DEMO_CAMPAIGN)
    bodies = [e for e in campaign["experiments"] if e["kind"] == "body"]
    used: set[str] = set()
    for body in bodies:
        for variant in body["variants"]:
            used |= compile_body(variant["mjml"], variant["name"]).placeholders
    assert {"referral_link", "friends_count", "share_text", "unsubscribe_url"} <= used


def test_cli_demo_load_full_size_twice(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "load"], obj=Runtime(settings))
    assert first.exit_code == 0, first.output
    assert "'admin' (admin), password 'resistry-demo'" in first.output
    with session_factory(engine)() as session:
        loaded = counts(session)
    assert loaded["Contact"] == 3000
    assert loaded["Recruiter"] == 2000
    second = runner.invoke(main, ["demo", "load"], obj=Runtime(settings))
    assert "demo data already loaded: nothing added or changed" in second.output
    assert "created:" not in second.output
    with session_factory(engine)() as session:
        assert counts(session) == loaded
    engine.dispose()
