"""Data for the ingestion benchmark: a fresh database, sends to attribute to, signed batches.

Events follow what SendGrid reports about recruiter mailings: processed and delivered for nearly
all, opens (40 % Apple MPP machine opens), human clicks, scanner clicks seconds after delivery,
and the occasional deferral, bounce or block, unsubscribe and spam report; about 1 % of each batch
re-sends events of earlier batches, as SendGrid's retries do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from webhooks import wire

POSTGRES_DATABASE = "resistry_bench_ingest"
BATCH = 1000
T0 = 1_795_000_000
RAW_EVENTS = sa.Table(
    "bench_raw_events",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class SendRow:
    id: int
    email: str
    x_message_id: str
    mailing_id: int
    variants: tuple[int, int, int]


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
        environ={"RESISTRY_DATABASE_URL": url, "RESISTRY_SECRET_KEY": "bench-secret"}
    )


def seed_sends(url: str, count: int) -> list[SendRow]:
    """Experiments, one mailing and ``count`` sent emails (1,000 per SendGrid request)."""
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
        for n, recruiter_id in enumerate(recruiter_ids):
            picks = tuple(variant_ids[k][n % 3] for k in range(3))
            rows.append(
                {
                    "mailing_id": mailing_id,
                    "recruiter_id": recruiter_id,
                    "subject_variant_id": picks[0],
                    "body_variant_id": picks[1],
                    "share_variant_id": picks[2],
                    "status": "sent",
                    "x_message_id": f"BENCHREQ{n // 1000:06d}",
                    "sent_at": now,
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
            )
            for n, send_id in enumerate(send_ids)
        ]
    engine.dispose()
    return sends


def lifecycle(send: SendRow, rng: random.Random, counter: list[int]) -> list[dict[str, Any]]:
    """What SendGrid reports about one email: delivery, opens (some Apple MPP), clicks (some
    by scanners), and the occasional deferral, bounce, unsubscribe or spam report."""

    def event(kind: str, at: float, **fields: Any) -> dict[str, Any]:
        counter[0] += 1
        return {
            "email": send.email,
            "event": kind,
            "timestamp": int(at),
            "sg_event_id": f"bench-{counter[0]:010d}-{rng.getrandbits(40):010x}",
            "sg_message_id": f"{send.x_message_id}.filterdrecv-5df7b6f8c4-2xkdg-1-{counter[0]:X}.0",
            "smtp-id": f"<{send.x_message_id}@ismtpd-3>",
            "category": ["recruiter", "weekly"],
            "send_id": str(send.id),
            "mailing_id": str(send.mailing_id),
            "subject_variant": str(send.variants[0]),
            "body_variant": str(send.variants[1]),
            "share_variant": str(send.variants[2]),
            **fields,
        }

    sent = T0 + rng.uniform(0, 600)
    events = [event("processed", sent)]
    roll = rng.random()
    if roll < 0.02:
        kind = "blocked" if rng.random() < 0.5 else "bounce"
        events.append(event("bounce", sent + 5, type=kind, reason="550 5.1.1 no such user"))
        return events
    if roll < 0.05:
        events.append(event("deferred", sent + 5, attempt="1", response="421 try again later"))
    delivered = sent + rng.uniform(1, 30)
    events.append(event("delivered", delivered, response="250 2.0.0 OK", tls=1))
    if rng.random() < 0.6:
        machine = rng.random() < 0.4
        events.append(event("open", delivered + rng.uniform(5, 20000), sg_machine_open=machine))
    if rng.random() < 0.03:
        events.append(event("click", delivered + 2, url="https://resistry.example/r/abc?t=x"))
    if rng.random() < 0.12:
        events.append(
            event("click", delivered + rng.uniform(60, 40000), url="https://resistry.example/r/abc")
        )
    if rng.random() < 0.005:
        events.append(event("unsubscribe", delivered + 50000))
    elif rng.random() < 0.003:
        events.append(event("group_unsubscribe", delivered + 50000, asm_group_id=101))
    if rng.random() < 0.002:
        events.append(event("spamreport", delivered + 60000))
    return events


def make_bodies(
    sends: list[SendRow], batches: int, key: Any, seed: int = 20261121
) -> tuple[list[tuple[bytes, dict[str, str]]], int]:
    """Signed bodies of 1,000 events (about 1 % re-sent duplicates); and the unique count."""
    rng = random.Random(seed)
    counter = [0]
    events: list[dict[str, Any]] = []
    for send in sends:
        events += lifecycle(send, rng, counter)
        if len(events) >= batches * BATCH:
            break
    events = events[: batches * BATCH]
    rng.shuffle(events)
    sent: set[str] = set()
    bodies = []
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        if start:  # SendGrid re-sends a few events of earlier batches
            chunk[:10] = rng.sample(events[:start], 10)
        sent.update(e["sg_event_id"] for e in chunk)
        body = wire.build_body(chunk)
        bodies.append((body, wire.signed_headers(key, body, str(T0 + start))))
    return bodies, len(sent)
