"""The policy run: for every running experiment, counts → effective trials → decision → stored.

Counts and delay-weighted effective trials come from :mod:`engine.trial_counts` (rollup
counters, recent trials aggregated in SQL). Guardrails (unsubscribe and spam-report rates) are
judged on the same effective trials.

:func:`engine.policy.decide` answers weights, a status and the reason in words. Each run stores
an :class:`AllocationSnapshot` and the variants' weights; a promotion, a guardrail pause, "no
clear winner" and a fully paused experiment are stored as :class:`Decision` rows with the
posterior snapshot and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import policy
from engine.models import AllocationSnapshot, Decision, Experiment, Variant
from engine.settings import Settings
from engine.trial_counts import ArmCounts, arm_counts


@dataclass
class ExperimentOutcome:
    """What a run decided for one experiment (for logs, the CLI and tests)."""

    experiment_key: str
    status: str
    reason: str
    weights: dict[str, float]
    decisions: list[str] = field(default_factory=list)

    def summary(self) -> str:
        stored = f" [{', '.join(self.decisions)}]" if self.decisions else ""
        return f"{self.experiment_key}: {self.status}{stored} — {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment_key,
            "status": self.status,
            "reason": self.reason,
            "weights": self.weights,
            "decisions": self.decisions,
        }


# --- the policy ---------------------------------------------------------------------------------


def policy_config(settings: Settings, experiment: Experiment, arms: int) -> policy.PolicyConfig:
    """The experiment's thresholds and the [guardrails] settings as the policy takes them."""
    guard = settings.guardrails
    return policy.PolicyConfig(
        prior_alpha=experiment.prior_alpha,
        prior_beta=experiment.prior_beta,
        burn_in=experiment.burn_in,
        p_best_threshold=min(experiment.p_best_threshold, 0.999999),
        value_remaining_threshold=experiment.value_remaining_threshold,
        floor=experiment.floor,
        max_trials=experiment.max_trials_per_arm * max(arms, 1),
        guardrails={
            "unsubscribe": guard.unsubscribe_rate_limit,
            "spam_report": guard.spam_report_rate_limit,
        },
        guardrail_confidence=guard.confidence,
        guardrail_min_trials=guard.min_trials,
        unit="visits" if experiment.kind == "landing" else "sends",
    )


def decide(settings: Settings, experiment: Experiment, arms: list[ArmCounts]) -> policy.Decision:
    """:func:`engine.policy.decide` for ``arms`` (non-live variants count as paused)."""
    return policy.decide(
        [
            policy.ArmCounts(
                name=arm.variant.key,
                trials=arm.effective_trials,
                successes=arm.successes,
                # Raw sends drive burn-in and the guardrails (see engine.policy); the posterior
                # uses effective trials so fresh sends do not read as failures.
                sends=arm.trials,
                guardrail_events={
                    "unsubscribe": min(arm.unsubscribes, arm.trials),
                    "spam_report": min(arm.spam_reports, arm.trials),
                },
                paused=arm.variant.status != "live",
            )
            for arm in arms
        ],
        policy_config(settings, experiment, len(arms)),
    )


def allocate(
    session: so.Session,
    settings: Settings,
    experiment: Experiment,
    count: int,
    rng: np.random.Generator,
    now: datetime,
) -> tuple[list[Variant], list[int]]:
    """Variants for ``count`` units of a running experiment: the policy's weights (burn-in,
    Thompson shares, floors, pauses) allocated in one vectorized draw from ``rng``.

    Returns ``(variants that may receive traffic, one variant id per unit)``.
    Raises ``ValueError`` when no variant may receive traffic.
    """
    arms = arm_counts(session, settings, experiment, now)
    if not any(arm.variant.status == "live" for arm in arms):
        raise ValueError(f"experiment {experiment.key!r} has no live variant")
    weights = decide(settings, experiment, arms).weights
    shares = [weights[arm.variant.key] for arm in arms]
    if not any(shares):
        raise ValueError(f"experiment {experiment.key!r}: every live variant trips a guardrail")
    indices = policy.assign_batch(shares, count, rng)
    ids = np.array([arm.variant.id for arm in arms])
    eligible = [arm.variant for arm, share in zip(arms, shares, strict=True) if share > 0]
    return eligible, ids[indices].tolist()


def winner_of(session: so.Session, experiment: Experiment) -> Variant | None:
    """The promoted variant: the latest promotion's, else the live variant with the top weight."""
    variant_id = session.scalar(
        sa.select(Decision.variant_id)
        .where(
            Decision.experiment_id == experiment.id,
            Decision.kind == "promote",
            Decision.variant_id.is_not(None),
        )
        .order_by(Decision.created_at.desc(), Decision.id.desc())
        .limit(1)
    )
    if variant_id is not None:
        return session.get(Variant, variant_id)
    live = [v for v in experiment.variants if v.status == "live"]
    return max(live, key=lambda v: (v.weight, -v.id)) if live else None


# --- the run ------------------------------------------------------------------------------------


def run_decisions(
    session: so.Session, settings: Settings, *, now: datetime
) -> list[ExperimentOutcome]:
    """Run the policy for every running experiment and store what it decided (not committed).

    Returns one :class:`ExperimentOutcome` per experiment considered, in id order.
    """
    experiments = session.scalars(
        sa.select(Experiment).where(Experiment.status == "running").order_by(Experiment.id)
    ).all()
    return [
        decide_experiment(session, settings, experiment, now)
        for experiment in experiments
        if any(v.status == "live" for v in experiment.variants)
    ]


def decide_experiment(
    session: so.Session, settings: Settings, experiment: Experiment, now: datetime
) -> ExperimentOutcome:
    """Decide one running experiment: weights, guardrail pauses, promotion or no clear winner."""
    arms = arm_counts(session, settings, experiment, now)
    decision = decide(settings, experiment, arms)
    snapshot = posterior_snapshot(experiment, arms, decision, now)
    by_key = {arm.variant.key: arm.variant for arm in arms}
    stored: list[str] = []

    def record(kind: str, reason: str, variant: Variant | None = None) -> None:
        session.add(
            Decision(
                experiment_id=experiment.id,
                variant_id=variant.id if variant else None,
                kind=kind,
                actor="policy",
                reason=reason,
                snapshot=snapshot,
                created_at=now,
            )
        )
        stored.append(kind if variant is None else f"{kind} {variant.key}")

    for row in snapshot["arms"]:
        variant = by_key[row["name"]]
        if row["guardrail_breaches"] and variant.status == "live":
            variant.status = "paused"
            record("guardrail_pause", _breach_reason(row, settings), variant)
    if decision.status == "promoted" and decision.winner is not None:
        experiment.status = "promoted"
        record("promote", decision.reason, by_key[decision.winner])
    elif decision.status == "no_clear_winner":
        experiment.status = "finished"
        record("no_clear_winner", decision.reason)
    elif decision.status == "all_paused":
        experiment.status = "paused"
        record("status", f"every variant is paused, so the experiment is: {decision.reason}")
    for variant in experiment.variants:
        variant.weight = float(decision.weights.get(variant.key, 0.0))
    session.add(
        AllocationSnapshot(
            experiment_id=experiment.id,
            status=decision.status,
            weights={str(arm.variant.id): arm.variant.weight for arm in arms},
            created_at=now,
        )
    )
    session.flush()
    weights = {key: round(w, 6) for key, w in decision.weights.items()}
    return ExperimentOutcome(experiment.key, decision.status, decision.reason, weights, stored)


def _breach_reason(row: dict[str, Any], settings: Settings) -> str:
    limits = {
        "unsubscribe": settings.guardrails.unsubscribe_rate_limit,
        "spam_report": settings.guardrails.spam_report_rate_limit,
    }
    return "; ".join(
        f"{row['name']} paused: {metric.replace('_', '-')} rate credibly above "
        f"{limits[metric]:.2%} (P = {p:.3f} after {row['trials']:,.0f} effective trials)"
        for metric, p in row["guardrail_breaches"].items()
    )


def posterior_snapshot(
    experiment: Experiment, arms: list[ArmCounts], decision: policy.Decision, now: datetime
) -> dict[str, Any]:
    """The policy's posterior per arm, with raw and effective counts, keyed as stored."""
    rows = {row["name"]: row for row in decision.snapshot["arms"]}
    variants = {
        str(arm.variant.id): {
            "key": arm.variant.key,
            "status": arm.variant.status,
            "trials": arm.trials,
            "effective_trials": round(arm.effective_trials, 3),
            "successes": arm.successes,
            "unsubscribes": arm.unsubscribes,
            "spam_reports": arm.spam_reports,
            **{k: v for k, v in rows[arm.variant.key].items() if k not in ("name", "trials")},
        }
        for arm in arms
    }
    return {
        **decision.snapshot,
        "at": now.isoformat(),
        "epoch": experiment.epoch,
        "metric": experiment.metric,
        "policy_status": decision.status,
        "reason": decision.reason,
        "weights": decision.weights,
        "variants": variants,
    }
