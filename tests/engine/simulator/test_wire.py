"""The Event Webhook wire format, its signature, and the simulator's key pair."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sendgrid.helpers.eventwebhook import EventWebhook

from engine.simulator import wire


def test_batches_are_compact_sorted_and_crlf_framed() -> None:
    events = [
        {"timestamp": 2, "event": "open", "email": "a@example.org", "sg_machine_open": False},
        {"url_offset": {"type": "html", "index": 0}, "event": "click", "category": ["a", "b"]},
    ]

    body = wire.encode_batch(events)

    assert body == (
        b'[{"email":"a@example.org","event":"open","sg_machine_open":false,"timestamp":2},\r\n'
        b'{"category":["a","b"],"event":"click","url_offset":{"index":0,"type":"html"}}]\r\n'
    )
    assert json.loads(body) == events
    assert wire.framed_size(sum(len(wire.encode_event(e)) for e in events), 2) == len(body)


def test_a_single_event_batch_has_no_separator() -> None:
    assert wire.encode_batch([{"a": 1}]) == b'[{"a":1}]\r\n'


def test_signature_verifies_with_the_sendgrid_library_and_only_for_the_exact_bytes() -> None:
    key = wire.generate_private_key()
    body = wire.encode_batch([{"event": "delivered", "email": "a@example.org", "timestamp": 1}])
    headers = wire.signed_headers(key, "1800000000", body)
    verifier = EventWebhook(wire.public_key_base64(key))

    signature = headers[wire.SIGNATURE_HEADER]
    timestamp = headers[wire.TIMESTAMP_HEADER]
    assert verifier.verify_signature(body.decode(), signature, timestamp)
    reserialized = json.dumps(json.loads(body))
    assert not verifier.verify_signature(reserialized, signature, timestamp)
    assert not verifier.verify_signature(body.decode(), signature, "1800000001")


def test_public_key_is_base64_der_subject_public_key_info() -> None:
    key = wire.generate_private_key()

    loaded = serialization.load_der_public_key(base64.b64decode(wire.public_key_base64(key)))

    assert loaded.public_numbers() == key.public_key().public_numbers()


def test_key_pair_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    first = wire.load_or_create_key_pair(tmp_path / "instance")
    second = wire.load_or_create_key_pair(tmp_path / "instance")

    assert wire.public_key_base64(first) == wire.public_key_base64(second)
    private_file = tmp_path / "instance" / wire.PRIVATE_KEY_FILE
    assert stat.S_IMODE(private_file.stat().st_mode) == 0o600
    public_file = tmp_path / "instance" / wire.PUBLIC_KEY_FILE
    assert public_file.read_text().strip() == wire.public_key_base64(first)


def test_a_lost_public_key_file_is_written_again(tmp_path: Path) -> None:
    key = wire.load_or_create_key_pair(tmp_path)
    (tmp_path / wire.PUBLIC_KEY_FILE).unlink()

    wire.load_or_create_key_pair(tmp_path)

    assert (tmp_path / wire.PUBLIC_KEY_FILE).read_text().strip() == wire.public_key_base64(key)


def test_a_garbled_private_key_file_is_an_error_not_silently_replaced(tmp_path: Path) -> None:
    (tmp_path / wire.PRIVATE_KEY_FILE).write_text("garbage")

    with pytest.raises(ValueError, match="not a PEM private key"):
        wire.load_or_create_key_pair(tmp_path)
    assert (tmp_path / wire.PRIVATE_KEY_FILE).read_text() == "garbage"
