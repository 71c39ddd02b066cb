import base64
import json
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.settings import Settings
from tests.conftest import make_settings
from webhooks import wire
from webhooks.verify import PublicKeyError, build_verifier, parse_public_key, signature_is_valid

BODY = wire.build_body([{"email": "a@example.org", "event": "delivered", "timestamp": 1}])
STAMP = "1795000000"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return wire.new_private_key()


@pytest.fixture(scope="module")
def public(key: ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePublicKey:
    return parse_public_key(wire.public_key_base64(key))


def test_valid_signature(key, public) -> None:  # type: ignore[no-untyped-def]
    assert signature_is_valid(public, wire.sign(key, STAMP, BODY), STAMP, BODY)


@pytest.mark.parametrize(
    "case",
    [
        "wrong key",
        "timestamp changed",
        "body re-serialized",
        "trailing CRLF stripped",
        "bad base64",
        "base64 of garbage",
        "empty signature",
        "missing signature",
        "missing timestamp",
        "non-ascii timestamp",
    ],
)
def test_bad_signatures_are_refused(key, public, case: str) -> None:  # type: ignore[no-untyped-def]
    signature, stamp, body = wire.sign(key, STAMP, BODY), STAMP, BODY
    if case == "wrong key":
        signature = wire.sign(wire.new_private_key(), STAMP, BODY)
    elif case == "timestamp changed":
        stamp = "1795000001"
    elif case == "body re-serialized":
        body = json.dumps(json.loads(BODY)).encode()
    elif case == "trailing CRLF stripped":
        body = BODY.rstrip(b"\r\n")
    elif case == "bad base64":
        signature = "not*base64!"
    elif case == "base64 of garbage":
        signature = base64.b64encode(b"\x30\x03garbage").decode()
    elif case == "empty signature":
        signature = ""
    elif case == "missing signature":
        signature = None
    elif case == "missing timestamp":
        stamp = None
    elif case == "non-ascii timestamp":
        stamp = "１７９５"
    assert signature_is_valid(public, signature, stamp, body) is False


def test_no_key_refuses_everything(key) -> None:  # type: ignore[no-untyped-def]
    assert signature_is_valid(None, wire.sign(key, STAMP, BODY), STAMP, BODY) is False


def test_key_forms(key) -> None:  # type: ignore[no-untyped-def]
    text = wire.public_key_base64(key)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert parse_public_key(pem.decode()).public_numbers() == key.public_key().public_numbers()
    assert parse_public_key(f"  {text[:20]}\n{text[20:]}\n").public_numbers() is not None
    for bad in ("", "%%%", base64.b64encode(b"junk").decode()):
        with pytest.raises(PublicKeyError):
            parse_public_key(bad)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    der = rsa_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(PublicKeyError, match="P-256"):
        parse_public_key(base64.b64encode(der).decode())


def _settings_in(tmp_path: Path, **sendgrid: object) -> Settings:
    settings = make_settings("sqlite:///:memory:")
    return settings.replace(config_path=tmp_path / "config.toml", sendgrid=sendgrid)


def test_key_from_setting(tmp_path, key) -> None:  # type: ignore[no-untyped-def]
    verifier = build_verifier(
        _settings_in(tmp_path, webhook_public_key=wire.public_key_base64(key))
    )
    assert verifier.signature_ok(wire.sign(key, STAMP, BODY), STAMP, BODY)


def test_key_from_simulator_file_when_setting_empty(tmp_path, key) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "webhook_public_key").write_text(wire.public_key_base64(key) + "\n")
    verifier = build_verifier(_settings_in(tmp_path, webhook_public_key=""))
    assert verifier.signature_ok(wire.sign(key, STAMP, BODY), STAMP, BODY)


def test_no_key_logs_an_error_and_refuses(tmp_path, key, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.ERROR, logger="webhooks.verify"):
        verifier = build_verifier(_settings_in(tmp_path, webhook_public_key=""))
    assert "every webhook request will be refused" in caplog.text
    assert not verifier.signature_ok(wire.sign(key, STAMP, BODY), STAMP, BODY)


def test_unusable_key_logs_an_error_and_refuses(tmp_path, key, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.ERROR, logger="webhooks.verify"):
        verifier = build_verifier(_settings_in(tmp_path, webhook_public_key="bm9wZQ=="))
    assert "unusable" in caplog.text
    assert not verifier.signature_ok(wire.sign(key, STAMP, BODY), STAMP, BODY)


def test_verification_off_warns_and_accepts(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="webhooks.verify"):
        verifier = build_verifier(_settings_in(tmp_path, verify_webhook_signature=False))
    assert "verification is OFF" in caplog.text
    assert verifier.signature_ok(None, None, BODY)


def test_bearer_token() -> None:
    settings = make_settings("sqlite:///:memory:").replace(
        sendgrid={"webhook_bearer_token": "s3cret-token"}
    )
    verifier = build_verifier(settings)
    assert verifier.bearer_ok("s3cret-token")
    assert not verifier.bearer_ok("wrong")
    assert not verifier.bearer_ok(None)
    assert build_verifier(make_settings("sqlite:///:memory:")).bearer_ok(None)
