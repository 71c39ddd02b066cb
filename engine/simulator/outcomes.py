"""Hidden true rates → the events SendGrid would report for one recipient.

The truth lives in ``true_rates.toml`` (see its header for how variant overrides combine).
Randomness comes from one seeded ``numpy.random.Generator``, so the same requests in the same
order produce the same events. Offsets are in simulated seconds after the request was accepted;
:func:`stamp` turns them into timestamps with the time compression of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.simulator.mail_send import Recipient
from engine.simulator.truth import TrueRates

# Keys SendGrid itself sets on events: a custom arg of the same name must not replace them.
RESERVED_KEYS = frozenset(
    {"email", "timestamp", "event", "category", "sg_event_id", "sg_message_id", "smtp-id"}
    | {"url", "url_offset", "useragent", "ip", "sg_machine_open", "asm_group_id", "tls"}
    | {"type", "reason", "status", "response", "attempt", "bounce_classification"}
)
HUMAN_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 "
    "Mobile Safari/537.36",
)
MACHINE_AGENT = "Mozilla/5.0"
SCANNER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Trident/7.0; rv:11.0) like Gecko"


@dataclass(frozen=True)
class PlannedEvent:
    """An event without its timestamp and sg_event_id, ``offset`` simulated seconds after send."""

    offset: float
    fields: dict[str, Any]


def plan_events(
    recipient: Recipient, sg_message_id: str, truth: TrueRates, rng: np.random.Generator
) -> list[PlannedEvent]:
    """Everything SendGrid would report for one recipient, ordered by offset."""
    plan = _Plan(recipient, sg_message_id, truth, rng)
    delivered_at = plan.transport()
    if delivered_at is not None:
        plan.machines(delivered_at)
        plan.person(delivered_at)
        plan.opt_outs(delivered_at)
    return sorted(plan.events, key=lambda planned: planned.offset)


class _Plan:
    """The events of one recipient, drawn step by step from one generator."""

    def __init__(
        self, recipient: Recipient, sg_message_id: str, truth: TrueRates, rng: np.random.Generator
    ) -> None:
        self.recipient = recipient
        self.rates = truth.rates_for(recipient.custom_args.values())
        self.timing = truth.timing
        self.rng = rng
        self.events: list[PlannedEvent] = []
        self.base = _base_fields(recipient)
        self.message = {"sg_message_id": sg_message_id}
        self.smtp = {"smtp-id": f"<{sg_message_id.split('.')[0]}@ismtpd0001p1sim.sendgrid.net>"}
        self.human = {
            "useragent": HUMAN_AGENTS[int(rng.integers(len(HUMAN_AGENTS)))],
            "ip": f"203.0.113.{int(rng.integers(1, 255))}",
        }

    def add(self, offset: float, event: str, **fields: Any) -> None:
        self.events.append(PlannedEvent(offset, {**self.base, "event": event, **fields}))

    def human_delay(self, median_hours: float) -> float:
        """Seconds until a person acts: log-normal around the median, cut at the horizon."""
        hours = self.rng.lognormal(math.log(median_hours), self.timing.sigma)
        return min(hours, self.timing.horizon_hours) * 3600.0

    def transport(self) -> float | None:
        """processed, then deferrals and delivery or a bounce; returns the delivery offset, or
        None when the mail never reached the person."""
        rng, rates, message, smtp = self.rng, self.rates, self.message, self.smtp
        self.add(rng.uniform(0.0, 1.0), "processed", **message, **smtp)
        delivered_at = rng.uniform(1.0, 10.0)
        fate = rng.random()
        if fate < rates.bounce + rates.blocked:
            bounce = _bounce_fields("bounce" if fate < rates.bounce else "blocked")
            if rng.random() < rates.async_bounce_share:
                # Accepted by the receiving server, bounced later: no sg_message_id then.
                self.add(delivered_at, "delivered", **message, **smtp, response="250 OK")
                self.add(delivered_at + rng.uniform(60.0, 3600.0), "bounce", **bounce)
            else:
                self.add(delivered_at, "bounce", **message, **smtp, **bounce)
            return None
        if rng.random() < rates.deferred:
            for attempt in range(1, int(rng.integers(1, 4)) + 1):
                self.add(
                    delivered_at,
                    "deferred",
                    **message,
                    **smtp,
                    attempt=str(attempt),
                    response="451 4.7.1 Try again later",
                )
                delivered_at += rng.uniform(300.0, 1800.0)
        self.add(delivered_at, "delivered", **message, **smtp, response="250 OK", tls=1)
        return delivered_at

    def machines(self, delivered_at: float) -> None:
        """Apple Mail Privacy Protection prefetches (machine opens); link scanners click all."""
        rng, message = self.rng, self.message
        if rng.random() < self.rates.machine_open:
            self.add(
                delivered_at + rng.uniform(30.0, 900.0),
                "open",
                **message,
                sg_machine_open=True,
                useragent=MACHINE_AGENT,
                ip="17.58.0.1",
            )
        if self.recipient.urls and rng.random() < self.rates.scanner_click:
            start = delivered_at + rng.uniform(1.0, 6.0)
            for index, url in enumerate(self.recipient.urls):
                self.add(
                    start + 0.2 * index,
                    "click",
                    **message,
                    url=url,
                    url_offset={"index": index, "type": "html"},
                    useragent=SCANNER_AGENT,
                    ip="198.51.100.7",
                )

    def person(self, delivered_at: float) -> None:
        """Human opens and the human click; every clicker opens, and non-clickers open less,
        so that the overall open rate stays the true `open` rate (or `click`, if higher)."""
        rng, message, urls = self.rng, self.message, self.recipient.urls
        click_rate = self.rates.click if urls else 0.0
        open_if_no_click = (
            max(0.0, (self.rates.open - click_rate) / (1.0 - click_rate)) if click_rate < 1 else 0.0
        )
        first_open: float | None = None
        if rng.random() < click_rate:
            target = _human_target(urls)
            clicked_at = delivered_at + self.human_delay(self.timing.click_median_hours)
            first_open = max(delivered_at + 1.0, clicked_at - rng.uniform(5.0, 120.0))
            self.add(
                clicked_at,
                "click",
                **message,
                url=urls[target],
                **self.human,
                url_offset={"index": target, "type": "html"},
            )
        elif rng.random() < open_if_no_click:
            first_open = delivered_at + self.human_delay(self.timing.open_median_hours)
        if first_open is None:
            return
        self.add(first_open, "open", **message, sg_machine_open=False, **self.human)
        if rng.random() < 0.3:  # some people open again
            again = first_open + self.human_delay(self.timing.open_median_hours)
            self.add(again, "open", **message, sg_machine_open=False, **self.human)

    def opt_outs(self, delivered_at: float) -> None:
        """Unsubscribes (per ASM group when the mail has one), resubscribes, spam reports."""
        rng, message, human = self.rng, self.message, self.human
        if rng.random() < self.rates.unsubscribe:
            at = delivered_at + self.human_delay(self.timing.open_median_hours)
            group_id = self.recipient.asm_group_id
            if group_id is None:
                self.add(at, "unsubscribe", **message, **human)
            else:
                self.add(at, "group_unsubscribe", **message, asm_group_id=group_id, **human)
                if rng.random() < self.rates.resubscribe_share:
                    self.add(
                        at + rng.uniform(3600.0, 86400.0),
                        "group_resubscribe",
                        **message,
                        asm_group_id=group_id,
                        **human,
                    )
        if rng.random() < self.rates.spam_report:
            at = delivered_at + self.human_delay(self.timing.open_median_hours)
            self.add(at, "spamreport", **message)


def stamp(planned: PlannedEvent, *, start: float, time_scale: float, sg_event_id: str) -> dict:
    """The wire event: ``planned`` at ``start + offset / time_scale`` (whole epoch seconds)."""
    timestamp = int(start + planned.offset / time_scale)
    return {**planned.fields, "timestamp": timestamp, "sg_event_id": sg_event_id}


def _base_fields(recipient: Recipient) -> dict[str, Any]:
    fields: dict[str, Any] = {
        key: value for key, value in recipient.custom_args.items() if key not in RESERVED_KEYS
    }
    fields["email"] = recipient.email
    if len(recipient.categories) == 1:
        fields["category"] = recipient.categories[0]
    elif recipient.categories:
        fields["category"] = list(recipient.categories)
    return fields


def _bounce_fields(kind: str) -> dict[str, Any]:
    if kind == "blocked":
        return {
            "type": "blocked",
            "status": "5.7.1",
            "bounce_classification": "Reputation",
            "reason": "550 5.7.1 Message rejected due to local policy",
        }
    return {
        "type": "bounce",
        "status": "5.1.1",
        "bounce_classification": "Invalid Address",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist",
    }


def _human_target(urls: tuple[str, ...]) -> int:
    """People click the first link that is not the unsubscribe link (the referral link)."""
    for index, url in enumerate(urls):
        if "unsubscribe" not in url.lower():
            return index
    return 0
