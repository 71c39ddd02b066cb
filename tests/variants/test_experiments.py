import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Decision, Variant, Visit
from engine.settings import Settings
from tests.variants.staff_support import CONTENT, make_experiment, make_group
from variants import decisions, experiments, groups
from variants.validation import ConflictError, NotFound, ValidationError


def test_create_uses_config_defaults_and_starts_as_draft(
    session: so.Session, settings: Settings
) -> None:
    custom = settings.experiments.__class__(burn_in=321, floor=0.05)
    experiment = experiments.create_experiment(
        session, {"key": "e1", "name": "E1", "kind": "body", "metric": "click"}, custom
    )
    assert (experiment.status, experiment.burn_in, experiment.floor) == ("draft", 321, 0.05)
    with pytest.raises(ValidationError) as caught:
        experiments.create_experiment(
            session, {"key": "e1", "name": "Again", "kind": "body", "metric": "click"}, custom
        )
    assert "exists" in caught.value.errors["key"]


def test_metric_must_suit_the_kind(session: so.Session, settings: Settings) -> None:
    with pytest.raises(ValidationError) as caught:
        experiments.create_experiment(
            session,
            {"key": "l", "name": "L", "kind": "landing", "metric": "open"},
            settings.experiments,
        )
    assert "landing experiment measures signup" in caught.value.errors["metric"]


def test_list_counts_variants_by_status(session: so.Session, settings: Settings) -> None:
    experiment = make_experiment(session, settings, variant_keys=("a", "b", "c"))
    decisions.pause_variant(session, experiment.variants[2], "ana", "weak")
    make_experiment(session, settings, key="other", status="draft")
    summaries = {s.experiment.key: s for s in experiments.list_experiments(session)}
    assert (summaries["exp"].live, summaries["exp"].paused, summaries["exp"].total) == (2, 1, 3)
    assert [s.experiment.key for s in experiments.list_experiments(session, "draft")] == ["other"]


def test_update_refuses_identity_and_metric_change_with_trials(
    session: so.Session, settings: Settings
) -> None:
    experiment = make_experiment(session, settings)
    assert experiments.update_experiment(session, experiment, {"name": "Renamed"}) == ["name"]
    assert experiments.update_experiment(session, experiment, {"name": "Renamed"}) == []
    with pytest.raises(ValidationError) as caught:
        experiments.update_experiment(session, experiment, {"kind": "body", "status": "paused"})
    assert set(caught.value.errors) == {"kind", "status"}
    assert experiments.update_experiment(session, experiment, {"metric": "open"}) == ["metric"]
    experiment.variants[0].trials = 10
    with pytest.raises(ValidationError, match="restart"):
        experiments.update_experiment(session, experiment, {"metric": "click"})


def test_editing_an_unserved_variant_changes_it_in_place(
    session: so.Session, settings: Settings
) -> None:
    experiment = make_experiment(session, settings)
    variant = experiment.variants[1]
    same = experiments.edit_variant(session, variant, {"content": {"subject": "New words"}})
    assert same is variant
    assert variant.content == {"subject": "New words"}
    assert len(experiment.variants) == 2


def test_editing_a_served_variant_makes_a_replacement_and_keeps_history(
    session: so.Session, settings: Settings
) -> None:
    experiment = make_experiment(session, settings)
    old = experiment.variants[1]
    old.trials, old.successes, old.weight = 40, 4, 0.5
    old_content = dict(old.content)
    new = experiments.edit_variant(session, old, {"content": {"subject": "Sharper words"}})
    assert new is not old
    assert (new.key, new.replaces_id, new.status, new.trials) == ("b-r2", old.id, "live", 0)
    assert new.weight == 0.5
    assert (old.status, old.content, old.trials, old.successes) == ("retired", old_content, 40, 4)
    assert experiments.current_revision(session, old) is new
    new.trials = 3
    newer = experiments.edit_variant(session, new, {"content": {"subject": "Third try"}})
    assert newer.key == "b-r3"
    assert experiments.current_revision(session, old) is newer
    with pytest.raises(ConflictError, match="retired"):
        experiments.edit_variant(session, old, {"name": "x"})
    # Metadata of a served variant may change in place: its results still describe its content.
    assert experiments.edit_variant(session, newer, {"name": "Renamed"}) is newer


def test_served_in_an_earlier_epoch_still_counts_as_served(
    session: so.Session, settings: Settings
) -> None:
    experiment = make_experiment(session, settings, kind="landing")
    variant = experiment.variants[0]
    session.add(Visit(visitor_id="v-1", landing_variant_id=variant.id))
    session.flush()
    assert variant.trials == 0
    assert experiments.has_served_traffic(session, variant)
    edited = experiments.edit_variant(
        session, variant, {"content": {**CONTENT["landing"], "headline": "Another headline"}}
    )
    assert edited is not variant


def test_only_one_control(session: so.Session, settings: Settings) -> None:
    experiment = make_experiment(session, settings)
    with pytest.raises(ValidationError, match="already the control"):
        experiments.add_variant(
            session,
            experiment,
            {"key": "c", "name": "C", "is_control": True, "content": {"subject": "S"}},
        )


def test_pause_resume_record_decisions_with_actor_and_reason(
    session: so.Session, settings: Settings
) -> None:
    experiment = make_experiment(session, settings, variant_keys=("a", "b", "c"))
    variant = experiment.variants[1]
    variant.weight = 0.3
    with pytest.raises(ValidationError, match="reason"):
        decisions.pause_variant(session, variant, "ana", "   ")
    decision = decisions.pause_variant(session, variant, "ana", "unsubscribes look high")
    assert (variant.status, variant.weight) == ("paused", 0.0)
    assert (decision.kind, decision.actor, decision.variant_id) == ("pause", "ana", variant.id)
    assert decision.reason == "unsubscribes look high"
    assert set(decision.snapshot["variants"]) == {str(v.id) for v in experiment.variants}
    with pytest.raises(ConflictError):
        decisions.pause_variant(session, variant, "ana", "again")
    decisions.resume_variant(session, variant, "ben", "fixed the copy")
    assert variant.status == "live"
    kinds = [d.kind for d in session.scalars(sa.select(Decision).order_by(Decision.id))]
    assert kinds[-2:] == ["pause", "resume"]


def test_cannot_pause_the_last_live_variant_of_a_running_experiment(
    session: so.Session, settings: Settings
) -> None:
    experiment = make_experiment(session, settings)
    decisions.pause_variant(session, experiment.variants[0], "ana", "weak")
    with pytest.raises(ConflictError, match="last live variant"):
        decisions.pause_variant(session, experiment.variants[1], "ana", "weak too")


def test_force_winner(session: so.Session, settings: Settings) -> None:
    experiment = make_experiment(session, settings, variant_keys=("a", "b", "c"))
    a, b, c = experiment.variants
    a.trials, a.successes, b.trials, b.successes, c.trials, c.successes = 100, 5, 100, 20, 100, 4
    decision = decisions.force_winner(session, experiment, b, "ana", "clear enough")
    assert experiment.status == "promoted"
    assert [v.weight for v in experiment.variants] == [0.0, 1.0, 0.0]
    assert (decision.kind, decision.variant_id, decision.actor) == ("promote", b.id, "ana")
    snapshot = decision.snapshot["variants"]
    assert snapshot[str(b.id)]["p_best"] > 0.99
    assert snapshot[str(a.id)]["trials"] == 100
    with pytest.raises(ValidationError):
        decisions.force_winner(session, experiment, a, "ana", "")
    # The winner is what is served now: new content needs a restart or a new variant.
    with pytest.raises(ConflictError, match="promoted winner"):
        experiments.edit_variant(session, b, {"content": {"subject": "Changed"}})
    assert experiments.edit_variant(session, a, {"content": {"subject": "New"}}).key == "a-r2"


def test_restart_bumps_epoch_zeroes_counters_keeps_rows(
    session: so.Session, settings: Settings
) -> None:
    experiment = make_experiment(session, settings)
    for variant in experiment.variants:
        variant.trials, variant.successes, variant.unsubscribes = 50, 5, 1
        variant.spam_reports, variant.weight = 1, 0.5
    decisions.force_winner(session, experiment, experiment.variants[0], "ana", "early call")
    decision = decisions.restart_experiment(session, experiment, "ana", "the copy changed")
    assert experiment.epoch == 2
    assert experiment.status == "running"
    for variant in experiment.variants:
        counters = (variant.trials, variant.successes, variant.unsubscribes, variant.spam_reports)
        assert counters == (0, 0, 0, 0)
        assert variant.weight == 0.0
    # The snapshot keeps what the ended epoch had counted.
    assert decision.snapshot["epoch"] == 1
    assert {row["trials"] for row in decision.snapshot["variants"].values()} == {50}
    assert len(session.scalars(sa.select(Variant)).all()) == 2
    assert [d.kind for d in experiment.decisions][-2:] == ["promote", "restart"]


def test_status_changes_follow_the_allowed_paths(session: so.Session, settings: Settings) -> None:
    experiment = make_experiment(session, settings, status="draft", variant_keys=())
    with pytest.raises(ConflictError, match="needs a live variant"):
        decisions.set_status(session, experiment, "running", "ana", "go")
    experiments.add_variant(
        session, experiment, {"key": "a", "name": "A", "content": {"subject": "Hi"}}
    )
    decision = decisions.set_status(session, experiment, "running", "ana", "go")
    assert decision.snapshot["from"] == "draft" and decision.snapshot["to"] == "running"
    with pytest.raises(ConflictError, match="can move to"):
        decisions.set_status(session, experiment, "draft", "ana", "back")
    decisions.set_status(session, experiment, "finished", "ana", "done")
    with pytest.raises(ConflictError, match="restart"):
        decisions.set_status(session, experiment, "running", "ana", "again")
    with pytest.raises(ConflictError, match="finished"):
        experiments.add_variant(
            session, experiment, {"key": "b", "name": "B", "content": {"subject": "Yo"}}
        )


def test_lookups_raise_not_found(session: so.Session, settings: Settings) -> None:
    experiment = make_experiment(session, settings)
    with pytest.raises(NotFound):
        experiments.get_experiment(session, "missing")
    with pytest.raises(NotFound):
        experiments.get_variant(experiment, "zzz")
    with pytest.raises(NotFound):
        groups.get_group(session, "missing")


def test_groups_service(session: so.Session) -> None:
    group = make_group(session, "swing-left", "Swing Left")
    assert group.roles == [] and group.active
    with pytest.raises(ValidationError, match="exists"):
        make_group(session, "swing-left")
    assert groups.update_group(session, group, {"roles": "Canvasser, Donor"}) == ["roles"]
    assert group.roles == ["Canvasser", "Donor"]
    with pytest.raises(ValidationError, match="cannot be changed"):
        groups.update_group(session, group, {"slug": "swing-right"})
    token = groups.issue_group_token(session, group)
    assert len(token) > 30 and group.api_token_hash and token not in group.api_token_hash
    assert [s.group.slug for s in groups.list_groups(session)] == ["swing-left"]
