"""Demo data for ``make run``: partner groups, experiments and recruiters. Loading is idempotent."""

from __future__ import annotations

import click
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Group
from engine.runtime import Runtime, pass_runtime

DEMO_GROUPS = [
    (
        "swing-left",
        "Swing Left",
        "Win the elections that decide who holds power.",
        ["Canvasser", "Phone banker", "Letter writer", "Donor"],
        ["voting rights"],
    ),
    (
        "indivisible",
        "Indivisible",
        "Local groups holding members of Congress accountable.",
        ["Group leader", "Constituent caller", "Event host"],
        ["voting rights", "police reform"],
    ),
    (
        "sister-district",
        "Sister District",
        "Build progressive power in state legislatures.",
        ["Volunteer", "Researcher", "Fundraiser"],
        ["voting rights", "racial equality"],
    ),
    (
        "run-for-something",
        "Run for Something",
        "Recruit young progressives to run for office.",
        ["Candidate", "Mentor", "Volunteer"],
        ["LGBTQ rights", "racial equality"],
    ),
    (
        "flippable",
        "Flippable",
        "Flip state legislatures from red to blue.",
        ["Donor", "Volunteer"],
        ["voting rights"],
    ),
    (
        "latino-victory-project",
        "Latino Victory Project",
        "Grow Latino political power.",
        ["Organizer", "Translator", "Volunteer"],
        ["racial equality", "voting rights"],
    ),
    (
        "march-for-our-lives",
        "March for Our Lives",
        "Students ending gun violence.",
        ["Student organizer", "Volunteer", "Social media"],
        ["police reform"],
    ),
]


def load_demo_groups(session: so.Session) -> int:
    """Insert the demo partner groups that are missing; returns how many were added."""
    existing = set(session.scalars(sa.select(Group.slug)))
    added = 0
    for slug, name, description, roles, areas in DEMO_GROUPS:
        if slug in existing:
            continue
        session.add(
            Group(
                slug=slug,
                name=name,
                description=description,
                roles=roles,
                policy_areas=areas,
                website=f"https://{slug}.example.org",
            )
        )
        added += 1
    return added


@click.group()
def demo() -> None:
    """Demo data."""


@demo.command("load")
@pass_runtime
def demo_load(runtime: Runtime) -> None:
    """Load the demo data (safe to run again: nothing is duplicated)."""
    with runtime.sessions.begin() as session:
        added = load_demo_groups(session)
    click.echo(f"demo data loaded ({added} groups added)")
