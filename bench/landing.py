"""Benchmark: ``GET /`` for new visitors against a hello-world route, same app, same server.

The app runs under gunicorn (2 sync workers, as ``resistry serve``) on a migrated temporary
SQLite database holding 7 partner groups, a running landing experiment with 3 variants past
burn-in, and 600 earlier signups (so earned visibility has counts). The hello-world route exists
only in this benchmark's app (``bench/landing_app.py``). A separate load-generator process keeps
16 connections busy (Python threads, ``http.client``, no cookies: every landing request is a new
visitor, so each one is a Thompson draw, a page render and a visit insert). Each route gets a
warm-up, then a timed run; the two runs are side by side in one invocation.

    .venv/bin/python bench/landing.py [--seconds 8] [--connections 16] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Figure, emit  # noqa: E402

TARGET_RATIO = 0.6
TARGET_P99_MS = 25.0
GROUPS = [
    ("swing-left", "Swing Left", ["Canvasser", "Phone banker", "Letter writer", "Donor"]),
    ("indivisible", "Indivisible", ["Group leader", "Constituent caller", "Event host"]),
    ("sister-district", "Sister District", ["Volunteer", "Researcher", "Fundraiser"]),
    ("run-for-something", "Run for Something", ["Candidate", "Mentor", "Volunteer"]),
    ("flippable", "Flippable", ["Donor", "Volunteer"]),
    ("latino-victory-project", "Latino Victory Project", ["Organizer", "Translator"]),
    ("march-for-our-lives", "March for Our Lives", ["Student organizer", "Social media"]),
]


def prepare_database(url: str) -> None:
    """Migrate and fill the benchmark database (seeded, so every run starts the same)."""
    from engine import migrate
    from engine.db import create_db_engine, session_factory
    from engine.models import Contact, Experiment, Group, Signup, Variant, Visit
    from engine.settings import load_settings

    settings = load_settings(
        environ={"RESISTRY_DATABASE_URL": url, "RESISTRY_SECRET_KEY": "bench-preparation"}
    )
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    rng = random.Random(2026)
    now = datetime.now(UTC)
    with session_factory(engine).begin() as session:
        groups = [
            Group(slug=slug, name=name, description=f"{name}: find your role.", roles=roles)
            for slug, name, roles in GROUPS
        ]
        experiment = Experiment(
            key="landing-headlines",
            name="Landing headlines",
            kind="landing",
            metric="signup",
            status="running",
        )
        for key, headline in [
            ("a", "Find your people"),
            ("b", "Not yet active?"),
            ("c", "One signup, every group"),
        ]:
            trials = 400
            experiment.variants.append(
                Variant(
                    key=key,
                    name=headline,
                    content={
                        "headline": headline,
                        "body": "<p>Pick the groups that fit you and sign up once.</p>",
                        "call_to_action": "Sign me up",
                    },
                    trials=trials,
                    successes=rng.randint(20, 40),
                )
            )
        session.add_all([*groups, experiment])
        session.flush()
        for n in range(600):
            contact = Contact(email=f"person{n}@example.org", zip_code="10001")
            source = rng.choice(groups[:5])
            visit = Visit(visitor_id=f"seed-{n}", source_group_id=source.id, created_at=now)
            session.add_all([contact, visit])
            session.flush()
            visit.contact_id, visit.converted_at = contact.id, now
            session.add(
                Signup(
                    contact_id=contact.id,
                    group_id=source.id,
                    visit_id=visit.id,
                    consent_text="yes",
                    created_at=now,
                )
            )
    engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(url: str, port: int, log_path: Path, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RESISTRY_DATABASE_URL": url,
        "RESISTRY_SECRET_KEY": secrets.token_hex(32),
        "RESISTRY_BASE_URL": f"http://127.0.0.1:{port}",
    }
    command = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}",
        "--access-logfile", "-",
        "--access-logformat", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
        "bench.landing_app:build()",
    ]  # fmt: skip
    log = log_path.open("wb")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited; see {log_path}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/hello")
            if connection.getresponse().status == 200:
                connection.close()
                return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit(f"gunicorn did not answer within 30 s; see {log_path}")


# --- the load generator (a separate process) -------------------------------------------------


def generate(port: int, path: str, connections: int, seconds: float) -> dict[str, Any]:
    """Keep ``connections`` requests in flight for ``seconds``; return latencies and statuses."""
    deadline = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures = [0] * connections

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers={"Accept": "text/html"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                ok = False
            latencies[slot].append(time.perf_counter() - started)
            failures[slot] += 0 if ok else 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = [value for values in latencies for value in values]
    return {"latencies": merged, "failures": sum(failures), "elapsed": elapsed}


def load(port: int, path: str, connections: int, seconds: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__)), "--generate", str(port), path,
               str(connections), str(seconds)]  # fmt: skip
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(output.stdout)


def summarize(result: dict[str, Any]) -> dict[str, float]:
    latencies = sorted(result["latencies"])
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "rps": len(latencies) / result["elapsed"],
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": quantiles[98] * 1000,
        "requests": len(latencies),
        "failures": result["failures"],
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--generate":
        port, path, connections, seconds = argv[1:5]
        print(json.dumps(generate(int(port), path, int(connections), float(seconds))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2-second runs (smoke test)")
    args = parser.parse_args(argv)
    seconds = 2.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="resistry-bench-landing-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        prepare_database(url)
        port = free_port()
        server = start_server(url, port, Path(tmp) / "gunicorn.log", args.workers)
        try:
            results = {}
            for name, path in (("hello", "/hello"), ("landing", "/")):
                load(port, path, args.connections, min(seconds, 2.0))  # warm-up
                results[name] = summarize(load(port, path, args.connections, seconds))
        finally:
            server.terminate()
            server.wait(timeout=30)
    hello, landing = results["hello"], results["landing"]
    ratio = landing["rps"] / hello["rps"]
    note = (
        f"{args.connections} connections, {seconds:g} s per route, "
        f"gunicorn {args.workers} sync workers"
    )
    figures = [
        Figure("hello-world rps", hello["rps"], "req/s", "baseline", True, note),
        Figure("hello-world p50", hello["p50_ms"], "ms", "info", True),
        Figure("hello-world p99", hello["p99_ms"], "ms", "info", True),
        Figure("landing GET / rps", landing["rps"], "req/s", "info", True, "new visitors"),
        Figure("landing p50", landing["p50_ms"], "ms", "info", True),
        Figure("landing p99", landing["p99_ms"], "ms", f"≤ {TARGET_P99_MS:g} ms",
               landing["p99_ms"] <= TARGET_P99_MS),
        Figure("landing/hello rps ratio", ratio, "", f"≥ {TARGET_RATIO:g}", ratio >= TARGET_RATIO),
        Figure("failed requests", hello["failures"] + landing["failures"], "", "0",
               hello["failures"] + landing["failures"] == 0),
    ]  # fmt: skip
    emit("landing", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
