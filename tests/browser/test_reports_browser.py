"""Analysts' reports in real headless Chromium: log in, open every report, compare with the JSON."""

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from engine.auth import create_user
from tests.browser.conftest import LiveServer
from tests.engine.reports.factories import demo_dataset

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"

# Cells of every data table on the page: {table name: [{column key: data-value JSON}]}.
READ_TABLES = """
() => Object.fromEntries([...document.querySelectorAll('table[data-table]')].map(table => [
  table.dataset.table,
  [...table.querySelectorAll('tbody tr')].map(row => Object.fromEntries(
    [...row.querySelectorAll('td[data-key]')].map(cell => [cell.dataset.key, cell.dataset.value])
  )),
]))
"""
CHARTS_LOADED = """
() => [...document.querySelectorAll('figure.report-chart img')].map(
  image => image.complete && image.naturalWidth > 0 && image.src.startsWith('data:image/svg+xml')
)
"""


def test_analyst_reads_every_report(live_server: LiveServer, chromium: Any, artifacts: Any) -> None:
    with live_server.sessions.begin() as session:
        data = demo_dataset(session)
        create_user(session, "ana", PASSWORD, "analyst")
        pages = {
            "experiment-subject": (f"/reports/experiments/{data['subject'].id}", 3),
            "experiment-landing": (f"/reports/experiments/{data['landing'].id}", 3),
            "funnel": ("/reports/funnel", 1),
            "reciprocity": ("/reports/reciprocity", 2),
            "recruiters": ("/reports/recruiters", 1),
            "policy-areas": ("/reports/policy-areas", 1),
        }
    context = chromium.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/reports/")
        expect(page).to_have_url(re.compile(r"/admin/login"))
        page.get_by_label("Username").fill("ana")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/reports/$"))
        expect(page.get_by_role("link", name=data["subject"].key)).to_be_visible()

        for name, (path, chart_count) in pages.items():
            page.goto(live_server.url + path)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            assert page.evaluate(CHARTS_LOADED) == [True] * chart_count, name
            document = context.request.get(live_server.url + "/api/v1" + path).json()
            on_page = page.evaluate(READ_TABLES)
            shared = set(on_page) & set(document["tables"])
            assert shared, name
            for table in shared:
                rows = [{k: json.loads(v) for k, v in row.items()} for row in on_page[table]]
                assert rows == document["tables"][table]["rows"], f"{name}: {table}"
            assert "@example.org" not in page.content()
            page.screenshot(path=str(artifacts / f"reports-{name}.png"), full_page=True)

        page.goto(f"{live_server.url}/reports/experiments/{data['subject'].id}")
        document = context.request.get(
            f"{live_server.url}/api/v1/reports/experiments/{data['subject'].id}"
        ).json()
        expect(page.locator("[data-headline]")).to_have_text(document["status"]["headline"])
        first = document["tables"]["variants"]["rows"][0]
        trials = page.locator('table[data-table="variants"] tbody tr').first
        expect(trials.locator('td[data-key="trials"]')).to_have_text(f"{first['trials']:,}")
        expect(trials.locator('td[data-key="rate"]')).to_have_text(f"{first['rate'] * 100:.2f}%")

        # The date filter is a plain GET form.
        page.get_by_label("From").fill("2026-10-02")
        page.get_by_label("To").fill("2026-10-02")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile(r"start=2026-10-02&end=2026-10-02"))
        filtered = context.request.get(
            f"{live_server.url}/api/v1/reports/experiments/{data['subject'].id}"
            "?start=2026-10-02&end=2026-10-02"
        ).json()
        total = sum(row["trials"] for row in filtered["tables"]["variants"]["rows"])
        assert total == 12
        csv_link = page.get_by_role("link", name="Download CSV").first
        assert "start=2026-10-02" in (csv_link.get_attribute("href") or "")
    finally:
        context.close()
