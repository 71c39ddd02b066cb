"""Structured logging without personal data.

``text`` for people, ``json`` (one object per line) for log collectors. Email addresses that slip
into a message or its arguments are masked by :class:`RedactEmails`, so logs never carry them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
REDACTED = "<email>"


class RedactEmails(logging.Filter):
    """Replace anything shaped like an email address in the rendered message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message:
            record.msg = EMAIL.sub(REDACTED, message)
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = EMAIL.sub(REDACTED, self.formatException(record.exc_info))
        for key, value in getattr(record, "fields", {}).items():
            entry[key] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send the root logger to stderr in ``log_format``; called by entry points, never at import."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactEmails())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
