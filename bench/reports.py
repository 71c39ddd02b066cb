"""Benchmark: the analyst reports on 1,000,000 sends and 5,000,000 events.

Generates 20 variants (subject 8, body 4, share 4, landing 4) over 30 days: 5 weekly mailings of
200,000 recruiters, 5 events per send, 300,000 landing visits from 7 groups with their signups,
and an allocation snapshot every 6 hours. Rows go in by executemany on SQLite and COPY on
PostgreSQL; generation is not timed and is skipped when the bench database already holds the
data (``--regenerate`` forces it). The raw rows bypass the write points, so the report rollups are
then rebuilt from them (``resistry reports rebuild-rollups``; timed and printed, not part of any
report figure). Each report is then timed as a JSON document (median of ``--repeat`` runs after
one warm-up) beside a plain ``SELECT count(*) FROM events``.

    .venv/bin/python bench/reports.py [--backend sqlite|postgresql|both] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Figure, emit
from engine.models.events import event_digest

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
BENCH_DATABASE = "resistry_bench_reports"
SQLITE_PATH = Path(tempfile.gettempdir()) / "resistry_bench_reports.sqlite3"
TARGET_MS = 500.0
START = datetime(2026, 9, 1, 14, 0, tzinfo=UTC)
DAYS = 30
RECRUITERS = 200_000
MAILINGS = 5
EVENTS_PER_SEND = 5
LANDING_VISITS = 300_000
GROUPS = 7
KINDS = {"subject": 8, "body": 4, "share": 4, "landing": 4}
CHUNK = 100_000
SEED = 2026


# --- generation ------------------------------------------------------------------------------


def _stamp(at: datetime, sqlite: bool) -> Any:
    # SQLite keeps UTC as naive ISO text (engine.models.base.UTCDateTime); PostgreSQL timestamptz.
    return at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at


class Writer:
    """Bulk rows into one table: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.sqlite = connection.dialect.name == "sqlite"

    def write(self, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
        raw = self.connection.connection.driver_connection
        count = 0
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= CHUNK:
                count += self._flush(raw, table, columns, batch)
                batch = []
        return count + self._flush(raw, table, columns, batch)

    def _flush(self, raw: Any, table: str, columns: list[str], batch: list[tuple[Any, ...]]) -> int:
        if not batch:
            return 0
        names = ", ".join(columns)
        if self.sqlite:
            marks = ", ".join("?" for _ in columns)
            raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", batch)
        else:
            with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
        return len(batch)


def generate(connection: sa.Connection) -> dict[str, int]:
    """Fill an empty, migrated database; returns the row counts written."""
    rng = random.Random(SEED)
    writer = Writer(connection)
    sqlite = writer.sqlite
    s = lambda at: _stamp(at, sqlite)  # noqa: E731
    counts: dict[str, int] = {}
    empty_json = "[]"
    counts["groups"] = writer.write(
        "groups",
        [
            "id",
            "slug",
            "name",
            "description",
            "roles",
            "website",
            "logo_url",
            "policy_areas",
            "active",
            "created_at",
        ],
        (
            (g, f"group-{g}", f"Group {g}", "", empty_json, "", "", empty_json, True, s(START))
            for g in range(1, GROUPS + 1)
        ),
    )
    variant_ids: dict[str, list[int]] = {}
    experiments, variants = [], []
    next_variant = 1
    for number, (kind, size) in enumerate(KINDS.items(), start=1):
        metric = {"subject": "click", "landing": "signup"}.get(kind, "signup")
        areas = json.dumps(
            [["voting rights", "climate", "police reform", "health care"][number - 1]]
        )
        experiments.append(
            (
                number,
                f"bench-{kind}",
                f"Bench {kind}",
                "",
                kind,
                metric,
                "running",
                1.0,
                1.0,
                200,
                0.95,
                0.01,
                0.02,
                50000,
                areas,
                1,
                s(START),
                s(START),
            )
        )
        variant_ids[kind] = list(range(next_variant, next_variant + size))
        for index, variant_id in enumerate(variant_ids[kind]):
            variants.append(
                (
                    variant_id,
                    number,
                    f"v{index}",
                    f"Variant {index}",
                    "{}",
                    "live",
                    index == 0,
                    None,
                    1 / size,
                    0,
                    0,
                    0,
                    0,
                    s(START),
                )
            )
        next_variant += size
    counts["experiments"] = writer.write(
        "experiments",
        [
            "id",
            "key",
            "name",
            "description",
            "kind",
            "metric",
            "status",
            "prior_alpha",
            "prior_beta",
            "burn_in",
            "p_best_threshold",
            "value_remaining_threshold",
            "floor",
            "max_trials_per_arm",
            "policy_areas",
            "epoch",
            "created_at",
            "updated_at",
        ],
        iter(experiments),
    )
    counts["variants"] = writer.write(
        "variants",
        [
            "id",
            "experiment_id",
            "key",
            "name",
            "content",
            "status",
            "is_control",
            "replaces_id",
            "weight",
            "trials",
            "successes",
            "unsubscribes",
            "spam_reports",
            "created_at",
        ],
        iter(variants),
    )
    counts["snapshots"] = writer.write(
        "allocation_snapshots",
        ["id", "experiment_id", "status", "weights", "created_at"],
        _snapshots(rng, variant_ids, s),
    )
    counts["contacts"] = writer.write(
        "contacts",
        ["id", "email", "zip_code", "first_name", "created_at"],
        (
            (c, f"recruiter{c}@example.org", "10001", "", s(START - timedelta(days=60)))
            for c in range(1, RECRUITERS + 1)
        ),
    )
    counts["recruiters"] = writer.write(
        "recruiters",
        ["id", "contact_id", "code", "active", "created_at"],
        ((r, r, f"code{r}", True, s(START - timedelta(days=60))) for r in range(1, RECRUITERS + 1)),
    )
    counts["mailings"] = writer.write(
        "mailings",
        [
            "id",
            "key",
            "asm_group_id",
            "status",
            "scheduled_for",
            "finished_at",
            "plan",
            "created_at",
        ],
        (
            (
                m,
                f"bench-{m}",
                101,
                "sent",
                s(START + timedelta(days=7 * (m - 1))),
                None,
                "{}",
                s(START + timedelta(days=7 * (m - 1))),
            )
            for m in range(1, MAILINGS + 1)
        ),
    )
    clicked: list[tuple[int, datetime]] = []  # (send id, first human click) of clicked sends
    counts["sends"] = writer.write("sends", SEND_COLUMNS, _sends(rng, variant_ids, s, clicked))
    counts["events"] = writer.write(
        "events",
        [
            "id",
            "event_key",
            "event_digest",
            "event_type",
            "sg_message_id",
            "send_id",
            "occurred_at",
            "label",
            "payload",
            "received_at",
        ],
        _events(rng, s),
    )
    visits, signups, friends = _visits(rng, variant_ids, clicked, s)
    counts["contacts"] += writer.write(
        "contacts",
        ["id", "email", "zip_code", "first_name", "created_at"],
        ((c, f"friend{c}@example.org", "10001", "", at) for c, at in friends),
    )
    counts["visits"] = writer.write("visits", VISIT_COLUMNS, iter(visits))
    counts["signups"] = writer.write(
        "signups",
        [
            "id",
            "contact_id",
            "group_id",
            "visit_id",
            "consent_text",
            "groups_order",
            "position",
            "created_at",
        ],
        iter(signups),
    )
    if not sqlite:
        for table in (
            "groups",
            "experiments",
            "variants",
            "allocation_snapshots",
            "contacts",
            "recruiters",
            "mailings",
            "sends",
            "events",
            "visits",
            "signups",
        ):
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
    return counts


def _snapshots(rng: random.Random, variant_ids: dict[str, list[int]], s: Callable) -> Iterator:
    snapshot_id = 0
    for number, ids in enumerate(variant_ids.values(), start=1):
        for step in range(DAYS * 4):
            raw = [rng.random() + 0.2 for _ in ids] if step else [1.0] * len(ids)
            weights = {str(v): w / sum(raw) for v, w in zip(ids, raw, strict=True)}
            snapshot_id += 1
            at = START - timedelta(hours=1) + timedelta(hours=6 * step)
            yield (snapshot_id, number, "running", json.dumps(weights), s(at))


SEND_COLUMNS = [
    "id", "mailing_id", "recruiter_id", "subject_variant_id", "body_variant_id",
    "share_variant_id", "status", "error", "x_message_id", "sent_at", "delivered_at",
    "bounced_at", "bounce_type", "dropped_at", "deferred_at", "first_open_at", "machine_open_at",
    "first_click_at", "scanner_click_at", "spam_report_at", "unsubscribed_at", "converted_at",
    "created_at",
]  # fmt: skip


def _sends(
    rng: random.Random, variant_ids: dict[str, list[int]], s: Callable, out: list
) -> Iterator:
    send_id = 0
    maybe = lambda p, at: at if rng.random() < p else None  # noqa: E731
    for mailing in range(1, MAILINGS + 1):
        base = START + timedelta(days=7 * (mailing - 1))
        for recruiter in range(1, RECRUITERS + 1):
            send_id += 1
            subject = rng.choice(variant_ids["subject"])
            at = base + timedelta(seconds=recruiter * 0.018)
            bounced = rng.random() < 0.02
            delivered = None if bounced else at + timedelta(seconds=20)
            click_rate = 0.03 + 0.004 * (subject - variant_ids["subject"][0])
            click = (
                maybe(click_rate, at + timedelta(hours=rng.uniform(0.2, 48))) if delivered else None
            )
            converted = click + timedelta(minutes=3) if click and rng.random() < 0.25 else None
            row = (
                send_id,
                mailing,
                recruiter,
                subject,
                rng.choice(variant_ids["body"]),
                rng.choice(variant_ids["share"]),
                "sent",
                "",
                f"msg{mailing}",
                s(at),
                delivered and s(delivered),
                s(at) if bounced else None,
                "bounce" if bounced else None,
                None,
                None,
                s(at + timedelta(hours=1))
                if delivered and (click or rng.random() < 0.22)
                else None,
                s(at + timedelta(seconds=40)) if delivered and rng.random() < 0.15 else None,
                click and s(click),
                s(at + timedelta(seconds=25)) if delivered and rng.random() < 0.02 else None,
                s(at + timedelta(hours=3)) if delivered and rng.random() < 0.0005 else None,
                s(at + timedelta(hours=2)) if delivered and rng.random() < 0.003 else None,
                converted and s(converted),
                s(at - timedelta(minutes=5)),
            )
            if click is not None:
                out.append((send_id, click))
            yield row


def _events(rng: random.Random, s: Callable) -> Iterator:
    types = [
        ("processed", None),
        ("delivered", None),
        ("open", "human"),
        ("open", "machine"),
        ("click", "human"),
        ("click", "scanner"),
    ]
    event_id = 0
    for send_id in range(1, MAILINGS * RECRUITERS + 1):
        at = START + timedelta(seconds=send_id * 0.0026)
        for k in range(EVENTS_PER_SEND):
            event_id += 1
            kind, label = types[k] if k < 2 else types[rng.randrange(2, len(types))]
            yield (
                event_id,
                f"ev{event_id}",
                event_digest(f"ev{event_id}"),
                kind,
                f"msg.{send_id}",
                send_id,
                s(at + timedelta(minutes=k)),
                label,
                "{}",
                s(at + timedelta(minutes=k + 1)),
            )


VISIT_COLUMNS = [
    "id", "visitor_id", "landing_variant_id", "source_group_id", "recruiter_id", "send_id",
    "share_variant_id", "contact_id", "converted_at", "created_at",
]  # fmt: skip


def _visits(
    rng: random.Random, variant_ids: dict[str, list[int]], clicked: list, s: Callable
) -> tuple[list, list, list]:
    """Visits from clicks and from group links, their signups, and the new contacts."""
    visits, signups, friends = [], [], []
    contact_id = RECRUITERS
    signup_id = 0
    groups = list(range(1, GROUPS + 1))
    sources = [(None, send_id, at) for send_id, at in clicked]
    for _ in range(LANDING_VISITS):
        at = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        sources.append((rng.choice(groups), None, at))
    for visit_id, (group, send_id, at) in enumerate(sources, start=1):
        landing = rng.choice(variant_ids["landing"])
        recruiter = rng.randint(1, RECRUITERS // 20) if group and rng.random() < 0.3 else None
        joined = rng.random() < 0.12 + 0.01 * (landing - variant_ids["landing"][0])
        contact = converted = None
        if joined:
            contact_id += 1
            contact, converted = contact_id, at + timedelta(minutes=2)
            friends.append((contact, s(converted)))
            chosen = rng.sample(groups, rng.choice([1, 1, 2, 3]))
            for position, joined_group in enumerate(chosen):
                signup_id += 1
                signups.append(
                    (
                        signup_id,
                        contact,
                        joined_group,
                        visit_id,
                        "consent",
                        "[]",
                        position,
                        s(converted),
                    )
                )
        visits.append(
            (
                visit_id,
                f"visitor-{visit_id}",
                landing,
                group,
                recruiter,
                send_id,
                None,
                contact,
                converted and s(converted),
                s(at),
            )
        )
    return visits, signups, friends


# --- timing ----------------------------------------------------------------------------------


def prepare(backend: str, regenerate: bool) -> sa.Engine:
    """A migrated bench database of ``backend`` holding the generated data."""
    from engine import migrate
    from engine.db import create_db_engine
    from engine.settings import load_settings

    if backend == "sqlite":
        url = f"sqlite:///{SQLITE_PATH}"
        if regenerate:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
    else:
        url = f"{POSTGRES_SERVER}/{BENCH_DATABASE}"
        server = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            exists = connection.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": BENCH_DATABASE}
            )
            if not exists:
                connection.exec_driver_sql(f"CREATE DATABASE {BENCH_DATABASE}")
        server.dispose()
    environ = {
        "RESISTRY_SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
        "RESISTRY_DATABASE_URL": url,
    }
    engine = create_db_engine(load_settings(environ=environ))
    if backend == "postgresql" and regenerate:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    migrate.upgrade(engine)
    with engine.connect() as connection:
        present = connection.scalar(sa.text("SELECT count(*) FROM sends"))
    if present != MAILINGS * RECRUITERS:
        if present:
            sys.exit(f"{backend}: bench database holds other data; run with --regenerate")
        started = time.perf_counter()
        with engine.begin() as connection:
            counts = generate(connection)
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
        took = time.perf_counter() - started
        print(f"{backend}: generated {counts} in {took:.0f} s (not timed)", flush=True)
    return engine


def rebuild_seconds(engine: sa.Engine) -> float:
    """Rebuild the report rollups from the generated rows; returns the seconds it took."""
    import sqlalchemy.orm as so

    from engine.reports.rebuild import rebuild_rollups

    started = time.perf_counter()
    with so.Session(engine) as session, session.begin():
        written = rebuild_rollups(session)
    took = time.perf_counter() - started
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
    print(f"rollups rebuilt in {took:.1f} s (not part of any report figure): {written}", flush=True)
    return took


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm caches: the figure is a report on a running server, not a cold start
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def run(backend: str, repeat: int, regenerate: bool) -> list[Figure]:
    import sqlalchemy.orm as so

    from engine.reports.experiment import experiment_report
    from engine.reports.funnel import funnel_report
    from engine.reports.policy_areas import policy_area_report
    from engine.reports.reciprocity import reciprocity_report
    from engine.reports.recruiters import recruiter_report

    engine = prepare(backend, regenerate)
    rebuilt_in = rebuild_seconds(engine)
    sessions = so.sessionmaker(bind=engine)
    with sessions() as session:
        subject_id = session.scalar(sa.text("SELECT id FROM experiments WHERE kind = 'subject'"))
        landing_id = session.scalar(sa.text("SELECT id FROM experiments WHERE kind = 'landing'"))

    def report(build: Callable[[so.Session], Any]) -> Callable[[], object]:
        def call() -> object:
            with sessions() as session:
                return json.dumps(build(session).as_json())

        return call

    def count_events() -> object:
        with sessions() as session:
            return session.scalar(sa.text("SELECT count(*) FROM events"))

    baseline = median_ms(count_events, repeat)
    figures = [
        Figure(
            f"{backend}: SELECT count(*) FROM events", baseline, "ms", "baseline", True, "5M rows"
        ),
        Figure(
            f"{backend}: rebuild of the report rollups",
            rebuilt_in,
            "s",
            "info",
            True,
            "from 1M sends, 0.3M visits; not in the report figures",
        ),
    ]
    builds = {
        "experiment (subject, 1M sends)": lambda s: experiment_report(s, subject_id),
        "experiment (landing, 0.3M visits)": lambda s: experiment_report(s, landing_id),
        "funnel": funnel_report,
        "reciprocity": lambda s: reciprocity_report(s, visibility_floor=10),
        "policy areas": policy_area_report,
        "recruiters": lambda s: recruiter_report(s, leader_min_friends=5),
    }
    for name, build in builds.items():
        took = median_ms(report(build), repeat)
        figures.append(
            Figure(
                f"{backend}: {name} report (JSON)",
                took,
                "ms",
                f"≤ {TARGET_MS:.0f} ms",
                took <= TARGET_MS,
                f"{took / baseline:.2f}× count(*)",
            )
        )
    engine.dispose()
    return figures


def _use_quick_scale() -> None:
    """Shrink the data set 100× into separate databases, so a smoke run never clobbers (or
    reuses) the full data set. The figures of a quick run say nothing about the targets."""
    global RECRUITERS, LANDING_VISITS, SQLITE_PATH, BENCH_DATABASE
    RECRUITERS, LANDING_VISITS = RECRUITERS // 100, LANDING_VISITS // 100
    SQLITE_PATH = SQLITE_PATH.with_name("resistry_bench_reports_quick.sqlite3")
    BENCH_DATABASE = f"{BENCH_DATABASE}_quick"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a 1%% smoke run on its own data")
    args = parser.parse_args()
    if args.quick:
        _use_quick_scale()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    figures: list[Figure] = []
    for backend in backends:
        figures += run(backend, args.repeat, args.regenerate)
    emit("reports", figures)


if __name__ == "__main__":
    main()
