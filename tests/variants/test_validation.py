import pytest

from engine.settings import ExperimentSettings
from tests.variants.staff_support import MJML
from variants.sanitize import is_safe_image_url, sanitize_html
from variants.validation import (
    HEADER_MAX_OCTETS,
    SUBJECT_MAX_CHARS,
    ValidationError,
    clean_content,
    clean_experiment,
    clean_group,
    clean_variant,
)


def errors_of(call, *args, **kwargs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as caught:
        call(*args, **kwargs)
    return caught.value.errors


# --- subject lines -----------------------------------------------------------------------------


def test_subject_is_kept_as_typed_when_valid() -> None:
    cleaned = clean_content("subject", {"subject": "  Hi {{ first_name }}  "}, "s")
    assert cleaned == {"subject": "Hi {{ first_name }}"}


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("Hello\r\nBcc: victim@example.org", "control characters"),
        ("Tab\there", "control characters"),
        ("Null\x00byte", "control characters"),
        ("Line\u2028separator", "control characters"),
        ("x" * (SUBJECT_MAX_CHARS + 1), f"at most {SUBJECT_MAX_CHARS}"),
        ("Hi {{ name }}", "unknown placeholder"),
        ("{% if first_name %}x{% endif %}", "statements"),
        ("", "must not be empty"),
    ],
)
def test_bad_subjects_are_refused(subject: str, message: str) -> None:
    errors = errors_of(clean_content, "subject", {"subject": subject}, "s")
    assert message in errors["content.subject"]


def test_subject_length_counts_filled_placeholders() -> None:
    # 120 typed characters, but the sample referral link makes it longer than 150.
    subject = "x" * 100 + " {{ referral_link }}"
    errors = errors_of(clean_content, "subject", {"subject": subject}, "s")
    assert "filled with sample values" in errors["content.subject"]


def test_subject_at_the_limit_passes_and_fits_a_header_line() -> None:
    subject = "é" * SUBJECT_MAX_CHARS  # 2 octets each in UTF-8
    assert clean_content("subject", {"subject": subject}, "s")["subject"] == subject
    assert len(f"Subject: {subject}".encode()) <= HEADER_MAX_OCTETS


def test_preheader_is_optional_and_checked() -> None:
    assert clean_content("subject", {"subject": "Hi", "preheader": ""}, "s")["preheader"] == ""
    errors = errors_of(
        clean_content, "subject", {"subject": "Hi", "preheader": "{{ secret }}"}, "s"
    )
    assert "unknown placeholder" in errors["content.preheader"]


# --- bodies, share texts, landing content ------------------------------------------------------


def test_body_must_compile_and_offer_unsubscribe() -> None:
    assert clean_content("body", {"mjml": MJML}, "b") == {"mjml": MJML}
    no_unsubscribe = MJML.replace('<a href="{{ unsubscribe_url }}">Unsubscribe</a>', "Bye")
    errors = errors_of(clean_content, "body", {"mjml": no_unsubscribe}, "b")
    assert "unsubscribe_url" in errors["content.mjml"]
    errors = errors_of(clean_content, "body", {"mjml": "<mjml><mj-body><mj-section>"}, "b")
    assert "never closed" in errors["content.mjml"]
    assert "line 1" in errors["content.mjml"]


def test_share_text_rules() -> None:
    assert clean_content("share", {"text": "Join: {{ referral_link }}"}, "t")
    errors = errors_of(clean_content, "share", {"text": "{{ share_text }}"}, "t")
    assert "cannot contain itself" in errors["content.text"]
    errors = errors_of(clean_content, "share", {"text": "x" * 501}, "t")
    assert "exceeds 500" in errors["content.text"]


def test_landing_html_is_sanitized_and_plain_fields_stay_plain() -> None:
    cleaned = clean_content(
        "landing",
        {
            "headline": "Find your role",
            "body": '<p onclick="steal()">Hi <script>alert(1)</script><a href="javascript:x()">'
            'bad</a> <a href="https://ok.example">ok</a><iframe src="x"></iframe></p>',
            "call_to_action": "Go",
        },
        "l",
    )
    body = cleaned["body"]
    assert "script" not in body and "onclick" not in body and "iframe" not in body
    assert "javascript:" not in body
    assert '<a href="https://ok.example" rel="noopener noreferrer">ok</a>' in body
    errors = errors_of(
        clean_content,
        "landing",
        {"headline": "<b>Loud</b>", "body": "<script>x</script>", "call_to_action": "Go"},
        "l",
    )
    assert "plain text" in errors["content.headline"]
    assert "no content left" in errors["content.body"]


def test_landing_hero_image_needs_a_safe_url_and_alt_text() -> None:
    base = {"headline": "H", "body": "<p>b</p>", "call_to_action": "Go"}
    errors = errors_of(clean_content, "landing", {**base, "hero_image": "javascript:alert(1)"}, "l")
    assert "URL" in errors["content.hero_image"]
    errors = errors_of(clean_content, "landing", {**base, "hero_image": "/static/hero.jpg"}, "l")
    assert "screen readers" in errors["content.hero_alt"]
    ok = clean_content(
        "landing", {**base, "hero_image": "/static/hero.jpg", "hero_alt": "Volunteers"}, "l"
    )
    assert ok["hero_image"] == "/static/hero.jpg"


def test_unknown_content_fields_are_named() -> None:
    errors = errors_of(clean_content, "subject", {"subject": "Hi", "subjcet": "typo"}, "s")
    assert "unknown field" in errors["content.subjcet"]


def test_sanitize_helpers() -> None:
    assert sanitize_html("<p>ok<style>p{}</style></p>") == "<p>ok</p>"
    assert is_safe_image_url("https://cdn.example/a.png")
    assert not is_safe_image_url("//evil.example/a.png")
    assert not is_safe_image_url('https://x.example/a.png" onerror="x')


# --- groups, experiments, variants -------------------------------------------------------------


def test_group_fields() -> None:
    cleaned = clean_group(
        {"slug": "swing-left", "name": " Swing Left ", "roles": "Canvasser, Phone banker",
         "website": "https://swingleft.org", "policy_areas": ["voting rights"]}
    )  # fmt: skip
    assert cleaned["name"] == "Swing Left"
    assert cleaned["roles"] == ["Canvasser", "Phone banker"]
    errors = errors_of(
        clean_group,
        {"slug": "Swing Left", "name": "", "website": "ftp://x", "roles": ["a", "A"], "x": 1},
    )
    assert set(errors) == {"slug", "name", "website", "roles", "x"}


def test_experiment_defaults_come_from_settings() -> None:
    defaults = ExperimentSettings(burn_in=500, p_best_threshold=0.99)
    cleaned = clean_experiment(
        {"key": "e", "name": "E", "kind": "subject", "metric": "click"}, defaults
    )
    assert cleaned["burn_in"] == 500
    assert cleaned["p_best_threshold"] == 0.99
    assert cleaned["status"] == "draft"


def test_experiment_field_errors() -> None:
    errors = errors_of(
        clean_experiment,
        {"key": "e", "name": "E", "kind": "banner", "metric": "views", "floor": 0.7,
         "burn_in": -1, "prior_alpha": 0, "p_best_threshold": True},
        ExperimentSettings(),
    )  # fmt: skip
    assert set(errors) == {"kind", "metric", "floor", "burn_in", "prior_alpha", "p_best_threshold"}


def test_counts_and_numbers_beyond_what_the_database_holds_are_field_errors() -> None:
    errors = errors_of(
        clean_experiment,
        {"key": "e", "name": "E", "kind": "subject", "metric": "click", "max_trials_per_arm": 2**31,
         "burn_in": 10**400, "prior_alpha": 10**400},
        ExperimentSettings(),
    )  # fmt: skip
    assert errors["max_trials_per_arm"] == "must be ≤ 2147483647"
    assert errors["burn_in"] == "must be ≤ 2147483647"
    assert set(errors) == {"max_trials_per_arm", "burn_in", "prior_alpha"}


def test_variant_requires_key_name_content() -> None:
    errors = errors_of(clean_variant, "subject", {})
    assert set(errors) == {"key", "name", "content"}
    partial = clean_variant("subject", {"name": "New name"}, partial=True)
    assert partial == {"name": "New name"}
