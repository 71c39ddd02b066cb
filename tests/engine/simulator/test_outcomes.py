"""From hidden true rates to events: the funnel, its timing, and rates that match the truth."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from sendgrid import SendGridAPIClient

from engine.settings import Settings
from engine.simulator.mail_send import Recipient
from engine.simulator.outcomes import SCANNER_AGENT, plan_events, stamp
from engine.simulator.truth import Rates, TrueRates, load_true_rates
from tests.engine.simulator.support import FROZEN_NOW, mail

SUBJECTS = ("friends-brought", "personal-link")  # best and worst subject of the demo
BODIES = ("short-and-direct", "progress-story")
LINKS = ("https://resistry.example/?t=1", "https://resistry.example/unsubscribe/1")


def recipient(**changes: Any) -> Recipient:
    values: dict[str, Any] = {
        "email": "friend@example.org",
        "custom_args": {"send_id": "1", "body_variant": "b/x"},
        "categories": ("recruiter-mailing",),
        "asm_group_id": 101,
        "urls": LINKS,
        "personalization_index": 0,
    } | changes
    return Recipient(**values)


def events_for(truth: TrueRates, seed: int = 1, **changes: Any) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    planned = plan_events(recipient(**changes), "XID.recvd-sim-0.0", truth, rng)
    return [
        stamp(p, start=FROZEN_NOW, time_scale=1.0, sg_event_id=str(i))
        for i, p in enumerate(planned)
    ]


def certain(**rates: float) -> TrueRates:
    """Truth where the named rates are 0 or 1 and everything else never happens."""
    zero = {name: 0.0 for name in Rates.__dataclass_fields__}
    return TrueRates(defaults=Rates(**(zero | rates)))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


def test_a_plain_delivery_is_processed_then_delivered() -> None:
    events = events_for(certain())

    assert kinds(events) == ["processed", "delivered"]
    assert all(e["sg_message_id"] == "XID.recvd-sim-0.0" for e in events)
    assert events[0]["category"] == "recruiter-mailing" and events[0]["body_variant"] == "b/x"
    assert events[0]["timestamp"] >= FROZEN_NOW


def test_a_synchronous_bounce_and_a_block() -> None:
    [_, bounce] = events_for(certain(bounce=1.0))
    assert bounce["event"] == "bounce" and bounce["type"] == "bounce"
    assert bounce["reason"] and bounce["sg_message_id"]

    [_, blocked] = events_for(certain(blocked=1.0))
    assert blocked["type"] == "blocked" and blocked["status"].startswith("5.7")


def test_an_async_bounce_follows_delivery_and_lacks_sg_message_id() -> None:
    events = events_for(certain(bounce=1.0, async_bounce_share=1.0))

    assert kinds(events) == ["processed", "delivered", "bounce"]
    assert "sg_message_id" not in events[-1] and events[-1]["send_id"] == "1"
    assert events[-1]["timestamp"] > events[1]["timestamp"]


def test_deferrals_come_before_a_later_delivery() -> None:
    events = events_for(certain(deferred=1.0))

    deferred = [e for e in events if e["event"] == "deferred"]
    assert 1 <= len(deferred) <= 3
    assert [e["attempt"] for e in deferred] == [str(i) for i in range(1, len(deferred) + 1)]
    assert kinds(events)[-1] == "delivered"
    assert events[-1]["timestamp"] - deferred[0]["timestamp"] >= 300 * len(deferred)


def test_every_human_click_has_an_open_before_it_and_targets_the_referral_link() -> None:
    events = events_for(certain(click=1.0))

    opens = [e for e in events if e["event"] == "open"]
    [click] = [e for e in events if e["event"] == "click"]
    assert opens and opens[0]["sg_machine_open"] is False
    assert opens[0]["timestamp"] <= click["timestamp"]
    assert click["url"] == LINKS[0] and click["url_offset"] == {"index": 0, "type": "html"}
    assert click["useragent"] != SCANNER_AGENT


def test_apple_privacy_opens_are_machine_opens() -> None:
    events = events_for(certain(machine_open=1.0))

    [open_] = [e for e in events if e["event"] == "open"]
    assert open_["sg_machine_open"] is True


def test_a_scanner_clicks_every_link_within_seconds_of_delivery() -> None:
    events = events_for(certain(scanner_click=1.0))

    delivered = next(e for e in events if e["event"] == "delivered")
    clicks = [e for e in events if e["event"] == "click"]
    assert [c["url"] for c in clicks] == list(LINKS)
    assert all(0 <= c["timestamp"] - delivered["timestamp"] <= 10 for c in clicks)
    assert all(c["useragent"] == SCANNER_AGENT for c in clicks)


def test_without_links_nobody_clicks() -> None:
    assert "click" not in kinds(events_for(certain(click=1.0, scanner_click=1.0), urls=()))


def test_unsubscribes_use_the_asm_group_when_the_mail_has_one() -> None:
    events = events_for(certain(unsubscribe=1.0, resubscribe_share=1.0))
    unsubscribe, resubscribe = events[-2:]
    assert (unsubscribe["event"], resubscribe["event"]) == (
        "group_unsubscribe",
        "group_resubscribe",
    )
    assert unsubscribe["asm_group_id"] == resubscribe["asm_group_id"] == 101

    plain = events_for(certain(unsubscribe=1.0), asm_group_id=None)
    assert kinds(plain)[-1] == "unsubscribe" and "asm_group_id" not in plain[-1]


def test_spam_reports() -> None:
    assert kinds(events_for(certain(spam_report=1.0)))[-1] == "spamreport"


def test_categories_are_a_string_or_a_list_and_custom_args_never_replace_sendgrid_keys() -> None:
    [event, *_] = events_for(
        certain(), categories=("a", "b"), custom_args={"event": "forged", "send_id": "9"}
    )

    assert event["category"] == ["a", "b"]
    assert event["event"] == "processed" and event["send_id"] == "9"
    assert "category" not in events_for(certain(), categories=())[0]


def test_time_compression_shrinks_the_spread() -> None:
    truth = certain(open=1.0)
    rng = np.random.default_rng(3)
    planned = plan_events(recipient(), "X.0", truth, rng)
    real = [stamp(p, start=0, time_scale=1, sg_event_id="e")["timestamp"] for p in planned]
    fast = [stamp(p, start=0, time_scale=3600, sg_event_id="e")["timestamp"] for p in planned]

    assert max(real) > 60 and max(fast) == pytest.approx(max(real) / 3600, abs=1)


def test_the_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    truth = load_true_rates()
    runs = [
        [events_for(truth, seed=seed, email=f"p{i}@example.org") for i in range(50)]
        for seed in (5, 5, 6)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_rates_of_a_big_seeded_run_match_the_hidden_truth(
    start: Any, sim_settings: Settings
) -> None:
    """20,000 recipients over HTTP, four subject × body arms of 5,000 (defaults elsewhere)."""
    handle = start(webhook_url=None, time_scale=1.0)
    client = SendGridAPIClient(sim_settings.sendgrid.api_key, host=handle.url)
    for subject in SUBJECTS:
        for body in BODIES:
            for _ in range(5):
                request = mail(1000)
                first_id = len(handle.accepted) * 1000
                for number, personalization in enumerate(request["personalizations"]):
                    args = personalization["custom_args"]
                    args["subject_variant"] = f"recruiter-subject/{subject}"
                    args["body_variant"] = f"recruiter-body/{body}"
                    args["send_id"] = str(first_id + number)
                assert client.client.mail.send.post(request_body=request).status_code == 202
    seen: dict[str, set[str]] = defaultdict(set)
    arm: dict[str, tuple[str, str]] = {}
    for event in handle.drain_events():
        send_id = event["send_id"]
        arm[send_id] = (event["subject_variant"], event["body_variant"])
        kind = event["event"]
        if kind == "open":
            kind = "machine_open" if event["sg_machine_open"] else "human_open"
        elif kind == "click":
            kind = "scanner_click" if event["useragent"] == SCANNER_AGENT else "human_click"
        elif kind == "bounce":
            kind = event["type"]
        seen[send_id].add(kind)
    assert len(seen) == 20_000
    truth = load_true_rates()
    defaults = truth.defaults

    def share(kind: str, among: list[str]) -> float:
        return sum(kind in seen[s] for s in among) / len(among)

    everyone = list(seen)
    assert share("bounce", everyone) == pytest.approx(defaults.bounce, abs=0.003)
    assert share("blocked", everyone) == pytest.approx(defaults.blocked, abs=0.002)
    reached = [
        s for s in everyone if "delivered" in seen[s] and not {"bounce", "blocked"} & seen[s]
    ]
    assert share("machine_open", reached) == pytest.approx(defaults.machine_open, abs=0.02)
    assert share("scanner_click", reached) == pytest.approx(defaults.scanner_click, abs=0.008)
    for subject in SUBJECTS:
        key = f"recruiter-subject/{subject}"
        arm_sends = [s for s in reached if arm[s][0] == key]
        expected_open = truth.variants[key]["open"]
        assert share("human_open", arm_sends) == pytest.approx(expected_open, abs=0.02)
        expected_unsubscribe = truth.variants[key].get("unsubscribe", defaults.unsubscribe)
        assert share("group_unsubscribe", arm_sends) == pytest.approx(
            expected_unsubscribe, abs=0.003
        )
        for body in BODIES:
            cell = (key, f"recruiter-body/{body}")
            cell_sends = [s for s in arm_sends if arm[s] == cell]
            # Subject and body both move clicks: their lifts multiply (see true_rates.toml).
            expected_click = truth.rates_for(cell).click
            assert share("human_click", cell_sends) == pytest.approx(expected_click, abs=0.012)
    assert truth.rates_for(
        ("recruiter-subject/friends-brought", "recruiter-body/progress-story")
    ).click == pytest.approx(0.03 * (0.042 / 0.03) * (0.039 / 0.03))
