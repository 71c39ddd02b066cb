from collections import Counter

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Assignment, Decision, Experiment, Variant
from tests.variants.landing_support import NOW, add_experiment, add_groups
from variants import assignment
from variants.assignment import ArmSnapshot, ExperimentSnapshot
from variants.landing_state import PosteriorCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snapshot(
    *arms: tuple[float, float, int],
    winner: int | None = None,
    burn_in: int = 0,
    floor: float = 0.0,
) -> ExperimentSnapshot:
    return ExperimentSnapshot(
        experiment_id=1,
        key="e",
        kind="landing",
        metric="signup",
        status="promoted" if winner else "running",
        burn_in=burn_in,
        floor=floor,
        arms=tuple(
            ArmSnapshot(i + 1, f"k{i}", f"n{i}", {}, alpha, beta, trials, 0.5)
            for i, (alpha, beta, trials) in enumerate(arms)
        ),
        winner_id=winner,
    )


def test_cache_loads_once_per_refresh_period_and_reloads_after() -> None:
    clock = FakeClock()
    cache = PosteriorCache(refresh_seconds=5, clock=clock)
    values = iter(["first", "second"])
    assert [cache.get("k", lambda: next(values)) for _ in range(10)] == ["first"] * 10
    clock.now += 4.9
    assert cache.get("k", lambda: next(values)) == "first"
    clock.now += 0.2
    assert cache.get("k", lambda: next(values)) == "second"
    assert cache.loads == 2


def test_cache_does_not_keep_missing_values() -> None:
    cache = PosteriorCache(refresh_seconds=5, clock=FakeClock())
    assert cache.get("unknown", lambda: None) is None
    assert cache.get("unknown", lambda: "now known") == "now known"


def test_snapshot_holds_the_posterior_of_live_variants_and_sanitized_content(
    session: so.Session,
) -> None:
    experiment = add_experiment(session, arms=3)
    experiment.prior_alpha, experiment.prior_beta = 2.0, 3.0
    a, b, c = experiment.variants
    a.trials, a.successes = 100, 10
    a.content = {**a.content, "body": '<p onclick="x()">Hi</p><script>alert(1)</script>'}
    c.status = "paused"
    session.flush()
    snap = assignment.load_snapshot(session, experiment)
    assert [arm.variant_id for arm in snap.arms] == [a.id, b.id]
    assert (snap.arms[0].alpha, snap.arms[0].beta) == (12.0, 93.0)
    assert (snap.arms[1].alpha, snap.arms[1].beta) == (2.0, 3.0)
    assert snap.arms[0].content["body"] == "<p>Hi</p>"
    assert snap.servable(c.id) is None and snap.winner_id is None


def test_landing_snapshot_prefers_a_running_experiment_and_ignores_others(
    session: so.Session,
) -> None:
    assert assignment.load_landing_snapshot(session) is None
    add_experiment(session, key="draft", status="draft")
    add_experiment(session, key="paused", status="paused")
    add_experiment(session, key="subject", kind="subject")
    assert assignment.load_landing_snapshot(session) is None
    promoted = add_experiment(session, key="old", status="promoted")
    assert assignment.load_landing_snapshot(session).key == "old"
    add_experiment(session, key="new", status="running")
    assert assignment.load_landing_snapshot(session).key == "new"
    assert promoted.status == "promoted"


def test_winner_is_the_latest_promote_decision_else_the_heaviest_live_variant(
    session: so.Session,
) -> None:
    experiment = add_experiment(session, status="promoted", arms=3)
    a, b, c = experiment.variants
    c.weight = 0.9
    session.flush()
    assert assignment.winner_of(session, experiment) == c.id
    session.add_all(
        [
            Decision(
                experiment=experiment, variant_id=a.id, kind="promote", reason="x", created_at=NOW
            ),
            Decision(
                experiment=experiment,
                variant_id=b.id,
                kind="promote",
                reason="staff override",
                created_at=NOW.replace(hour=16),
            ),
        ]
    )
    session.flush()
    snap = assignment.load_snapshot(session, experiment)
    assert snap.winner_id == b.id
    assert snap.servable(b.id) is not None and snap.servable(a.id) is None


def test_promoted_experiment_always_serves_its_winner() -> None:
    snap = snapshot((1, 1, 10), (1, 1, 10), winner=2)
    rng = np.random.default_rng(0)
    assert {assignment.choose_arm(snap, rng).variant_id for _ in range(50)} == {2}


def test_thompson_sampling_favours_the_credibly_better_arm_but_explores() -> None:
    snap = snapshot((501, 501, 1000), (101, 901, 1000), (60, 140, 198))
    rng = np.random.default_rng(42)
    counts = Counter(assignment.choose_arm(snap, rng).variant_id for _ in range(2000))
    assert counts[1] > 0.85 * 2000
    assert counts[2] < 0.02 * 2000


def test_even_posteriors_split_traffic_evenly() -> None:
    snap = snapshot((1, 1, 0), (1, 1, 0))
    rng = np.random.default_rng(7)
    counts = Counter(assignment.choose_arm(snap, rng).variant_id for _ in range(4000))
    assert counts[1] / 4000 == pytest.approx(0.5, abs=0.04)


def test_burn_in_splits_evenly_whatever_the_posteriors() -> None:
    snap = snapshot((501, 501, 1000), (2, 199, 199), burn_in=200)
    assert list(snap.weights) == [0.5, 0.5]
    rng = np.random.default_rng(3)
    counts = Counter(assignment.choose_arm(snap, rng).variant_id for _ in range(4000))
    assert counts[2] / 4000 == pytest.approx(0.5, abs=0.04)


def test_the_floor_keeps_a_losing_arm_in_play() -> None:
    snap = snapshot((501, 501, 1000), (101, 901, 1000), floor=0.05)
    assert snap.weights[1] == pytest.approx(0.05)
    rng = np.random.default_rng(5)
    counts = Counter(assignment.choose_arm(snap, rng).variant_id for _ in range(8000))
    assert counts[2] / 8000 == pytest.approx(0.05, abs=0.01)


def test_draws_follow_the_thompson_weights() -> None:
    snap = snapshot((31, 371, 400), (41, 361, 400), (36, 366, 400))
    assert sum(snap.weights) == pytest.approx(1.0)
    rng = np.random.default_rng(11)
    counts = Counter(assignment.choose_arm(snap, rng).variant_id for _ in range(20000))
    for index, weight in enumerate(snap.weights):
        assert counts[index + 1] / 20000 == pytest.approx(weight, abs=0.015)


class FixedUniform:
    """A generator whose uniform draws are given (choose_arm's one draw per unit)."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def test_one_uniform_draw_picks_the_arm_whose_share_it_falls_in() -> None:
    snap = snapshot((501, 501, 1000), (101, 901, 1000), (480, 520, 1000), floor=0.0)
    low, zero, high = snap.weights
    assert zero < 1e-12  # a credibly worse arm without a floor gets no traffic
    draws = FixedUniform(0.0, low * 0.999, low * 1.001, 0.999999)
    picked = [assignment.choose_arm(snap, draws).variant_id for _ in range(4)]  # type: ignore[arg-type]
    assert picked == [1, 1, 3, 3]
    assert high == pytest.approx(1 - low)


def test_no_live_arm_means_no_choice() -> None:
    assert assignment.choose_arm(snapshot(), np.random.default_rng(0)) is None


# --- partner units ------------------------------------------------------------------------------


def first_arm(snap: ExperimentSnapshot) -> ArmSnapshot | None:
    return snap.arms[0]


def last_arm(snap: ExperimentSnapshot) -> ArmSnapshot | None:
    return snap.arms[-1]


def trials(session: so.Session, experiment: Experiment) -> list[int]:
    session.expire_all()
    return [v.trials for v in experiment.variants]


def test_a_unit_keeps_its_variant_and_counts_one_trial(session: so.Session) -> None:
    (group,) = add_groups(session, ["partner"])
    experiment = add_experiment(session, kind="subject", metric="click")
    snap = assignment.load_snapshot(session, experiment)
    first = assignment.assign_unit(session, snap, group.id, "u1", first_arm, NOW)
    again = assignment.assign_unit(session, snap, group.id, "u1", last_arm, NOW)
    assert first.created and not again.created
    assert again.arm.variant_id == first.arm.variant_id
    assert trials(session, experiment) == [1, 0]


def test_a_paused_variant_is_replaced_and_the_new_choice_is_a_trial(session: so.Session) -> None:
    (group,) = add_groups(session, ["partner"])
    experiment = add_experiment(session, kind="subject", metric="click")
    snap = assignment.load_snapshot(session, experiment)
    assignment.assign_unit(session, snap, group.id, "u1", first_arm, NOW)
    experiment.variants[0].status = "paused"
    session.flush()
    snap = assignment.load_snapshot(session, experiment)
    moved = assignment.assign_unit(session, snap, group.id, "u1", first_arm, NOW)
    assert moved.arm.variant_id == experiment.variants[1].id
    assert trials(session, experiment) == [1, 1]
    assert session.scalar(sa.select(sa.func.count()).select_from(Assignment)) == 1


def test_conversion_is_credited_once_with_the_experiment_metric(session: so.Session) -> None:
    (group,) = add_groups(session, ["partner"])
    experiment = add_experiment(session, kind="subject", metric="click")
    snap = assignment.load_snapshot(session, experiment)
    assignment.assign_unit(session, snap, group.id, "u1", last_arm, NOW)
    assert assignment.convert_unit(session, snap, group.id, "u1", NOW) is True
    assert assignment.convert_unit(session, snap, group.id, "u1", NOW) is False
    session.expire_all()
    assert [v.successes for v in experiment.variants] == [0, 1]
    with pytest.raises(assignment.UnknownUnit):
        assignment.convert_unit(session, snap, group.id, "never-assigned", NOW)


def test_concurrent_first_requests_for_a_unit_agree(session: so.Session) -> None:
    """The loser of the insert race reads the winner's row and counts no second trial."""
    (group,) = add_groups(session, ["partner"])
    experiment = add_experiment(session, kind="subject", metric="click")
    snap = assignment.load_snapshot(session, experiment)
    won = experiment.variants[1].id

    def race(snap: ExperimentSnapshot) -> ArmSnapshot:
        # The other request inserts between our read and our insert.
        session.add(
            Assignment(
                experiment_id=snap.experiment_id,
                group_id=group.id,
                unit="u1",
                variant_id=won,
                created_at=NOW,
            )
        )
        session.flush()
        return snap.arms[0]

    result = assignment.assign_unit(session, snap, group.id, "u1", race, NOW)
    assert result.arm.variant_id == won and not result.created
    assert trials(session, experiment) == [0, 0]
    assert session.scalar(sa.select(sa.func.count()).select_from(Variant)) == 2
