"""Helpers shared by the simulator tests: a webhook receiver's state and a mailer-like body."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

FROZEN_NOW = 1_800_000_000.0  # 2027-01-15: a fixed clock keeps timestamps and resets exact


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A tiny HTTP endpoint that records raw posts; ``fail_next`` makes it answer errors."""

    url: str = ""
    posts: list[Post] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, status: int = 500) -> None:
        with self.lock:
            self.failures.extend([status] * count)


def mail(recipients: int = 1, **changes: Any) -> dict[str, Any]:
    """A valid Mail Send body shaped like the mailer's: per-recipient custom args and links."""
    body: dict[str, Any] = {
        "from": {"email": "recruit@resistry.example", "name": "Resistry"},
        "subject": "Bring a friend",
        "content": [
            {"type": "text/plain", "value": "Join us: -link-"},
            {
                "type": "text/html",
                "value": '<a href="https://resistry.example/?t=-token-">Join</a> '
                '<a href="https://resistry.example/unsubscribe/-token-">Unsubscribe</a>',
            },
        ],
        "categories": ["recruiter-mailing"],
        "asm": {"group_id": 101},
        "personalizations": [
            {
                "to": [{"email": f"person{i}@example.org"}],
                "substitutions": {"-token-": f"tok{i}"},
                "custom_args": {
                    "send_id": str(i),
                    "mailing_id": "1",
                    "subject_variant": "recruiter-subject/friends-brought",
                    "body_variant": "recruiter-body/short-and-direct",
                    "share_variant": "share-text/find-your-fit",
                },
            }
            for i in range(recipients)
        ],
    }
    body.update(changes)
    return body
