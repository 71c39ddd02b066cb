"""``resistry demo load``: demo data for ``make run``. Loading twice changes nothing, not even
what staff edited in between.

The groups and experiments come from ``variants/demo_campaign.toml`` through the importer (so
the demo is also its worked example). Then, generated from a fixed seed: about 3,000 contacts
who signed up for groups (a share of them through a recruiter's link), about 2,000 recruiters
among them, and demo staff users. Contacts are only added when none of the demo's addresses
exists yet, so a second run adds nothing.
"""

from __future__ import annotations

import bisect
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import click
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.auth import create_user
from engine.models import Contact, Group, Recruiter, Signup, User, Visit, utcnow
from engine.reports.rebuild import rebuild_rollups
from engine.runtime import Runtime, pass_runtime
from engine.settings import Settings
from variants.importer import ImportReport, import_campaign, load_campaign_file

DEMO_CAMPAIGN = Path(__file__).with_name("demo_campaign.toml")
DEMO_PASSWORD = "resistry-demo"
# (username, role, group slug): printed by the command so people can log in.
DEMO_USERS = (
    ("admin", "admin", None),
    ("analyst", "analyst", None),
    ("swing-left-manager", "group_manager", "swing-left"),
)
DEMO_SEED = 2026
DEMO_CONTACTS = 3000
DEMO_RECRUITERS = 2000
DEMO_DAYS = 90  # signups spread over this many days before now
REFERRED_SHARE = 0.45  # of contacts after the first third, who came through a recruiter's link
# Popularity of groups when contacts tick boxes (bigger groups are ticked more often).
GROUP_APPEAL = {
    "swing-left": 5, "indivisible": 5, "sister-district": 3, "run-for-something": 3,
    "flippable": 2, "latino-victory-project": 2, "march-for-our-lives": 3,
}  # fmt: skip
FIRST_NAMES = (
    "Ada", "Amara", "Ana", "Ben", "Camila", "Chen", "Dana", "Darius", "Elena", "Emeka", "Farah",
    "Grace", "Hana", "Isaac", "Jamal", "Jordan", "Keisha", "Kenji", "Laila", "Lucas", "Maya",
    "Mateo", "Nadia", "Noah", "Olivia", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Wei",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Baker", "Chavez", "Diaz", "Evans", "Garcia", "Hughes", "Jackson", "Kim", "Lopez",
    "Martin", "Nguyen", "Okafor", "Patel", "Rivera", "Smith", "Thompson", "Walker", "Young",
)  # fmt: skip
ZIP_PREFIXES = ("191", "152", "481", "532", "850", "891", "303", "275", "787", "331", "100")
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


@dataclass(frozen=True)
class DemoReport:
    campaign: ImportReport
    contacts_added: int
    recruiters_added: int
    users_added: list[str]


def demo_email(index: int) -> str:
    """The address of demo contact ``index`` (reserved example domains: never deliverable)."""
    first = FIRST_NAMES[index % len(FIRST_NAMES)].lower()
    last = LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)].lower()
    domain = ("example.org", "example.com", "example.net")[index % 3]
    return f"{first}.{last}.{index}@{domain}"


def load_demo(
    session: so.Session,
    settings: Settings,
    *,
    now: datetime | None = None,
    contacts: int = DEMO_CONTACTS,
    recruiters: int = DEMO_RECRUITERS,
    seed: int = DEMO_SEED,
) -> DemoReport:
    """Load the demo campaign, contacts, recruiters and users that are missing; returns counts.

    Raises :class:`variants.importer.CampaignFileError` if the demo campaign does not import.
    """
    now = now or utcnow()
    data = load_campaign_file(DEMO_CAMPAIGN)
    demo_slugs = [group["slug"] for group in data["groups"]]
    if session.scalar(sa.select(Group.id).where(Group.slug.in_(demo_slugs)).limit(1)) is None:
        campaign = import_campaign(
            session, data, settings.experiments, actor=f"import:{DEMO_CAMPAIGN.name}"
        )
    else:  # loaded before: staff may have edited it since, and a re-run must not undo that
        campaign = ImportReport(
            notes=[
                f"the demo campaign was loaded before and is left as it is now"
                f" (`resistry import variants/{DEMO_CAMPAIGN.name}`"
                " would apply the file again)"
            ]
        )
    users_added = [
        username
        for username, role, group_slug in DEMO_USERS
        if _ensure_user(session, username, role, group_slug)
    ]
    contacts_added = recruiters_added = 0
    first_email = demo_email(0)
    if session.scalar(sa.select(Contact.id).where(Contact.email == first_email)) is None:
        contacts_added, recruiters_added = _add_contacts(
            session, settings, now, contacts, recruiters, random.Random(seed)
        )
        rebuild_rollups(session)  # the rows above bypass the write points that keep them
    return DemoReport(campaign, contacts_added, recruiters_added, users_added)


def _ensure_user(session: so.Session, username: str, role: str, group_slug: str | None) -> bool:
    if session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        return False
    create_user(session, username, DEMO_PASSWORD, role, group_slug)
    return True


def _add_contacts(
    session: so.Session,
    settings: Settings,
    now: datetime,
    count: int,
    recruiter_count: int,
    rng: random.Random,
) -> tuple[int, int]:
    """Plan everything from the seed first, then insert in four bulk statements."""
    groups = list(session.scalars(sa.select(Group).where(Group.active).order_by(Group.id)))
    if not groups or count == 0:
        return 0, 0
    appeal = [GROUP_APPEAL.get(group.slug, 1) for group in groups]
    times = sorted(now - timedelta(seconds=rng.uniform(0, DEMO_DAYS * 86400)) for _ in range(count))
    recruiter_indexes = sorted(rng.sample(range(count), min(recruiter_count, count)))
    contact_ids = _insert(
        session,
        Contact,
        [
            {
                "email": demo_email(index),
                "zip_code": rng.choice(ZIP_PREFIXES) + f"{rng.randrange(100):02d}",
                "first_name": FIRST_NAMES[index % len(FIRST_NAMES)],
                "created_at": times[index],
            }
            for index in range(count)
        ],
    )
    codes: set[str] = set(session.scalars(sa.select(Recruiter.code)))
    recruiter_ids = _insert(
        session,
        Recruiter,
        [
            {
                "contact_id": contact_ids[index],
                "code": _new_code(rng, codes),
                "active": True,
                "created_at": times[index],
            }
            for index in recruiter_indexes
        ],
    )
    recruiter_of = dict(zip(recruiter_indexes, recruiter_ids, strict=True))
    # A share of later contacts came through an earlier recruiter's link; leaders bring many
    # friends, so the earliest recruiters are favoured (a heavy tail).
    referred: dict[int, int] = {}
    for index in range(count // 3, count):
        earlier = bisect.bisect_left(recruiter_indexes, index)
        if earlier and rng.random() < REFERRED_SHARE:
            referred[index] = recruiter_of[recruiter_indexes[int(earlier * rng.random() ** 3)]]
    visit_ids = _insert(
        session,
        Visit,
        [
            {
                "visitor_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "recruiter_id": recruiter_id,
                "contact_id": contact_ids[index],
                "created_at": times[index] - timedelta(minutes=rng.uniform(1, 30)),
                "converted_at": times[index],
            }
            for index, recruiter_id in referred.items()
        ],
    )
    visit_of = dict(zip(referred, visit_ids, strict=True))
    signups = []
    for index in range(count):
        order = rng.sample(range(len(groups)), len(groups))  # the order the boxes appeared in
        ticked = {
            rng.choices(range(len(groups)), weights=appeal)[0]
            for _ in range(rng.choice((1, 1, 2, 2, 3)))
        }
        slugs = [groups[i].slug for i in order]
        signups.extend(
            {
                "contact_id": contact_ids[index],
                "group_id": groups[i].id,
                "visit_id": visit_of.get(index),
                "consent_text": settings.landing.consent_text.format(group=groups[i].name),
                "groups_order": slugs,
                "position": position,
                "created_at": times[index],
            }
            for position, i in enumerate(order)
            if i in ticked
        )
    _insert(session, Signup, signups)
    return count, len(recruiter_ids)


def _insert(session: so.Session, model: type, rows: list[dict]) -> list[int]:
    """Insert ``rows`` in one statement; returns their ids in the order given."""
    if not rows:
        return []
    statement = sa.insert(model).returning(model.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows))


def _new_code(rng: random.Random, used: set[str]) -> str:
    while True:
        code = "".join(rng.choice(CODE_ALPHABET) for _ in range(11))
        if code not in used:
            used.add(code)
            return code


@click.group()
def demo() -> None:
    """Demo data."""


@demo.command("load")
@pass_runtime
def demo_load(runtime: Runtime) -> None:
    """Load the demo data (safe to run again: nothing is duplicated or changed)."""
    with runtime.sessions.begin() as session:
        report = load_demo(session, runtime.settings)
    for line in report.campaign.lines():
        click.echo(line)
    if report.contacts_added or report.users_added or report.campaign.changed:
        click.echo(
            f"demo data loaded: {report.contacts_added} contacts, "
            f"{report.recruiters_added} recruiters, users added: "
            f"{', '.join(report.users_added) or 'none'}"
        )
    else:
        click.echo("demo data already loaded: nothing added or changed")
    for username, role, _ in DEMO_USERS:
        click.echo(f"  log in at /admin/login as {username!r} ({role}), password {DEMO_PASSWORD!r}")
