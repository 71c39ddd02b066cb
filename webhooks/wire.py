"""Build and sign a SendGrid Event Webhook body exactly as SendGrid puts it on the wire.

SendGrid posts a JSON array of compact objects with sorted keys, joined by ``,\\r\\n`` and ending
``]\\r\\n``, and signs ``timestamp + raw body`` with ECDSA P-256/SHA-256 (base64 DER signature,
base64 DER SubjectPublicKeyInfo key). Tests and the benchmark use this module to produce
byte-exact requests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def encode_event(event: Mapping[str, Any], *, ascii_only: bool = False) -> str:
    """One event as SendGrid writes it: compact, keys sorted (raw UTF-8 unless ``ascii_only``)."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only)


def build_body(events: Sequence[Mapping[str, Any]], *, ascii_only: bool = False) -> bytes:
    """The request body for ``events``: ``[e1,\\r\\ne2]\\r\\n`` in UTF-8."""
    joined = ",\r\n".join(encode_event(event, ascii_only=ascii_only) for event in events)
    return f"[{joined}]\r\n".encode()


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key pair, as SendGrid creates when signing is turned on."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_base64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key in the form SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def sign(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """The base64 DER ECDSA signature of ``timestamp`` followed by the raw ``body`` bytes."""
    signature = private_key.sign(timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def signed_headers(
    private_key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str
) -> dict[str, str]:
    """The headers SendGrid sends with ``body``: content type, signature and timestamp."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(private_key, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
    }
