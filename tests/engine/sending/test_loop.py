"""The whole loop on one machine: mailings through the simulator, events back through the real
webhook endpoint (a real server thread on a committed temporary SQLite database), posteriors
moving, and the subject with the best true open rate promoted after a few mailings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from engine import migrate
from engine.app import create_app
from engine.db import create_db_engine, session_factory
from engine.decisions import run_decisions, winner_of
from engine.models import Event, Experiment, Send, Variant, utcnow
from engine.sending.client import MailClient
from engine.sending.mailing import run_recruiter_mailing
from engine.simulator import start_simulator
from engine.simulator.truth import TrueRates
from engine.simulator.wire import load_or_create_key_pair, public_key_base64
from tests.conftest import make_settings
from tests.engine.sending import factories
from tests.webhooks.helpers import apply_pending

RECRUITERS = 5000
# The simulator's hidden truth for this test: "urgent" is the subject that opens best.
TRUTH = TrueRates(
    variants={
        "recruiter-subject/urgent": {"open": 0.25},
        "recruiter-subject/friendly": {"open": 0.22},
        "recruiter-subject/question": {"open": 0.2},
        "recruiter-body/story": {"click": 0.045},
        "recruiter-body/list": {"click": 0.024, "unsubscribe": 0.012},
    }
)
SUBJECTS = {
    "urgent": {"subject": "{{ first_name }}, this week matters"},
    "friendly": {"subject": "Not yet active? Find the role that works best for you"},
    "question": {"subject": "Could you bring one friend?"},
}
BODIES = {
    key: {"mjml": factories.BODY_MJML.replace("Hi", key)} for key in ("story", "short", "list")
}
SHARES = {"plain": factories.SHARES["plain"], "personal": factories.SHARES["personal"]}


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[dict]:
    settings = make_settings(f"sqlite:///{tmp_path / 'loop.sqlite3'}")
    engine = create_db_engine(settings)
    migrate.upgrade(engine)
    sessions = session_factory(engine)
    key = load_or_create_key_pair(tmp_path)
    settings = settings.replace(sendgrid={"webhook_public_key": public_key_base64(key)})
    app = create_app(settings=settings, sessions=sessions)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    simulator = start_simulator(
        settings,
        webhook_url=f"http://127.0.0.1:{server.server_port}/webhooks/sendgrid",
        seed=2026,
        key_dir=tmp_path,
        auto_deliver=False,
        true_rates=TRUTH,
    )
    try:
        yield {
            "settings": settings.replace(sendgrid={"host": simulator.url}),
            "sessions": sessions,
            "simulator": simulator,
        }
    finally:
        simulator.stop()
        server.shutdown()
        thread.join(timeout=10)
        engine.dispose()


def test_mailings_move_the_posteriors_and_promote_the_best_subject(loop: dict) -> None:
    settings, sessions, simulator = loop["settings"], loop["sessions"], loop["simulator"]
    with sessions.begin() as session:
        opts = {"burn_in": 300, "floor": 0.02}
        factories.experiment(session, "subject", SUBJECTS, metric="open", **opts)
        factories.experiment(session, "body", BODIES, metric="click", **opts)
        factories.experiment(session, "share", SHARES, metric="signup", **opts)
        factories.recruiters(session, RECRUITERS, prefix="loop")
    client = MailClient(settings.sendgrid, sleep=lambda _: None)
    rng = np.random.default_rng(5)
    promoted_after = None
    start = utcnow()

    def week(number: int) -> datetime:
        """Weekly mailings: the n-th goes out n weeks after the start."""
        return start + timedelta(weeks=number)

    for round_number in range(1, 5):
        with sessions() as session:
            report = run_recruiter_mailing(
                session,
                settings,
                renderers=factories.renderers(),
                client=client,
                key=f"loop-{round_number}",
                rng=rng,
                clock=lambda number=round_number: week(number),
            )
        assert report.sent > 0.95 * RECRUITERS and report.failed == 0
        assert simulator.flush() > report.sent  # processed, delivered, opens, clicks, …
        assert apply_pending(sessions, settings).stored > report.sent  # the applier's work
        with sessions() as session:
            subject = session.scalar(sa.select(Experiment).where(Experiment.kind == "subject"))
            opens = [v.successes for v in subject.variants]
            if round_number == 1:
                assert sum(opens) > 0.1 * report.sent  # the webhook credited human opens
                attributed = session.scalar(
                    sa.select(sa.func.count()).select_from(Event).where(Event.send_id.is_not(None))
                )
                assert attributed > report.sent
            # three days later, every open of this mailing has arrived
            run_decisions(session, settings, now=week(round_number) + timedelta(days=3))
            session.commit()
            if subject.status == "promoted":
                promoted_after = round_number
                winner = winner_of(session, subject)
                break
    assert promoted_after is not None, "no subject promoted after four mailings"
    assert winner is not None and winner.key == "urgent"
    with sessions() as session:
        # one email per recruiter per mailing, never more
        per_mailing = session.execute(
            sa.select(
                Send.mailing_id, sa.func.count(), sa.func.count(sa.distinct(Send.recruiter_id))
            ).group_by(Send.mailing_id)
        ).all()
        assert all(total == distinct for _, total, distinct in per_mailing)
        trials = session.scalar(
            sa.select(sa.func.sum(Variant.trials))
            .join(Experiment)
            .where(Experiment.kind == "subject")
        )
        assert trials == session.scalar(
            sa.select(sa.func.count()).select_from(Send).where(Send.status == "sent")
        )
