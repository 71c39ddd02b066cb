"""Clicks on a real recruiter email carry that recipient's own links, signed tokens included."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from sendgrid import SendGridAPIClient

from engine import tokens
from engine.sending.composer import Arm, Composer, Recipient
from engine.sending.links import LinkSigner
from engine.settings import Settings
from engine.simulator.outcomes import SCANNER_AGENT
from engine.simulator.truth import Rates, TrueRates
from tests.engine.sending import factories

SUBJECT = Arm(1, "recruiter-subject/urgent", "urgent", factories.SUBJECTS["urgent"])
BODY = Arm(2, "recruiter-body/story", "story", factories.BODIES["story"])
SHARE = Arm(3, "recruiter-share/personal", "personal", factories.SHARES["personal"])
# Everyone clicks, and a scanner clicks every link first; nothing else happens.
_NOTHING = {name: 0.0 for name in Rates.__dataclass_fields__}
EVERYONE_CLICKS = TrueRates(defaults=Rates(**(_NOTHING | {"click": 1.0, "scanner_click": 1.0})))


def composed_request(settings: Settings, count: int) -> tuple[dict[str, Any], dict[int, dict]]:
    """One Mail Send body from the real composer and signer, and each send's links."""
    links = LinkSigner(settings)
    composer = Composer(factories.renderers(), settings.sendgrid, mailing_id=1, asm_group_id=101)
    recipients, expected = [], {}
    for number in range(count):
        send_id = 500 + number
        context: dict[str, object] = {
            "first_name": f"Ann & <{number}>",
            "referral_link": links.email_referral_link(f"code {number}", send_id, SHARE.variant_id),
            "friends_count": number % 3,
            "groups_count": 1,
            "unsubscribe_url": links.unsubscribe_url(send_id),
            "recruiter_page_url": links.recruiter_page_url(number),
        }
        recipient = Recipient(send_id, f"ann{number}@example.org", "Ann", context)
        composer.fill_texts(recipient, SUBJECT, SHARE)
        recipients.append(recipient)
        expected[send_id] = context
    [request] = composer.requests(SUBJECT, BODY, SHARE, recipients)
    return request.body, expected


def test_clicks_carry_each_recipients_links_and_the_send_token_names_the_send(
    start: Any, sim_settings: Settings
) -> None:
    handle = start(webhook_url=None, true_rates=EVERYONE_CLICKS)
    body, expected = composed_request(sim_settings, 30)
    client = SendGridAPIClient(sim_settings.sendgrid.api_key, host=handle.url)
    assert client.client.mail.send.post(request_body=body).status_code == 202

    clicks = [event for event in handle.drain_events() if event["event"] == "click"]

    assert {int(click["send_id"]) for click in clicks} == set(expected)
    for click in clicks:
        links = expected[int(click["send_id"])]
        if click["useragent"] == SCANNER_AGENT:  # scanners follow every link of the email
            assert click["url"] in (
                links["referral_link"],
                links["recruiter_page_url"],
                links["unsubscribe_url"],
            )
            continue
        # A person follows the referral link: the URL the landing page reads, token and all.
        assert click["url"] == links["referral_link"]
        query = parse_qs(urlsplit(click["url"]).query)
        send_token = query["t"][0]
        assert tokens.read(sim_settings.secret_key, tokens.SEND, send_token, None) == int(
            click["send_id"]
        )
    scanned = {click["url"] for click in clicks if click["useragent"] == SCANNER_AGENT}
    assert len(scanned) == 3 * len(expected)  # three links each, all different
