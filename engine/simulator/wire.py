"""SendGrid's Event Webhook wire format and its ECDSA signature.

A batch is a JSON array of compact objects with sorted keys, joined by ``,\\r\\n`` and ended by
``]\\r\\n``. The signature is ECDSA P-256 / SHA-256 over ``timestamp_header + raw_body``, sent
base64 DER in ``X-Twilio-Email-Event-Webhook-Signature``; the verification key is published as
base64 DER SubjectPublicKeyInfo. Receivers must verify the raw bytes, which is why the exact
framing matters.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
PRIVATE_KEY_FILE = "webhook_private_key.pem"
PUBLIC_KEY_FILE = "webhook_public_key"
SEPARATOR = b",\r\n"
END = b"]\r\n"


def encode_event(event: dict[str, Any]) -> bytes:
    """One event as SendGrid writes it: compact JSON with sorted keys."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()


def frame(encoded_events: Iterable[bytes]) -> bytes:
    """The body of a batch from events already passed through :func:`encode_event`."""
    return b"[" + SEPARATOR.join(encoded_events) + END


def encode_batch(events: Iterable[dict[str, Any]]) -> bytes:
    """The exact body SendGrid posts for ``events``."""
    return frame(encode_event(event) for event in events)


def framed_size(encoded_sizes: int, count: int) -> int:
    """Bytes of a body holding ``count`` events totalling ``encoded_sizes`` bytes."""
    return 1 + encoded_sizes + len(SEPARATOR) * max(0, count - 1) + len(END)


def sign(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """The base64 DER signature header value for ``body`` posted at ``timestamp``."""
    signature = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def signed_headers(
    private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes
) -> dict[str, str]:
    """The two signature headers of a post."""
    return {SIGNATURE_HEADER: sign(private_key, timestamp, body), TIMESTAMP_HEADER: timestamp}


def public_key_base64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def load_or_create_key_pair(directory: Path) -> ec.EllipticCurvePrivateKey:
    """The simulator's signing key, created once in ``directory``.

    Writes ``webhook_private_key.pem`` (mode 0600) and ``webhook_public_key`` (base64 DER, what
    the app reads when SENDGRID_WEBHOOK_PUBLIC_KEY is empty). Two processes starting at once
    agree on one key: the private key file is created exclusively. Raises ``ValueError`` when
    an existing key file is not a P-256 private key.
    """
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_FILE
    try:
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = _read_private_key(private_path)
    else:
        key = generate_private_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
    public_path = directory / PUBLIC_KEY_FILE
    public = public_key_base64(key)
    if not public_path.exists() or public_path.read_text().strip() != public:
        public_path.write_text(public + "\n")
    return key


def _read_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    # Another process may have created the file an instant ago and still be writing it.
    for _ in range(50):
        if path.stat().st_size:
            break
        time.sleep(0.02)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{path}: not a PEM private key; delete it to create a new one") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: not a P-256 key; delete it to create a new one")
    return key
