"""On an SQLite file, webhook commits leave WAL checkpoints to a background thread, which takes
the webhook writers' turn only to let the WAL start over (engine.sqlite_wal)."""

import time
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so
from cryptography.hazmat.primitives.asymmetric import ec

from engine import migrate, sqlite_wal
from engine.app import create_app
from engine.db import create_db_engine, session_factory
from tests.conftest import make_settings
from tests.webhooks.helpers import T0, event, post, seed_sends
from webhooks import wire


def test_with_no_checkpoint_interval_sqlite_checkpoints_itself(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'plain.sqlite3'}",
        sendgrid={"webhook_public_key": wire.public_key_base64(signing_key)},
        database={"wal_checkpoint_seconds": 0},
    )
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        fixture = seed_sends(session, 2)
    client = create_app({"TESTING": True}, settings=settings, sessions=sessions).test_client()
    assert post(client, signing_key, [event("delivered", fixture.sends[0], T0)]).status_code == 200
    assert sqlite_wal.checkpointer_of(engine) is None
    with engine.connect() as connection:
        autocheckpoint = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    assert autocheckpoint == 4000  # engine.db's own setting, untouched
    engine.dispose()


def test_webhook_commits_leave_checkpoints_to_a_thread(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'hooks.sqlite3'}",
        sendgrid={"webhook_public_key": wire.public_key_base64(signing_key)},
    )
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        fixture = seed_sends(session, 20)
    client = create_app({"TESTING": True}, settings=settings, sessions=sessions).test_client()
    for n, send in enumerate(fixture.sends):
        events = [event("delivered", send, T0 + n), event("open", send, T0 + n + 60)]
        assert post(client, signing_key, events).status_code == 200
    checkpointer = sqlite_wal.checkpointer_of(engine)
    assert checkpointer is not None and checkpointer.is_alive()
    assert checkpointer.interval == settings.database.wal_checkpoint_seconds
    assert set(checkpointer.turns) == {"webhooks"}
    with engine.connect() as connection:  # the pool's connection: the webhook writes'
        autocheckpoint = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    assert autocheckpoint == 0
    deadline = time.monotonic() + 5
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    busy, frames, copied = checkpointer.last or (None, None, None)
    assert busy == 0 and frames and copied == frames  # the batches' pages reached the file
    with sessions() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM events")) == 40
    engine.dispose()
    checkpointer.join(timeout=5)
    assert not checkpointer.is_alive() and sqlite_wal.checkpointer_of(engine) is None


def test_the_restart_takes_every_registered_turn(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'turns.sqlite3'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode = WAL")
        connection.exec_driver_sql("CREATE TABLE t (x)")
    taken: list[str] = []

    class Turn:
        def __init__(self, name: str) -> None:
            self.name = name

        def __enter__(self) -> None:
            taken.append(self.name)

        def __exit__(self, *_exc: object) -> None:
            taken.append(f"/{self.name}")

    raw = engine.raw_connection()
    try:
        for name in ("landing", "webhooks"):
            sqlite_wal.checkpoint_in_background(engine, raw, 0.01, name, lambda n=name: Turn(n))
        checkpointer = sqlite_wal.checkpointer_of(engine)
        assert checkpointer is not None
        checkpointer.restart_frames = 1
        cursor = raw.cursor()
        for n in range(50):
            cursor.execute("INSERT INTO t VALUES (?)", (n,))
            raw.commit()
        deadline = time.monotonic() + 5
        while "/webhooks" not in taken and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        raw.close()
    engine.dispose()
    assert taken[:4] == ["landing", "webhooks", "/webhooks", "/landing"]  # in name order
    with so.Session(engine) as session:
        assert session.scalar(sa.text("SELECT count(*) FROM t")) == 50
    engine.dispose()
