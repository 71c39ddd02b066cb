"""The fast link signer makes exactly the tokens engine.tokens makes, and they read back."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
import time_machine
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import Signer

from engine import recruiters, tokens
from engine.sending.links import LinkSigner
from tests.conftest import make_settings

SETTINGS = make_settings("sqlite:///:memory:")


def test_tokens_equal_engine_tokens_and_read_back() -> None:
    signer = LinkSigner(SETTINGS)
    with time_machine.travel(datetime(2026, 11, 24, 15, 0, tzinfo=UTC), tick=False):
        for purpose in (tokens.SEND, tokens.UNSUBSCRIBE, tokens.MAGIC_LINK, tokens.SHARE):
            for value in (0, 7, 123456, 2**40):
                token = signer.sign(purpose, value)
                assert token == tokens.sign(SETTINGS.secret_key, purpose, value)
                assert tokens.read(SETTINGS.secret_key, purpose, token, 3600) == value


def test_email_links() -> None:
    signer = LinkSigner(SETTINGS)
    base = SETTINGS.web.base_url
    with time_machine.travel(datetime(2026, 11, 24, 15, 0, tzinfo=UTC), tick=False):
        link = signer.email_referral_link("c0d-e_1", 42, 9)
        expected = recruiters.referral_link(
            base,
            "c0d-e_1",
            share_token=tokens.sign(SETTINGS.secret_key, tokens.SHARE, 9),
            send_token=tokens.sign(SETTINGS.secret_key, tokens.SEND, 42),
        )
        assert link == expected
        assert signer.email_referral_link("a b&c", 1, None) == recruiters.referral_link(
            base, "a b&c", send_token=tokens.sign(SETTINGS.secret_key, tokens.SEND, 1)
        )
        unsubscribe = signer.unsubscribe_url(42)
        assert unsubscribe.startswith(f"{base}/unsubscribe/")
        token = unsubscribe.rsplit("/", 1)[1]
        assert tokens.read(SETTINGS.secret_key, tokens.UNSUBSCRIBE, token, None) == 42
        page = signer.recruiter_page_url(5)
        assert page == recruiters.magic_link(SETTINGS, 5)


def test_tokens_follow_the_clock_from_one_second_to_the_next() -> None:
    signer = LinkSigner(SETTINGS)
    with time_machine.travel(datetime(2026, 11, 24, 15, 0, tzinfo=UTC), tick=False) as clock:
        first = signer.sign(tokens.SEND, 42)
        clock.shift(1)
        second = signer.sign(tokens.SEND, 42)
        assert second == tokens.sign(SETTINGS.secret_key, tokens.SEND, 42)
    assert first != second


def test_an_itsdangerous_that_signs_differently_is_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should itsdangerous change how it signs, the signer uses it rather than its shortcut."""

    def sha256_signature(self: Signer, value: bytes) -> bytes:
        key = self.derive_key()
        return base64_encode(hmac.new(key, value, hashlib.sha256).digest())

    monkeypatch.setattr(Signer, "get_signature", sha256_signature)
    signer = LinkSigner(SETTINGS)
    with time_machine.travel(datetime(2026, 11, 24, 15, 0, tzinfo=UTC), tick=False):
        token = signer.sign(tokens.UNSUBSCRIBE, 7)
        assert token == tokens.sign(SETTINGS.secret_key, tokens.UNSUBSCRIBE, 7)
        assert len(token.rsplit(".", 1)[1]) == 43  # a SHA-256 signature


@pytest.mark.parametrize("code", ["c0d-e_1", "a.b~c", "a b&c", "é/ü?", ""])
@pytest.mark.parametrize("share_variant_id", [9, None])
def test_email_links_in_one_call_equal_the_three_links(
    code: str, share_variant_id: int | None
) -> None:
    signer = LinkSigner(SETTINGS)
    with time_machine.travel(datetime(2026, 11, 24, 15, 0, tzinfo=UTC), tick=False):
        for _ in range(2):  # the first call prepares the keys, the second takes the fast path
            assert signer.email_links(code, 42, 5, share_variant_id) == (
                signer.email_referral_link(code, 42, share_variant_id),
                signer.unsubscribe_url(42),
                signer.recruiter_page_url(5),
            )
        link = signer.email_links(code, 42, 5, share_variant_id)[0]
        share_token = tokens.sign(SETTINGS.secret_key, tokens.SHARE, share_variant_id or 0)
        assert link == recruiters.referral_link(
            SETTINGS.web.base_url,
            code,
            share_token=share_token if share_variant_id is not None else None,
            send_token=tokens.sign(SETTINGS.secret_key, tokens.SEND, 42),
        )


def test_email_links_sign_every_value_as_engine_tokens() -> None:
    """The three signatures encoded in one base64 call: each equals its own token's, whatever
    bytes the digests end with (hundreds of values cover every last base64 character)."""
    signer = LinkSigner(SETTINGS)
    secret = SETTINGS.secret_key
    with time_machine.travel(datetime(2026, 11, 24, 15, 0, tzinfo=UTC), tick=False):
        signer.email_links("c", 1, 1, None)  # prepares the fast path
        for value in range(0, 20_000, 37):
            referral, unsubscribe, page = signer.email_links("c", value, value + 1, 3)
            assert referral.endswith(f"&t={tokens.sign(secret, tokens.SEND, value)}")
            assert unsubscribe.endswith(f"/{tokens.sign(secret, tokens.UNSUBSCRIBE, value)}")
            assert page.endswith(f"/{tokens.sign(secret, tokens.MAGIC_LINK, value + 1)}")
            # a token of one purpose never reads as another's
            assert tokens.read(secret, tokens.SEND, unsubscribe.rsplit("/", 1)[1], None) is None
