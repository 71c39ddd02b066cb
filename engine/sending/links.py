"""The signed links inside a recruiter email, made fast enough for 100,000 recipients a run.

``engine.tokens.sign`` builds a new itsdangerous serializer and signer for every token (~20 µs),
and even a kept signer runs HMAC through Python's generic ``hmac.HMAC`` path (~5 µs). A mailing
needs three tokens per recipient, so :class:`LinkSigner` asks itsdangerous once per purpose for
its derived key and signs each token with a copy of one keyed HMAC (OpenSSL's own object when
``hmac`` has one: its Python wrapper's ``copy`` costs as much again; ~2 µs in all),
feeding it the payload the serializer would have produced (the JSON of an integer is its
decimal digits) and the timestamp of the current second. The tokens are byte for byte those
``tokens.sign`` makes, and ``engine.tokens.read`` reads them back (both facts are tested);
should a future itsdangerous sign differently, the signer notices at start and signs through
itsdangerous instead.
"""

from __future__ import annotations

import binascii
import hmac
import re
import time
from typing import Any
from urllib.parse import quote_plus

from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import int_to_bytes
from itsdangerous.signer import Signer

from engine import tokens
from engine.settings import Settings

_PROBE = b"resistry-signature-probe"
_URL_SAFE = bytes.maketrans(b"+/", b"-_")
# What ``quote_plus`` leaves as it is: a recruiter code made of these needs no quoting.
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


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
        self._macs: dict[str, Any] = {}
        self._signers: dict[str, Signer] = {}
        self._share_tokens: dict[int, str] = {}
        self._second = -1
        self._timestamp = b""  # "." and the timestamp of self._second
        # The send, unsubscribe and magic link HMACs, once all three are prepared and fast.
        self._email_macs: tuple[Any, Any, Any] | None = None
        # share variant id → the referral link's pieces before and after the code
        self._referral_starts: dict[int | None, tuple[str, str]] = {}
        self._unsubscribe_base = f"{self._base_url}/unsubscribe/"
        self._recruiter_base = f"{self._base_url}/recruiter/"

    def sign(self, purpose: str, value: int) -> str:
        """The same token as ``tokens.sign(secret, purpose, value)`` for an integer value."""
        if purpose not in self._macs:
            self._prepare(purpose)
        keyed = self._macs[purpose]
        if keyed is None:
            return self._signers[purpose].sign(_base64(b"%d" % value)).decode("ascii")
        return _signed(keyed, _base64(b"%d" % value) + self._stamp())

    def _stamp(self) -> bytes:
        """``.<timestamp>`` as itsdangerous stamps it now (it changes once a second)."""
        now = int(time.time())
        if now != self._second:
            self._second, self._timestamp = now, b"." + _base64(int_to_bytes(now))
        return self._timestamp

    def _prepare(self, purpose: str) -> None:
        """Keep the purpose's signer and keyed HMAC (None when the two would not agree)."""
        signer = URLSafeTimedSerializer(self._secret, salt=purpose).make_signer()
        wrapper = hmac.new(signer.derive_key(), digestmod="sha1")
        keyed = getattr(wrapper, "_hmac", None) or wrapper  # OpenSSL's HMAC, when there is one
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
        return f"{self._referral_start(code, share_variant_id)}&t={self.sign(tokens.SEND, send_id)}"

    def _referral_start(self, code: str, share_variant_id: int | None) -> str:
        link = f"{self._base_url}/?r={code if _UNQUOTED(code) else quote_plus(code)}"
        if share_variant_id is not None:
            link += f"&s={self.share_token(share_variant_id)}"
        return link

    def unsubscribe_url(self, send_id: int) -> str:
        """``/unsubscribe/<token>``: names the send, and so the address (never expires)."""
        return f"{self._base_url}/unsubscribe/{self.sign(tokens.UNSUBSCRIBE, send_id)}"

    def recruiter_page_url(self, recruiter_id: int) -> str:
        """``/recruiter/<token>``: the magic link, valid for [web] magic_link_hours."""
        return f"{self._base_url}/recruiter/{self.sign(tokens.MAGIC_LINK, recruiter_id)}"

    def email_links(
        self, code: str, send_id: int, recruiter_id: int, share_variant_id: int | None
    ) -> tuple[str, str, str]:
        """:meth:`email_referral_link`, :meth:`unsubscribe_url` and :meth:`recruiter_page_url`
        of one email in one call: a mailing's hottest code, where the three tokens share the
        timestamp and the send id's encoding."""
        macs = self._email_macs
        if macs is None:  # not prepared yet, or a purpose signs through itsdangerous
            links = (
                self.email_referral_link(code, send_id, share_variant_id),
                self.unsubscribe_url(send_id),
                self.recruiter_page_url(recruiter_id),
            )
            keyed = tuple(self._macs[purpose] for purpose in _EMAIL_PURPOSES)
            self._email_macs = None if None in keyed else keyed
            return links
        send_mac, unsubscribe_mac, magic_mac = macs
        now = int(time.time())
        stamp = self._timestamp if now == self._second else self._stamp()
        send = _base64(b"%d" % send_id) + stamp
        magic = _base64(b"%d" % recruiter_id) + stamp
        # The three signatures base64-encoded in one call: each 20-byte digest padded to 21
        # bytes (a multiple of 3) encodes to 28 characters whose first 27 are its unpadded
        # base64 (the 27th's last two bits are the pad's zeros either way; tested equal).
        send_sig = send_mac.copy()
        send_sig.update(send)
        unsubscribe_sig = unsubscribe_mac.copy()
        unsubscribe_sig.update(send)
        magic_sig = magic_mac.copy()
        magic_sig.update(magic)
        signatures = (
            binascii.b2a_base64(
                b"\0".join((send_sig.digest(), unsubscribe_sig.digest(), magic_sig.digest())),
                newline=False,
            )
            .translate(_URL_SAFE)
            .decode("ascii")
        )
        send_token = send.decode("ascii")
        start = self._referral_starts.get(share_variant_id)
        if start is None:
            start = self._referral_starts[share_variant_id] = self._start_pieces(share_variant_id)
        base, middle = start
        # Recruiter codes are ASCII letters and digits (the regular expression costs more).
        plain = (code.isalnum() and code.isascii()) or _UNQUOTED(code)
        quoted = code if plain else quote_plus(code)
        return (
            f"{base}{quoted}{middle}{send_token}.{signatures[:27]}",
            f"{self._unsubscribe_base}{send_token}.{signatures[28:55]}",
            f"{self._recruiter_base}{magic.decode('ascii')}.{signatures[56:83]}",
        )

    def _start_pieces(self, share_variant_id: int | None) -> tuple[str, str]:
        """The referral link around its code: ``(…/?r=, [&s=<share token>]&t=)``."""
        middle = (
            "&t=" if share_variant_id is None else f"&s={self.share_token(share_variant_id)}&t="
        )
        return f"{self._base_url}/?r=", middle


_EMAIL_PURPOSES = (tokens.SEND, tokens.UNSUBSCRIBE, tokens.MAGIC_LINK)


def _signed(keyed: Any, payload: bytes) -> str:
    """``payload.signature``: the payload signed with a copy of the keyed HMAC."""
    mac = keyed.copy()
    mac.update(payload)
    # A SHA-1 digest is 20 bytes: 28 base64 characters, the last one padding.
    signature = binascii.b2a_base64(mac.digest(), newline=False)[:27].translate(_URL_SAFE)
    return (payload + b"." + signature).decode("ascii")
