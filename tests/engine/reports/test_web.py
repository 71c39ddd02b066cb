import csv
import io
import re
from html.parser import HTMLParser

import pytest
import sqlalchemy.orm as so
from flask import Flask

from tests.engine.reports import factories as f

# Every report route with a URL to try ({id} is an experiment). A route missing here fails
# test_every_report_route_is_in_the_access_table, so a new route cannot skip the role checks.
ROUTES = {
    "/reports/": ["/reports/"],
    "/reports/experiments.csv": ["/reports/experiments.csv"],
    "/reports/experiments/<int:experiment_id>": ["/reports/experiments/{id}"],
    "/reports/experiments/<int:experiment_id>/<table_name>.csv": [
        "/reports/experiments/{id}/variants.csv"
    ],
    "/reports/<report_name>": [
        "/reports/funnel",
        "/reports/reciprocity",
        "/reports/recruiters",
        "/reports/policy-areas",
    ],
    "/reports/<report_name>/<table_name>.csv": [
        "/reports/funnel/by_mailing.csv",
        "/reports/reciprocity/ledger.csv",
        "/reports/recruiters/leaderboard.csv",
        "/reports/policy-areas/areas.csv",
    ],
    "/api/v1/reports/experiments": ["/api/v1/reports/experiments"],
    "/api/v1/reports/experiments/<int:experiment_id>": ["/api/v1/reports/experiments/{id}"],
    "/api/v1/reports/<report_name>": [
        "/api/v1/reports/funnel",
        "/api/v1/reports/reciprocity",
        "/api/v1/reports/recruiters",
        "/api/v1/reports/policy-areas",
    ],
}


def report_rules(app: Flask) -> list:  # type: ignore[type-arg]
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/reports", "/api/v1/reports"))
    ]


def test_every_report_route_is_in_the_access_table(app: Flask) -> None:
    rules = report_rules(app)
    assert {rule.rule for rule in rules} == set(ROUTES)
    for rule in rules:
        view = app.view_functions[rule.endpoint]
        assert view.allowed_roles == ("admin", "analyst"), rule.rule


@pytest.mark.parametrize("role", [None, "group_manager", "analyst", "admin"])
def test_route_by_role(app: Flask, session: so.Session, role: str | None) -> None:
    data = f.demo_dataset(session)
    headers = {}
    if role is not None:
        _, token = f.user(session, role, "swing-left" if role == "group_manager" else None)
        headers = {"Authorization": f"Bearer {token}"}
    session.commit()
    client = app.test_client()
    for urls in ROUTES.values():
        for template in urls:
            url = template.format(id=data["subject"].id)
            response = client.get(url, headers=headers)
            if role in ("analyst", "admin"):
                assert response.status_code == 200, url
            elif role == "group_manager":
                assert response.status_code == 403, url
            elif url.startswith("/api/"):
                assert response.status_code == 401, url
                assert response.get_json()["error"] == "Unauthorized"
            else:
                assert response.status_code == 302, url
                assert "/admin/login" in response.headers["Location"], url


def test_analyst_session_login_reads_pages_and_json(app: Flask, session: so.Session) -> None:
    data = f.demo_dataset(session)
    analyst, _ = f.user(session, "analyst")
    session.commit()
    client = app.test_client()
    form = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form)
    assert token is not None
    response = client.post(
        "/admin/login",
        data={
            "username": analyst.username,
            "password": "correct horse battery",
            "csrf_token": token.group(1),
        },
    )
    assert response.status_code == 302
    assert client.get(f"/reports/experiments/{data['subject'].id}").status_code == 200
    assert client.get("/api/v1/reports/funnel").status_code == 200
    # The API takes no cookie authority for unsafe methods, and reports are read-only anyway.
    assert client.post("/api/v1/reports/funnel").status_code in (401, 405)
    # Every report page offers a way out: the log-out form, with its CSRF token.
    page = client.get("/reports/funnel").get_data(as_text=True)
    logout = re.search(r'action="/admin/logout">\s*<input [^>]*value="([^"]+)"', page)
    assert logout is not None and f"Log out {analyst.username}" in page
    client.post("/admin/logout", data={"csrf_token": logout.group(1)})
    assert client.get("/reports/funnel").status_code == 302  # to the login page


@pytest.fixture
def analyst_client(app: Flask, session: so.Session) -> tuple:  # type: ignore[type-arg]
    data = f.demo_dataset(session)
    _, token = f.user(session, "analyst")
    session.commit()
    return app.test_client(), {"Authorization": f"Bearer {token}"}, data


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=2026-13-01", "start must be a date as YYYY-MM-DD"),
        ("end=yesterday", "end must be a date as YYYY-MM-DD"),
        ("start=2026-10-05&end=2026-10-01", "start (2026-10-05) is after end (2026-10-01)"),
        ("end=9999-12-31", "end must be before 9999-01-01"),
    ],
)
def test_bad_dates_are_400_with_a_message(analyst_client: tuple, query: str, message: str) -> None:  # type: ignore[type-arg]
    client, headers, data = analyst_client
    response = client.get(f"/api/v1/reports/funnel?{query}", headers=headers)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "Bad Request"
    assert body["message"].startswith(message)
    page = client.get(f"/reports/experiments/{data['subject'].id}?{query}", headers=headers)
    assert page.status_code == 400
    assert message in page.get_data(as_text=True)
    assert "Traceback" not in page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/v1/reports/recruiters?limit=0", 400),
        ("/api/v1/reports/recruiters?limit=ten", 400),
        ("/api/v1/reports/recruiters?limit=%C2%B2", 400),  # "²" is a digit to str.isdigit
        ("/api/v1/reports/experiments/999999", 404),
        ("/api/v1/reports/experiments/99999999999999999999", 404),  # beyond a 64-bit id
        ("/reports/experiments/2147483648", 404),  # beyond PostgreSQL's int4
        ("/api/v1/reports/nothing", 404),
        ("/reports/funnel/nothing.csv", 404),
        ("/reports/nothing", 404),
    ],
)
def test_bad_parameters_are_4xx(analyst_client: tuple, url: str, status: int) -> None:  # type: ignore[type-arg]
    client, headers, _ = analyst_client
    response = client.get(url, headers=headers)
    assert response.status_code == status
    if url.startswith("/api/"):
        assert response.get_json()["message"]


def test_date_filter_changes_the_numbers(analyst_client: tuple) -> None:  # type: ignore[type-arg]
    client, headers, _ = analyst_client
    everything = client.get("/api/v1/reports/funnel", headers=headers).get_json()
    one_day = client.get(
        "/api/v1/reports/funnel?start=2026-10-02&end=2026-10-02", headers=headers
    ).get_json()
    assert everything["tables"]["total"]["rows"][0]["sent"] == 72
    assert one_day["tables"]["total"]["rows"][0]["sent"] == 12
    assert one_day["range"] == {"start": "2026-10-02", "end": "2026-10-02"}


class _Cells(HTMLParser):
    """Collects data-value attributes per table, per row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self.current: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[type-arg]
        attributes = dict(attrs)
        if tag == "table":
            self.current = attributes.get("data-table")
            self.tables.setdefault(self.current or "", [])
        elif tag == "tr" and self.current:
            self.tables[self.current].append({})
        elif tag == "td" and self.current and "data-key" in attributes:
            self.tables[self.current][-1][attributes["data-key"]] = attributes["data-value"]


def test_html_json_and_csv_show_the_same_numbers(analyst_client: tuple) -> None:  # type: ignore[type-arg]
    import json

    client, headers, data = analyst_client
    experiment_id = data["subject"].id
    document = client.get(f"/api/v1/reports/experiments/{experiment_id}", headers=headers)
    variants = document.get_json()["tables"]["variants"]
    page = client.get(f"/reports/experiments/{experiment_id}", headers=headers)
    parser = _Cells()
    parser.feed(page.get_data(as_text=True))
    html_rows = [row for row in parser.tables["variants"] if row]
    assert [{k: json.loads(v) for k, v in row.items()} for row in html_rows] == variants["rows"]
    download = client.get(f"/reports/experiments/{experiment_id}/variants.csv", headers=headers)
    assert download.headers["Content-Type"].startswith("text/csv")
    csv_rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert [int(row["trials"]) for row in csv_rows] == [r["trials"] for r in variants["rows"]]
    assert [float(row["p_best"]) for row in csv_rows] == [r["p_best"] for r in variants["rows"]]
    assert sum(r["trials"] for r in variants["rows"]) == 72
    # The page says what the JSON says, formatted for people.
    text = page.get_data(as_text=True)
    first = variants["rows"][0]
    assert f"{first['rate'] * 100:.2f}%" in text
    assert document.get_json()["status"]["headline"] in text.replace("&#39;", "'")


def test_pages_have_charts_and_no_email_addresses(analyst_client: tuple) -> None:  # type: ignore[type-arg]
    client, headers, data = analyst_client
    pages = {
        f"/reports/experiments/{data['subject'].id}": 3,
        f"/reports/experiments/{data['landing'].id}": 3,
        "/reports/funnel": 1,
        "/reports/reciprocity": 2,
        "/reports/recruiters": 1,
        "/reports/policy-areas": 1,
    }
    for url, charts in pages.items():
        text = client.get(url, headers=headers).get_data(as_text=True)
        assert len(re.findall(r'<img src="data:image/svg\+xml;base64,', text)) == charts, url
        assert "<script" not in text
        assert "@example.org" not in text, url
    for url in (
        ROUTES["/api/v1/reports/<report_name>"] + ROUTES["/reports/<report_name>/<table_name>.csv"]
    ):
        assert "@example.org" not in client.get(url, headers=headers).get_data(as_text=True)
