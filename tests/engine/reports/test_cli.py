"""``resistry reports rebuild-rollups`` on a committed database, and its one-line failure."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so
from click.testing import CliRunner

from engine.cli import main
from engine.models import SendRollup, VisitRollup
from engine.runtime import Runtime
from engine.settings import Settings
from tests.conftest import make_settings
from tests.engine.reports import factories as f


def invoke(runtime: Runtime, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), obj=runtime)


def test_rebuild_recomputes_every_rollup_from_the_rows(
    committed_sessions: so.sessionmaker[so.Session], settings: Settings
) -> None:
    with committed_sessions.begin() as session:
        exp = f.experiment(session, "subject", "click")
        landing = f.experiment(session, "landing", "signup")
        m = f.mailing(session)
        for _ in range(3):
            f.send(session, m, subject=exp.variants[0], first_click_at=f.T0)
        f.visit(session, landing=landing.variants[1], joins=[f.group(session, "g")])
        # A stale counter, as a cache might hold after a crash of some other writer.
        session.add(VisitRollup(landing_variant_id=landing.variants[0].id, visit_hour=f.T0,
                                visits=99, signups=0, groups_ticked=0))  # fmt: skip
    runtime = Runtime(settings)
    try:
        result = invoke(runtime, "reports", "rebuild-rollups")
    finally:
        runtime.close()
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rollups rebuilt in ")
    assert "send_rollups 1, visit_rollups 1, group_rollups 1, group_flow_rollups 0" in result.output
    with committed_sessions() as session:
        assert session.scalars(sa.select(SendRollup.human_clicks)).all() == [3]
        assert session.execute(
            sa.select(VisitRollup.landing_variant_id, VisitRollup.visits)
        ).all() == [(landing.variants[1].id, 1)]


def test_rebuild_without_the_tables_fails_in_one_line(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    try:
        result = invoke(runtime, "reports", "rebuild-rollups")
    finally:
        runtime.close()
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot rebuild the rollups: no such table")
    assert "resistry db upgrade" in result.output
    assert len(result.output.strip().splitlines()) == 1
