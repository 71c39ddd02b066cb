"""The ingestion benchmark: its workload is what the issue asks for (realistic, signed, 7 %
duplicates), and it runs end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bench import common
from bench import ingest as ingest_bench
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


def test_ingest_bench_runs_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The production server, both endpoints; the benchmark itself checks every status is 200,
    every unique event stored once and every baseline row kept."""
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    ingest_bench.main(["--quick", "--backends", "sqlite"])
    figures = {row["name"]: row for row in json.loads((tmp_path / "ingest.json").read_text())}
    accepted, baseline = figures["sqlite ingest accepted"], figures["sqlite baseline"]
    assert accepted["value"] > 0 and baseline["value"] > 0
    ratio = accepted["value"] / baseline["value"]
    assert figures["sqlite accepted / baseline"]["value"] == pytest.approx(ratio, abs=0.01)
    applied = figures["sqlite ingest applied"]["value"]
    assert 0 < applied <= accepted["value"]  # applying ends after accepting
    assert figures["sqlite applied / baseline"]["value"] == pytest.approx(
        applied / baseline["value"], abs=0.01
    )
