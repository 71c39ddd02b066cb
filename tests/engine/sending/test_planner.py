"""Who gets which variants: pauses, promotions, floors, suppressions, and the experiment rule."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy.orm as so

from engine import suppressions
from engine.models import Decision
from engine.sending import planner
from engine.settings import Settings
from tests.engine.sending import factories

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def plan(session: so.Session, settings: Settings, seed: int = 7) -> planner.Plan:
    return planner.draw_plan(
        session, settings, asm_group_id=101, rng=np.random.default_rng(seed), now=NOW
    )


def by_key(result: planner.Plan, kind: str) -> Counter[str]:
    return Counter(result.arms[v].label.split("/")[1] for v in result.variants[kind] or [])


def test_paused_variants_get_nothing_and_promoted_experiments_send_the_winner(
    session: so.Session, settings: Settings
) -> None:
    exps = factories.mail_experiments(session)
    factories.recruiters(session, 200)
    exps["subject"].variants[1].status = "paused"
    body = exps["body"]
    body.status = "promoted"
    session.add(Decision(experiment=body, variant=body.variants[1], kind="promote", reason="won"))
    session.flush()
    result = plan(session, settings)
    assert by_key(result, "subject") == {"urgent": 200}
    assert by_key(result, "body") == {"short": 200}
    assert set(by_key(result, "share")) == {"plain", "personal"}
    assert result.summary()["by_variant"]["body"] == {"recruiter-body/short": 200}


def test_floor_keeps_every_live_arm_in_play(session: so.Session, settings: Settings) -> None:
    subjects = {"a": {"subject": "A"}, "b": {"subject": "B"}, "c": {"subject": "C"}}
    exp = factories.experiment(session, "subject", subjects, floor=0.05)
    factories.experiment(session, "body", factories.BODIES)
    factories.recruiters(session, 1000)
    for variant, successes in zip(exp.variants, (100, 98, 80), strict=True):
        variant.trials, variant.successes = 1000, successes  # c: P(best) about 2 %
    session.flush()
    counts = by_key(plan(session, settings), "subject")
    assert counts["c"] == 50  # the floor: 5 % of 1,000
    assert counts["a"] > counts["b"] > 50
    # an arm that is clearly losing (P(best) < 0.1 %) gives its floor up
    exp.variants[2].successes = 20
    session.flush()
    assert by_key(plan(session, settings), "subject")["c"] == 0


def test_suppressed_addresses_are_left_out(session: so.Session, settings: Settings) -> None:
    factories.mail_experiments(session)
    recruiters = factories.recruiters(session, 5)
    suppressions.suppress(session, "r0@example.org", "global", "bounce", NOW)
    suppressions.suppress(session, "r1@example.org", "asm:101", "group_unsubscribe", NOW)
    suppressions.suppress(session, "r2@example.org", "asm:999", "group_unsubscribe", NOW)
    recruiters[3].active = False
    session.flush()
    result = plan(session, settings)
    assert result.recruiter_ids == [recruiters[2].id, recruiters[4].id]
    assert result.suppressed == 2
    # A lifted suppression (a resubscribe) no longer keeps the address out.
    suppressions.lift(session, "r1@example.org", "asm:101", NOW + timedelta(hours=1))
    session.flush()
    again = plan(session, settings)
    assert again.recruiter_ids == [recruiters[1].id, recruiters[2].id, recruiters[4].id]
    assert again.suppressed == 1


def test_running_beats_promoted_and_the_oldest_running_is_used(session: so.Session) -> None:
    promoted = factories.experiment(
        session, "subject", factories.SUBJECTS, key="s-old", status="promoted"
    )
    first = factories.experiment(session, "subject", factories.SUBJECTS, key="s-first")
    factories.experiment(session, "subject", factories.SUBJECTS, key="s-second")
    factories.experiment(session, "body", factories.BODIES, key="b-draft", status="draft")
    chosen = planner.chosen_experiments(session)
    assert chosen == {"subject": first}
    assert promoted.status == "promoted"


def test_no_subject_or_body_experiment_is_a_plan_error(
    session: so.Session, settings: Settings
) -> None:
    factories.experiment(session, "subject", factories.SUBJECTS)
    with pytest.raises(planner.PlanError, match="no running or promoted body experiment"):
        plan(session, settings)


def test_the_draw_is_repeatable_with_a_seed(session: so.Session, settings: Settings) -> None:
    factories.mail_experiments(session)
    factories.recruiters(session, 300)
    assert plan(session, settings, seed=3).variants == plan(session, settings, seed=3).variants
