"""The visitor cookie, the signup form's CSRF token bound to it, and the form's signed context.

A new visitor's landing view used to write three things into Flask's session (visitor id,
sticky variant, current visit) plus Flask-WTF's CSRF token: a tagged-JSON dump, a compression
attempt and a timestamped HMAC per view, the largest cost after the database write. The visitor
side needs none of that machinery, so it has its own small signed cookie:

    <visitor id>.<experiment id>.<variant id>.<visit id>.<group>.<recruiter>.<send>.<share>.<sig>

(empty fields are ``None``; ``sig`` is an HMAC-SHA256 from :mod:`itsdangerous` keyed by the
app's secret key). Flask's session is still used once a visitor has signed up (the thanks page
and the staff pages keep Flask-WTF).

CSRF stays real for ``POST /signup``: the form carries ``HMAC(secret, "csrf" + visitor id)``
and the POST must come with the visitor cookie naming that visitor — a synchronizer token bound
to an HttpOnly, SameSite=Lax cookie that another site can neither read nor forge, which is what
Flask-WTF's session-stored token gives too. Over HTTPS the Referer must be this host, as
Flask-WTF requires. A failed check raises Flask-WTF's :class:`~flask_wtf.csrf.CSRFError`, so
the landing page's one error handler answers every expired or forged form.

The form's ``ctx`` field (visit id, landing variant, the order of the boxes shown) is compact
JSON signed by :class:`FormContextSigner`: the same guarantee as itsdangerous'
``URLSafeSerializer`` without its compression attempt (a third of the cost).

Set-Cookie is written as one prepared header: werkzeug's ``set_cookie`` re-validates the
attributes and formats an ``Expires`` date on every call, while ``Max-Age`` alone is honoured
by every current browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Request, Response
from flask_wtf.csrf import CSRFError, same_origin
from itsdangerous import BadData, BadSignature, Signer

COOKIE_NAME = "resistry_visitor"
COOKIE_SALT = "resistry.visitor-cookie"
CSRF_SALT = "resistry.landing-csrf"
CSRF_FIELD = "csrf_token"
VISITOR_ID_LENGTH = 36  # the visits.visitor_id column
_FIELDS = 8  # visitor id, experiment, variant, visit, group, recruiter, send, share

VisitKey = tuple[int | None, int | None, int | None, int | None, int | None]


class _Signer(Signer):
    """itsdangerous' signer with its key derived once (it derives it again on every call)."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        key = self.__dict__.get("_derived")
        if key is None:
            key = self.__dict__["_derived"] = super().derive_key()
        return key


@dataclass(frozen=True)
class Visitor:
    """What the cookie remembers: who (``id``: seeds the group order), the sticky landing
    variant of experiment ``experiment_id``, and the current visit with the variant and
    attribution it was recorded with (``visit_key``), so a reload is not a second trial."""

    id: str
    experiment_id: int | None = None
    variant_id: int | None = None
    visit_id: int | None = None
    visit_key: VisitKey | None = None

    def with_visit(self, visit_id: int | None, key: VisitKey | None) -> Visitor:
        """This visitor with ``visit_id`` (``None``: the next view is a new visit)."""
        key = key if visit_id is not None else None
        return Visitor(self.id, self.experiment_id, self.variant_id, visit_id, key)


def new_visitor() -> Visitor:
    """A visitor with a fresh random id and nothing remembered."""
    return Visitor(str(uuid.uuid4()))


class VisitorCookies:
    """Reads and writes the signed visitor cookie and makes and checks CSRF tokens.

    ``secure`` marks the cookie Secure (a ``https://`` base URL); ``max_age`` is its lifetime.
    """

    def __init__(self, secret_key: str, *, secure: bool, max_age: timedelta) -> None:
        self._cookie = _Signer(secret_key, salt=COOKIE_SALT, digest_method=hashlib.sha256)
        # The CSRF key is derived once: a token is then one HMAC of the visitor id.
        self._csrf_key = hmac.digest(secret_key.encode(), CSRF_SALT.encode(), "sha256")
        self.secure = secure
        self.max_age = int(max_age.total_seconds())
        self._attributes = f"; Max-Age={self.max_age}; HttpOnly; Path=/; SameSite=Lax" + (
            "; Secure" if secure else ""
        )

    def read(self, request: Request) -> Visitor | None:
        """The visitor the request's cookie names, or ``None`` if it is missing or forged."""
        raw = request.cookies.get(COOKIE_NAME)
        if not raw:
            return None
        try:
            payload = self._cookie.unsign(raw).decode()
        except (BadSignature, UnicodeDecodeError):
            return None
        parts = payload.split(".")
        if len(parts) != _FIELDS or not 0 < len(parts[0]) <= VISITOR_ID_LENGTH:
            return None
        try:
            numbers = [int(part) if part else None for part in parts[1:]]
        except ValueError:
            return None
        experiment_id, variant_id, visit_id, *attribution = numbers
        key: VisitKey | None = None
        if visit_id is not None:
            key = (variant_id, *attribution)  # type: ignore[assignment]
        return Visitor(parts[0], experiment_id, variant_id, visit_id, key)

    def write(self, response: Response, visitor: Visitor) -> None:
        """Set the cookie remembering ``visitor`` on ``response``."""
        attribution = visitor.visit_key[1:] if visitor.visit_key is not None else (None,) * 4
        fields = (visitor.experiment_id, visitor.variant_id, visitor.visit_id, *attribution)
        payload = ".".join((visitor.id, *("" if n is None else str(n) for n in fields)))
        # Visitor ids, numbers, dots and the signature's URL-safe base64: nothing to quote.
        value = self._cookie.sign(payload).decode()
        response.headers.add("Set-Cookie", f"{COOKIE_NAME}={value}{self._attributes}")

    def csrf_token(self, visitor: Visitor) -> str:
        """The signup form's CSRF token for ``visitor``."""
        return hmac.digest(self._csrf_key, visitor.id.encode(), "sha256").hex()

    def check_csrf(self, request: Request, visitor: Visitor | None) -> None:
        """Accept the form's token only with the cookie of the visitor it was made for.

        Raises :class:`~flask_wtf.csrf.CSRFError` naming what is missing or wrong.
        """
        token = request.form.get(CSRF_FIELD, "")
        if not token:
            raise CSRFError("The CSRF token is missing.")
        if visitor is None:
            raise CSRFError("The visitor cookie is missing.")
        if not hmac.compare_digest(token, self.csrf_token(visitor)):
            raise CSRFError("The CSRF token is invalid.")
        if request.is_secure:
            if not request.referrer:
                raise CSRFError("The referrer header is missing.")
            if not same_origin(request.referrer, f"https://{request.host}/"):
                raise CSRFError("The referrer does not match the host.")


class FormContextSigner:
    """Signs the form's context (a small JSON-able dict) and reads it back.

    :meth:`loads` raises :class:`itsdangerous.BadData` for a missing, forged or altered value.
    """

    def __init__(self, secret_key: str, salt: str) -> None:
        self._signer = _Signer(secret_key, salt=salt, digest_method=hashlib.sha256)

    def dumps(self, context: Mapping[str, Any]) -> str:
        """The signed context: URL-safe characters only (nothing to escape in HTML)."""
        payload = base64.urlsafe_b64encode(json.dumps(context, separators=(",", ":")).encode())
        return self._signer.sign(payload).decode()

    def loads(self, value: str) -> Any:
        """The context that :meth:`dumps` signed."""
        payload = self._signer.unsign(value)
        try:
            return json.loads(base64.urlsafe_b64decode(payload))
        except ValueError as exc:  # signed by us, so only a changed format gets here
            raise BadData("unreadable form context") from exc
