import time_machine

from engine import tokens

SECRET = "k" * 32


def test_round_trip() -> None:
    token = tokens.sign(SECRET, tokens.SEND, 42)
    assert tokens.read(SECRET, tokens.SEND, token, None) == 42


def test_purposes_do_not_mix() -> None:
    token = tokens.sign(SECRET, tokens.SEND, 42)
    assert tokens.read(SECRET, tokens.UNSUBSCRIBE, token, None) is None


def test_tampered_forged_and_garbled_tokens_read_as_none() -> None:
    token = tokens.sign(SECRET, tokens.SEND, 42)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert tokens.read(SECRET, tokens.SEND, tampered, None) is None
    assert tokens.read("other-secret", tokens.SEND, token, None) is None
    for garbage in ["", "x", "a.b.c", "é" * 10, "." * 600]:
        assert tokens.read(SECRET, tokens.SEND, garbage, None) is None


def test_expiry() -> None:
    with time_machine.travel("2026-11-01 10:00Z", tick=False):
        token = tokens.sign(SECRET, tokens.MAGIC_LINK, 7)
    with time_machine.travel("2026-11-01 11:00Z", tick=False):
        assert tokens.read(SECRET, tokens.MAGIC_LINK, token, 2 * 3600) == 7
    with time_machine.travel("2026-11-01 13:00Z", tick=False):
        assert tokens.read(SECRET, tokens.MAGIC_LINK, token, 2 * 3600) is None
