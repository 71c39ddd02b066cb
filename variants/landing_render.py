"""Rendering the landing page: the full page for a form with entries and errors, and the fast
path for a new visitor (the page rendered once per variant and refresh, with the per-visitor
parts put in).
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, render_template, session
from flask.globals import request_ctx
from markupsafe import Markup, escape

from engine.app import settings_of
from variants import assignment, visibility
from variants import signup as signups
from variants.landing_state import LandingState

HONEYPOT_FIELD = "website"
DEFAULT_CONTENT = {
    "headline": "Find the people already doing the work",
    "body": (
        "<p>Pick the groups that fit you and sign up for all of them at once. "
        "Each group tells you about roles near you, from one evening to every week.</p>"
    ),
    "call_to_action": "Sign me up",
    "hero_image": "",
}


def render_page(
    arm: assignment.ArmSnapshot | None,
    cards: list[visibility.GroupCard],
    form_context: str,
    csrf_token: str,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """The landing page with the visitor's entries and the messages next to the fields.

    ``csrf_token`` is the visitor's signup token (:mod:`variants.landing_visitor`).
    """
    content = {**DEFAULT_CONTENT, **(arm.content if arm is not None else {})}
    settings = settings_of(current_app)
    context = {
        "content": content,
        "body": Markup(content.get("body") or ""),  # sanitized when the snapshot was loaded
        "cards": cards,
        "choices_html": None,
        "consent": lambda name: signups.consent_text(settings.landing.consent_text, name),
        "form_context": form_context,
        "csrf_token": lambda: csrf_token,
        "errors": errors or {},
        "values": values or {"email": "", "zip": "", "groups": set()},
        "honeypot_field": HONEYPOT_FIELD,
    }
    return render_template("landing/index.html", **{**context, **overrides})


# The fresh page differs between visitors only in these three places.
_SLOTS = {"csrf": "\x00csrf\x00", "ctx": "\x00ctx\x00", "choices": "\x00choices\x00"}
_SLOT_PATTERN = re.compile("(" + "|".join(re.escape(slot) for slot in _SLOTS.values()) + ")")
_SLOT_NAMES = {value: name for name, value in _SLOTS.items()}


def fresh_page(
    state: LandingState,
    arm: assignment.ArmSnapshot | None,
    cards: list[visibility.GroupCard],
    form_context: str,
    csrf_token: str,
) -> bytes:
    """A new visitor's page, UTF-8 encoded: the variant's page rendered once per refresh, with
    this visitor's CSRF token, form context and group order put in (the hot path of the site).

    The page is kept as UTF-8 pieces and joined as bytes: joining and then encoding the 7 kB
    page as text cost more than everything else this function does.
    Pages with flashed messages are rendered in full, so no message is lost.
    """
    if _has_flashes():
        choices = Markup("").join(state.choice_html[card.slug] for card in cards)
        page = render_page(arm, cards, form_context, csrf_token, choices_html=choices)
        return page.encode()
    key = arm.variant_id if arm is not None else None
    shell = state.page_shells.get(key)
    if shell is None:
        html = render_page(
            arm,
            cards,
            Markup(_SLOTS["ctx"]),
            Markup(_SLOTS["csrf"]),
            choices_html=Markup(_SLOTS["choices"]),
            get_flashed_messages=lambda **_kwargs: [],
        )
        shell = tuple(_SLOT_NAMES.get(part) or part.encode() for part in _SLOT_PATTERN.split(html))
        state.page_shells[key] = shell
    choices = state.choice_utf8
    fill = {
        "csrf": _attribute_value(csrf_token),
        "ctx": _attribute_value(form_context),
        "choices": b"".join([choices[card.slug] for card in cards]),
    }
    return b"".join([fill[part] if part.__class__ is str else part for part in shell])


# Tokens and signed values are URL-safe: nothing in them to escape in an attribute.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.=-]*").fullmatch


def _attribute_value(value: str) -> bytes:
    """``value`` HTML-escaped as the template escapes it, UTF-8 encoded."""
    return value.encode() if _URL_SAFE(value) else escape(value).encode()


def _has_flashes() -> bool:
    """Whether Flask's session holds flashed messages. They can only come with its cookie: a
    new visitor has none, and their page leaves the session untouched (touching it makes Flask
    parse and rewrite the response's Vary header)."""
    context = request_ctx._get_current_object()  # type: ignore[attr-defined]  # one lookup
    app = context.app
    if app.session_interface.get_cookie_name(app) not in context.request.cookies:
        return False
    return "_flashes" in session
