"""Flask-WTF forms of the admin UI (each carries a CSRF token). Rules live in the services;
the forms only parse what was typed, and :func:`show_errors` puts service errors next to fields.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FloatField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from engine.models import EXPERIMENT_KINDS, METRICS, ROLES
from variants.validation import CONTENT_FIELDS, EXPERIMENT_SETTING_FIELDS


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=120)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class ReasonForm(FlaskForm):
    reason = TextAreaField("Reason", validators=[DataRequired(message="say why")])


class StatusForm(ReasonForm):
    status = SelectField("New status", choices=["running", "paused", "finished"])


class WinnerForm(ReasonForm):
    variant = SelectField("Winner", choices=[])


class GroupForm(FlaskForm):
    slug = StringField("Slug", validators=[DataRequired()], description="e.g. swing-left")
    name = StringField("Name", validators=[DataRequired()])
    description = TextAreaField("Short description")
    roles = StringField("Volunteer roles", description="comma-separated")
    website = StringField("Website")
    logo_url = StringField("Logo URL")
    policy_areas = StringField("Policy areas", description="comma-separated")
    active = BooleanField("Active (shown on the landing page)", default=True)

    FIELDS = ("slug", "name", "description", "roles", "website", "logo_url", "policy_areas",
              "active")  # fmt: skip

    def values(self) -> dict[str, Any]:
        """The typed values, named as the group services expect them."""
        return {name: self[name].data for name in self.FIELDS if name in self}


class ExperimentForm(FlaskForm):
    key = StringField("Key", validators=[DataRequired()], description="e.g. recruiter-subject")
    name = StringField("Name", validators=[DataRequired()])
    description = TextAreaField("Description")
    kind = SelectField("Kind", choices=list(EXPERIMENT_KINDS))
    metric = SelectField("Metric", choices=list(METRICS))
    policy_areas = StringField("Policy areas", description="comma-separated")
    prior_alpha = FloatField("Prior α", validators=[InputRequired()])
    prior_beta = FloatField("Prior β", validators=[InputRequired()])
    burn_in = IntegerField("Burn-in (trials per variant)", validators=[InputRequired()])
    p_best_threshold = FloatField("Promote at P(best) ≥", validators=[InputRequired()])
    value_remaining_threshold = FloatField("… or value remaining <", validators=[InputRequired()])
    floor = FloatField("Traffic floor per live variant", validators=[InputRequired()])
    max_trials_per_arm = IntegerField("Max trials per variant", validators=[InputRequired()])

    def values(self, *, new: bool) -> dict[str, Any]:
        """The typed values, named as the experiment services expect them."""
        names = ["name", "description", "metric", "policy_areas", *EXPERIMENT_SETTING_FIELDS]
        if new:
            names += ["key", "kind"]
        return {name: self[name].data for name in names}


class _VariantFormBase(FlaskForm):
    key = StringField("Key", validators=[DataRequired()], description="e.g. one-evening")
    name = StringField("Name", validators=[DataRequired()])
    is_control = BooleanField("Control (the baseline the others are compared with)")


_CONTENT_LABELS = {
    "headline": (StringField, "Headline"),
    "body": (TextAreaField, "Body (HTML: p, a, strong, em, lists; anything else is removed)"),
    "call_to_action": (StringField, "Call to action (button text)"),
    "hero_image": (StringField, "Hero image URL"),
    "hero_alt": (StringField, "Hero image description (alt text)"),
    "subject": (StringField, "Subject line"),
    "preheader": (StringField, "Preheader"),
    "mjml": (TextAreaField, "MJML body"),
    "text": (TextAreaField, "Share text"),
}
_REQUIRED_CONTENT = frozenset({"headline", "body", "call_to_action", "subject", "mjml", "text"})


def variant_form_class(kind: str) -> type[FlaskForm]:
    """A variant form with the content fields of experiments of ``kind``."""
    fields: dict[str, Any] = {}
    for name in CONTENT_FIELDS[kind]:
        field_class, label = _CONTENT_LABELS[name]
        required = [DataRequired()] if name in _REQUIRED_CONTENT else [Optional()]
        fields[name] = field_class(label, validators=required)
    return type(f"{kind.title()}VariantForm", (_VariantFormBase,), fields)


def variant_values(form: FlaskForm, kind: str) -> dict[str, Any]:
    """The variant fields and content typed into ``form``; empty optional fields are left out."""
    content = {
        name: form[name].data
        for name in CONTENT_FIELDS[kind]
        if form[name].data or name in _REQUIRED_CONTENT
    }
    return {"name": form.name.data, "is_control": form.is_control.data, "content": content}


class UserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=120)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=10, max=200)])
    role = SelectField("Role", choices=list(ROLES))
    group = SelectField("Group (group managers)", choices=[])


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """Select options from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


def show_errors(form: FlaskForm, errors: dict[str, str]) -> None:
    """Attach service errors to the form fields they name (``content.x`` to field ``x``)."""
    for name, message in errors.items():
        field_name = name.removeprefix("content.")
        if field_name in form:
            form[field_name].errors = [*form[field_name].errors, message]
        else:
            form.form_errors.append(f"{name}: {message}")
