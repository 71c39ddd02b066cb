"""The whole loop in real headless Chromium, on a committed database served by a real server:

an admin adds a subject line through the admin forms; the recruiter mailing goes out through the
SendGrid simulator; a recipient who got the new subject follows the signed link from the HTML the
simulator received and signs up for two groups; the analyst sees that signup on the new subject
in the experiment report (page and JSON).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from engine.models import Contact, Experiment, Send, Signup, Variant, Visit
from engine.sending.cli import default_renderers
from engine.sending.client import MailClient
from engine.sending.mailing import run_recruiter_mailing
from engine.simulator import start_simulator
from engine.simulator.mail_send import recipients
from tests.browser.conftest import LiveServer
from tests.conftest import make_settings
from variants.demo import DEMO_PASSWORD, load_demo

pytestmark = pytest.mark.browser
NEW_SUBJECT = "e2e-this-week"
RECRUITERS = 30  # five live subjects in burn-in: six recipients each


def log_in(page: Any, url: str, username: str) -> None:
    page.goto(f"{url}/admin/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/admin/login"))


def link_in_email(payloads: list[dict[str, Any]], send_id: int) -> str:
    """The referral link of one recipient's email, as their mail client would open it."""
    for payload in payloads:
        for recipient in recipients(payload):
            if recipient.custom_args.get("send_id") == str(send_id):
                links = [html.unescape(url) for url in recipient.urls]
                return next(url for url in links if "?r=" in url and "&t=" in url)
    raise AssertionError(f"send {send_id} is in no request the simulator received")


def test_a_new_subject_line_earns_a_signup_seen_in_the_report(
    live_server: LiveServer, chromium: Any, artifacts: Path, tmp_path: Path
) -> None:
    url = live_server.url
    with live_server.sessions.begin() as session:
        settings = make_settings("sqlite://").replace(web={"base_url": url})
        load_demo(session, settings, contacts=45, recruiters=RECRUITERS)

    # 1. An admin adds a subject line through the admin UI.
    admin = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = admin.new_page()
    try:
        log_in(page, url, "admin")
        page.goto(f"{url}/admin/experiments/recruiter-subject")
        page.get_by_role("link", name="Add a variant").click()
        page.get_by_label("Key").fill(NEW_SUBJECT)
        page.get_by_label("Name").fill("This week")
        page.get_by_label("Subject line").fill("{{ first_name }}, one link, one friend, this week")
        page.get_by_label("Preheader").fill("It takes a minute.")
        page.get_by_role("button", name="Save").click()
        expect(page).to_have_url(re.compile(r"/admin/experiments/recruiter-subject$"))
        expect(page.get_by_text(f"Added variant '{NEW_SUBJECT}'.")).to_be_visible()
        page.screenshot(path=str(artifacts / "e2e-1-admin-variant-added.png"), full_page=True)
    finally:
        admin.close()
    with live_server.sessions() as session:
        new = session.scalars(sa.select(Variant).where(Variant.key == NEW_SUBJECT)).one()
        assert (new.status, new.content["subject"]) == (
            "live",
            "{{ first_name }}, one link, one friend, this week",
        )
        subject_id = new.experiment_id

    # 2. The recruiter mailing goes out through the SendGrid simulator.
    simulator = start_simulator(settings, webhook_url=None, seed=11, key_dir=tmp_path)
    try:
        mail_settings = settings.replace(sendgrid={"host": simulator.url})
        with live_server.sessions() as session:
            report = run_recruiter_mailing(
                session,
                mail_settings,
                renderers=default_renderers(),
                client=MailClient(mail_settings.sendgrid),
                key="e2e-mailing",
                rng=np.random.default_rng(4),
            )
        assert (report.sent, report.failed) == (RECRUITERS, 0)
        payloads = simulator.requests
    finally:
        simulator.stop()
    with live_server.sessions() as session:
        sends = session.scalars(
            sa.select(Send).where(Send.subject_variant_id == new.id).order_by(Send.id)
        ).all()
        assert len(sends) == RECRUITERS // 5
        send = sends[0]
    link = link_in_email(payloads, send.id)
    assert link.startswith(f"{url}/?r=")

    # 3. The recipient opens the link and signs up for two groups.
    visitor = chromium.new_context(viewport={"width": 390, "height": 844})
    page = visitor.new_page()
    try:
        page.goto(link)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        page.screenshot(path=str(artifacts / "e2e-2-landing-from-email.png"), full_page=True)
        page.get_by_label("Email").fill("friend.of.a.recruiter@example.org")
        page.get_by_label("ZIP code").fill("19104")
        page.get_by_role("checkbox", name="Indivisible").check()
        page.get_by_role("checkbox", name="Sister District").check()
        page.locator("form.signup-form button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/thanks$"))
        expect(page.get_by_role("listitem").filter(has_text="Sister District")).to_be_visible()
        page.screenshot(path=str(artifacts / "e2e-3-signed-up.png"), full_page=True)
    finally:
        visitor.close()
    with live_server.sessions() as session:
        contact = session.scalars(
            sa.select(Contact).where(Contact.email == "friend.of.a.recruiter@example.org")
        ).one()
        assert (
            session.scalar(sa.select(sa.func.count()).where(Signup.contact_id == contact.id)) == 2
        )
        visit = session.scalars(sa.select(Visit).where(Visit.contact_id == contact.id)).one()
        assert visit.send_id == send.id
        assert session.get(Send, send.id).converted_at is not None

    # 4. The analyst sees the signup on the new subject line, on the page and in the JSON.
    analyst = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = analyst.new_page()
    try:
        log_in(page, url, "analyst")
        page.goto(f"{url}/reports/experiments/{subject_id}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        row = page.locator('table[data-table="variants"] tbody tr').filter(has_text=NEW_SUBJECT)
        expect(row.locator('td[data-key="signups"]')).to_have_text("1")
        expect(row.locator('td[data-key="trials"]')).to_have_text(str(len(sends)))
        others = page.locator('table[data-table="variants"] tbody tr').filter(
            has_not_text=NEW_SUBJECT
        )
        for index in range(others.count()):
            expect(others.nth(index).locator('td[data-key="signups"]')).to_have_text("0")
        page.screenshot(path=str(artifacts / "e2e-4-report.png"), full_page=True)
        document = analyst.request.get(f"{url}/api/v1/reports/experiments/{subject_id}").json()
    finally:
        analyst.close()
    rows = {row["variant"]: row for row in document["tables"]["variants"]["rows"]}
    assert rows[NEW_SUBJECT]["signups"] == 1
    assert rows[NEW_SUBJECT]["trials"] == len(sends)
    assert sum(row["signups"] for row in rows.values()) == 1
    with live_server.sessions() as session:
        assert session.get(Experiment, subject_id).key == "recruiter-subject"
