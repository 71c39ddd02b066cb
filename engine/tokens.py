"""Signed tokens carried by links: send attribution, unsubscribe, recruiter magic links.

Each purpose has its own salt, so a token made for one purpose never passes as another.
Tampered, expired or malformed tokens read as ``None``: callers ignore them, never credit them.
"""

from __future__ import annotations

from itsdangerous import BadData, URLSafeTimedSerializer

SEND = "resistry.send"  # ?t= on links in emails: names the send that was clicked
UNSUBSCRIBE = "resistry.unsubscribe"  # /unsubscribe/<token>: names the send (and so the address)
MAGIC_LINK = "resistry.recruiter"  # /recruiter/<token>: names the recruiter, expires in hours
SHARE = "resistry.share"  # ?s= on a recruiter's shared link: the share-text variant


def sign(secret_key: str, purpose: str, value: int) -> str:
    """A URL-safe token carrying ``value`` for ``purpose``."""
    return URLSafeTimedSerializer(secret_key, salt=purpose).dumps(value)


def read(secret_key: str, purpose: str, token: str, max_age_seconds: float | None) -> int | None:
    """The integer a valid token carries, or ``None`` for a forged, expired or garbled token."""
    if not token or len(token) > 512:
        return None
    serializer = URLSafeTimedSerializer(secret_key, salt=purpose)
    try:
        value = serializer.loads(token, max_age=max_age_seconds)
    except (BadData, UnicodeDecodeError, ValueError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
