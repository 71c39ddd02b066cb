"""Event Webhook ingestion through the real HTTP endpoint under gunicorn (2 workers), served as
``resistry serve`` serves (:func:`engine.server.serve`, see ``bench/ingest_app.py``).

Signed batches of 1,000 realistic events (see ``bench/ingest_data.py``: sends that exist, a
steady-state mix of event types, SendGrid-like random ``sg_event_id``, 7 % duplicates) are posted
by 3 concurrent senders (SendGrid posts from several machines at once), on SQLite and on
PostgreSQL (its own database, ``resistry_bench_ingest``, so the tests' database is untouched).
Beside ``POST /webhooks/sendgrid`` the benchmark's app (and only it) has a bare baseline,
``POST /bench/baseline``, that parses the body and inserts one raw row per event in one multi-row
INSERT: ingestion is compared with it on the same server, data and senders, in alternating
rounds (a quarter of the batches each), so that both meet the same load on a shared machine.

The endpoint stores each verified body in the inbox and answers; the applier (``resistry events
apply --follow``, its own process, as ``make run`` starts it) applies the bodies meanwhile. Two
rates are reported for ingestion: *accepted*, the events the endpoint took per second of posting
(what SendGrid sees), and *applied*, the events per second from a round's first post until the
inbox is empty again (every event deduplicated, attributed and counted: the end-to-end rate).

Besides events/s and latency per batch, it reports the CPU the gunicorn workers and the applier
spent per batch and how busy the whole machine was: on a 2-core machine shared with the senders
(and PostgreSQL), that is what bounds the rates.

    python bench/ingest.py [--batches 120] [--clients 3] [--backends sqlite,postgresql] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Figure, emit  # noqa: E402
from bench.ingest_data import (  # noqa: E402
    BATCH,
    DUPLICATE_SHARE,
    RAW_EVENTS,
    make_workload,
    prepare_database,
    seed_sends,
    sends_needed,
)
from webhooks import wire  # noqa: E402

POSTGRES_SERVER = os.environ.get(
    "RESISTRY_BENCH_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
WARMUP = 6
ROUNDS = 4
TICKS = os.sysconf("SC_CLK_TCK")


# --- server, senders and CPU accounting ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(url: str, public_key: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """``python -m bench.ingest_app``: 2 workers with the production server options."""
    env = dict(
        os.environ,
        RESISTRY_DATABASE_URL=url,
        SENDGRID_WEBHOOK_PUBLIC_KEY=public_key,
        RESISTRY_SECRET_KEY="bench-secret-key-0123456789abcdef0123",
        PYTHONPATH=str(ROOT),
    )
    env.pop("GUNICORN_CMD_ARGS", None)  # measure the production defaults, not local overrides
    command = [sys.executable, "-m", "bench.ingest_app", "--port", str(port), "--workers", "2"]
    log_path = workdir / f"gunicorn-{port}.log"
    with log_path.open("wb") as log:  # the server keeps its own copy of the descriptor
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited; see {log_path}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
        finally:
            connection.close()
    server.terminate()
    server.wait()
    raise RuntimeError(f"the server did not start; see {log_path}")


def start_applier(url: str, workdir: Path) -> subprocess.Popen[bytes]:
    """``resistry events apply --follow`` on the benchmark's database."""
    env = dict(
        os.environ,
        RESISTRY_DATABASE_URL=url,
        RESISTRY_SECRET_KEY="bench-secret-key-0123456789abcdef0123",
        PYTHONPATH=str(ROOT),
    )
    command = [sys.executable, "-m", "engine.cli", "events", "apply", "--follow"]
    with (workdir / "applier.log").open("ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)


def wait_until_applied(engine: sa.Engine, applier: subprocess.Popen[bytes]) -> None:
    """Poll until the inbox is empty (every stored body applied)."""
    deadline = time.monotonic() + 600
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            pending, failed = connection.exec_driver_sql(
                "SELECT count(*), count(failed_at) FROM webhook_inbox"
            ).one()
            connection.rollback()  # a fresh snapshot next time
            if failed:
                raise RuntimeError(f"{failed} webhook bodies were set aside by the applier")
            if not pending:
                return
            if applier.poll() is not None:
                raise RuntimeError("the applier exited")
            time.sleep(0.005)
    raise RuntimeError("the inbox was not emptied within 600 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def process_cpu_seconds(root_pid: int) -> float:
    """User + system CPU of ``root_pid`` and its children (gunicorn's master and workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(entry) == root_pid or int(fields[1]) == root_pid:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


@dataclass
class Run:
    """One endpoint's measurements, added up over the rounds it ran."""

    batches: int = 0
    wall_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    machine_busy_seconds: float = 0.0
    machine_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)
    applied_seconds: float = 0.0  # from each round's first post until the inbox was empty
    applier_cpu_seconds: float = 0.0

    @property
    def applied_per_second(self) -> float:
        return self.batches * BATCH / self.applied_seconds

    @property
    def applier_cpu_ms_per_batch(self) -> float:
        return self.applier_cpu_seconds * 1000 / self.batches

    @property
    def events_per_second(self) -> float:
        return self.batches * BATCH / self.wall_seconds

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    @property
    def server_cpu_ms_per_batch(self) -> float:
        return self.server_cpu_seconds * 1000 / self.batches

    @property
    def machine_busy(self) -> float:
        """Share of all cores busy (with anything on the machine) while this endpoint ran."""
        return self.machine_busy_seconds / max(self.machine_seconds, 1e-9)


def post_all(
    port: int,
    path: str,
    bodies: list[tuple[bytes, dict[str, str]]],
    clients: int,
    pid: int,
    run: Run | None = None,
) -> Run:
    """POST every body with ``clients`` concurrent senders, a new connection per request (as
    SendGrid does); adds the measurements to ``run``."""
    run = run if run is not None else Run()
    queue = list(reversed(bodies))
    lock = threading.Lock()

    def sender() -> None:
        while True:
            with lock:
                if not queue:
                    return
                body, headers = queue.pop()
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            with lock:
                run.latencies.append(time.perf_counter() - started)
                run.statuses.add(response.status)

    threads = [threading.Thread(target=sender) for _ in range(clients)]
    cpu_before = process_cpu_seconds(pid)
    busy_before, total_before = machine_busy_seconds()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.wall_seconds += time.perf_counter() - started
    busy_after, total_after = machine_busy_seconds()
    run.server_cpu_seconds += process_cpu_seconds(pid) - cpu_before
    run.machine_busy_seconds += busy_after - busy_before
    run.machine_seconds += total_after - total_before
    run.batches += len(bodies)
    return run


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_backend(backend: str, batches: int, clients: int, workdir: Path) -> dict[str, Run]:
    """Baseline and ingestion on one fresh database of ``backend``."""
    key = wire.new_private_key()
    url = prepare_database(backend, workdir, POSTGRES_SERVER)
    sends = seed_sends(url, sends_needed(batches + WARMUP))
    workload = make_workload(sends, batches + WARMUP, key)
    bodies = workload.bodies
    port = free_port()
    server = start_server(url, wire.public_key_base64(key), port, workdir)
    applier = start_applier(url, workdir)
    engine = sa.create_engine(url)
    try:
        post_all(port, "/bench/baseline", bodies[:WARMUP], clients, server.pid)
        post_all(port, "/webhooks/sendgrid", bodies[:WARMUP], clients, server.pid)
        wait_until_applied(engine, applier)
        runs = {"baseline": Run(), "ingest": Run()}
        # Alternating rounds: on a shared machine both endpoints meet the same conditions.
        measured = bodies[WARMUP:]
        step = -(-len(measured) // ROUNDS)
        for start in range(0, len(measured), step):
            chunk = measured[start : start + step]
            post_all(port, "/bench/baseline", chunk, clients, server.pid, runs["baseline"])
            ingest = runs["ingest"]
            started, cpu_before = time.perf_counter(), process_cpu_seconds(applier.pid)
            post_all(port, "/webhooks/sendgrid", chunk, clients, server.pid, ingest)
            wait_until_applied(engine, applier)
            ingest.applied_seconds += time.perf_counter() - started
            ingest.applier_cpu_seconds += process_cpu_seconds(applier.pid) - cpu_before
    finally:
        engine.dispose()
        stop_server(applier)
        stop_server(server)
    if any(run.statuses != {200} for run in runs.values()):
        log = (workdir / f"gunicorn-{port}.log").read_text(errors="replace")[-3000:]
        found = {name: sorted(run.statuses) for name, run in runs.items()}
        raise RuntimeError(f"{backend}: unexpected statuses {found}\n{log}")
    stored = _count(url, "events")
    if stored != workload.unique_events:
        raise RuntimeError(f"{backend}: {stored} events stored, {workload.unique_events} expected")
    if _count(url, RAW_EVENTS.name) != workload.posted_events:
        raise RuntimeError(f"{backend}: the baseline lost rows")
    return runs


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
    engine.dispose()
    return int(count)


def figures_of(backend: str, runs: dict[str, Run], clients: int, batches: int) -> list[Figure]:
    ingest, baseline = runs["ingest"], runs["baseline"]
    on_sqlite = backend == "sqlite"
    ratio = ingest.events_per_second / baseline.events_per_second
    setup = f"{clients} senders, resistry serve's gunicorn (2 gthread workers), {batches} batches"

    def load(run: Run) -> str:
        return (
            f"workers' CPU {run.server_cpu_ms_per_batch:.0f} ms/batch, "
            f"machine {run.machine_busy:.0%} busy"
        )

    return [
        Figure(
            f"{backend} ingest accepted",
            round(ingest.events_per_second),
            "events/s",
            "≥ 50,000" if on_sqlite else "report",
            ingest.events_per_second >= 50_000 if on_sqlite else True,
            f"verified and stored; {setup}; {load(ingest)}",
        ),
        Figure(
            f"{backend} baseline",
            round(baseline.events_per_second),
            "events/s",
            "report",
            True,
            f"parse + one multi-row INSERT; {load(baseline)}",
        ),
        Figure(
            f"{backend} accepted / baseline",
            round(ratio, 2),
            "×",
            "≥ 0.5" if on_sqlite else "report",
            ratio >= 0.5 if on_sqlite else True,
        ),
        Figure(
            f"{backend} ingest p99 per batch",
            round(ingest.p99_ms, 1),
            "ms",
            "≤ 100",
            ingest.p99_ms <= 100,
            f"p50 {ingest.p50_ms:.1f} ms",
        ),
        Figure(
            f"{backend} baseline p99 per batch",
            round(baseline.p99_ms, 1),
            "ms",
            "report",
            True,
            f"p50 {baseline.p50_ms:.1f} ms",
        ),
        Figure(
            f"{backend} ingest applied",
            round(ingest.applied_per_second),
            "events/s",
            "report",
            True,
            f"end to end, until the inbox was empty; applier CPU"
            f" {ingest.applier_cpu_ms_per_batch:.0f} ms/batch",
        ),
        Figure(
            f"{backend} applied / baseline",
            round(ingest.applied_per_second / baseline.events_per_second, 2),
            "×",
            "report",
            True,
        ),
    ]


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=120, help="measured batches per backend")
    parser.add_argument("--clients", type=int, default=3, help="concurrent senders")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="smoke run: 12 batches")
    args = parser.parse_args(argv)
    batches = 12 if args.quick else args.batches
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="resistry-bench-ingest-") as tmp:
        for backend in args.backends.split(","):
            runs = run_backend(backend, batches, args.clients, Path(tmp))
            figures += figures_of(backend, runs, args.clients, batches)
    print(f"(batches of {BATCH} events, {DUPLICATE_SHARE:.0%} of them duplicates)")
    emit("ingest", figures)
    return figures


if __name__ == "__main__":
    main()
