import json

from webhooks import wire
from webhooks.verify import parse_public_key, signature_is_valid


def test_body_has_sendgrids_exact_shape() -> None:
    body = wire.build_body([{"b": 1, "a": "x"}, {"event": "open", "email": "é@example.org"}])
    assert body == '[{"a":"x","b":1},\r\n{"email":"é@example.org","event":"open"}]\r\n'.encode()
    assert json.loads(body) == [{"a": "x", "b": 1}, {"event": "open", "email": "é@example.org"}]


def test_ascii_only_escapes_unicode() -> None:
    body = wire.build_body([{"subject": "Grüße 😀"}], ascii_only=True)
    assert body == b'[{"subject":"Gr\\u00fc\\u00dfe \\ud83d\\ude00"}]\r\n'


def test_signature_verifies_with_the_published_key() -> None:
    key = wire.new_private_key()
    body = wire.build_body([{"event": "delivered"}])
    headers = wire.signed_headers(key, body, "1795000000")
    public = parse_public_key(wire.public_key_base64(key))
    assert signature_is_valid(public, headers[wire.SIGNATURE_HEADER], "1795000000", body)
    assert not signature_is_valid(public, headers[wire.SIGNATURE_HEADER], "1795000001", body)
