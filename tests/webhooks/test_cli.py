import json

import sqlalchemy.orm as so
from click.testing import CliRunner

from engine.cli import main
from engine.runtime import Runtime
from engine.settings import Settings
from tests.webhooks.helpers import NOW, T0, Fixture, event
from webhooks import wire
from webhooks.ingest import ingest_body


def run(settings: Settings, sessions: so.sessionmaker[so.Session], *args: str):  # type: ignore[no-untyped-def]
    runtime = Runtime(settings)
    runtime.__dict__["sessions"] = sessions  # read through the test's rolled-back connection
    return CliRunner().invoke(main, list(args), obj=runtime)


def load(session: so.Session, settings: Settings, world: Fixture) -> None:
    first, second, third = world.sends
    events = [
        event("delivered", first, T0),
        event("open", first, T0 + 50, sg_machine_open=True),
        event("bounce", second, T0, type="bounce"),
        event("bounce", third, T0, type="blocked"),
        event("group_unsubscribe", third, T0 + 9, asm_group_id=101),
        {"event": "open"},
    ]
    ingest_body(session, wire.build_body(events + events[:1]), settings.webhooks, NOW)
    session.commit()


def test_events_stats_json(settings, sessions, session, world) -> None:  # type: ignore[no-untyped-def]
    load(session, settings, world)
    result = run(settings, sessions, "events", "stats", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert (stats["received"], stats["unique"], stats["duplicates"], stats["quarantined"]) == (
        7,
        5,
        1,
        1,
    )
    assert stats["by_type"]["bounce:bounce"] == stats["by_type"]["bounce:blocked"] == 1
    assert stats["opens"] == {"human": 0, "machine": 1}


def test_events_stats_table(settings, sessions, session, world) -> None:  # type: ignore[no-untyped-def]
    load(session, settings, world)
    result = run(settings, sessions, "events", "stats")
    assert result.exit_code == 0, result.output
    assert "type: bounce:blocked" in result.output
    assert "duplicates" in result.output


def test_suppressions_list(settings, sessions, session, world) -> None:  # type: ignore[no-untyped-def]
    load(session, settings, world)
    result = run(settings, sessions, "suppressions", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["email"], r["scope"], r["reason"]) for r in rows] == [
        (world.sends[2].email, "asm:101", "group_unsubscribe"),
        (world.sends[1].email, "global", "bounce"),
    ]
    assert rows[0]["at"].startswith("2026-11-18T11:06:49")
    table = run(settings, sessions, "suppressions", "list")
    assert world.sends[1].email in table.output and "scope" in table.output


def test_empty_and_unreachable(settings, sessions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert run(settings, sessions, "suppressions", "list").output.strip() == "no suppressions"
    empty = settings.replace(database={"url": f"sqlite:///{tmp_path / 'none.sqlite3'}"})
    result = CliRunner().invoke(main, ["events", "stats"], obj=Runtime(empty))
    assert result.exit_code == 1
    assert "resistry db upgrade" in result.output
    assert "Traceback" not in result.output
