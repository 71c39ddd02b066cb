"""Event Webhook ingestion through the real HTTP endpoint under gunicorn (2 workers).

Signed batches of 1,000 realistic events (attributed to sends that exist in the database) are
posted by several concurrent clients, on SQLite and on PostgreSQL (its own database,
``resistry_bench_ingest``, so the tests' database is untouched). Beside ``POST /webhooks/sendgrid``
the benchmark's app (and only it) has a bare baseline, ``POST /bench/baseline``, that parses the
body and inserts raw rows: ingestion is compared with it on the same server, data and clients.

    python bench/ingest.py [--batches 120] [--clients 4] [--backends sqlite,postgresql]
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
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Figure, emit  # noqa: E402
from bench.ingest_data import BATCH, RAW_EVENTS, make_bodies, prepare_database, seed_sends  # noqa: E402
from webhooks import wire  # noqa: E402

POSTGRES_SERVER = os.environ.get(
    "RESISTRY_BENCH_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432"
)


# --- the benchmark's app: the real one plus a baseline route ------------------------------------


def bench_app() -> Any:
    """The production app plus ``POST /bench/baseline`` (gunicorn: ``bench.ingest:bench_app()``)."""
    import orjson
    from flask import jsonify, request

    from engine.app import create_app, csrf
    from engine.db import get_session

    app = create_app()

    @csrf.exempt
    def baseline() -> Any:
        elements = orjson.loads(request.get_data(cache=False))
        session = get_session()
        session.execute(
            sa.insert(RAW_EVENTS), [{"body": orjson.dumps(e).decode()} for e in elements]
        )
        session.commit()
        return jsonify(received=len(elements))

    app.add_url_rule("/bench/baseline", "bench_baseline", baseline, methods=["POST"])
    return app


# --- server and clients -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(url: str, public_key: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        RESISTRY_DATABASE_URL=url,
        SENDGRID_WEBHOOK_PUBLIC_KEY=public_key,
        RESISTRY_SECRET_KEY="bench-secret",
        PYTHONPATH=str(ROOT),
    )
    command = [
        sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning", "--chdir", str(ROOT), "bench.ingest:bench_app()",
    ]  # fmt: skip
    log = (workdir / f"gunicorn-{port}.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"gunicorn did not start; see {log.name}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def post_all(
    port: int, path: str, bodies: list[tuple[bytes, dict[str, str]]], clients: int
) -> tuple[float, list[float], list[int]]:
    """POST every body with ``clients`` concurrent senders; wall seconds, latencies, statuses."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: list[int] = []

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
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status)

    threads = [threading.Thread(target=sender) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, statuses


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_backend(backend: str, batches: int, clients: int, workdir: Path) -> dict[str, float]:
    key = wire.new_private_key()
    url = prepare_database(backend, workdir, POSTGRES_SERVER)
    warmup = 4
    sends = seed_sends(url, (batches + warmup) * BATCH // 2)
    bodies, unique = make_bodies(sends, batches + warmup, key)
    port = free_port()
    server = start_server(url, wire.public_key_base64(key), port, workdir)
    try:
        post_all(port, "/bench/baseline", bodies[:warmup], clients)
        post_all(port, "/webhooks/sendgrid", bodies[:warmup], clients)
        base_wall, _, base_statuses = post_all(port, "/bench/baseline", bodies[warmup:], clients)
        wall, latencies, statuses = post_all(port, "/webhooks/sendgrid", bodies[warmup:], clients)
    finally:
        stop_server(server)
    events = (len(bodies) - warmup) * BATCH
    if set(statuses) != {200} or set(base_statuses) != {200}:
        log = (workdir / f"gunicorn-{port}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{backend}: unexpected statuses {sorted(set(statuses))}\n{log}")
    stored = _count_events(url)
    if stored != unique:
        raise RuntimeError(f"{backend}: {stored} events stored, {unique} expected")
    return {
        "ingest": events / wall,
        "baseline": events / base_wall,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "p50_ms": percentile(latencies, 0.50) * 1000,
    }


def _count_events(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
    engine.dispose()
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=120, help="measured batches per backend")
    parser.add_argument("--clients", type=int, default=4, help="concurrent senders")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="resistry-bench-ingest-") as tmp:
        for backend in args.backends.split(","):
            result = run_backend(backend, args.batches, args.clients, Path(tmp))
            ratio = result["ingest"] / result["baseline"]
            on_sqlite = backend == "sqlite"
            figures += [
                Figure(
                    f"{backend} ingest",
                    round(result["ingest"]),
                    "events/s",
                    "≥ 50,000" if on_sqlite else "report",
                    result["ingest"] >= 50_000 if on_sqlite else True,
                    f"{args.clients} clients, gunicorn 2 workers",
                ),
                Figure(
                    f"{backend} baseline", round(result["baseline"]), "events/s", "report", True
                ),
                Figure(
                    f"{backend} ingest / baseline",
                    round(ratio, 2),
                    "×",
                    "≥ 0.5" if on_sqlite else "report",
                    ratio >= 0.5 if on_sqlite else True,
                ),
                Figure(
                    f"{backend} p99 per batch",
                    round(result["p99_ms"], 1),
                    "ms",
                    "≤ 100",
                    result["p99_ms"] <= 100,
                    f"p50 {result['p50_ms']:.1f} ms",
                ),
            ]
    emit("ingest", figures)


if __name__ == "__main__":
    main()
