"""Benchmark: a 100,000-recruiter mailing planned, rendered and handed to the SendGrid simulator.

One run, side by side:

- **mailing**: ``engine.sending.mailing.run_recruiter_mailing`` end to end on a temporary SQLite
  database: Thompson draws for subject, body and share experiments, bulk insert of the planned
  sends, MJML compiled once per body, per-recipient Jinja (subject, share text) and signed links,
  requests of 1,000 personalizations grouped by variant combination, each send moved
  planned → sending → sent with its X-Message-Id and trials;
- **baseline**: the same request bodies, built beforehand, only posted with the same client.

The simulator runs as its own process (``resistry simulator --no-webhook``), as in production
SendGrid is another machine. Like SendGrid it answers 202 once a request is read and valid, and
generates each recipient's events afterwards, on its delivery side; without a webhook that
happens when the stats are asked for at the end, timed and shown as a figure of its own, so the
simulator's work is neither hidden nor charged to either run. Both runs post to the same
simulator process, with the same client, bodies of the same sizes.
Targets: ≥ 10,000 emails per second and ≥ 0.5× the baseline's rate.

    .venv/bin/python bench/send.py [--recipients 100000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Figure, emit  # noqa: E402
from engine import migrate  # noqa: E402
from engine.db import create_db_engine, session_factory  # noqa: E402
from engine.models import Contact, Experiment, Recruiter, Send, Variant  # noqa: E402
from engine.sending.client import MailClient, PostResult  # noqa: E402
from engine.sending.composer import Renderers  # noqa: E402
from engine.sending.mailing import run_recruiter_mailing  # noqa: E402
from engine.settings import Settings, load_settings  # noqa: E402
from variants import rendering  # noqa: E402

TARGET_RATE = 10_000.0
TARGET_RATIO = 0.5
BODY = """<mjml>
  <mj-head><mj-preview>Your friends are joining</mj-preview></mj-head>
  <mj-body background-color="#f4f3f8">
    <mj-section><mj-column>
      <mj-text font-size="20px" font-weight="700">Hi {{ first_name }},</mj-text>
      <mj-text>{{ friends_count }} friends joined through your link, into {{ groups_count }}
        groups. {{ variant }}</mj-text>
      <mj-text>Here is something you can paste anywhere:</mj-text>
      <mj-text font-style="italic">{{ share_text }}</mj-text>
      <mj-button href="{{ referral_link }}" background-color="#4b2aad">Invite a friend</mj-button>
      <mj-text font-size="12px"><a href="{{ recruiter_page_url }}">See your page</a> ·
        <a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>"""
SUBJECTS = {
    "not-yet-active": "Not yet active? Find the role that works best for you",
    "friends-brought": "{{ first_name }}, your friends are joining",
    "one-evening": "One evening, one friend: that is all it takes",
}
SHARES = {
    "plain": "Join me in getting active this year: {{ referral_link }}",
    "personal": "I signed up to help and it took two minutes. Will you? {{ referral_link }}",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_database(settings: Settings, recipients: int) -> None:
    """Experiments (3 subjects, 2 bodies, 2 share texts) and ``recipients`` recruiters."""
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    with session_factory(engine).begin() as session:
        for kind, variants, field in (
            ("subject", SUBJECTS, "subject"),
            ("body", {k: BODY.replace("{{ variant }}", k) for k in ("story", "short")}, "mjml"),
            ("share", SHARES, "text"),
        ):
            experiment = Experiment(
                key=f"recruiter-{kind}", name=kind, kind=kind, metric="click", status="running"
            )
            experiment.variants = [
                Variant(key=key, name=key, content={field: value}, trials=1000, successes=30 + i)
                for i, (key, value) in enumerate(variants.items())
            ]
            session.add(experiment)
        for start in range(0, recipients, 20_000):
            rows = [
                {"email": f"recruiter{i}@example.org", "zip_code": "10001", "first_name": f"Ada{i}"}
                for i in range(start, min(start + 20_000, recipients))
            ]
            ids = session.scalars(
                sa.insert(Contact).returning(Contact.id, sort_by_parameter_order=True), rows
            ).all()
            session.execute(
                sa.insert(Recruiter),
                [{"contact_id": cid, "code": f"code{cid:08d}"} for cid in ids],
            )
    engine.dispose()


class RecordingClient:
    """The real client, keeping every request body for the baseline."""

    def __init__(self, inner: MailClient) -> None:
        self.inner = inner
        self.bodies: list[dict[str, Any]] = []

    def post(self, body: dict[str, Any]) -> PostResult:
        self.bodies.append(body)
        return self.inner.post(body)


def start_simulator(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """``resistry simulator --no-webhook`` in its own process; returns once it answers."""
    environment = {**os.environ, "RESISTRY_CONFIG": str(workdir / "config.toml")}
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/resistry"), "simulator", "--port", str(port), "--no-webhook"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/stats", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the simulator did not start")


def simulator_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/stats", timeout=600) as response:
        return json.load(response)


class StubClient:
    """Answers every request with 202 at once: measures our side without SendGrid."""

    def __init__(self) -> None:
        self.count = 0

    def post(self, body: dict[str, Any]) -> PostResult:
        self.count += 1
        return PostResult("accepted", x_message_id=f"stub-{self.count}")


def time_with_stub(settings: Settings, renderers: Renderers) -> float:
    """Seconds for a second mailing to the same recruiters, handed to :class:`StubClient`."""
    engine = create_db_engine(settings)
    with session_factory(engine)() as session:
        started = time.perf_counter()
        run_recruiter_mailing(
            session,
            settings,
            renderers=renderers,
            client=StubClient(),
            key="bench-stub",
            rng=np.random.default_rng(2),
        )
        seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 recipients")
    args = parser.parse_args(argv)
    recipients = 10_000 if args.quick else args.recipients
    with tempfile.TemporaryDirectory(prefix="resistry-bench-send-") as directory:
        workdir = Path(directory)
        (workdir / "config.toml").write_text("# bench: every setting at its default\n")
        port = free_port()
        settings = load_settings(
            workdir / "config.toml",
            environ={
                "RESISTRY_SECRET_KEY": "bench-secret-key-0123456789abcdef0123",
                "RESISTRY_DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            },
        ).replace(sendgrid={"host": f"http://127.0.0.1:{port}"})
        print(f"seeding {recipients:,} recruiters …", flush=True)
        seed_database(settings, recipients)
        simulator = start_simulator(workdir, port)
        try:
            figures = measure(settings, recipients, port)
        finally:
            simulator.terminate()
            simulator.wait(timeout=30)
    emit("send", figures)
    return 0  # missed targets show in the table; a non-zero exit means the benchmark broke


def measure(settings: Settings, recipients: int, port: int) -> list[Figure]:
    load = os.getloadavg()[0]  # other work on the machine shifts every figure
    engine = create_db_engine(settings)
    sessions = session_factory(engine)
    renderers = Renderers(compile_body=rendering.compile_body, render_text=rendering.render_text)
    client = RecordingClient(MailClient(settings.sendgrid))
    with sessions() as session:
        started, cpu_started = time.perf_counter(), time.process_time()
        report = run_recruiter_mailing(
            session,
            settings,
            renderers=renderers,
            client=client,
            key="bench",
            rng=np.random.default_rng(1),
        )
        mailing_seconds = time.perf_counter() - started
        mailing_cpu = time.process_time() - cpu_started
        sent = session.scalar(sa.select(sa.func.count()).where(Send.status == "sent"))
    engine.dispose()
    if report.sent != recipients or sent != recipients:
        raise RuntimeError(f"sent {report.sent} of {recipients}: {report.lines()}")
    baseline_client = MailClient(settings.sendgrid)
    started, cpu_started = time.perf_counter(), time.process_time()
    for body in client.bodies:
        if baseline_client.post(body).outcome != "accepted":
            raise RuntimeError("the baseline request was not accepted")
    baseline_seconds = time.perf_counter() - started
    baseline_cpu = time.process_time() - cpu_started
    stub_seconds = time_with_stub(settings, renderers)
    started = time.perf_counter()
    stats = simulator_stats(port)  # generates the events of every message accepted so far
    events_seconds = time.perf_counter() - started
    accepted = stats["messages_accepted"]
    if accepted != 2 * recipients or not stats["events_generated"]:
        raise RuntimeError(f"the simulator accepted {accepted:,} messages: {stats}")
    rate = recipients / mailing_seconds
    baseline = recipients / baseline_seconds
    stubbed = recipients / stub_seconds
    note = (
        f"{len(client.bodies)} requests; simulator accepted {accepted:,} messages in all; "
        f"load average {load:.1f} at start on {os.cpu_count()} CPUs"
    )
    return [
        Figure(
            "mailing emails/s", rate, "1/s", f">= {TARGET_RATE:,.0f}", rate >= TARGET_RATE, note
        ),
        Figure("baseline emails/s (post only)", baseline, "1/s", "reference", True),
        Figure(
            "mailing emails/s, SendGrid stubbed",
            stubbed,
            "1/s",
            "our side alone",
            True,
            "a second mailing to the same recruiters, to a client answering 202 at once: "
            "plan, render, DB, no HTTP",
        ),
        Figure(
            "mailing / baseline",
            rate / baseline,
            "x",
            f">= {TARGET_RATIO}",
            rate / baseline >= TARGET_RATIO,
        ),
        Figure("mailing seconds", mailing_seconds, "s", f"{recipients:,} recipients", True),
        Figure(
            "mailing CPU per email (this process)",
            mailing_cpu / recipients * 1e6,
            "us",
            "reference",
            True,
            f"baseline: {baseline_cpu / recipients * 1e6:.1f} us; the simulator's not counted; "
            "steadier than the rates on a shared machine",
        ),
        Figure(
            "simulator event generation /s",
            accepted / events_seconds,
            "1/s",
            "reference",
            True,
            f"{stats['events_generated']:,} events for both runs' messages, after the 202s",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
