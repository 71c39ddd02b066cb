"""How events are stored: the digest key, the few indexes, and the migration that made them."""

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import migrate
from engine.db import create_db_engine
from engine.models import Event
from engine.models.events import event_digest
from engine.settings import Settings
from tests.conftest import POSTGRES_URL, make_settings
from tests.webhooks.helpers import NOW, T0, Fixture, event
from webhooks import native, wire
from webhooks.clicks import stored_clicks
from webhooks.ingest import ingest_body, prepare_batch
from webhooks.native import Driver
from webhooks.store import insert_events


def ingest(session: so.Session, settings: Settings, events: list) -> dict[str, int]:
    result = ingest_body(session, wire.build_body(events), settings.webhooks, NOW)
    session.commit()
    return result.as_dict()


def test_the_digest_of_time_and_key_is_the_unique_key(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    opened = event("open", world.sends[0], T0 + 60, sg_event_id="ZGVsaXZlcmVkLTAtMjQ5MDI3MDg")
    assert ingest(session, settings, [opened])["stored"] == 1
    assert ingest(session, settings, [dict(opened)])["duplicates"] == 1
    stored = session.scalars(sa.select(Event)).one()
    assert stored.event_key == "ZGVsaXZlcmVkLTAtMjQ5MDI3MDg"
    assert stored.event_digest == event_digest(stored.event_key, stored.occurred_at)
    assert len(stored.event_digest) == 16
    assert stored.event_digest[:4] == (T0 + 60).to_bytes(4, "big")
    with pytest.raises(sa.exc.IntegrityError), session.begin_nested():
        session.add(
            Event(
                event_digest=stored.event_digest,
                event_key="another key",
                event_type="open",
                payload={},
            )
        )


def test_digests_sort_by_time_whatever_the_key() -> None:
    """A batch's inserts walk the unique index from one leaf to the next (SendGrid's ids are
    random; events are posted soon after they occur)."""
    moments = [datetime.fromtimestamp(T0 + n, UTC) for n in (0, 1, 1, 3600, 86_400)]
    keys = ["zz", "aa", "mm", "0", "z" * 100]
    digests = [event_digest(key, at) for key, at in zip(keys, moments, strict=True)]
    assert sorted(digests, key=lambda d: d[:4]) == digests
    assert len(set(digests)) == len(digests)
    # Milliseconds and the sub-second part do not matter: the second is the prefix.
    assert event_digest("k", moments[0].replace(microsecond=999_999))[:4] == digests[0][:4]
    assert event_digest("k", None)[:4] == bytes(4)  # no time: the index's start
    assert event_digest("k", datetime(1960, 1, 1, tzinfo=UTC))[:4] == bytes(4)


def test_events_carry_only_the_indexes_queries_need(session: so.Session) -> None:
    """Each index costs every webhook insert: the digest (deduplication) and the send's clicks
    (click reclassification), the latter only over clicks."""
    inspector = sa.inspect(session.connection())
    indexes = {index["name"]: index for index in inspector.get_indexes("events")}
    uniques = inspector.get_unique_constraints("events")
    assert [u["column_names"] for u in uniques] == [["event_digest"]]
    assert set(indexes) - {"uq_events_event_digest"} == {"ix_events_click_send_id"}
    assert inspector.get_foreign_keys("events") == []
    if session.get_bind().dialect.name == "sqlite":
        definition = session.scalar(
            sa.text("SELECT sql FROM sqlite_master WHERE name = 'ix_events_click_send_id'")
        )
    else:
        definition = session.scalar(
            sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_events_click_send_id'")
        )
    assert "WHERE" in definition.upper() and "'click'" in definition


def test_reading_a_sends_clicks_uses_the_partial_index(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    ingest(
        session,
        settings,
        [
            event("delivered", send, T0),
            event("click", send, T0 + 600, url="https://a"),
            event("open", send, T0 + 300),
        ],
    )
    clicks = stored_clicks(session, [send.id])
    assert [(url, label) for _, _, _, url, label in clicks[send.id]] == [("https://a", "human")]

    connection = session.connection()
    dialect = connection.dialect.name
    sql = "SELECT id FROM events WHERE event_type = 'click' AND " + native.in_list(
        dialect, "send_id"
    )
    parameter = (native.list_parameter(dialect, [send.id]),)
    if dialect == "sqlite":
        plan = " ".join(
            str(row[-1])
            for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameter)
        )
    else:
        # A table of three rows is scanned whatever the indexes; forbid that to see if the
        # partial index can serve the query at all.
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = " ".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql, parameter))
        connection.exec_driver_sql("SET LOCAL enable_seqscan = on")
    assert "ix_events_click_send_id" in plan


def test_update_by_id_writes_driver_values(session: so.Session, world: Fixture) -> None:
    from engine.models import Send

    dialect = session.get_bind().dialect.name
    encode = native.encoder(dialect)
    first, second, _ = world.sends
    moment = NOW.replace(microsecond=250_000)
    native.update_by_id(
        session.connection(),
        Send.__table__,
        ("delivered_at", "bounce_type"),
        [(first.id, encode(moment), None), (second.id, None, "blocked")],
    )
    session.expire_all()
    rows = {s.id: s for s in session.scalars(sa.select(Send))}
    assert (rows[first.id].delivered_at, rows[first.id].bounce_type) == (moment, None)
    assert (rows[second.id].delivered_at, rows[second.id].bounce_type) == (None, "blocked")


# --- the migration ------------------------------------------------------------------------------


@pytest.fixture
def empty_database(db_backend: str, tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty database of the backend (its own PostgreSQL schema), dropped afterwards."""
    if db_backend == "sqlite":
        engine = create_db_engine(make_settings(f"sqlite:///{tmp_path / 'm.sqlite3'}"))
        yield engine
        engine.dispose()
        return
    schema = f"test_migration_{os.getpid()}"
    admin = create_db_engine(make_settings(POSTGRES_URL))
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    engine = create_db_engine(make_settings(url))
    yield engine
    engine.dispose()
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


def test_migration_0005_gives_stored_events_their_digest(empty_database: sa.Engine) -> None:
    migrate.upgrade(empty_database, "0004")
    with empty_database.begin() as connection:
        for key in ("evt-1", "sha256:" + "ab" * 32):
            connection.execute(
                sa.text(
                    "INSERT INTO events (event_key, event_type, payload, received_at)"
                    " VALUES (:key, 'open', '{}', :now)"
                ),
                {"key": key, "now": NOW.replace(tzinfo=None)},
            )
    migrate.upgrade(empty_database)
    with empty_database.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT event_key, event_digest FROM events ORDER BY id")
        ).all()
    assert [(key, bytes(digest)) for key, digest in rows] == [
        ("evt-1", event_digest("evt-1")),
        ("sha256:" + "ab" * 32, event_digest("sha256:" + "ab" * 32)),
    ]
    migrate.downgrade(empty_database, "0004")
    with empty_database.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM events")).scalar() == 2


def test_migration_0007_puts_the_time_first_in_stored_digests(empty_database: sa.Engine) -> None:
    migrate.upgrade(empty_database, "0006")
    occurred = datetime.fromtimestamp(T0, UTC)
    with empty_database.begin() as connection:
        for key, at in (("evt-1", occurred), ("unknown-type", None)):
            connection.execute(
                sa.text(
                    "INSERT INTO events (event_key, event_digest, event_type, occurred_at,"
                    " payload, received_at) VALUES (:key, :digest, 'open', :at, '{}', :now)"
                ),
                {
                    "key": key,
                    "digest": hashlib.blake2b(key.encode(), digest_size=16).digest(),
                    "at": None if at is None else _stored_time(empty_database, at),
                    "now": _stored_time(empty_database, NOW),
                },
            )
    migrate.upgrade(empty_database)
    assert _digests(empty_database) == [
        ("evt-1", event_digest("evt-1", occurred)),
        ("unknown-type", event_digest("unknown-type", None)),
    ]
    migrate.downgrade(empty_database, "0006")
    assert _digests(empty_database) == [
        (key, hashlib.blake2b(key.encode(), digest_size=16).digest())
        for key in ("evt-1", "unknown-type")
    ]


def _stored_time(engine: sa.Engine, at: datetime) -> object:
    return at.replace(tzinfo=None).isoformat(sep=" ") if engine.dialect.name == "sqlite" else at


def _digests(engine: sa.Engine) -> list[tuple[str, bytes]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT event_key, event_digest FROM events ORDER BY id")
        ).all()
    return [(key, bytes(digest)) for key, digest in rows]


def test_inserting_reports_exactly_the_new_rows_and_their_ids(
    session: so.Session, settings: Settings, world: Fixture
) -> None:
    send = world.sends[0]
    first = [event("delivered", send, T0), event("open", send, T0 + 60)]
    assert ingest(session, settings, first)["stored"] == 2
    later = [event("click", send, T0 + 600, url="https://a"), event("open", send, T0 + 900)]
    dialect = session.get_bind().dialect.name
    batch = prepare_batch(wire.build_body([later[0], *first, later[1]]), dialect)
    assert batch.inserts is not None
    new = insert_events(Driver(session.connection()), batch.inserts, native.encoder(dialect)(NOW))
    ids = {key: event_id for key, event_id in session.execute(sa.select(Event.event_key, Event.id))}
    assert sorted((e.key, e.event_id) for e in new) == sorted(
        (e["sg_event_id"], ids[e["sg_event_id"]]) for e in later
    )
    session.rollback()
