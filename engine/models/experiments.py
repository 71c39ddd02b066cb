"""What is tested: experiments, their variants (arms) and every decision taken about them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models.base import Base, Timestamped, utcnow

EXPERIMENT_KINDS = ("landing", "subject", "body", "share")
METRICS = ("signup", "click", "open")
EXPERIMENT_STATUSES = ("draft", "running", "paused", "promoted", "finished")
VARIANT_STATUSES = ("live", "paused", "retired")
DECISION_KINDS = (
    "promote",  # the policy or staff made this variant the winner
    "pause",  # staff paused a variant
    "guardrail_pause",  # the policy paused a variant whose unsubscribe/spam rate is too high
    "resume",  # a paused variant is live again
    "no_clear_winner",  # the maximum sample was reached without a winner
    "restart",  # staff restarted the experiment
    "status",  # the experiment's status changed (start, pause, finish)
)


class Experiment(Timestamped, Base):
    __tablename__ = "experiments"
    __table_args__ = (
        sa.CheckConstraint(f"kind IN {EXPERIMENT_KINDS}", name="kind"),
        sa.CheckConstraint(f"metric IN {METRICS}", name="metric"),
        sa.CheckConstraint(f"status IN {EXPERIMENT_STATUSES}", name="status"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    description: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    metric: so.Mapped[str] = so.mapped_column(sa.String(16))
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="draft")
    prior_alpha: so.Mapped[float] = so.mapped_column(default=1.0)
    prior_beta: so.Mapped[float] = so.mapped_column(default=1.0)
    burn_in: so.Mapped[int] = so.mapped_column(default=600)
    p_best_threshold: so.Mapped[float] = so.mapped_column(default=0.95)
    value_remaining_threshold: so.Mapped[float] = so.mapped_column(default=0.01)
    floor: so.Mapped[float] = so.mapped_column(default=0.01)
    max_trials_per_arm: so.Mapped[int] = so.mapped_column(default=50000)
    policy_areas: so.Mapped[list[str]] = so.mapped_column(default=list)
    # Restarting an experiment bumps the epoch; only trials of the current epoch count.
    epoch: so.Mapped[int] = so.mapped_column(default=1)
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, onupdate=utcnow)

    variants: so.Mapped[list[Variant]] = so.relationship(
        back_populates="experiment", order_by="Variant.id", cascade="all, delete-orphan"
    )
    decisions: so.Mapped[list[Decision]] = so.relationship(
        back_populates="experiment", order_by="Decision.id", cascade="all, delete-orphan"
    )


class Variant(Timestamped, Base):
    """One arm. Content depends on the experiment kind; counters are a cache of stored rows."""

    __tablename__ = "variants"
    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "key"),
        sa.CheckConstraint(f"status IN {VARIANT_STATUSES}", name="status"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    experiment_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    key: so.Mapped[str] = so.mapped_column(sa.String(64))
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    # landing: headline, body, call_to_action, hero_image; subject: subject, preheader;
    # body: mjml; share: text.
    content: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="live")
    is_control: so.Mapped[bool] = so.mapped_column(default=False)
    # Editing a variant that has served traffic creates a new one that replaces it.
    replaces_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("variants.id"))
    # Current allocation share chosen by the policy (sums to 1 over live variants).
    weight: so.Mapped[float] = so.mapped_column(default=0.0)
    # Rollup counters of the current epoch, updated in the same transaction as the rows.
    trials: so.Mapped[int] = so.mapped_column(default=0)
    successes: so.Mapped[int] = so.mapped_column(default=0)
    unsubscribes: so.Mapped[int] = so.mapped_column(default=0)
    spam_reports: so.Mapped[int] = so.mapped_column(default=0)

    experiment: so.Mapped[Experiment] = so.relationship(back_populates="variants")

    @property
    def has_served(self) -> bool:
        return self.trials > 0


class Decision(Base):
    """A promotion, pause or other change, with who made it, why, and the posterior at the time."""

    __tablename__ = "decisions"
    __table_args__ = (sa.CheckConstraint(f"kind IN {DECISION_KINDS}", name="kind"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    experiment_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    variant_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("variants.id"))
    kind: so.Mapped[str] = so.mapped_column(sa.String(24))
    actor: so.Mapped[str] = so.mapped_column(sa.String(120), default="policy")
    reason: so.Mapped[str] = so.mapped_column(sa.Text)
    snapshot: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, index=True)

    experiment: so.Mapped[Experiment] = so.relationship(back_populates="decisions")
    variant: so.Mapped[Variant | None] = so.relationship()


class AllocationSnapshot(Base):
    """The weights the policy set at one run: the history behind "allocation share over time"."""

    __tablename__ = "allocation_snapshots"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    experiment_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    status: so.Mapped[str] = so.mapped_column(sa.String(24))
    # {variant_id (as string): weight}
    weights: so.Mapped[dict[str, Any]] = so.mapped_column(default=dict)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, index=True)


class Assignment(Base):
    """A partner's unit (their recipient id) assigned to a variant: sticky, and a trial."""

    __tablename__ = "assignments"
    __table_args__ = (sa.UniqueConstraint("experiment_id", "group_id", "unit"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    experiment_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("experiments.id", ondelete="CASCADE")
    )
    group_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("groups.id"))
    unit: so.Mapped[str] = so.mapped_column(sa.String(200))
    variant_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("variants.id"), index=True)
    converted_at: so.Mapped[datetime | None]
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
