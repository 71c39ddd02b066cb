"""All tables. Import models from here: ``from engine.models import Variant``."""

from engine.models.audience import ROLES, Contact, Group, Recruiter, Signup, User, Visit
from engine.models.base import Base, utcnow
from engine.models.events import Alert, Event, InboxBatch, QuarantinedEvent, WebhookBatch
from engine.models.experiments import (
    DECISION_KINDS,
    EXPERIMENT_KINDS,
    EXPERIMENT_STATUSES,
    METRICS,
    AllocationSnapshot,
    Assignment,
    Decision,
    Experiment,
    Variant,
)
from engine.models.mail import Mailing, Send, Suppression
from engine.models.rollups import (
    GroupFlowRollup,
    GroupRollup,
    LadderRollup,
    RecruiterRollup,
    SendRollup,
    VisitRollup,
)

__all__ = [
    "DECISION_KINDS",
    "EXPERIMENT_KINDS",
    "EXPERIMENT_STATUSES",
    "METRICS",
    "ROLES",
    "Alert",
    "AllocationSnapshot",
    "Assignment",
    "Base",
    "Contact",
    "Decision",
    "Event",
    "Experiment",
    "Group",
    "GroupFlowRollup",
    "GroupRollup",
    "InboxBatch",
    "LadderRollup",
    "Mailing",
    "QuarantinedEvent",
    "Recruiter",
    "RecruiterRollup",
    "Send",
    "SendRollup",
    "Signup",
    "Suppression",
    "User",
    "Variant",
    "Visit",
    "VisitRollup",
    "WebhookBatch",
    "utcnow",
]
