"""The landing view's write: the same counts as the report rollups' definitions (both backends),
committed on its own connection, and landing writers taking turns on SQLite."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.dialects import postgresql, sqlite

from engine import migrate, sqlite_wal
from engine.app import create_app
from engine.db import create_db_engine
from engine.models import Group, Send, Variant, Visit, VisitRollup
from engine.reports import rollups
from engine.reports.rebuild import rebuild_rollups
from engine.reports.rollups import SEND_KEY_COLUMNS, RollupChanges, hour_of
from engine.settings import Settings
from tests.conftest import make_settings
from tests.engine.reports.rollup_support import assert_rollups_match_rebuild, rollup_rows
from tests.engine.sending import factories as mail
from tests.variants.landing_support import add_experiment, add_groups
from variants import forks, landing_sqlite, landing_visits
from variants.landing_sqlite import write_turn
from variants.landing_state import runtime_of
from variants.landing_visits import NewVisit, record_visit, record_visit_committed

AT = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # an exact hour: the bucket key's edge case
LATER = datetime(2026, 11, 25, 9, 30, 15, 250000, tzinfo=UTC)


def count_sent(session: so.Session, send: Send) -> None:
    """Count the send in the rollups as the mailer does when it records a send as sent."""
    state = {column.key: getattr(send, column.key) for column in SEND_KEY_COLUMNS}
    rollups.record_sent(session, [{"id": send.id, **state}])


def test_every_kind_of_visit_counts_as_a_rebuild_would(session: so.Session) -> None:
    visits = every_kind_of_visit(session)
    ids = [record_visit(session, visit) for visit in visits]
    assert len(set(ids)) == len(visits)
    stored = session.scalars(sa.select(Visit).where(Visit.id.in_(ids)).order_by(Visit.id)).all()
    assert [(v.visitor_id, v.created_at) for v in stored] == [
        (v.visitor_id, v.created_at) for v in visits
    ]
    session.expire_all()
    assert session.get(Variant, visits[0].landing_variant_id).trials == 8
    assert_rollups_match_rebuild(session)


def test_every_kind_of_committed_visit_counts_as_a_rebuild_would(
    committed_engine: sa.Engine,
) -> None:
    """The landing view's own write: on an SQLite file, its connection's trigger counts trials
    and visit rollups (variants.landing_sqlite); elsewhere its statements do."""
    with so.Session(committed_engine) as session:
        visits = every_kind_of_visit(session)
        session.commit()
    ids = [record_visit_committed(committed_engine, visit) for visit in visits]
    assert len(set(ids)) == len(visits)
    with so.Session(committed_engine) as session:
        assert session.get(Variant, visits[0].landing_variant_id).trials == 8
        assert_rollups_match_rebuild(session)
        session.rollback()


def every_kind_of_visit(session: so.Session) -> list[NewVisit]:
    """Groups, a landing experiment, a sent and an unsent send, and a visit of every kind."""
    groups = add_groups(session)
    landing = add_experiment(session)
    experiments = mail.mail_experiments(session)
    recruiter, other = mail.recruiters(session, 2)
    rebuild_rollups(session)  # bulk-inserted recruiters come without their rollups
    send = mail.sent_send(session, recruiter, experiments)
    count_sent(session, send)
    unsent = Send(mailing_id=send.mailing_id, recruiter_id=other.id, status="planned")
    session.add(unsent)
    session.flush()
    variant = landing.variants[0].id
    share = experiments["share"].variants[1].id
    visits = [
        NewVisit("plain", variant, AT),
        NewVisit("no-experiment", None, AT),
        NewVisit("from-group", variant, AT, source_group_id=groups[0].id),
        NewVisit("from-group", variant, LATER, source_group_id=groups[0].id),  # not first
        NewVisit("from-group", variant, LATER, source_group_id=groups[1].id),
        NewVisit("friend", variant, AT, recruiter_id=recruiter.id, share_variant_id=share),
        NewVisit("clicker", variant, LATER, send_id=send.id),
        NewVisit("clicker-2", None, LATER, send_id=send.id),  # the send's second visit
        NewVisit("early", variant, AT, send_id=unsent.id),  # not sent: no send bucket
        NewVisit(
            "all", variant, LATER, groups[2].id, recruiter.id, send.id, share
        ),  # every source at once
    ]
    return visits


def test_a_visit_and_its_conversion_share_one_rollup_row(session: so.Session) -> None:
    """The visit bucket's key is written as engine.reports.rollups writes it (same text)."""
    add_groups(session)
    variant = add_experiment(session).variants[0].id
    record_visit(session, NewVisit("v", variant, AT))
    changes = RollupChanges()
    changes.visits[(variant, hour_of(AT))]["signups"] += 1
    changes.apply(session)
    rows = rollup_rows(session)["visit_rollups"]
    assert rows == [(variant, AT, 1, 1, 0)]


def test_a_committed_visit_is_seen_by_other_connections(committed_engine: sa.Engine) -> None:
    with so.Session(committed_engine) as session:
        add_groups(session)
        variant = add_experiment(session).variants[0].id
        session.commit()
    visit_id = record_visit_committed(committed_engine, NewVisit("v", variant, LATER))
    with so.Session(committed_engine) as other:
        visit = other.get(Visit, visit_id)
        assert visit is not None and visit.created_at == LATER
        assert other.get(Variant, variant).trials == 1
        assert other.scalar(sa.select(VisitRollup.visits)) == 1


def test_a_failed_committed_write_leaves_nothing_behind(committed_engine: sa.Engine) -> None:
    with so.Session(committed_engine) as session:
        add_groups(session)
        variant = add_experiment(session).variants[0].id
        session.commit()
    with pytest.raises(sa.exc.IntegrityError):  # no such group: the visit's foreign key fails
        record_visit_committed(
            committed_engine, NewVisit("v", variant, LATER, source_group_id=987654)
        )
    with so.Session(committed_engine) as other:
        assert other.scalar(sa.select(sa.func.count()).select_from(Visit)) == 0
        assert other.get(Variant, variant).trials == 0
    # The connection went back to the pool clean and the turn was released.
    assert record_visit_committed(committed_engine, NewVisit("v", variant, LATER)) > 0


def test_the_committed_write_is_all_or_nothing(
    committed_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with so.Session(committed_engine) as session:
        group = add_groups(session)[0].id
        variant = add_experiment(session).variants[0].id
        session.commit()
    write = landing_visits._write

    def write_then_fail(*args: object) -> int:
        write(*args)  # every statement ran…
        raise RuntimeError("the process is stopping")  # …but the commit never happens

    monkeypatch.setattr(landing_visits, "_write", write_then_fail)
    with pytest.raises(RuntimeError):  # attributed: more than one statement
        record_visit_committed(committed_engine, NewVisit("v", variant, LATER, group))
    with so.Session(committed_engine) as other:
        assert other.scalar(sa.select(sa.func.count()).select_from(Visit)) == 0
        assert other.scalar(sa.select(sa.func.count()).select_from(VisitRollup)) == 0
        assert other.get(Variant, variant).trials == 0


def test_a_visit_nothing_attributed_is_one_statement_on_sqlite(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    migrate.upgrade(engine)
    with so.Session(engine) as session:
        add_groups(session)
        variant = add_experiment(session).variants[0].id
        session.commit()
    record_visit_committed(engine, NewVisit("v", variant, LATER))  # opens the own connection
    own = landing_sqlite.own_connection(engine).dbapi_connection
    statements: list[str] = []
    own.set_trace_callback(statements.append)
    record_visit_committed(engine, NewVisit("w", variant, LATER))
    own.set_trace_callback(None)
    # The driver reports the INSERT once more per statement its trigger runs; nothing else ran
    # (no BEGIN, no COMMIT, no statement of ours for the trial or the rollup).
    assert statements and all(sql.startswith("INSERT INTO visits (") for sql in statements)
    with so.Session(engine) as session:
        assert session.get(Variant, variant).trials == 2
        assert session.scalars(sa.select(VisitRollup.visits)).all() == [2]
        assert_rollups_match_rebuild(session)
    engine.dispose()


def test_a_visit_nothing_attributed_is_all_or_nothing_too(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    migrate.upgrade(engine)
    with so.Session(engine) as session:
        add_groups(session)
        variant = add_experiment(session).variants[0].id
        session.commit()
    with engine.begin() as connection:  # the trigger's second statement will fail
        connection.exec_driver_sql("ALTER TABLE visit_rollups RENAME TO moved_rollups")
    with pytest.raises(sa.exc.OperationalError):
        record_visit_committed(engine, NewVisit("v", variant, LATER))
    with so.Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Visit)) == 0
        assert session.get(Variant, variant).trials == 0
    engine.dispose()


def test_a_visit_through_a_recruiter_and_a_send_commits_its_rollups(
    committed_engine: sa.Engine,
) -> None:
    with so.Session(committed_engine) as session:
        groups = add_groups(session)
        variant = add_experiment(session).variants[0].id
        experiments = mail.mail_experiments(session)
        (recruiter,) = mail.recruiters(session, 1)
        rebuild_rollups(session)  # bulk-inserted recruiters come without their rollups
        send = mail.sent_send(session, recruiter, experiments)
        count_sent(session, send)
        session.commit()
        ids = (groups[0].id, recruiter.id, send.id)
    visit = NewVisit("v", variant, LATER, *ids)
    record_visit_committed(committed_engine, visit)
    with so.Session(committed_engine) as session:
        assert_rollups_match_rebuild(session)
        session.rollback()


def _sqlite_engine(tmp_path: Path) -> sa.Engine:
    return create_db_engine(make_settings(f"sqlite:///{tmp_path / 'turns.sqlite3'}"))


def test_writers_of_other_processes_wait_for_the_turn(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n"
        "    print('busy')\nelse:\n    print('free')\n"
    )
    lock_file = f"{engine.url.database}-landing-lock"

    def other_process() -> str:
        command = [sys.executable, "-c", probe, lock_file]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    with write_turn(engine):
        assert other_process() == "busy"
    assert other_process() == "free"
    engine.dispose()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    order: list[str] = []
    holding = threading.Event()

    def second() -> None:
        holding.wait()
        with write_turn(engine):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with write_turn(engine):
        holding.set()
        time.sleep(0.05)  # the other thread is blocked meanwhile
        order.append("first")
    thread.join(timeout=5)
    assert order == ["first", "second"]
    engine.dispose()


def test_postgresql_and_memory_databases_need_no_turn() -> None:
    memory = create_db_engine(make_settings("sqlite:///:memory:"))
    postgres = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connects
    done = threading.Event()

    def nested() -> None:
        # A turn is not re-entrant: if one were taken, the inner one would wait forever.
        with write_turn(memory), write_turn(memory), write_turn(postgres), write_turn(postgres):
            done.set()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert done.is_set()


def test_the_landing_page_commits_its_visit_on_a_connection_of_its_own(
    settings: Settings, committed_sessions: so.sessionmaker[so.Session]
) -> None:
    with committed_sessions() as session:
        add_groups(session)
        variant = add_experiment(session, arms=1).variants[0].id
        session.commit()
    quiet = settings.replace(database={"wal_checkpoint_seconds": 0})  # no thread on a shared db
    app = create_app({"TESTING": True}, settings=quiet, sessions=committed_sessions)
    assert runtime_of(app).visit_engine is not None
    assert app.test_client().get("/?g=indivisible").status_code == 200
    with committed_sessions() as other:
        visit = other.scalars(sa.select(Visit)).one()
        assert (visit.landing_variant_id, visit.source_group_id) == (
            variant,
            other.scalar(sa.select(Group.id).where(Group.slug == "indivisible")),
        )
        assert other.get(Variant, variant).trials == 1


def test_a_locked_database_is_a_503_not_a_crash(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'locked.sqlite3'}")
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    with so.Session(engine) as session:
        add_groups(session)
        session.commit()
    impatient = settings.replace(database={"busy_timeout_ms": 50})
    app = create_app({"TESTING": True}, settings=impatient)
    blocker = sqlite3.connect(engine.url.database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        response = app.test_client().get("/")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert app.test_client().get("/").status_code == 200  # and works again once it is free
    engine.dispose()


def test_checkpoints_move_off_the_request_path_and_stop_with_the_engine(tmp_path: Path) -> None:
    engine = create_db_engine(make_settings(f"sqlite:///{tmp_path / 'wal.sqlite3'}"))
    migrate.upgrade(engine)
    with so.Session(engine) as session:
        add_groups(session)
        variant = add_experiment(session).variants[0].id
        session.commit()
    for _ in range(20):
        record_visit_committed(engine, NewVisit("v", variant, LATER), checkpoint_seconds=0.02)
    checkpointer = sqlite_wal.checkpointer_of(engine)
    assert checkpointer is not None and checkpointer.is_alive()
    own = landing_sqlite.own_connection(engine)  # this thread's landing connection
    assert own.cursor().execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    deadline = time.monotonic() + 5
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    busy, frames, copied = checkpointer.last or (None, None, None)
    assert busy == 0 and frames and copied == frames  # the visits' pages reached the file
    engine.dispose()
    checkpointer.join(timeout=5)
    assert not checkpointer.is_alive() and sqlite_wal.checkpointer_of(engine) is None


def test_each_writer_thread_keeps_one_connection_outside_the_pool(tmp_path: Path) -> None:
    engine = create_db_engine(make_settings(f"sqlite:///{tmp_path / 'own.sqlite3'}"))
    migrate.upgrade(engine)
    with so.Session(engine) as session:
        add_groups(session)
        variant = add_experiment(session).variants[0].id
        session.commit()
    ids = [record_visit_committed(engine, NewVisit("v", variant, LATER)) for _ in range(3)]
    mine = landing_sqlite.own_connection(engine)
    theirs: list[object] = []
    thread = threading.Thread(
        target=lambda: (
            record_visit_committed(engine, NewVisit("w", variant, LATER)),
            theirs.append(landing_sqlite.own_connection(engine)),
        )
    )
    thread.start()
    thread.join(timeout=5)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert landing_sqlite.own_connection(engine) is mine  # kept between writes
    assert theirs and theirs[0] is not mine  # one per thread
    assert engine.pool.checkedout() == 0  # neither holds a pooled connection
    with so.Session(engine) as session:
        assert session.get(Variant, variant).trials == 4
    driver = mine.dbapi_connection
    engine.dispose()  # closes them
    with pytest.raises(sqlite3.ProgrammingError):
        driver.execute("SELECT 1")


def test_a_failed_write_rolls_back_and_the_next_one_succeeds(tmp_path: Path) -> None:
    engine = create_db_engine(make_settings(f"sqlite:///{tmp_path / 'retry.sqlite3'}"))
    migrate.upgrade(engine)
    with so.Session(engine) as session:
        add_groups(session)
        variant = add_experiment(session).variants[0].id
        session.commit()
    with pytest.raises(sa.exc.IntegrityError):  # no such send: the foreign key refuses it
        record_visit_committed(engine, NewVisit("v", variant, LATER, send_id=999_999))
    assert record_visit_committed(engine, NewVisit("v", variant, LATER)) > 0
    with so.Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Visit)) == 1
        assert session.get(Variant, variant).trials == 1
    engine.dispose()


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()])
def test_a_visits_rollup_parameters_are_converted_once_per_variant_and_hour(
    dialect: sa.Dialect,
) -> None:
    statements = landing_visits._Statements(
        **{
            **vars(landing_visits._statements(dialect)),
            "visit_rollups_by_hour": {},
        }
    )
    first = landing_visits._visit_rollup(statements, 3, LATER)
    generic = statements.upserts["visit_rollups"].parameters(
        {
            "landing_variant_id_0": 3,
            "visit_hour_0": hour_of(LATER),
            "visits_0": 1,
            "signups_0": 0,
            "groups_ticked_0": 0,
        }
    )
    assert first == (tuple(generic) if isinstance(generic, list) else generic)
    elsewhere = LATER.astimezone(timezone(timedelta(hours=-5))) + timedelta(minutes=20)
    assert landing_visits._visit_rollup(statements, 3, elsewhere) is first  # the same UTC hour
    assert landing_visits._visit_rollup(statements, 4, LATER) != first
    assert landing_visits._visit_rollup(statements, 3, LATER + timedelta(hours=1)) != first
    for hours in range(300):
        landing_visits._visit_rollup(statements, 3, LATER + timedelta(hours=hours))
    assert len(statements.visit_rollups_by_hour) <= 256  # old hours are forgotten


def test_a_forked_process_opens_its_own_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _sqlite_engine(tmp_path)
    migrate.upgrade(engine)
    mine = landing_sqlite.own_connection(engine)
    assert landing_sqlite.own_connection(engine) is mine
    monkeypatch.setattr(forks, "_generation", forks.generation() + 1)  # as in a forked child
    theirs = landing_sqlite.own_connection(engine)
    assert theirs is not mine and landing_sqlite.own_connection(engine) is theirs
    engine.dispose()
