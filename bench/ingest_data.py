"""Data for the ingestion benchmark: a fresh database, sends to attribute to, signed batches.

The event stream imitates what SendGrid posts while a large recruiter mailing goes out:

- sends leave at a steady pace (one every half second, spread over hours, in send id order);
- each email's story follows what SendGrid reports: processed, delivered (or a deferral, a bounce
  or a block), opens for 60 % of the delivered (40 % of them Apple MPP machine opens), human
  clicks, scanner clicks seconds after delivery, and the occasional unsubscribe, group
  unsubscribe and spam report; opens and clicks come minutes to hours later;
- SendGrid batches by time, not by email, and does not keep order: events are posted in time
  order with up to 30 s of disorder, starting after the first hour, so every batch mixes
  deliveries of recent sends with opens and clicks of older ones (a steady state, not a ramp);
- ``sg_event_id`` looks like SendGrid's (base64 of type, counter and a random part: no order a
  B-tree could exploit), and 7 % of each batch are duplicates: events posted again in the same
  batch or re-sent from the previous two batches, as SendGrid's retries do.
"""

from __future__ import annotations

import base64
import random
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from webhooks import wire

POSTGRES_DATABASE = "resistry_bench_ingest"
BATCH = 1000
DUPLICATE_SHARE = 0.07
T0 = 1_795_000_000
SEND_INTERVAL_SECONDS = 0.5
RAMP_SECONDS = 3600  # opens and clicks trail deliveries by hours: skip the first hour's ramp
DISORDER_SECONDS = 30.0
RAW_EVENTS = sa.Table(
    "bench_raw_events",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)
_RANDOM_CHARS = string.ascii_letters + string.digits + "-_"


@dataclass(frozen=True)
class SendRow:
    id: int
    email: str
    x_message_id: str
    mailing_id: int
    variants: tuple[int, int, int]
    sent_at: float


@dataclass(frozen=True)
class Workload:
    """Signed request bodies (with headers) and what they hold."""

    bodies: list[tuple[bytes, dict[str, str]]]
    unique_events: int
    posted_events: int
    types: Counter[str]


def prepare_database(backend: str, workdir: Path, postgres_server: str) -> str:
    """A fresh, migrated database of ``backend``; returns its URL."""
    from engine import migrate
    from engine.db import create_db_engine

    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    else:
        admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")
            connection.exec_driver_sql(f"CREATE DATABASE {POSTGRES_DATABASE}")
        admin.dispose()
        url = f"{postgres_server}/{POSTGRES_DATABASE}"
    engine = create_db_engine(_settings(url))
    migrate.upgrade(engine)
    RAW_EVENTS.create(engine)
    engine.dispose()
    return url


def _settings(url: str) -> Any:
    from engine.settings import load_settings

    return load_settings(
        environ={
            "RESISTRY_DATABASE_URL": url,
            "RESISTRY_SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
        }
    )


def sends_needed(batches: int) -> int:
    """Sends whose events cover ``batches`` batches after the ramp (about 2.3 events each)."""
    return int(batches * BATCH / 2.0) + int(RAMP_SECONDS / SEND_INTERVAL_SECONDS)


def seed_sends(url: str, count: int) -> list[SendRow]:
    """Experiments, one mailing and ``count`` sent emails (1,000 per SendGrid request), sent one
    every half second from ``T0``."""
    from datetime import UTC, datetime

    from engine.db import create_db_engine
    from engine.models import Contact, Experiment, Mailing, Recruiter, Send, Variant, utcnow

    engine = create_db_engine(_settings(url))
    now = utcnow()
    with engine.begin() as connection:
        variant_ids = []
        for kind, metric in (("subject", "click"), ("body", "open"), ("share", "signup")):
            experiment_id = connection.execute(
                sa.insert(Experiment).returning(Experiment.id),
                {"key": kind, "name": kind, "kind": kind, "metric": metric, "status": "running"},
            ).scalar_one()
            variant_ids.append(
                list(
                    connection.execute(
                        sa.insert(Variant).returning(Variant.id, sort_by_parameter_order=True),
                        [{"experiment_id": experiment_id, "key": k, "name": k} for k in "abc"],
                    ).scalars()
                )
            )
        mailing_id = connection.execute(
            sa.insert(Mailing).returning(Mailing.id),
            {"key": "bench", "asm_group_id": 101, "scheduled_for": now, "status": "sent"},
        ).scalar_one()
        emails = [f"recruiter{n}@example.org" for n in range(count)]
        contact_ids = connection.execute(
            sa.insert(Contact).returning(Contact.id, sort_by_parameter_order=True),
            [{"email": e, "zip_code": "10001", "created_at": now} for e in emails],
        ).scalars()
        recruiter_ids = connection.execute(
            sa.insert(Recruiter).returning(Recruiter.id, sort_by_parameter_order=True),
            [{"contact_id": c, "code": f"c{c}", "created_at": now} for c in contact_ids],
        ).scalars()
        rows = []
        rng = random.Random(20261120)
        request_ids = [_x_message_id(rng) for _ in range(count // 1000 + 1)]
        for n, recruiter_id in enumerate(recruiter_ids):
            picks = tuple(variant_ids[k][(n // 3**k) % 3] for k in range(3))
            rows.append(
                {
                    "mailing_id": mailing_id,
                    "recruiter_id": recruiter_id,
                    "subject_variant_id": picks[0],
                    "body_variant_id": picks[1],
                    "share_variant_id": picks[2],
                    "status": "sent",
                    "x_message_id": request_ids[n // 1000],
                    "sent_at": datetime.fromtimestamp(T0 + n * SEND_INTERVAL_SECONDS, UTC),
                    "created_at": now,
                }
            )
        send_ids = connection.execute(
            sa.insert(Send).returning(Send.id, sort_by_parameter_order=True), rows
        ).scalars()
        sends = [
            SendRow(
                send_id,
                emails[n],
                rows[n]["x_message_id"],
                mailing_id,
                (
                    rows[n]["subject_variant_id"],
                    rows[n]["body_variant_id"],
                    rows[n]["share_variant_id"],
                ),
                rows[n]["sent_at"].timestamp(),
            )
            for n, send_id in enumerate(send_ids)
        ]
    engine.dispose()
    return sends


def _x_message_id(rng: random.Random) -> str:
    return "".join(rng.choices(_RANDOM_CHARS, k=22))


def _sg_event_id(kind: str, rng: random.Random) -> str:
    # SendGrid's ids are base64 of "<type>-<n>-<number>-<random>-<n>" (about 48-64 characters).
    random_part = "".join(rng.choices(_RANDOM_CHARS, k=22))
    raw = f"{kind}-0-{rng.randrange(10**8)}-{random_part}-0"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def lifecycle(send: SendRow, rng: random.Random) -> list[dict[str, Any]]:
    """What SendGrid reports about one email, with float timestamps (seconds)."""

    def event(kind: str, at: float, **fields: Any) -> dict[str, Any]:
        return {
            "email": send.email,
            "event": kind,
            "timestamp": at,
            "sg_event_id": _sg_event_id(kind, rng),
            "sg_message_id": (
                f"{send.x_message_id}.recvd-5df7b6f8c4-2xkdg-1-{rng.getrandbits(32):08X}-{kind[:2]}.0"
            ),
            "smtp-id": f"<{send.x_message_id}@geopod-ismtpd-3>",
            "category": ["recruiter", "weekly"],
            "send_id": str(send.id),
            "mailing_id": str(send.mailing_id),
            "subject_variant": str(send.variants[0]),
            "body_variant": str(send.variants[1]),
            "share_variant": str(send.variants[2]),
            **fields,
        }

    sent = send.sent_at
    events = [event("processed", sent + rng.uniform(0, 2))]
    roll = rng.random()
    if roll < 0.02:
        kind = "blocked" if rng.random() < 0.5 else "bounce"
        events.append(event("bounce", sent + 5, type=kind, reason="550 5.1.1 no such user"))
        return events
    if roll < 0.025:
        events.append(event("dropped", sent + 2, reason="Bounced Address"))
        return events
    if roll < 0.06:
        events.append(event("deferred", sent + 5, attempt="1", response="421 try again later"))
    delivered = sent + rng.uniform(1, 30)
    events.append(event("delivered", delivered, response="250 2.0.0 OK", tls=1))
    if rng.random() < 0.6:
        machine = rng.random() < 0.4
        delay = rng.uniform(2, 60) if machine else rng.lognormvariate(7.5, 1.2)
        events.append(event("open", delivered + delay, sg_machine_open=machine))
    if rng.random() < 0.03:
        url = "https://resistry.example/r/abc?t=x"
        events.append(event("click", delivered + rng.uniform(1, 8), url=url))
    if rng.random() < 0.12:
        url = "https://resistry.example/r/abc"
        events.append(event("click", delivered + rng.lognormvariate(8.0, 1.0), url=url))
    if rng.random() < 0.005:
        events.append(event("unsubscribe", delivered + rng.lognormvariate(8.5, 1.0)))
    elif rng.random() < 0.003:
        at = delivered + rng.lognormvariate(8.5, 1.0)
        events.append(event("group_unsubscribe", at, asm_group_id=101))
    if rng.random() < 0.002:
        events.append(event("spamreport", delivered + rng.lognormvariate(9.0, 1.0)))
    return events


def make_workload(sends: list[SendRow], batches: int, key: Any, seed: int = 20261121) -> Workload:
    """``batches`` signed bodies of 1,000 events each, 7 % of them duplicates (see above)."""
    rng = random.Random(seed)
    stream: list[tuple[float, dict[str, Any]]] = []
    for send in sends:
        for item in lifecycle(send, rng):
            stream.append((item["timestamp"] + rng.uniform(0, DISORDER_SECONDS), item))
    stream.sort(key=lambda pair: pair[0])
    start = T0 + RAMP_SECONDS
    fresh_per_batch = BATCH - round(BATCH * DUPLICATE_SHARE)
    fresh = [item for posted, item in stream if posted >= start]
    if len(fresh) < batches * fresh_per_batch:
        raise ValueError(f"{len(sends)} sends do not make {batches} batches; seed more")
    bodies = []
    unique: set[str] = set()
    types: Counter[str] = Counter()
    recent: list[dict[str, Any]] = []
    for number in range(batches):
        chunk = fresh[number * fresh_per_batch : (number + 1) * fresh_per_batch]
        pool = recent + chunk  # the previous two batches and this one
        chunk = chunk + [rng.choice(pool) for _ in range(BATCH - len(chunk))]
        rng.shuffle(chunk)
        recent = (recent + chunk)[-2 * BATCH :]
        events = [{**item, "timestamp": int(item["timestamp"])} for item in chunk]
        unique.update(item["sg_event_id"] for item in events)
        types.update(item["event"] for item in events)
        body = wire.build_body(events)
        bodies.append((body, wire.signed_headers(key, body, str(int(start) + number))))
    return Workload(bodies, len(unique), batches * BATCH, types)
