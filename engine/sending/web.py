"""Pages reached from a recruiter email: unsubscribe, and the recruiter's own page.

These routes have no login and no role: the signed token in the URL is the credential (it names
one send or one recruiter and cannot be forged), which is what lets a recipient act in one click
without a password. Bad or expired tokens get a 400 page, unknown sends a 404, never a 500.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, render_template
from flask.typing import ResponseReturnValue

from engine.app import csrf, settings_of
from engine.db import get_session
from engine.models import utcnow
from engine.recruiters import (
    latest_share_variant_id,
    recruiter_counts,
    recruiter_from_magic_token,
    referral_link,
    share_token,
)
from engine.sending import unsubscribe as unsubscribing

bp = Blueprint("sending", __name__, template_folder="templates")

# Token pages: never cached, and the token never leaks to another site through Referer.
PRIVATE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _message(title: str, text: str, status: int) -> ResponseReturnValue:
    return (
        render_template("sending/message.html", title=title, text=text),
        status,
        PRIVATE_HEADERS,
    )


def _bad_link() -> ResponseReturnValue:
    return _message(
        "This link does not work",
        "The link is incomplete, has been changed, or has expired.",
        400,
    )


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> ResponseReturnValue:
    """Confirmation page with a button; changes nothing (mail scanners follow GET links)."""
    settings = settings_of(current_app)
    send = unsubscribing.send_for_token(get_session(), settings, token)
    if send is None:
        return _bad_link()
    return render_template("sending/unsubscribe.html", token=token), 200, PRIVATE_HEADERS


# CSRF-exempt on purpose: RFC 8058 one-click unsubscribe is a POST from the mail client, which
# cannot carry our CSRF token. The signed token in the URL is the proof instead: only the
# recipient has it, and all it can do is unsubscribe that one address.
@csrf.exempt
@bp.post("/unsubscribe/<token>")
def unsubscribe(token: str) -> ResponseReturnValue:
    """Unsubscribe at once (the page's button or a mail client's one-click POST)."""
    session = get_session()
    send = unsubscribing.send_for_token(session, settings_of(current_app), token)
    if send is None:
        return _bad_link()
    unsubscribing.unsubscribe(session, send, utcnow())
    session.commit()
    return _message(
        "You are unsubscribed",
        "You will not receive recruiter emails from us any more.",
        200,
    )


@bp.get("/recruiter/<token>")
def recruiter_page(token: str) -> ResponseReturnValue:
    """The recruiter's counts and personal link (counts only: never the friends' addresses)."""
    settings = settings_of(current_app)
    session = get_session()
    recruiter = recruiter_from_magic_token(session, settings, token)
    if recruiter is None:
        return _bad_link()
    counts = recruiter_counts(session, [recruiter.id]).get(recruiter.id)
    share_variant_id = latest_share_variant_id(session, recruiter.id)
    link = referral_link(
        settings.web.base_url,
        recruiter.code,
        share_token=share_token(settings, share_variant_id) if share_variant_id else None,
    )
    return (
        render_template(
            "sending/recruiter.html",
            first_name=recruiter.contact.first_name,
            friends=counts.friends if counts else 0,
            groups=counts.groups if counts else 0,
            link=link,
        ),
        200,
        PRIVATE_HEADERS,
    )
