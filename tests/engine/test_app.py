import sqlalchemy as sa
from flask.testing import FlaskClient

from engine import create_app
from engine.db import create_db_engine, session_factory
from tests.conftest import make_settings


def test_healthz_checks_database(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_reports_unreachable_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings("postgresql+psycopg://nobody@127.0.0.1:1/none")
    app = create_app({"TESTING": True}, settings=settings)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


def test_importing_the_app_touches_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Building the app neither creates tables nor connects: migrations are explicit."""
    path = tmp_path / "fresh.sqlite3"
    settings = make_settings(f"sqlite:///{path}")
    create_app(settings=settings)
    engine = create_db_engine(settings)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()
    session_factory(engine)


def test_unknown_api_route_is_json_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"] == "Not Found"
