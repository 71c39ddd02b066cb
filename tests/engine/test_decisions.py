"""The policy run: promotion with snapshot and reason, burn-in, guardrails, delayed rewards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import decisions, trial_counts
from engine.models import AllocationSnapshot, Decision, Experiment, Mailing, Send, Visit
from engine.settings import Settings
from tests.engine.sending import factories

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def subject_experiment(session: so.Session, counts: list[tuple[int, int]], **options) -> Experiment:
    variants = {f"v{i}": {"subject": f"Subject {i}"} for i in range(len(counts))}
    exp = factories.experiment(session, "subject", variants, **options)
    for variant, (trials, successes) in zip(exp.variants, counts, strict=True):
        variant.trials, variant.successes = trials, successes
    session.flush()
    return exp


def test_a_clearly_better_arm_is_promoted_with_snapshot_and_reason(
    session: so.Session, settings: Settings
) -> None:
    exp = subject_experiment(session, [(2000, 100), (2000, 200)], burn_in=100)
    [outcome] = decisions.run_decisions(session, settings, now=NOW)
    assert outcome.status == "promoted"
    assert exp.status == "promoted"
    [decision] = session.scalars(sa.select(Decision)).all()
    assert decision.kind == "promote" and decision.actor == "policy"
    assert decision.variant_id == exp.variants[1].id
    assert decision.reason.startswith("v1 promoted: P(best) = 1.000 ≥ 0.95")
    snap = decision.snapshot["variants"][str(exp.variants[1].id)]
    assert snap["trials"] == 2000 and snap["successes"] == 200
    assert snap["p_best"] > 0.99 and snap["alpha"] == 201.0
    assert decision.snapshot["policy_status"] == "promoted"
    assert [v.weight for v in exp.variants] == [0.0, 1.0]
    [allocation] = session.scalars(sa.select(AllocationSnapshot)).all()
    assert allocation.weights == {str(exp.variants[0].id): 0.0, str(exp.variants[1].id): 1.0}
    # a promoted experiment is no longer run by the policy
    assert decisions.run_decisions(session, settings, now=NOW) == []


def test_burn_in_keeps_an_even_split_and_decides_nothing(
    session: so.Session, settings: Settings
) -> None:
    exp = subject_experiment(session, [(150, 5), (150, 30)], burn_in=200)
    [outcome] = decisions.run_decisions(session, settings, now=NOW)
    assert outcome.status == "burn_in" and exp.status == "running"
    assert [v.weight for v in exp.variants] == [0.5, 0.5]
    assert session.scalars(sa.select(Decision)).all() == []
    assert session.scalar(sa.select(AllocationSnapshot.status)) == "burn_in"


def test_exploring_weights_favour_the_leader_and_keep_the_floor(
    session: so.Session, settings: Settings
) -> None:
    exp = subject_experiment(session, [(300, 30), (300, 36), (300, 22)], floor=0.05)
    [outcome] = decisions.run_decisions(session, settings, now=NOW)
    weights = [v.weight for v in exp.variants]
    assert outcome.status == "exploring"
    assert pytest.approx(sum(weights)) == 1.0
    assert weights[1] > weights[0] > weights[2] >= 0.05 - 1e-9


def test_a_guardrail_pauses_the_arm_like_a_circuit_breaker(
    session: so.Session, settings: Settings
) -> None:
    exp = subject_experiment(session, [(1000, 30), (1000, 32), (1000, 31)])
    exp.variants[2].unsubscribes = 40  # 4 % against a 1 % limit
    exp.variants[1].spam_reports = 1  # 0.1 % against 0.2 %: fine
    session.flush()
    [outcome] = decisions.run_decisions(session, settings, now=NOW)
    assert exp.variants[2].status == "paused" and exp.variants[2].weight == 0.0
    assert exp.variants[1].status == "live"
    [decision] = session.scalars(sa.select(Decision)).all()
    assert decision.kind == "guardrail_pause" and decision.variant_id == exp.variants[2].id
    assert "unsubscribe rate" in decision.reason
    assert "guardrail_pause v2" in outcome.decisions
    assert pytest.approx(exp.variants[0].weight + exp.variants[1].weight) == 1.0


def test_every_arm_tripping_pauses_the_experiment(session: so.Session, settings: Settings) -> None:
    exp = subject_experiment(session, [(1000, 30), (1000, 30)])
    for variant in exp.variants:
        variant.spam_reports = 20
    session.flush()
    decisions.run_decisions(session, settings, now=NOW)
    assert exp.status == "paused"
    kinds = sorted(session.scalars(sa.select(Decision.kind)))
    assert kinds == ["guardrail_pause", "guardrail_pause", "status"]


def test_no_clear_winner_at_the_maximum_sample(session: so.Session, settings: Settings) -> None:
    exp = subject_experiment(session, [(600, 60), (600, 60)], burn_in=10, max_trials_per_arm=500)
    [outcome] = decisions.run_decisions(session, settings, now=NOW)
    assert outcome.status == "no_clear_winner" and exp.status == "finished"
    assert session.scalar(sa.select(Decision.kind)) == "no_clear_winner"
    assert "no clear winner" in session.scalar(sa.select(Decision.reason))


def add_sends(session: so.Session, exp: Experiment, variant_index: int, count: int, at: datetime):
    recruiters = factories.recruiters(session, count, prefix=f"s{variant_index}-{at.hour}-")
    mailing = Mailing(key=f"m-{variant_index}-{at.isoformat()}", asm_group_id=1, scheduled_for=at)
    session.add(mailing)
    session.flush()
    session.execute(
        sa.insert(Send),
        [
            {
                "mailing_id": mailing.id,
                "recruiter_id": r.id,
                "subject_variant_id": exp.variants[variant_index].id,
                "status": "sent",
                "error": "",
                "sent_at": at,
            }
            for r in recruiters
        ],
    )


def test_fresh_sends_count_only_for_the_share_of_clicks_arrived(
    session: so.Session, settings: Settings
) -> None:
    exp = subject_experiment(session, [(1300, 20), (300, 20)])
    add_sends(session, exp, 0, 1000, NOW - timedelta(hours=1))  # fresh: 1,000 of its 1,300
    add_sends(session, exp, 1, 300, NOW - timedelta(days=30))  # old: fully counted
    arms = trial_counts.arm_counts(session, settings, exp, NOW)
    # log-normal delay, median 6 h, sigma 1.2: about 6.8 % of clicks arrive within the hour
    cdf, _ = trial_counts.delay_cdf(settings, "click")
    share = float(cdf(np.array([1.0]))[0])
    assert 0.05 < share < 0.09
    assert arms[0].effective_trials == pytest.approx(300 + 1000 * share, rel=0.02)
    assert arms[1].effective_trials == 300


def test_sends_before_a_restart_do_not_count_as_recent(
    session: so.Session, settings: Settings
) -> None:
    exp = subject_experiment(session, [(100, 2), (100, 2)])
    add_sends(session, exp, 0, 50, NOW - timedelta(hours=2))
    session.add(
        Decision(
            experiment=exp, kind="restart", reason="new copy", created_at=NOW - timedelta(hours=1)
        )
    )
    session.flush()
    arms = trial_counts.arm_counts(session, settings, exp, NOW)
    assert arms[0].effective_trials == 100


def test_landing_experiments_are_decided_from_visits(
    session: so.Session, settings: Settings
) -> None:
    variants = {"hero": {"headline": "A"}, "plain": {"headline": "B"}}
    exp = factories.experiment(session, "landing", variants, metric="signup", burn_in=50)
    (a, b) = exp.variants
    a.trials, a.successes, b.trials, b.successes = 3000, 300, 3000, 150
    session.add_all(
        Visit(visitor_id=f"v{i}", landing_variant_id=a.id, created_at=NOW - timedelta(minutes=30))
        for i in range(40)
    )
    session.flush()
    arms = trial_counts.arm_counts(session, settings, exp, NOW)
    assert 2960 < arms[0].effective_trials < 2962
    [outcome] = decisions.run_decisions(session, settings, now=NOW)
    assert outcome.status == "promoted" and exp.status == "promoted"
    assert decisions.winner_of(session, exp) == a


def test_a_fresh_send_that_already_converted_counts_as_a_whole_trial(
    session: so.Session, settings: Settings
) -> None:
    exp = subject_experiment(session, [(100, 10), (100, 0)])
    add_sends(session, exp, 0, 100, NOW - timedelta(hours=1))
    clicked = session.scalars(sa.select(Send.id).limit(10)).all()
    session.execute(
        sa.update(Send)
        .where(Send.id.in_(clicked))
        .values(first_click_at=NOW - timedelta(minutes=5))
    )
    cdf, _ = trial_counts.delay_cdf(settings, "click")
    share = float(cdf(np.array([1.0]))[0])
    [arm, _] = trial_counts.arm_counts(session, settings, exp, NOW)
    assert arm.effective_trials == pytest.approx(10 + 90 * share, rel=0.02)
