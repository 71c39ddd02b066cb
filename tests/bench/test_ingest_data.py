"""The ingestion benchmark's workload is what the issue asks for: realistic, signed, 7 % dupes."""

from __future__ import annotations

from collections import Counter

import orjson

from bench.ingest_data import BATCH, T0, SendRow, make_workload
from webhooks import wire
from webhooks.verify import parse_public_key, signature_is_valid
from webhooks.wire import SIGNATURE_HEADER, TIMESTAMP_HEADER


def test_batches_are_signed_mixed_and_about_seven_percent_duplicates() -> None:
    sends = [
        SendRow(n + 1, f"r{n}@example.org", f"REQ{n // 1000:019d}", 7, (1, 4, 7), T0 + n * 0.5)
        for n in range(12_000)
    ]
    key = wire.new_private_key()
    workload = make_workload(sends, 5, key)
    public = parse_public_key(wire.public_key_base64(key))
    seen: set[str] = set()
    repeats = 0
    for body, headers in workload.bodies:
        assert signature_is_valid(
            public, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], body
        )
        events = orjson.loads(body)
        assert len(events) == BATCH
        ids = [e["sg_event_id"] for e in events]
        repeats += sum(1 for i in ids if i in seen) + len(ids) - len(set(ids))
        seen.update(ids)
        assert ids != sorted(ids)  # no order a B-tree could exploit
        by_send = {s.id: s for s in sends}
        for e in events:  # every event belongs to a send that exists, as SendGrid reports it
            send = by_send[int(e["send_id"])]
            assert e["email"] == send.email
            assert e["sg_message_id"].startswith(send.x_message_id + ".")
    assert workload.unique_events == len(seen)
    assert 0.05 <= repeats / workload.posted_events <= 0.10
    mix = Counter(workload.types)
    for kind in ("processed", "delivered", "open", "click"):
        assert mix[kind] / workload.posted_events > 0.03, kind
