import re
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from engine.models import Contact, Recruiter, Signup
from tests.browser.conftest import LiveServer
from tests.variants.landing_support import add_groups

pytestmark = pytest.mark.browser


def test_visitor_signs_up_for_two_groups_and_becomes_a_recruiter(
    live_server: LiveServer, chromium: Any, artifacts: Any
) -> None:
    with live_server.sessions.begin() as session:
        add_groups(session)
    context = chromium.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/?g=indivisible")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        # The mobile layout does not scroll sideways.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(artifacts / "landing.png"), full_page=True)

        page.get_by_label("Email").fill("  Visitor@Example.org ")
        page.get_by_label("ZIP code").fill("10001-1234")
        page.get_by_role("checkbox", name="Indivisible").check()
        page.get_by_role("checkbox", name="Sister District").check()
        page.get_by_role("button", name="Sign me up").click()

        expect(page).to_have_url(re.compile(r"/thanks$"))
        expect(page.get_by_role("heading", name="Thank you, you're signed up")).to_be_visible()
        expect(page.get_by_role("listitem").filter(has_text="Sister District")).to_be_visible()

        page.get_by_role("button", name="Get my personal link").click()
        link = page.get_by_label("Your personal link")
        expect(link).to_have_value(re.compile(rf"^{re.escape(live_server.url)}/\?r=[\w-]{{11,}}$"))
        page.screenshot(path=str(artifacts / "landing-recruiter.png"), full_page=True)
        code = link.input_value().rsplit("=", 1)[1]
    finally:
        context.close()

    with live_server.sessions() as session:
        contact = session.scalars(sa.select(Contact)).one()
        assert contact.email == "visitor@example.org" and contact.zip_code == "10001-1234"
        slugs = session.scalars(
            sa.select(Signup.group_id).where(Signup.contact_id == contact.id)
        ).all()
        assert len(slugs) == 2
        assert session.scalars(sa.select(Recruiter.code)).one() == code
