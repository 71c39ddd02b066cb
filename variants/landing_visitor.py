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
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Request, Response
from flask_wtf.csrf import CSRFError, same_origin
from itsdangerous import BadData, BadSignature, Signer

from variants import forks

COOKIE_NAME = "resistry_visitor"
COOKIE_SALT = "resistry.visitor-cookie"
CSRF_SALT = "resistry.landing-csrf"
CSRF_FIELD = "csrf_token"
VISITOR_ID_LENGTH = 36  # the visits.visitor_id column
_FIELDS = 8  # visitor id, experiment, variant, visit, group, recruiter, send, share

VisitKey = tuple[int | None, int | None, int | None, int | None, int | None]


def _keyed_hmac(key: bytes, digest_method: Any) -> Callable[[bytes], bytes]:
    """``HMAC(key, message)`` as a function of the message. The key's HMAC state is made once
    and copied for each message: a fresh HMAC (``hmac.digest`` included) sets OpenSSL's up
    again every time, which costs more than hashing a short message."""
    keyed = hmac.new(key, digestmod=digest_method)

    def mac(message: bytes) -> bytes:
        state = keyed.copy()
        state.update(message)
        return state.digest()

    return mac


class _Signer(Signer):
    """itsdangerous' signer with its key derived once (it derives it again on every call) and
    its signatures made by a keyed HMAC (:func:`_keyed_hmac`; itsdangerous goes through
    ``hmac.new`` and several Python layers: most of the cost of signing a short value)."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        key = self.__dict__.get("_derived")
        if key is None:
            key = self.__dict__["_derived"] = super().derive_key()
        return key

    def get_signature(self, value: str | bytes) -> bytes:
        """The same bytes as :meth:`Signer.get_signature` (an HMAC with ``digest_method``,
        URL-safe base64 without padding)."""
        mac = self.__dict__.get("_mac")
        if mac is None:
            mac = self.__dict__["_mac"] = _keyed_hmac(self.derive_key(), self.digest_method)
        if isinstance(value, str):
            value = value.encode()
        return base64.urlsafe_b64encode(mac(value)).rstrip(b"=")


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
    """A visitor with a fresh random id (a random UUID, version 4) and nothing remembered."""
    # str(uuid.uuid4()) made by hand: the same 122 random bits and text, in less than half the
    # time (the UUID object's checks and integer conversions cost more than the randomness).
    raw = bytearray(_random_16())
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return Visitor(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")


class _RandomPool(threading.local):
    data: bytes = b""
    offset: int = 0
    generation: int = -1  # the process that read it (variants.forks)


_RANDOM = _RandomPool()
_RANDOM_POOL_BYTES = 4096


def _random_16() -> bytes:
    """16 bytes from ``os.urandom``, read 4 KiB at a time per thread: one system call per 256
    visitor ids instead of one each. A forked child reads its own, never its parent's."""
    pool = _RANDOM
    generation = forks.generation()
    start = pool.offset
    if start + 16 > len(pool.data) or pool.generation != generation:
        pool.data, pool.generation, start = os.urandom(_RANDOM_POOL_BYTES), generation, 0
    pool.offset = start + 16
    return pool.data[start : start + 16]


class VisitorCookies:
    """Reads and writes the signed visitor cookie and makes and checks CSRF tokens.

    ``secure`` marks the cookie Secure (a ``https://`` base URL); ``max_age`` is its lifetime.
    """

    def __init__(self, secret_key: str, *, secure: bool, max_age: timedelta) -> None:
        self._cookie = _Signer(secret_key, salt=COOKIE_SALT, digest_method=hashlib.sha256)
        # The CSRF key is derived once: a token is then one HMAC of the visitor id.
        self._csrf_mac = _keyed_hmac(
            hmac.digest(secret_key.encode(), CSRF_SALT.encode(), "sha256"), hashlib.sha256
        )
        self.secure = secure
        self.max_age = int(max_age.total_seconds())
        self._attributes = f"; Max-Age={self.max_age}; HttpOnly; Path=/; SameSite=Lax" + (
            "; Secure" if secure else ""
        )

    def read(self, request: Request) -> Visitor | None:
        """The visitor the request's cookie names, or ``None`` if it is missing or forged."""
        cookies = request.cookies
        # Not cookies.get(): werkzeug's MultiDict builds and catches an exception for a missing
        # key, and a new visitor has none.
        if COOKIE_NAME not in cookies:
            return None
        raw = cookies[COOKIE_NAME]
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
        response.headers.add(*self.cookie_header(visitor))

    def cookie_header(self, visitor: Visitor) -> tuple[str, str]:
        """The ``Set-Cookie`` header remembering ``visitor``, as a (name, value) pair."""
        attribution = visitor.visit_key[1:] if visitor.visit_key is not None else (None,) * 4
        fields = (visitor.experiment_id, visitor.variant_id, visitor.visit_id, *attribution)
        payload = ".".join([visitor.id, *["" if n is None else str(n) for n in fields]])
        # Visitor ids, numbers, dots and the signature's URL-safe base64: nothing to quote.
        value = self._cookie.sign(payload).decode()
        return "Set-Cookie", f"{COOKIE_NAME}={value}{self._attributes}"

    def csrf_token(self, visitor: Visitor) -> str:
        """The signup form's CSRF token for ``visitor``."""
        return self._csrf_mac(visitor.id.encode()).hex()

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
        return self.sign_json(json.dumps(context, separators=(",", ":")))

    def sign_json(self, text: str) -> str:
        """:meth:`dumps` of a context already encoded as compact JSON (``text``)."""
        payload = base64.urlsafe_b64encode(text.encode())
        return self._signer.sign(payload).decode()

    def loads(self, value: str) -> Any:
        """The context that :meth:`dumps` signed."""
        payload = self._signer.unsign(value)
        try:
            return json.loads(base64.urlsafe_b64decode(payload))
        except ValueError as exc:  # signed by us, so only a changed format gets here
            raise BadData("unreadable form context") from exc
