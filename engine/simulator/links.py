"""The links of each recipient's copy of a request, without building each copy.

SendGrid applies a personalization's ``substitutions`` to the shared HTML and tracks clicks on
the links of the result: the ``href`` of its anchors (``<a>``, ``<area>``), not of stylesheets.
So a click event carries the recipient's own URL (with its signed ``t`` token). Substituting
into the whole body and scanning it costs time proportional to the body for every recipient
(~60 µs for a 6 KB email); :class:`BodyLinks` finds the ``href`` attributes once per body and
substitutes inside their values only (a few µs per recipient).

The shortcut gives exactly what :func:`substituted_urls` gives whenever substituting cannot
change which ``href="…"`` attributes the body has, nor their tags. That holds when the quotes
of the body stay where they are (keys and values hold no quote), no "href" appears in a value,
no key sits in a tag between its ``<`` and an ``href``, and the text after each key outside the
links can neither complete an ``href=`` nor end another key; otherwise, for that request or
recipient, the body is substituted whole and scanned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# What a link is: an absolute http(s) URL in an href attribute, quoted either way, of a tag
# SendGrid tracks (the tag begins at the last "<" before the attribute).
HREF = re.compile(r"""href\s*=\s*["'](https?://[^"']+)["']""", re.IGNORECASE)
TRACKED_TAGS = frozenset({"a", "area"})
_TAG_NAME = re.compile(r"\s*(\w+)")
_ATTRIBUTE = re.compile(r"""href\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_URL = re.compile(r"""https?://[^"']+""", re.IGNORECASE)
# Text that, with something put before it, can end as `href =` right before a quote.
_PREFIX_ENDING = re.compile(r"(?:(?:href|ref|ef|f)?\s*=)?\s*", re.IGNORECASE)
_NEXT_QUOTE = re.compile(r"""["']""")


def substituted_urls(html: str, substitutions: Mapping[str, str]) -> tuple[str, ...]:
    """The distinct links of ``html`` after ``substitutions``, the direct way (the reference).

    Each key is replaced everywhere in turn, as SendGrid does; then the body is scanned.
    """
    for key, value in substitutions.items():
        html = html.replace(str(key), str(value))
    return _scan(html)


def _scan(html: str) -> tuple[str, ...]:
    """The distinct tracked links of ``html`` as it stands."""
    found = (
        m.group(1) for m in HREF.finditer(html) if _tracked(html, html.rfind("<", 0, m.start()))
    )
    return tuple(dict.fromkeys(found))


def _tracked(html: str, tag_start: int) -> bool:
    """Whether the tag opening at ``tag_start`` (-1: none) is one whose links are tracked."""
    name = _TAG_NAME.match(html, tag_start + 1) if tag_start >= 0 else None
    return name is not None and name.group(1).lower() in TRACKED_TAGS


class BodyLinks:
    """The href values of one HTML body, found once; each recipient's links from them."""

    def __init__(self, html: str) -> None:
        self.html = html
        matches = list(_ATTRIBUTE.finditer(html))
        self._values = [match.group(1) for match in matches]
        tag_starts = [html.rfind("<", 0, match.start()) for match in matches]
        self._tracked = [_tracked(html, start) for start in tag_starts]
        # From each tag's "<" to its href: a key there could rename the tag.
        self._tag_heads = [
            html[max(start, 0) : match.start()]
            for start, match in zip(tag_starts, matches, strict=True)
        ]
        # The text around the values: every piece but the last ends with an opening quote, and
        # every piece but the first starts with a closing quote.
        edges = [0, *(i for m in matches for i in (m.start(1), m.end(1))), len(html)]
        self._outside = [html[edges[i] : edges[i + 1]] for i in range(0, len(edges), 2)]
        # Every "href" of the body must start one of the attributes found (none in a value).
        hrefs = sum(piece.lower().count("href") for piece in self._outside)
        self._regular = hrefs == len(matches) and not any(
            "href" in value.lower() for value in self._values
        )
        self._plain = _scan(html)
        self._shortcut: dict[tuple[str, ...], tuple[bool, list[bool]]] = {}

    def urls(self, substitutions: Mapping[str, str]) -> tuple[str, ...]:
        """The distinct links of this body after ``substitutions``, in order of appearance:
        always equal to :func:`substituted_urls` (see the module docstring for the shortcut)."""
        if not substitutions:
            return self._plain
        usable, touched = self._shortcut_for(tuple(substitutions))
        if not usable or any('"' in v or "'" in v for v in substitutions.values()):
            return substituted_urls(self.html, substitutions)
        found: list[str] = []
        for value, has_key, tracked in zip(self._values, touched, self._tracked, strict=True):
            if has_key:
                for key, replacement in substitutions.items():
                    if key in value:
                        value = value.replace(key, replacement)
                if "href" in value.lower():
                    return substituted_urls(self.html, substitutions)
            if tracked and _URL.fullmatch(value):
                found.append(value)
        return tuple(dict.fromkeys(found))

    def _shortcut_for(self, keys: tuple[str, ...]) -> tuple[bool, list[bool]]:
        """Whether the shortcut may be used with these keys, and which values hold a key."""
        known = self._shortcut.get(keys)
        if known is None:
            touched = [any(key in value for key in keys) for value in self._values]
            usable = (
                self._regular
                and all(key and '"' not in key and "'" not in key for key in keys)
                and not any(key in head for head in self._tag_heads for key in keys)
                and all(_tags_stay_put(piece, keys) for piece in self._outside)
            )
            known = self._shortcut[keys] = (usable, touched)
        return known


def _tags_stay_put(piece: str, keys: Sequence[str]) -> bool:
    """Whether replacing ``keys`` inside ``piece`` (text outside the links) leaves the text
    up to the next quote after each occurrence as it was, unable to end an ``href=``."""
    for key in keys:
        start = piece.find(key)
        while start >= 0:
            end = start + len(key)
            quote = _NEXT_QUOTE.search(piece, end)
            after = piece[end : quote.start() if quote else len(piece)]
            if quote and _PREFIX_ENDING.fullmatch(after):
                return False  # a value could complete `href=` before that quote
            if any(after.startswith(other[i:]) for other in keys for i in range(1, len(other))):
                return False  # a value could start a key that this text ends
            start = piece.find(key, start + 1)
    return True
