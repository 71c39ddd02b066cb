import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from engine import create_app
from engine.db import create_db_engine, session_factory
from tests.conftest import make_settings
from tests.variants.staff_support import login, make_user


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


@pytest.mark.parametrize(
    "path",
    [
        "/?r=%00",
        "/?g=indivisible&g=x%00y",
        "/admin/groups/%00",
        "/admin/experiments/a%00b",
        "/api/v1/assign?experiment=e&unit=u%00",
        "/reports/funnel?start=%002026-01-01",
    ],
)
def test_a_nul_character_in_the_path_or_query_is_refused_on_every_database(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert "NUL character" in response.get_data(as_text=True)


def test_a_nul_character_in_a_form_field_is_refused_before_any_lookup(
    session: so.Session, client: FlaskClient
) -> None:
    make_user(session, "staff", "admin")
    assert login(client, "sta\x00ff").status_code == 400
    assert login(client, "staff").status_code == 302  # the same form, clean, still works
