"""Checking what staff submit for groups, experiments and variants, field by field.

Every ``clean_*`` function returns cleaned values or raises :class:`ValidationError` whose
``errors`` map each bad field to a message, so the API can list them and the admin UI can show
each one next to its field. The same functions serve the API, the admin UI and the importer.

Rules that are not obvious:
- Subject lines: no control characters (CR/LF would break the header), and, filled with sample
  values, at most :data:`SUBJECT_MAX_CHARS` characters (enforced as an error, because inboxes
  cut long subjects anyway) and :data:`HEADER_MAX_OCTETS` octets as a header line (RFC 5322).
- Email bodies must compile (see :mod:`variants.rendering`) and link ``unsubscribe_url``.
- Landing HTML is sanitized with nh3; headline and call to action are plain text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models import EXPERIMENT_KINDS, METRICS
from engine.settings import ExperimentSettings
from variants.fields import (
    ConflictError,
    Fields,
    NotFound,
    ValidationError,
    boolean,
    choice,
    count,
    image_url,
    labels,
    number,
    plain_text,
    refuse_control_characters,
    slug,
    text_field,
    web_url,
)
from variants.rendering import SAMPLE_CONTEXT, TemplateError, compile_body, render_text
from variants.sanitize import sanitize_html

__all__ = [
    "ConflictError",
    "NotFound",
    "ValidationError",
    "clean_content",
    "clean_experiment",
    "clean_group",
    "clean_variant",
]
SUBJECT_MAX_CHARS = 150
HEADER_MAX_OCTETS = 998
PREHEADER_MAX_CHARS = 250
SHARE_TEXT_MAX_CHARS = 500
MJML_MAX_CHARS = 200_000
LANDING_BODY_MAX_CHARS = 20_000
# Which metrics make sense for what is tested: a landing page cannot be "opened", and the body
# is not seen before the open it would be credited for.
METRICS_BY_KIND: Mapping[str, tuple[str, ...]] = {
    "landing": ("signup",),
    "subject": ("click", "signup", "open"),
    "body": ("click", "signup"),
    "share": ("signup", "click"),
}
CONTENT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "landing": ("headline", "body", "call_to_action", "hero_image", "hero_alt"),
    "subject": ("subject", "preheader"),
    "body": ("mjml",),
    "share": ("text",),
}
# Statuses an experiment may be created in or declared with in an import file; "promoted"
# needs a winner and only comes from a decision.
DECLARABLE_STATUSES = ("draft", "running", "paused", "finished")


# --- groups and experiments --------------------------------------------------------------------


GROUP_FIELDS = (
    "slug", "name", "description", "roles", "website", "logo_url", "policy_areas", "active",
)  # fmt: skip


def clean_group(data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Check a group; ``partial`` (updates) checks only the fields given.

    Returns the cleaned fields; raises :class:`ValidationError`.
    """
    fields = Fields(data)
    fields.refuse_unknown(GROUP_FIELDS)
    fields.check("slug", slug, required=not partial)
    fields.check("name", text_field(200), required=not partial)
    fields.check("description", text_field(500, allow_empty=True, multiline=True), required=False)
    fields.check("roles", labels(), required=False)
    fields.check("website", web_url, required=False)
    fields.check("logo_url", image_url, required=False)
    fields.check("policy_areas", labels(), required=False)
    fields.check("active", boolean, required=False)
    return fields.result()


EXPERIMENT_SETTING_FIELDS = (
    "prior_alpha", "prior_beta", "burn_in", "p_best_threshold", "value_remaining_threshold",
    "floor", "max_trials_per_arm",
)  # fmt: skip
EXPERIMENT_FIELDS = (
    "key", "name", "description", "kind", "metric", "status", "policy_areas",
    *EXPERIMENT_SETTING_FIELDS,
)  # fmt: skip


def clean_experiment(
    data: Mapping[str, Any], defaults: ExperimentSettings, *, partial: bool = False
) -> dict[str, Any]:
    """Check an experiment; new ones get missing thresholds from ``defaults`` ([experiments]).

    ``partial`` (updates) checks only the fields given. Returns the cleaned fields;
    raises :class:`ValidationError`.
    """
    fields = Fields(data)
    fields.refuse_unknown(EXPERIMENT_FIELDS)
    fields.check("key", slug, required=not partial)
    fields.check("name", text_field(200), required=not partial)
    fields.check("description", text_field(2000, allow_empty=True, multiline=True), required=False)
    fields.check("kind", choice(EXPERIMENT_KINDS), required=not partial)
    fields.check("metric", choice(METRICS), required=not partial)
    fields.check("status", choice(DECLARABLE_STATUSES), required=False)
    fields.check("policy_areas", labels(), required=False)
    positive = number(0, float("inf"), low_open=True, high_open=True)
    fields.check("prior_alpha", positive, required=False)
    fields.check("prior_beta", positive, required=False)
    fields.check("burn_in", count(0), required=False)
    fields.check("p_best_threshold", number(0.5, 1, low_open=True, high_open=False), required=False)
    fields.check(
        "value_remaining_threshold",
        number(0, 1, low_open=False, high_open=True),
        required=False,
    )
    fields.check("floor", number(0, 0.5, low_open=False, high_open=True), required=False)
    fields.check("max_trials_per_arm", count(1), required=False)
    cleaned = fields.result()
    if not partial:
        for name in EXPERIMENT_SETTING_FIELDS:
            cleaned.setdefault(name, getattr(defaults, name))
        cleaned.setdefault("status", "draft")
    return cleaned


def check_experiment_consistency(kind: str, metric: str, burn_in: int, max_trials: int) -> None:
    """Cross-field rules; raises :class:`ValidationError` naming the field to fix."""
    if metric not in METRICS_BY_KIND[kind]:
        allowed = ", ".join(METRICS_BY_KIND[kind])
        raise ValidationError({"metric": f"a {kind} experiment measures {allowed}"})
    if max_trials <= burn_in:
        raise ValidationError({"max_trials_per_arm": "must exceed burn_in"})


# --- variants ----------------------------------------------------------------------------------

VARIANT_FIELDS = ("key", "name", "is_control", "content")


def clean_variant(kind: str, data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Check a variant of an experiment of ``kind``, content included.

    Content errors are keyed ``content.<field>``. Returns the cleaned fields with sanitized
    content; raises :class:`ValidationError`.
    """
    fields = Fields(data)
    fields.refuse_unknown(VARIANT_FIELDS)
    fields.check("key", slug, required=not partial)
    fields.check("name", text_field(200), required=not partial)
    fields.check("is_control", boolean, required=False)
    content = data.get("content")
    if content is None:
        if not partial:
            fields.errors["content"] = "is required"
    elif not isinstance(content, Mapping):
        fields.errors["content"] = "must be an object"
    else:
        label = str(data.get("name") or data.get("key") or "new variant")
        try:
            fields.cleaned["content"] = clean_content(kind, content, label)
        except ValidationError as exc:
            fields.errors.update(exc.errors)
    return fields.result()


def clean_content(kind: str, content: Mapping[str, Any], variant_name: str) -> dict[str, Any]:
    """Check the content of one variant of ``kind``; returns it cleaned (landing HTML sanitized).

    Raises :class:`ValidationError` keyed ``content.<field>``.
    """
    fields = Fields(content, prefix="content.")
    fields.refuse_unknown(CONTENT_FIELDS[kind])
    if kind == "landing":
        fields.check("headline", plain_text(200), required=True)
        fields.check("body", _landing_html, required=True)
        fields.check("call_to_action", plain_text(60), required=True)
        fields.check("hero_image", image_url, required=False)
        fields.check("hero_alt", plain_text(300), required=False)
        if fields.cleaned.get("hero_image") and not fields.cleaned.get("hero_alt"):
            fields.errors.setdefault(
                "content.hero_alt", "describe the hero image for screen readers"
            )
    elif kind == "subject":
        fields.check("subject", lambda v: _subject(v, variant_name), required=True)
        fields.check("preheader", lambda v: _preheader(v, variant_name), required=False)
    elif kind == "body":
        fields.check("mjml", lambda v: _mjml(v, variant_name), required=True)
    else:
        fields.check("text", lambda v: _share_text(v, variant_name), required=True)
    return fields.result()


def _landing_html(value: Any) -> str:
    value = text_field(LANDING_BODY_MAX_CHARS, multiline=True)(value)
    cleaned = sanitize_html(value)
    if not cleaned:
        raise ValueError("has no content left after removing unsafe HTML")
    return cleaned


def _filled(template: str, variant_name: str) -> str:
    try:
        return render_text(template, SAMPLE_CONTEXT, variant_name)
    except TemplateError as exc:
        raise ValueError(exc.problem) from None


def _subject(value: Any, variant_name: str) -> str:
    value = text_field(SUBJECT_MAX_CHARS * 4)(value)
    filled = _filled(value, variant_name)
    refuse_control_characters(filled, allow_newlines=False)
    if len(filled) > SUBJECT_MAX_CHARS:
        raise ValueError(
            f"filled with sample values it has {len(filled)} characters; "
            f"at most {SUBJECT_MAX_CHARS} are allowed"
        )
    if len(f"Subject: {filled}".encode()) > HEADER_MAX_OCTETS:
        raise ValueError(f"the header would exceed {HEADER_MAX_OCTETS} octets")
    return value


def _preheader(value: Any, variant_name: str) -> str:
    value = text_field(PREHEADER_MAX_CHARS * 2, allow_empty=True)(value)
    filled = _filled(value, variant_name)
    if len(filled) > PREHEADER_MAX_CHARS:
        raise ValueError(f"filled with sample values it exceeds {PREHEADER_MAX_CHARS} characters")
    return value


def _share_text(value: Any, variant_name: str) -> str:
    value = text_field(SHARE_TEXT_MAX_CHARS * 2, multiline=True)(value)
    if "share_text" in value:
        raise ValueError("a share text cannot contain itself ({{ share_text }})")
    filled = _filled(value, variant_name)
    if len(filled) > SHARE_TEXT_MAX_CHARS:
        raise ValueError(f"filled with sample values it exceeds {SHARE_TEXT_MAX_CHARS} characters")
    return value


def _mjml(value: Any, variant_name: str) -> str:
    if not isinstance(value, str):
        raise TypeError("must be text")
    if len(value) > MJML_MAX_CHARS:
        raise ValueError(f"must be at most {MJML_MAX_CHARS} characters")
    try:
        compiled = compile_body(value, variant_name)
    except TemplateError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise ValueError(where + exc.problem) from None
    if "unsubscribe_url" not in compiled.placeholders:
        raise ValueError("must link {{ unsubscribe_url }} so every recipient can opt out")
    return value
