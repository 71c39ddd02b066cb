"""Who may post events: SendGrid's ECDSA signature over the raw body, and an optional bearer token.

The key is ``settings.sendgrid.webhook_public_key`` (base64 DER, as SendGrid shows it) or, when
that is empty, ``<base_dir>/instance/webhook_public_key`` written by the local simulator. Without a
usable key and with verification on, every request is refused.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from engine.settings import Settings

log = logging.getLogger(__name__)
KEY_FILE = Path("instance") / "webhook_public_key"


class PublicKeyError(ValueError):
    """The configured verification key is not a base64 DER P-256 public key."""


def parse_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The P-256 key in SendGrid's base64 DER form (whitespace and PEM armour tolerated).

    Raises :class:`PublicKeyError` for anything else.
    """
    lines = [line for line in text.strip().splitlines() if not line.startswith("-----")]
    try:
        der = base64.b64decode("".join("".join(lines).split()), validate=True)
        key = load_der_public_key(der)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise PublicKeyError(f"not a base64 DER public key ({exc.__class__.__name__})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PublicKeyError("the key must be an ECDSA P-256 public key")
    return key


def configured_key_text(settings: Settings) -> tuple[str, str]:
    """The key text and where it came from: the setting, else the simulator's key file."""
    if settings.sendgrid.webhook_public_key.strip():
        return settings.sendgrid.webhook_public_key, "sendgrid.webhook_public_key"
    path = settings.base_dir / KEY_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    return "", ""


@dataclass(frozen=True)
class Verifier:
    """Checks a request's signature (unless turned off) and bearer token (when configured)."""

    public_key: ec.EllipticCurvePublicKey | None
    verify_signature: bool
    bearer_token: str

    def signature_ok(self, signature: str | None, timestamp: str | None, body: bytes) -> bool:
        """Whether ``signature`` signs ``timestamp`` + the raw ``body``; never raises."""
        if not self.verify_signature:
            return True
        return signature_is_valid(self.public_key, signature, timestamp, body)

    def bearer_ok(self, token: str | None) -> bool:
        """Whether the request carries the configured bearer token (always, if none is set)."""
        if not self.bearer_token:
            return True
        return token is not None and hmac.compare_digest(
            token.encode("utf-8"), self.bearer_token.encode("utf-8")
        )


def signature_is_valid(
    public_key: ec.EllipticCurvePublicKey | None,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
) -> bool:
    """Verify SendGrid's signature over ``timestamp`` + ``body``; any failure is ``False``."""
    if public_key is None or not signature or not timestamp:
        return False
    try:
        decoded = base64.b64decode(signature.strip(), validate=True)
        public_key.verify(decoded, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    except Exception as exc:  # a garbled header must be a 403, never a 500
        log.info("webhook signature unreadable: %s", exc.__class__.__name__)
        return False
    return True


def build_verifier(settings: Settings) -> Verifier:
    """The verifier for ``settings``; logs a warning when verification is off and an error when
    it is on without a usable key (every request will then be refused)."""
    sendgrid = settings.sendgrid
    key = None
    if not sendgrid.verify_webhook_signature:
        log.warning(
            "SendGrid webhook signature verification is OFF (sendgrid.verify_webhook_signature"
            " = false): development only, anyone can post events"
        )
    else:
        text, source = configured_key_text(settings)
        if not text.strip():
            log.error(
                "no SendGrid webhook public key (set SENDGRID_WEBHOOK_PUBLIC_KEY or %s):"
                " every webhook request will be refused",
                settings.base_dir / KEY_FILE,
            )
        else:
            try:
                key = parse_public_key(text)
            except PublicKeyError as exc:
                log.error(
                    "SendGrid webhook public key from %s is unusable: %s;"
                    " every webhook request will be refused",
                    source,
                    exc,
                )
    return Verifier(key, sendgrid.verify_webhook_signature, sendgrid.webhook_bearer_token)
