"""Shared fixtures: settings, one migrated database per backend, and a rolled-back session.

Every database test runs on SQLite and on PostgreSQL (``db_backend`` is parametrized). On CI
(``CI=true``) an unreachable PostgreSQL fails the run loudly; elsewhere its tests skip with the
reason printed in the summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from engine import migrate
from engine.app import create_app
from engine.db import create_db_engine, session_factory
from engine.settings import Settings, load_settings

POSTGRES_URL = os.environ.get(
    "RESISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ON_CI = os.environ.get("CI", "").lower() == "true"


def make_settings(database_url: str, **sections: object) -> Settings:
    """Project settings with a test secret and the given database; nothing from the environment."""
    settings = load_settings(
        environ={
            "RESISTRY_SECRET_KEY": "resistry-test-secret-key-0123456789abcdef",
            "RESISTRY_DATABASE_URL": database_url,
        }
    )
    return settings.replace(**sections) if sections else settings


def _postgres_database() -> tuple[Settings, sa.Engine]:
    """A fresh schema of its own for this test run, so concurrent runs never collide.

    The schema rides in the URL (``options=-csearch_path=…``), so every engine a test builds from
    these settings — servers in threads, CLI commands — lands in the same schema.
    """
    admin = create_db_engine(make_settings(POSTGRES_URL))
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL unreachable at {POSTGRES_URL}: {exc.orig}"
        if ON_CI:
            pytest.fail(f"CI=true requires PostgreSQL. {message}", pytrace=False)
        pytest.skip(message)
    schema = f"test_run_{os.getpid()}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    admin.dispose()
    separator = "&" if "?" in POSTGRES_URL else "?"
    settings = make_settings(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    return settings, create_db_engine(settings)


def _drop_schema(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
        if schema and schema.startswith("test_run_"):
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@dataclass(frozen=True)
class DatabaseUnderTest:
    backend: str
    engine: sa.Engine
    settings: Settings


@pytest.fixture(scope="session")
def database(
    db_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatabaseUnderTest]:
    """A database of the backend, migrated to head once per test session."""
    if db_backend == "sqlite":
        path = tmp_path_factory.mktemp("db") / "resistry.sqlite3"
        settings = make_settings(f"sqlite:///{path}")
        engine = create_db_engine(settings)
    else:
        settings, engine = _postgres_database()
    migrate.upgrade(engine)
    yield DatabaseUnderTest(db_backend, engine, settings)
    if db_backend == "postgresql":
        _drop_schema(engine)
    engine.dispose()


@pytest.fixture
def migrated_engine(database: DatabaseUnderTest) -> sa.Engine:
    return database.engine


@pytest.fixture
def settings(database: DatabaseUnderTest) -> Settings:
    return database.settings


@pytest.fixture
def connection(migrated_engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with migrated_engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture
def sessions(connection: sa.Connection) -> so.sessionmaker[so.Session]:
    """Sessions whose commits become savepoints of the test's outer transaction."""
    return so.sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(sessions: so.sessionmaker[so.Session]) -> Iterator[so.Session]:
    with sessions() as session:
        yield session


@pytest.fixture
def app(settings: Settings, sessions: so.sessionmaker[so.Session]) -> Flask:
    return create_app({"TESTING": True}, settings=settings, sessions=sessions)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def committed_engine(migrated_engine: sa.Engine) -> Iterator[sa.Engine]:
    """For tests that need real commits seen by other connections (concurrency, processes).

    Every table is emptied afterwards, so later tests still start clean.
    """
    yield migrated_engine
    from engine.models import Base

    with migrated_engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def committed_sessions(committed_engine: sa.Engine) -> so.sessionmaker[so.Session]:
    return session_factory(committed_engine)


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
