"""Rendering the landing page: the full page for a form with entries and errors, and the fast
path for a new visitor (the page rendered once per variant and refresh, with the per-visitor
parts put in).
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, render_template, session
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
) -> str:
    """A new visitor's page: the variant's page rendered once per refresh, with this visitor's
    CSRF token, form context and group order put in (the hot path of the site).

    Pages with flashed messages are rendered in full, so no message is lost.
    """
    if "_flashes" in session:
        choices = Markup("").join(state.choice_html[card.slug] for card in cards)
        return render_page(arm, cards, form_context, csrf_token, choices_html=choices)
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
        shell = tuple(_SLOT_PATTERN.split(html))
        state.page_shells[key] = shell
    fill = {
        "csrf": escape(csrf_token),
        "ctx": escape(form_context),
        "choices": "".join(state.choice_html[card.slug] for card in cards),
    }
    return "".join(fill[_SLOT_NAMES[part]] if part in _SLOT_NAMES else part for part in shell)
