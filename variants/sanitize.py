"""Sanitizing staff-written HTML shown to visitors (landing page body) with nh3.

Landing content is written by staff but served to the public, so a stolen or careless admin
session must not be able to put scripts, frames, forms or event handlers on the landing page.
Sanitizing happens when content is saved, so what is stored is exactly what may be shown.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import nh3

# Formatting a landing page body needs; nothing that runs code, embeds or submits.
ALLOWED_TAGS = frozenset(
    {
        "p", "br", "strong", "em", "b", "i", "u", "s", "small", "mark",
        "ul", "ol", "li", "h2", "h3", "h4", "blockquote", "a", "span", "abbr",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Removed together with their content rather than unwrapped to text.
DROPPED_WITH_CONTENT = frozenset({"script", "style", "iframe", "object", "embed", "template"})

_ANY_TAG = re.compile(r"<[a-zA-Z!/?]")


def sanitize_html(html: str) -> str:
    """Return ``html`` with everything outside the landing-page allow-list removed."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    ).strip()


def contains_markup(text: str) -> bool:
    """Whether ``text`` looks like it contains HTML tags (plain-text fields must not)."""
    return bool(_ANY_TAG.search(text))


def is_safe_image_url(url: str) -> bool:
    """An https/http URL with a host, or a site-relative path such as ``/static/hero.jpg``."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url) or '"' in url or "<" in url:
        return False
    if url.startswith("/") and not url.startswith("//"):
        return True
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
