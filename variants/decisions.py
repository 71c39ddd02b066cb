"""Staff decisions about experiments: change status, pause or resume a variant, force a winner,
restart. Each is recorded as a :class:`~engine.models.Decision` with who took it, why (a reason
is required) and the posterior at that moment, so the history explains every change of traffic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy.orm as so

from engine import stats
from engine.models import Decision, Experiment, Variant
from variants.validation import ConflictError, ValidationError

# Which status an experiment may move to by a staff decision. "promoted" comes from
# force_winner (or the policy); a finished experiment starts again only by a restart.
STATUS_CHANGES: dict[str, frozenset[str]] = {
    "draft": frozenset({"running", "finished"}),
    "running": frozenset({"paused", "finished"}),
    "paused": frozenset({"running", "finished"}),
    "promoted": frozenset({"finished"}),
    "finished": frozenset(),
}


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "say why: a reason is required"})
    if len(reason) > 2000:
        raise ValidationError({"reason": "must be at most 2000 characters"})
    return reason


def _require_actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor or len(actor) > 120:
        raise ValidationError({"actor": "must name who decides (1-120 characters)"})
    return actor


def posterior_snapshot(experiment: Experiment) -> dict[str, Any]:
    """The counts, weights and posterior of each variant now: stored with every decision."""
    variants = [v for v in experiment.variants if v.status != "retired"]
    snapshot: dict[str, Any] = {"epoch": experiment.epoch, "status": experiment.status}
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        rows[str(variant.id)] = {
            "key": variant.key,
            "status": variant.status,
            "trials": variant.trials,
            "successes": variant.successes,
            "unsubscribes": variant.unsubscribes,
            "spam_reports": variant.spam_reports,
            "weight": variant.weight,
        }
    if variants:
        alpha, beta = stats.posterior(
            [v.trials for v in variants],
            [min(v.successes, v.trials) for v in variants],
            experiment.prior_alpha,
            experiment.prior_beta,
        )
        for variant, mean, best in zip(
            variants, stats.posterior_mean(alpha, beta), stats.p_best(alpha, beta), strict=True
        ):
            rows[str(variant.id)]["posterior_mean"] = round(float(mean), 6)
            rows[str(variant.id)]["p_best"] = round(float(np.clip(best, 0.0, 1.0)), 6)
    snapshot["variants"] = rows
    return snapshot


def _record(
    experiment: Experiment, kind: str, actor: str, reason: str, variant: Variant | None = None
) -> Decision:
    decision = Decision(
        kind=kind,
        actor=_require_actor(actor),
        reason=_require_reason(reason),
        variant=variant,
        snapshot=posterior_snapshot(experiment),
    )
    experiment.decisions.append(decision)
    return decision


def set_status(
    session: so.Session, experiment: Experiment, status: str, actor: str, reason: str
) -> Decision:
    """Move ``experiment`` to ``status`` and return the recorded decision.

    Raises :class:`ValidationError` without a reason, :class:`ConflictError` for a change that
    :data:`STATUS_CHANGES` does not allow or for running an experiment without a live variant.
    """
    reason = _require_reason(reason)
    allowed = STATUS_CHANGES.get(experiment.status, frozenset())
    if status not in allowed:
        options = ", ".join(sorted(allowed)) or "nothing (restart it instead)"
        raise ConflictError(
            f"experiment {experiment.key!r} is {experiment.status}; it can move to {options}"
        )
    if status == "running" and not any(v.status == "live" for v in experiment.variants):
        raise ConflictError(f"experiment {experiment.key!r} needs a live variant to run")
    previous, experiment.status = experiment.status, status
    decision = _record(experiment, "status", actor, reason)
    decision.snapshot = {**decision.snapshot, "from": previous, "to": status}
    session.flush()
    return decision


def pause_variant(session: so.Session, variant: Variant, actor: str, reason: str) -> Decision:
    """Stop serving ``variant`` (its weight drops to 0) and return the recorded decision.

    Raises :class:`ValidationError` without a reason; :class:`ConflictError` if the variant is
    not live or is the last live variant of an experiment that is running (pause that instead).
    """
    reason = _require_reason(reason)
    experiment = variant.experiment
    if variant.status != "live":
        raise ConflictError(f"variant {variant.key!r} is {variant.status}, not live")
    others_live = [v for v in experiment.variants if v.status == "live" and v is not variant]
    if experiment.status in ("running", "promoted") and not others_live:
        raise ConflictError(
            f"{variant.key!r} is the last live variant; pause the experiment instead"
        )
    decision = _record(experiment, "pause", actor, reason, variant)
    variant.status, variant.weight = "paused", 0.0
    session.flush()
    return decision


def resume_variant(session: so.Session, variant: Variant, actor: str, reason: str) -> Decision:
    """Serve a paused ``variant`` again and return the recorded decision.

    Raises :class:`ValidationError` without a reason, :class:`ConflictError` if it is not paused.
    """
    reason = _require_reason(reason)
    if variant.status != "paused":
        raise ConflictError(f"variant {variant.key!r} is {variant.status}, not paused")
    variant.status = "live"
    decision = _record(variant.experiment, "resume", actor, reason, variant)
    session.flush()
    return decision


def force_winner(
    session: so.Session, experiment: Experiment, variant: Variant, actor: str, reason: str
) -> Decision:
    """Promote ``variant``: it gets all the traffic; returns the recorded decision.

    Raises :class:`ValidationError` without a reason, :class:`ConflictError` if the variant is
    not live or the experiment is a draft or finished.
    """
    reason = _require_reason(reason)
    if variant.experiment_id != experiment.id:
        raise ConflictError(f"variant {variant.key!r} is not part of {experiment.key!r}")
    if experiment.status in ("draft", "finished"):
        raise ConflictError(f"experiment {experiment.key!r} is {experiment.status}")
    if variant.status != "live":
        raise ConflictError(f"variant {variant.key!r} is {variant.status}; only live ones win")
    decision = _record(experiment, "promote", actor, reason, variant)
    for other in experiment.variants:
        other.weight = 1.0 if other is variant else 0.0
    experiment.status = "promoted"
    session.flush()
    return decision


def restart_experiment(
    session: so.Session, experiment: Experiment, actor: str, reason: str
) -> Decision:
    """Start counting again: a new epoch, counters and weights zeroed, status running.

    Rows (sends, visits, events, decisions) are kept; the decision's snapshot keeps the counts
    of the epoch that ended. Returns the decision. Raises :class:`ValidationError` without a
    reason, :class:`ConflictError` for a draft or an experiment without a live variant.
    """
    reason = _require_reason(reason)
    if experiment.status == "draft":
        raise ConflictError(f"experiment {experiment.key!r} is a draft; start it instead")
    if not any(v.status == "live" for v in experiment.variants):
        raise ConflictError(f"experiment {experiment.key!r} has no live variant to restart with")
    decision = _record(experiment, "restart", actor, reason)
    experiment.epoch += 1
    for variant in experiment.variants:
        variant.trials = variant.successes = variant.unsubscribes = variant.spam_reports = 0
        variant.weight = 0.0
    experiment.status = "running"
    session.flush()
    return decision
