"""Benchmark: ``GET /`` for new visitors against a hello-world route, same app, same server.

The app runs as ``resistry serve`` runs it (:func:`engine.server.serve`: gunicorn, 2 gthread
workers) on a migrated temporary SQLite database holding 7 partner groups, a running landing
experiment with 3 variants past burn-in, and 600 earlier signups (so earned visibility has
counts). The hello-world route exists only in this benchmark's app (``bench/landing_app.py``).

Load: 16 keep-alive connections, no cookies (every landing request is a new visitor: a
Thompson draw, a page render and a committed visit with its trial and rollup), from ``wrk``
when it is installed, else from a Python client (see ``bench/landing_load.py``). Both routes
are warmed up, then measured for a fixed time each, alternating ``--rounds`` times in one run;
each figure is the median of the rounds, and the ratio the median of the rounds' ratios (each
landing round against the hello-world round before it). Also reported: the server's CPU per
request (gunicorn master and workers, from /proc) and hello-world through the Python client,
which shows how much a Python load generator on the same 2 cores holds the server back.

    .venv/bin/python bench/landing.py [--seconds 5] [--rounds 5] [--connections 16] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import landing_load as load  # noqa: E402
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
        environ={
            "RESISTRY_DATABASE_URL": url,
            "RESISTRY_SECRET_KEY": "bench-preparation-secret-key-0123456789",
        }
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
            burn_in=300,  # past it: every draw is from the Thompson weights
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
    """``python -m bench.landing_app`` (the production server options), ready to answer."""
    env = {
        **os.environ,
        "RESISTRY_DATABASE_URL": url,
        "RESISTRY_SECRET_KEY": secrets.token_hex(32),
        "RESISTRY_BASE_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("GUNICORN_CMD_ARGS", None)  # measure the production defaults, not local overrides
    command = [sys.executable, "-m", "bench.landing_app", "--port", str(port),
               "--workers", str(workers)]  # fmt: skip
    with log_path.open("wb") as log:  # the server keeps its own copy of the descriptor
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited; see {log_path}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/hello")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    server.terminate()
    raise SystemExit(f"the server did not answer within 30 s; see {log_path}")


@dataclass
class Measured:
    """A route's timed runs and the server CPU they cost."""

    runs: list[load.Run] = field(default_factory=list)
    server_cpu_seconds: float = 0.0

    def median(self, name: str) -> float:
        return statistics.median(getattr(run, name) for run in self.runs)

    @property
    def requests(self) -> int:
        return sum(run.requests for run in self.runs)

    @property
    def failures(self) -> int:
        return sum(run.failures for run in self.runs)


def measure(
    server: subprocess.Popen[bytes], port: int, args: argparse.Namespace, use_wrk: bool
) -> tuple[dict[str, Measured], load.Run | None]:
    """Warm both routes up, then alternate timed runs; returns them per route, and hello-world
    through the Python client when wrk drove the main runs."""

    def one(path: str, seconds: float) -> load.Run:
        if use_wrk:
            return load.run_wrk(f"http://127.0.0.1:{port}{path}", args.connections, seconds)
        return load.run_python(port, path, args.connections, seconds)

    for path in ROUTES.values():
        one(path, args.warmup)
    measured = {name: Measured() for name in ROUTES}
    for _ in range(args.rounds):
        for name, path in ROUTES.items():
            cpu_before = load.process_cpu_seconds(server.pid)
            measured[name].runs.append(one(path, args.seconds))
            measured[name].server_cpu_seconds += load.process_cpu_seconds(server.pid) - cpu_before
    python_hello = None
    if use_wrk:
        python_hello = load.run_python(port, ROUTES["hello"], args.connections, args.seconds)
    return measured, python_hello


ROUTES = {"hello": "/hello", "landing": "/"}


def figures_of(
    measured: dict[str, Measured], python_hello: load.Run | None, note: str
) -> list[Figure]:
    hello, landing = measured["hello"], measured["landing"]
    # Each landing round against the hello-world round just before it (the machine's speed
    # drifts over a run), then the median of the rounds: one slow round does not decide.
    ratio = statistics.median(
        lr.rps / hr.rps for hr, lr in zip(hello.runs, landing.runs, strict=True)
    )
    failures = hello.failures + landing.failures

    def cpu_us(route: Measured) -> float:
        return route.server_cpu_seconds / max(route.requests, 1) * 1e6

    figures = [
        Figure("hello-world rps", hello.median("rps"), "req/s", "baseline", True, note),
        Figure("hello-world p50", hello.median("p50_ms"), "ms", "info", True),
        Figure("hello-world p99", hello.median("p99_ms"), "ms", "info", True),
        Figure("landing GET / rps", landing.median("rps"), "req/s", "info", True, "new visitors"),
        Figure("landing p50", landing.median("p50_ms"), "ms", "info", True),
        Figure("landing p99", landing.median("p99_ms"), "ms", f"≤ {TARGET_P99_MS:g} ms",
               landing.median("p99_ms") <= TARGET_P99_MS),
        Figure("landing/hello rps ratio", ratio, "", f"≥ {TARGET_RATIO:g}", ratio >= TARGET_RATIO),
        Figure("failed requests", failures, "", "0", failures == 0),
        Figure("server CPU per hello-world", cpu_us(hello), "µs", "info", True,
               "gunicorn master + workers"),
        Figure("server CPU per landing view", cpu_us(landing), "µs", "info", True),
    ]  # fmt: skip
    if python_hello is not None:
        wrk_cpu = statistics.median(r.generator_cpu_seconds / r.requests for r in hello.runs)
        figures += [
            Figure("hello-world rps, Python client", python_hello.rps, "req/s", "info", True,
                   "same server; the generator competes for the 2 cores"),
            Figure("load generator CPU per request, wrk", wrk_cpu * 1e6, "µs", "info", True),
            Figure("load generator CPU per request, Python",
                   python_hello.generator_cpu_seconds / python_hello.requests * 1e6, "µs",
                   "info", True),
        ]  # fmt: skip
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per route and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--python-client", action="store_true", help="never use wrk")
    parser.add_argument("--quick", action="store_true", help="2-second runs, one round (smoke)")
    args = parser.parse_args(argv)
    if args.quick:  # smoke mode: one short round (explicit --seconds/--warmup still apply)
        args.rounds = 1
        args.seconds = args.seconds if "--seconds" in argv else 2.0
        args.warmup = args.warmup if "--warmup" in argv else 1.0
    use_wrk = not args.python_client and load.wrk_path() is not None
    if not use_wrk and not args.python_client:
        print(load.WRK_INSTALL_HINT, file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="resistry-bench-landing-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        prepare_database(url)
        port = free_port()
        server = start_server(url, port, Path(tmp) / "server.log", args.workers)
        try:
            measured, python_hello = measure(server, port, args, use_wrk)
        finally:
            server.terminate()
            server.wait(timeout=30)
    generator = "wrk" if use_wrk else "Python client"
    note = (
        f"{generator}, {args.connections} keep-alive connections, {args.rounds} × "
        f"{args.seconds:g} s per route, gunicorn {args.workers} workers as `resistry serve`"
    )
    emit("landing", figures_of(measured, python_hello, note))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
