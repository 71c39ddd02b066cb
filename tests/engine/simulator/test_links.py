"""Each recipient's links, found once per body: always what substituting the whole body finds."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from engine.simulator import links
from engine.simulator.links import BodyLinks

# The oracle, written out apart from the code under test: substitute every key in turn into
# the whole body, then scan it for the href URLs of <a> and <area> tags.
_HREF = re.compile(r"""href\s*=\s*["'](https?://[^"']+)["']""", re.IGNORECASE)
_TAG = re.compile(r"<\s*(\w+)")


def whole_body_urls(html: str, substitutions: dict[str, str]) -> tuple[str, ...]:
    for key, value in substitutions.items():
        html = html.replace(key, value)
    found = []
    for match in _HREF.finditer(html):
        start = html.rfind("<", 0, match.start())
        tag = _TAG.match(html, start) if start >= 0 else None
        if tag and tag.group(1).lower() in ("a", "area"):
            found.append(match.group(1))
    return tuple(dict.fromkeys(found))


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the recipients for whom the body was substituted whole."""
    calls: list[int] = []
    direct = links.substituted_urls

    def counting(html: str, substitutions: Any) -> tuple[str, ...]:
        calls.append(1)
        return direct(html, substitutions)

    monkeypatch.setattr(links, "substituted_urls", counting)
    return calls


MAILER_BODY = (
    '<html><head><link href="https://fonts.example/css?family=Ubuntu" rel="stylesheet">'
    '</head><body><div style="display:none">%rs.preheader%</div><p>Hi %rs.first_name%, '
    "%rs.friends_count% friends joined.</p><p>%rs.share_text%</p>"
    '<a href="%rs.referral_link%" style="color:#fff">Invite</a> '
    "<a href='%rs.recruiter_page_url%'>Your page</a> · "
    '<a HREF = "%rs.unsubscribe_url%">Unsubscribe</a></body></html>'
)


def mailer_substitutions(i: int) -> dict[str, str]:
    link = f"https://r.example/?r=code{i}&amp;s=S.x.y&amp;t=T{i}.a.b"
    return {
        "%rs.first_name%": f"Ann &lt;{i}&gt;",
        "%rs.friends_count%": str(i),
        "%rs.share_text%": f"I signed up &amp; so can you = {link}",
        "%rs.referral_link%": link,
        "%rs.recruiter_page_url%": f"https://r.example/recruiter/M{i}",
        "%rs.unsubscribe_url%": f"https://r.example/unsubscribe/U{i}",
        "%rs.preheader%": "Two minutes",
    }


def test_a_mailer_body_gets_each_recipients_links_without_the_whole_body(
    fallbacks: list[int],
) -> None:
    body = BodyLinks(MAILER_BODY)
    for i in range(50):
        substitutions = mailer_substitutions(i)
        urls = body.urls(substitutions)
        assert urls == whole_body_urls(MAILER_BODY, substitutions)
        assert urls == (  # the stylesheet is no link SendGrid tracks
            f"https://r.example/?r=code{i}&amp;s=S.x.y&amp;t=T{i}.a.b",
            f"https://r.example/recruiter/M{i}",
            f"https://r.example/unsubscribe/U{i}",
        )
    assert fallbacks == []
    assert body.urls({}) == ()  # tags are no URLs


@pytest.mark.parametrize(
    ("html", "substitutions"),
    [
        # a value that brings a link of its own into the text
        ("<p>-x-</p>", {"-x-": '<a href="https://new.example/">new</a>'}),
        # a value that completes `href=` before a quote outside the links
        ('<a -x-"https://hidden.example/">', {"-x-": "href="}),
        # a key next to a quote outside the links
        ('<img alt="-x-">', {"-x-": "plain"}),
        # a quote in a value inserted inside a link
        ('<a href="https://a.example/-x-">', {"-x-": "b' href='https://c.example/"}),
        # a key with a quote
        ('<a href="https://a.example/?q=1">', {'1"': "2"}),
        # a value that starts a key the text after it ends, and that key's value makes `href`
        ('<a %a%bc="https://x.example/">', {"%a%": "Q", "Qbc": "href"}),
        # a value that ends a link's value with `href=`, so the scan restarts inside it
        ('<a href="-x-"https://z.example/">', {"-x-": "y href="}),
        # a key inside a tag, before its href: the tag may become an anchor
        ('<-x- href="https://a.example/">', {"-x-": "a"}),
    ],
)
def test_substitutions_that_could_move_links_take_the_whole_body_way(
    html: str, substitutions: dict[str, str], fallbacks: list[int]
) -> None:
    assert BodyLinks(html).urls(substitutions) == whole_body_urls(html, substitutions)
    assert fallbacks == [1]


FRAGMENTS = [
    *('<a href="', '"', "'", "<a href='", "href = '", "href", "HREF", "hr", "ef", "f", "h"),
    *("=", " ", "\n", "http://", "https://e.x/", "?t=", "&amp;", "<p>", "</p>", ">", "%"),
    *("link", "a", "b", "é", "<a ", "<A\n", "<link ", "<area ", "<", "<-x-"),
]
KEYS = ["%a%", "%b%", "-t-", "%ab", "b%", "x", "é"]
VALUES = ["http://v/", "1", "=", " ", "href", "hr", "ef", '"', "'", "%", "a", "b", "%a%", "-t-"]
VALUES += ["", "&amp;", "x", "ref=", "https://"]


def test_random_bodies_and_substitutions_agree_with_the_whole_body_way(
    fallbacks: list[int],
) -> None:
    rng = random.Random(20261121)
    checked = 0
    for _ in range(3000):
        html = "".join(rng.choice(FRAGMENTS + KEYS) for _ in range(rng.randint(0, 30)))
        body = BodyLinks(html)
        for _ in range(5):
            keys = rng.sample(KEYS, rng.randint(1, 4))
            values = VALUES if rng.random() < 0.5 else [v for v in VALUES if v not in "\"'"]
            substitutions = {
                key: "".join(rng.choice(values) for _ in range(rng.randint(0, 4))) for key in keys
            }
            assert body.urls(substitutions) == whole_body_urls(html, substitutions), (
                html,
                substitutions,
            )
            checked += 1
    # The shortcut itself was exercised, not only the fallback.
    assert len(fallbacks) < 0.9 * checked
