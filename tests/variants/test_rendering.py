import time

import pytest

from tests.variants.staff_support import MJML
from variants.rendering import (
    PLACEHOLDERS,
    SAMPLE_CONTEXT,
    TemplateError,
    compile_body,
    render_text,
)


def wrap(inner: str) -> str:
    return (
        f"<mjml><mj-body><mj-section><mj-column>{inner}</mj-column></mj-section></mj-body></mjml>"
    )


def test_the_documented_placeholder_set_is_exactly_agreed() -> None:
    assert {
        "first_name",
        "referral_link",
        "friends_count",
        "groups_count",
        "share_text",
        "unsubscribe_url",
        "recruiter_page_url",
    } == PLACEHOLDERS
    assert set(SAMPLE_CONTEXT) == PLACEHOLDERS


def test_compile_once_then_fill_per_recipient_with_escaping() -> None:
    body = compile_body(MJML, "short")
    assert body.placeholders == {"first_name", "friends_count", "referral_link", "unsubscribe_url"}
    html = body.render(
        {
            "first_name": "<Ana & Bo>",
            "friends_count": 3,
            "referral_link": "https://x.example/?r=abc&t=tok",
            "unsubscribe_url": "https://x.example/u/1",
        }
    )
    assert "Hi &lt;Ana &amp; Bo&gt;, you brought 3 friends." in html
    assert 'href="https://x.example/?r=abc&amp;t=tok"' in html  # attribute-safe
    assert "<Ana" not in html
    assert html.lstrip().lower().startswith("<!doctype html>")


def test_filling_is_microseconds_after_one_compilation() -> None:
    body = compile_body(MJML, "short")
    started = time.perf_counter()
    for _ in range(200):
        body.render(SAMPLE_CONTEXT)
    per_recipient = (time.perf_counter() - started) / 200
    assert per_recipient < 0.001  # typically ~10 µs; generous for a loaded CI machine


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("hello", "<mjml> root"),
        ("<mj-body><mj-text>x</mj-text></mj-body>", "<mjml> root"),
        ("<mjml></mjml>", "no <mj-body>"),
        ("<mjml><mj-body></mj-body></mjml>", "empty email"),
        ("<mjml><mj-body><mj-section>", "never closed"),
        ("<mjml>\n<mj-body>\n<mj-section></mj-column></mj-section></mj-body></mjml>", "closes"),
        ("<mjml><mj-body><mj-nope>x</mj-nope></mj-body></mjml>", "unknown MJML tag <mj-nope>"),
        (wrap("<mj-text>{{ nope }}</mj-text>"), "unknown placeholder(s) nope"),
        (wrap("<mj-text>{% if first_name %}x{% endif %}</mj-text>"), "statements"),
        (wrap("<mj-text>{{ first_name </mj-text>"), "template syntax"),
        (wrap("<mj-text>{{ first_name.__class__ }}</mj-text>"), "(found Getattr)"),
        # Arithmetic could fail for one recipient mid-mailing, or cost a worker seconds.
        (wrap("<mj-text>{{ 6 // (groups_count - 1) }}</mj-text>"), "(found FloorDiv)"),
        (wrap("<mj-text>{{ 'a' * 100000000 }}</mj-text>"), "(found Mul)"),
        (wrap("<mj-text>{{ first_name|center(100000000) }}</mj-text>"), "|center is not allowed"),
        (wrap("<mj-text>{{ first_name|nope }}</mj-text>"), "|nope is not allowed"),
    ],
)
def test_bad_bodies_raise_one_template_error_naming_the_variant(source: str, problem: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_body(source, "Bad body")
    assert caught.value.variant_name == "Bad body"
    assert "variant 'Bad body'" in str(caught.value)
    assert problem in str(caught.value)


def test_template_error_names_the_line() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_body("<mjml>\n<mj-body>\n<mj-text>{{ oops }}</mj-text>\n</mj-body>\n</mjml>", "v")
    assert caught.value.line == 3
    assert "(line 3)" in str(caught.value)


def test_placeholder_dropped_by_mjml_is_caught() -> None:
    # mj-image drops an attribute it does not know: the placeholder would silently vanish.
    source = wrap(
        '<mj-image src="https://x.example/a.png" title-x="{{ first_name }}" />'
        '<mj-text><a href="{{ unsubscribe_url }}">u</a></mj-text>'
    )
    with pytest.raises(TemplateError, match="lost in MJML compilation: first_name"):
        compile_body(source, "v")


def test_missing_value_at_render_time_is_a_template_error() -> None:
    body = compile_body(MJML, "short")
    with pytest.raises(TemplateError, match="first_name"):
        body.render({"friends_count": 1, "referral_link": "x", "unsubscribe_url": "y"})


def test_render_text_fills_without_html_escaping() -> None:
    text = render_text("{{ first_name }} & friends: {{ friends_count }}", {"first_name": "Ana <3",
                       "friends_count": 2}, "subject a")  # fmt: skip
    assert text == "Ana <3 & friends: 2"


@pytest.mark.parametrize(
    "template",
    ["Hi {{ name }}", "{% for x in y %}{% endfor %}", "{{ first_name", "{{ first_name.mro() }}"],
)
def test_render_text_refuses_unknown_or_unsafe_templates(template: str) -> None:
    with pytest.raises(TemplateError, match="variant 'subject b'"):
        render_text(template, SAMPLE_CONTEXT, "subject b")


def test_render_text_missing_value() -> None:
    with pytest.raises(TemplateError, match="first_name"):
        render_text("Hi {{ first_name }}", {}, "s")


def test_presentation_filters_or_and_if_else_still_fill() -> None:
    template = (
        "{{ first_name|title or 'Friend' }}, {{ friends_count|string }}"
        " {{ 'friend' if friends_count == 1 else 'friends' }}"
    )
    context = {**SAMPLE_CONTEXT, "first_name": "", "friends_count": 1}
    assert render_text(template, context, "ok") == "Friend, 1 friend"
