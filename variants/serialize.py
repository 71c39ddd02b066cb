"""JSON shapes of groups, experiments, variants, decisions and users (no email addresses)."""

from __future__ import annotations

from typing import Any

from engine.models import Decision, Experiment, Group, User, Variant
from variants.validation import EXPERIMENT_SETTING_FIELDS


def group_json(group: Group, signups: int | None = None) -> dict[str, Any]:
    """A group as the API shows it; ``signups`` (a count) when known."""
    data: dict[str, Any] = {
        "slug": group.slug,
        "name": group.name,
        "description": group.description,
        "roles": list(group.roles),
        "website": group.website,
        "logo_url": group.logo_url,
        "policy_areas": list(group.policy_areas),
        "active": group.active,
        "has_api_token": group.api_token_hash is not None,
    }
    if signups is not None:
        data["signups"] = signups
    return data


def variant_json(variant: Variant) -> dict[str, Any]:
    """A variant with its content and the counts of the current epoch."""
    replaced = next(
        (v.key for v in variant.experiment.variants if v.id == variant.replaces_id), None
    )
    return {
        "key": variant.key,
        "name": variant.name,
        "status": variant.status,
        "is_control": variant.is_control,
        "replaces": replaced,
        "content": dict(variant.content),
        "weight": variant.weight,
        "trials": variant.trials,
        "successes": variant.successes,
        "unsubscribes": variant.unsubscribes,
        "spam_reports": variant.spam_reports,
        "created_at": variant.created_at.isoformat() if variant.created_at else None,
    }


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "kind": decision.kind,
        "variant": decision.variant.key if decision.variant is not None else None,
        "actor": decision.actor,
        "reason": decision.reason,
        "snapshot": decision.snapshot,
        "created_at": decision.created_at.isoformat() if decision.created_at else None,
    }


def experiment_json(experiment: Experiment, *, details: bool = False) -> dict[str, Any]:
    """An experiment; with ``details`` its variants and decision history too."""
    data: dict[str, Any] = {
        "key": experiment.key,
        "name": experiment.name,
        "description": experiment.description,
        "kind": experiment.kind,
        "metric": experiment.metric,
        "status": experiment.status,
        "policy_areas": list(experiment.policy_areas),
        "epoch": experiment.epoch,
        **{name: getattr(experiment, name) for name in EXPERIMENT_SETTING_FIELDS},
        "variant_counts": {
            status: sum(1 for v in experiment.variants if v.status == status)
            for status in ("live", "paused", "retired")
        },
        "created_at": experiment.created_at.isoformat() if experiment.created_at else None,
    }
    if details:
        data["variants"] = [variant_json(v) for v in experiment.variants]
        data["decisions"] = [decision_json(d) for d in experiment.decisions]
    return data


def user_json(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "group": user.group.slug if user.group is not None else None,
        "active": user.active,
        "has_api_token": user.api_token_hash is not None,
    }
