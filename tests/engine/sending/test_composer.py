"""Request bodies: shared HTML with substitutions must equal a full per-recipient render."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.sending.composer import CATEGORY, Arm, Composer, Recipient
from engine.sending.placeholders import placeholder_usage, tag
from engine.settings import SendGridSettings
from tests.engine.sending import factories

SENDGRID = SendGridSettings(personalizations_per_request=1000)
SUBJECT = Arm(1, "recruiter-subject/urgent", "urgent", factories.SUBJECTS["urgent"])
BODY = Arm(2, "recruiter-body/story", "story", factories.BODIES["story"])
SHARE = Arm(3, "recruiter-share/personal", "personal", factories.SHARES["personal"])


def recipient(i: int, **overrides: Any) -> Recipient:
    context: dict[str, object] = {
        "first_name": f"Ann<{i}>",
        "referral_link": f"https://r.example/?r=code{i}&s=share&t=send{i}",
        "friends_count": i % 3,
        "groups_count": i % 2,
        "unsubscribe_url": f"https://r.example/unsubscribe/tok{i}",
        "recruiter_page_url": f"https://r.example/recruiter/magic{i}",
    }
    context.update(overrides)
    return Recipient(
        send_id=100 + i, email=f"ann{i}@example.org", first_name="Ann", context=context
    )


def compose(recipients: list[Recipient], settings: SendGridSettings = SENDGRID, body: Arm = BODY):
    composer = Composer(factories.renderers(), settings, mailing_id=7, asm_group_id=101)
    for r in recipients:
        composer.fill_texts(r, SUBJECT, SHARE)
    return composer, list(composer.requests(SUBJECT, body, SHARE, recipients))


def delivered_html(request: dict[str, Any], index: int) -> str:
    """What SendGrid builds for one personalization: the content with its substitutions."""
    html = request["content"][0]["value"]
    for key, value in request["personalizations"][index].get("substitutions", {}).items():
        html = html.replace(key, value)
    return html


def test_substituted_html_equals_a_full_jinja_render() -> None:
    recipients = [recipient(i) for i in range(5)]
    composer, requests = compose(recipients)
    assert len(requests) == 1  # one variant combination, one shared content
    [request] = requests
    compiled = composer.body(BODY).compiled
    for index, r in enumerate(recipients):
        expected = compiled.render(r.context)
        assert (
            delivered_html(request.body, index).replace(_hidden_preheader("Two minutes"), "")
            == expected
        )
    # values are HTML-escaped exactly as autoescape does, never raw
    assert "Ann&lt;0&gt;" in delivered_html(request.body, 0)
    assert "<0>" not in delivered_html(request.body, 0)
    assert "I signed up &amp; you can too &lt;3" in delivered_html(request.body, 0)


def _hidden_preheader(text: str) -> str:
    from engine.sending.composer import HIDDEN_PREHEADER

    return HIDDEN_PREHEADER.format(text)


def test_personalization_carries_subject_custom_args_and_one_click_headers() -> None:
    _, [request] = compose([recipient(1)])
    body = request.body
    [p] = body["personalizations"]
    assert p["to"] == [{"email": "ann1@example.org", "name": "Ann"}]
    assert p["subject"] == "Ann<1>, we need you this week"  # subjects are text, not HTML
    assert p["custom_args"] == {
        "send_id": "101",
        "mailing_id": "7",
        "subject_variant": "recruiter-subject/urgent",
        "body_variant": "recruiter-body/story",
        "share_variant": "recruiter-share/personal",
    }
    assert p["headers"] == {
        "List-Unsubscribe": "<https://r.example/unsubscribe/tok1>, "
        "<mailto:unsubscribe@resistry.example?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert body["asm"] == {"group_id": 101}
    assert body["from"] == {"email": SENDGRID.from_email, "name": SENDGRID.from_name}
    assert body["categories"] == [
        CATEGORY,
        "recruiter-subject/urgent",
        "recruiter-body/story",
        "recruiter-share/personal",
    ]
    # no personal data outside the personalization's own recipient fields
    outside = json.dumps({k: v for k, v in body.items() if k != "personalizations"})
    assert "ann1@example.org" not in outside and "Ann" not in outside
    assert request.send_ids == [101]


def test_requests_hold_at_most_the_configured_personalizations() -> None:
    recipients = [recipient(i) for i in range(2500)]
    _, requests = compose(recipients)
    sizes = [len(r.body["personalizations"]) for r in requests]
    assert sizes == [1000, 1000, 500]
    assert sorted(i for r in requests for i in r.send_ids) == [100 + i for i in range(2500)]
    _, small = compose(recipients[:5], SendGridSettings(personalizations_per_request=2))
    assert [len(r.send_ids) for r in small] == [2, 2, 1]


def test_placeholders_used_beyond_a_bare_print_are_filled_for_real() -> None:
    assert placeholder_usage("{{ first_name }} {{ share_text|upper }} {{ a or first_name }}") == (
        frozenset(),
        frozenset({"share_text", "a", "first_name"}),
    )
    assert placeholder_usage("{{ first_name }}<a href='{{ referral_link }}'>") == (
        frozenset({"first_name", "referral_link"}),
        frozenset(),
    )
    mjml = factories.BODY_MJML.replace("{{ friends_count }}", "{{ friends_count|string|upper }}")
    body = Arm(9, "recruiter-body/filtered", "filtered", {"mjml": mjml})
    recipients = [recipient(i) for i in range(6)]
    composer, requests = compose(recipients, body=body)
    # grouped by the value the filter needs: friends_count takes 3 values
    assert len(requests) == 3
    compiled = composer.body(body).compiled
    by_send = {}
    for request in requests:
        for index, send_id in enumerate(request.send_ids):
            by_send[send_id] = delivered_html(request.body, index)
            assert tag("friends_count") not in request.body["content"][0]["value"]
    for r in recipients:
        assert by_send[r.send_id].replace(_hidden_preheader("Two minutes"), "") == (
            compiled.render(r.context)
        )


def test_oversized_substitutions_get_a_request_of_their_own() -> None:
    long_link = "https://r.example/?r=" + "x" * 11_000
    recipients = [recipient(0), recipient(1, referral_link=long_link), recipient(2)]
    _, requests = compose(recipients)
    assert sorted(len(r.send_ids) for r in requests) == [1, 2]
    [alone] = [r for r in requests if r.send_ids == [101]]
    assert "substitutions" not in alone.body["personalizations"][0]
    assert long_link in alone.body["content"][0]["value"]


def test_a_body_that_does_not_compile_raises_the_template_error() -> None:
    bad = Arm(5, "recruiter-body/bad", "bad", {"mjml": "<p>not mjml {{ nope }}</p>"})
    composer = Composer(factories.renderers(), SENDGRID, mailing_id=1, asm_group_id=1)
    with pytest.raises(ValueError, match="bad"):
        composer.body(bad)


def test_texts_are_filled_exactly_as_jinja_would() -> None:
    from variants import rendering

    composer = Composer(factories.renderers(), SENDGRID, mailing_id=1, asm_group_id=1)
    templates = [
        "{{ first_name }}, we need you",
        "Join {{ first_name }}: {{ referral_link }} ({{ friends_count }} friends)",
        "{{ first_name|upper }} is a filter, so Jinja renders it each time",
        "No placeholders at all",
        "100% of {{ first_name }}'s friends, 5%s off %(x)d: {{ referral_link }}",
    ]
    for i, first_name in enumerate(["Ann", "%rs.referral_link%", "<b>&", ""]):
        context = dict(recipient(i, first_name=first_name).context, share_text="")
        for template in templates:
            expected = rendering.render_text(template, context, "v")
            assert composer.text(template, context, "v") == expected


def test_a_text_with_an_unknown_placeholder_is_refused() -> None:
    composer = Composer(factories.renderers(), SENDGRID, mailing_id=1, asm_group_id=1)
    with pytest.raises(ValueError, match="unknown placeholder"):
        composer.text("Hi {{ nickname }}", recipient(0).context, "v")


@pytest.mark.parametrize(
    "value",
    [
        *("Ada", "", "<b>&'\"</b>", "a&&b", "ü & ö <3", "https://x/?r=1&s=2&t=3"),
        *("a>b", "it's", 'say "hi"', "<", "&amp;", "<>&", "\"'"),
        *(0, 42, -7, 1.5, None),
    ],
)
def test_values_are_escaped_exactly_as_markupsafe_escapes(value: object) -> None:
    from markupsafe import Markup, escape

    from engine.sending.composer import _escaped

    assert _escaped(value) == str(escape(value))
    assert _escaped(Markup("<i>kept</i>")) == "<i>kept</i>"
