"""The signed links inside a recruiter email, made fast enough for 100,000 recipients a run.

``engine.tokens.sign`` builds a new itsdangerous serializer and signer for every token (~20 µs),
and even a kept signer runs HMAC through Python's generic ``hmac.HMAC`` path (~5 µs). A mailing
needs three tokens per recipient, so :class:`LinkSigner` asks itsdangerous once per purpose for
its derived key and signs each token with a copy of one keyed ``hmac`` object (~2 µs in all),
feeding it the payload the serializer would have produced (the JSON of an integer is its
decimal digits) and the timestamp of the current second. The tokens are byte for byte those
``tokens.sign`` makes, and ``engine.tokens.read`` reads them back (both facts are tested);
should a future itsdangerous sign differently, the signer notices at start and signs through
itsdangerous instead.
"""

from __future__ import annotations

import binascii
import hmac
import time
from urllib.parse import quote_plus

from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import int_to_bytes
from itsdangerous.signer import Signer

from engine import tokens
from engine.settings import Settings

_PROBE = b"resistry-signature-probe"
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _base64(data: bytes) -> bytes:
    """URL-safe base64 without padding, as itsdangerous writes it (``base64.urlsafe_b64encode``
    without its two Python-level calls: this runs three times per recipient)."""
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=")


class LinkSigner:
    """Signed tokens and the URLs built on them, for one process's settings."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.secret_key
        self._base_url = settings.web.base_url.rstrip("/")
        # purpose → keyed HMAC to copy for each token (None: sign through itsdangerous)
        self._macs: dict[str, hmac.HMAC | None] = {}
        self._signers: dict[str, Signer] = {}
        self._share_tokens: dict[int, str] = {}
        self._second = -1
        self._timestamp = b""

    def sign(self, purpose: str, value: int) -> str:
        """The same token as ``tokens.sign(secret, purpose, value)`` for an integer value."""
        if purpose not in self._macs:
            self._prepare(purpose)
        keyed = self._macs[purpose]
        if keyed is None:
            return self._signers[purpose].sign(_base64(b"%d" % value)).decode("ascii")
        now = int(time.time())  # what itsdangerous stamps; changes once a second
        if now != self._second:
            self._second, self._timestamp = now, _base64(int_to_bytes(now))
        payload = _base64(b"%d" % value) + b"." + self._timestamp
        mac = keyed.copy()
        mac.update(payload)
        signature = _base64(mac.digest())
        return (payload + b"." + signature).decode("ascii")

    def _prepare(self, purpose: str) -> None:
        """Keep the purpose's signer and keyed HMAC (None when the two would not agree)."""
        signer = URLSafeTimedSerializer(self._secret, salt=purpose).make_signer()
        keyed = hmac.new(signer.derive_key(), digestmod="sha1")
        probe = keyed.copy()
        probe.update(_PROBE)
        agrees = signer.get_signature(_PROBE) == _base64(probe.digest())
        self._signers[purpose] = signer
        self._macs[purpose] = keyed if agrees else None

    def share_token(self, share_variant_id: int) -> str:
        """The ``?s=`` token of a share-text variant (one per variant per run)."""
        token = self._share_tokens.get(share_variant_id)
        if token is None:
            token = self._share_tokens[share_variant_id] = self.sign(tokens.SHARE, share_variant_id)
        return token

    def email_referral_link(self, code: str, send_id: int, share_variant_id: int | None) -> str:
        """The recruiter's link as it appears in one email: ``/?r=&s=&t=`` (``s`` if a share
        text was chosen). The send token credits the send when the link is followed.

        Same URL as :func:`engine.recruiters.referral_link`, without its general-purpose
        encoder: tokens are URL-safe by construction, only the code is quoted.
        """
        link = f"{self._base_url}/?r={quote_plus(code)}"
        if share_variant_id is not None:
            link += f"&s={self.share_token(share_variant_id)}"
        return f"{link}&t={self.sign(tokens.SEND, send_id)}"

    def unsubscribe_url(self, send_id: int) -> str:
        """``/unsubscribe/<token>``: names the send, and so the address (never expires)."""
        return f"{self._base_url}/unsubscribe/{self.sign(tokens.UNSUBSCRIBE, send_id)}"

    def recruiter_page_url(self, recruiter_id: int) -> str:
        """``/recruiter/<token>``: the magic link, valid for [web] magic_link_hours."""
        return f"{self._base_url}/recruiter/{self.sign(tokens.MAGIC_LINK, recruiter_id)}"
