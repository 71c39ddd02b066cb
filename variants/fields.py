"""Field cleaners shared by the validation rules: each returns a cleaned value or raises.

A cleaner raises ``ValueError``/``TypeError`` with a message meant for the person who typed the
value; :class:`Fields` collects those per field into one :class:`ValidationError`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from variants.sanitize import contains_markup, is_safe_image_url

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class ValidationError(ValueError):
    """Submitted values are not acceptable; ``errors`` maps each bad field to a message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


class NotFound(LookupError):
    """The group, experiment, variant or user named does not exist."""


class ConflictError(ValueError):
    """The action is not possible in the current state (e.g. pausing a retired variant)."""


class Fields:
    """Collects cleaned values and per-field errors while checking one submission."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.cleaned: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def check(self, name: str, cleaner: Callable[[Any], Any], *, required: bool) -> None:
        """Clean ``data[name]`` into ``cleaned``, or record why it is bad (or missing)."""
        if name not in self.data or self.data[name] is None:
            if required:
                self.errors[self.prefix + name] = "is required"
            return
        try:
            self.cleaned[name] = cleaner(self.data[name])
        except (ValueError, TypeError) as exc:
            self.errors[self.prefix + name] = str(exc)

    def refuse_unknown(self, known: tuple[str, ...] | frozenset[str]) -> None:
        """Record an error for every submitted field not in ``known`` (typos must not pass)."""
        for name in self.data:
            if name not in known:
                self.errors[self.prefix + name] = f"unknown field (expected {', '.join(known)})"

    def result(self) -> dict[str, Any]:
        """Return the cleaned values; raises :class:`ValidationError` if any field was bad."""
        if self.errors:
            raise ValidationError(self.errors)
        return self.cleaned


# --- single values ---------------------------------------------------------------------------


def text_field(max_chars: int, *, allow_empty: bool = False, multiline: bool = False) -> Callable:
    """Trimmed text of at most ``max_chars``, without control characters (unless multiline)."""

    def clean(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError("must be text")
        value = value.strip()
        if not value and not allow_empty:
            raise ValueError("must not be empty")
        if len(value) > max_chars:
            raise ValueError(f"must be at most {max_chars} characters (has {len(value)})")
        refuse_control_characters(value, allow_newlines=multiline)
        return value

    return clean


def refuse_control_characters(value: str, *, allow_newlines: bool) -> None:
    """Raise ``ValueError`` if ``value`` holds a control character or a line separator."""
    for ch in value:
        if allow_newlines and ch in "\n\r\t":
            continue
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):  # Cs: a lone surrogate
            raise ValueError(f"must not contain control characters (found U+{ord(ch):04X})")


def plain_text(max_chars: int) -> Callable:
    """Like :func:`text_field`, and without HTML tags (the value is escaped when shown)."""
    text = text_field(max_chars)

    def clean(value: Any) -> str:
        value = text(value)
        if contains_markup(value):
            raise ValueError("must be plain text, without HTML tags")
        return value

    return clean


def slug(value: Any) -> str:
    """A URL-safe identifier: lower-case letters, digits and inner dashes, 1-64 characters."""
    if not isinstance(value, str) or not SLUG.match(value):
        raise ValueError("must be 1-64 lower-case letters, digits or dashes (e.g. swing-left)")
    return value


def choice(options: tuple[str, ...]) -> Callable:
    """One of ``options``."""

    def clean(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return clean


def boolean(value: Any) -> bool:
    """A real boolean (``"false"`` is not accepted as one)."""
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


def number(low: float, high: float, *, low_open: bool, high_open: bool) -> Callable:
    """A number within the interval from ``low`` to ``high`` (open or closed at each end)."""

    def clean(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("must be a number")
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            raise ValueError(f"must be in {left}{low:g}, {high:g}{right}")
        try:
            return float(value)
        except OverflowError:  # an integer too large for a float
            raise ValueError(f"must be in {low:g}–{high:g}") from None

    return clean


MAX_INTEGER = 2**31 - 1  # the database's INTEGER columns (PostgreSQL's int4)


def count(low: int, high: int = MAX_INTEGER) -> Callable:
    """A whole number from ``low`` to ``high``."""

    def clean(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("must be a whole number")
        if value < low:
            raise ValueError(f"must be ≥ {low}")
        if value > high:
            raise ValueError(f"must be ≤ {high}")
        return value

    return clean


def labels(max_items: int = 20, max_chars: int = 60) -> Callable:
    """A list of short, distinct labels (roles, policy areas); a comma-separated string works."""

    def clean(value: Any) -> list[str]:
        if isinstance(value, str):
            value = [item for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise TypeError("must be a list of text labels")
        labels = [item.strip() for item in value]
        if any(not label or len(label) > max_chars for label in labels):
            raise ValueError(f"each label must have 1-{max_chars} characters")
        for label in labels:
            refuse_control_characters(label, allow_newlines=False)
        if len(labels) > max_items:
            raise ValueError(f"at most {max_items} labels")
        if len({label.casefold() for label in labels}) != len(labels):
            raise ValueError("labels must be distinct")
        return labels

    return clean


def web_url(value: Any) -> str:
    """An http(s) URL with a host, or "" for none."""
    if not isinstance(value, str):
        raise TypeError("must be text")
    value = value.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 500:
        raise ValueError("must be an http(s) URL of at most 500 characters")
    return value


def image_url(value: Any) -> str:
    """An http(s) URL or a site-relative path of an image, or "" for none."""
    if not isinstance(value, str):
        raise TypeError("must be text")
    value = value.strip()
    if value and (not is_safe_image_url(value) or len(value) > 500):
        raise ValueError("must be an http(s) URL or a path starting with / (≤ 500 characters)")
    return value
