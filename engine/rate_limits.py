"""Per-client rate limits for the two forms a stranger can post: signup and staff login.

Checked inside the view with :mod:`limits` (the library Flask-Limiter is built on): a
Flask-Limiter instance runs its before- and after-request hooks on every request of the site
(about 70 µs each, the landing page's included), while only these two forms need a limit.
Windows are fixed; the storage is ``[web] rate_limit_storage`` (``memory://`` per process, or a
shared store such as ``redis://`` when several processes serve the site).
"""

from __future__ import annotations

import limits
import limits.storage
import limits.strategies


class RateLimit:
    """``rate`` (e.g. ``"5 per minute; 50 per hour"``) per client address, under ``name``."""

    def __init__(self, name: str, rate: str, storage_uri: str) -> None:
        self.name = name
        self._limits = limits.parse_many(rate)
        self._limiter = limits.strategies.FixedWindowRateLimiter(
            limits.storage.storage_from_string(storage_uri)
        )

    def hit(self, address: str) -> bool:
        """Count one attempt from ``address``; ``False`` when one of the limits is exceeded."""
        return all([self._limiter.hit(limit, self.name, address) for limit in self._limits])
