"""Admin UI pages for experiments and variants, and the staff decisions about them.

Analysts see every page read-only (no PII here); only admins get the forms that change things.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm

from engine.auth import calling_user, require_roles
from engine.db import get_session
from engine.models import Experiment, Variant
from variants import decisions, experiments
from variants.admin_forms import (
    ExperimentForm,
    ReasonForm,
    StatusForm,
    WinnerForm,
    choices,
    show_errors,
    variant_form_class,
    variant_values,
)
from variants.rendering import SAMPLE_CONTEXT, TemplateError, compile_body, render_text
from variants.validation import EXPERIMENT_SETTING_FIELDS, ConflictError, ValidationError

# A preview shows staff-written HTML: the sandbox keeps its scripts away from the admin origin.
PREVIEW_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def register(bp: Blueprint) -> None:
    """Add the experiment and variant pages to the admin blueprint."""
    prefix = "/experiments/<key>"
    variant = f"{prefix}/variants/<variant_key>"
    for rule, view, methods in (
        ("/experiments", experiments_page, ["GET"]),
        ("/experiments/new", new_experiment, ["GET", "POST"]),
        (prefix, experiment, ["GET"]),
        (f"{prefix}/edit", edit_experiment, ["GET", "POST"]),
        (f"{prefix}/status", experiment_status, ["POST"]),
        (f"{prefix}/restart", restart_experiment, ["POST"]),
        (f"{prefix}/winner", force_winner, ["POST"]),
        (f"{prefix}/variants/new", new_variant, ["GET", "POST"]),
        (f"{variant}/edit", edit_variant, ["GET", "POST"]),
        (f"{variant}/pause", pause_variant, ["POST"]),
        (f"{variant}/resume", resume_variant, ["POST"]),
        (f"{variant}/preview", preview_variant, ["GET"]),
    ):
        endpoint = "experiments" if view is experiments_page else view.__name__
        bp.add_url_rule(rule, endpoint=endpoint, view_func=view, methods=methods)


def _actor() -> str:
    user = calling_user()
    assert user is not None
    return user.username


def _winner_form(experiment: Experiment, *, blank: bool = False) -> WinnerForm:
    """The winner form; ``blank`` ignores the request's form data (another form was posted)."""
    form = WinnerForm(prefix="winner", **({"formdata": None} if blank else {}))
    form.variant.choices = choices(
        [(v.key, v.name) for v in experiment.variants if v.status == "live"]
    )
    return form


def _experiment_page(experiment: Experiment, status: int = 200, **bound: FlaskForm) -> Any:
    """The experiment page; ``bound`` forms (with their errors) replace the blank ones."""
    forms: dict[str, FlaskForm] = {
        "status_form": StatusForm(prefix="status", formdata=None),
        "restart_form": ReasonForm(prefix="restart", formdata=None),
        "winner_form": _winner_form(experiment, blank=True),
    }
    forms.update(bound)
    variant_forms = {
        variant.key: ReasonForm(prefix=f"v-{variant.key}", formdata=None)
        for variant in experiment.variants
    }
    variant_forms.update(bound.get("variant_forms", {}))  # type: ignore[arg-type]
    forms.pop("variant_forms", None)
    return (
        render_template(
            "admin/experiment.html",
            experiment=experiment,
            variant_forms=variant_forms,
            can_edit=calling_user().role == "admin",  # type: ignore[union-attr]
            **forms,
        ),
        status,
    )


@require_roles("admin", "analyst")
def experiments_page() -> Any:
    summaries = experiments.list_experiments(get_session())
    return render_template("admin/experiments.html", summaries=summaries)


@require_roles("admin", "analyst")
def experiment(key: str) -> Any:
    return _experiment_page(experiments.get_experiment(get_session(), key))


@require_roles("admin")
def new_experiment() -> Any:
    defaults = current_app.extensions["resistry.settings"].experiments
    form = ExperimentForm(
        data={name: getattr(defaults, name) for name in EXPERIMENT_SETTING_FIELDS}
    )
    if form.validate_on_submit():
        session = get_session()
        try:
            created = experiments.create_experiment(session, form.values(new=True), defaults)
        except ValidationError as exc:
            session.rollback()
            show_errors(form, exc.errors)
        else:
            session.commit()
            flash(f"Created experiment {created.key!r} (draft): now add its variants.", "success")
            return redirect(url_for("admin.experiment", key=created.key))
    status = 422 if form.is_submitted() else 200
    return render_template("admin/experiment_form.html", form=form, experiment=None), status


@require_roles("admin")
def edit_experiment(key: str) -> Any:
    session = get_session()
    item = experiments.get_experiment(session, key)
    names = ("name", "description", "metric", *EXPERIMENT_SETTING_FIELDS)
    values = {name: getattr(item, name) for name in names}
    form = ExperimentForm(data={**values, "policy_areas": ", ".join(item.policy_areas)})
    del form.key, form.kind  # what an experiment measures is fixed once created
    if form.validate_on_submit():
        try:
            changed = experiments.update_experiment(session, item, form.values(new=False))
        except ValidationError as exc:
            session.rollback()
            show_errors(form, exc.errors)
        else:
            session.commit()
            flash(f"Saved ({', '.join(changed) or 'no changes'}).", "success")
            return redirect(url_for("admin.experiment", key=key))
    status = 422 if form.is_submitted() else 200
    return render_template("admin/experiment_form.html", form=form, experiment=item), status


def _decide(experiment: Experiment, form: FlaskForm, bound: dict[str, Any], action: Any) -> Any:
    """Run a decision from a validated form; on failure show the page with the form's errors.

    ``bound`` says where the failed form goes on the page (``{"restart_form": form}``).
    """
    if form.validate_on_submit():
        session = get_session()
        try:
            action()
        except ValidationError as exc:
            session.rollback()
            show_errors(form, exc.errors)
            return _experiment_page(experiment, 422, **bound)
        except ConflictError as exc:
            session.rollback()
            form.form_errors.append(str(exc))
            return _experiment_page(experiment, 409, **bound)
        session.commit()
        flash("Decision recorded.", "success")
        return redirect(url_for("admin.experiment", key=experiment.key))
    return _experiment_page(experiment, 400, **bound)


@require_roles("admin")
def experiment_status(key: str) -> Any:
    session = get_session()
    item = experiments.get_experiment(session, key)
    form = StatusForm(prefix="status")
    return _decide(
        item,
        form,
        {"status_form": form},
        lambda: decisions.set_status(session, item, form.status.data, _actor(), form.reason.data),
    )


@require_roles("admin")
def restart_experiment(key: str) -> Any:
    session = get_session()
    item = experiments.get_experiment(session, key)
    form = ReasonForm(prefix="restart")
    return _decide(
        item,
        form,
        {"restart_form": form},
        lambda: decisions.restart_experiment(session, item, _actor(), form.reason.data),
    )


@require_roles("admin")
def force_winner(key: str) -> Any:
    session = get_session()
    item = experiments.get_experiment(session, key)
    form = _winner_form(item)

    def promote() -> None:
        winner = experiments.get_variant(item, form.variant.data)
        decisions.force_winner(session, item, winner, _actor(), form.reason.data)

    return _decide(item, form, {"winner_form": form}, promote)


def _variant_decision(key: str, variant_key: str, action: Any) -> Any:
    session = get_session()
    item = experiments.get_experiment(session, key)
    variant = experiments.get_variant(item, variant_key)
    form = ReasonForm(prefix=f"v-{variant.key}")
    return _decide(
        item,
        form,
        {"variant_forms": {variant.key: form}},
        lambda: action(session, variant, _actor(), form.reason.data),
    )


@require_roles("admin")
def pause_variant(key: str, variant_key: str) -> Any:
    return _variant_decision(key, variant_key, decisions.pause_variant)


@require_roles("admin")
def resume_variant(key: str, variant_key: str) -> Any:
    return _variant_decision(key, variant_key, decisions.resume_variant)


def _variant_form_page(item: Experiment, form: FlaskForm, variant: Variant | None) -> Any:
    status = 422 if form.is_submitted() else 200
    return render_template(
        "admin/variant_form.html", form=form, experiment=item, variant=variant
    ), status


@require_roles("admin")
def new_variant(key: str) -> Any:
    session = get_session()
    item = experiments.get_experiment(session, key)
    form = variant_form_class(item.kind)()
    if form.validate_on_submit():
        try:
            data = {"key": form.key.data, **variant_values(form, item.kind)}
            created = experiments.add_variant(session, item, data)
        except (ValidationError, ConflictError) as exc:
            session.rollback()
            _show_failure(form, exc)
        else:
            session.commit()
            flash(f"Added variant {created.key!r}.", "success")
            return redirect(url_for("admin.experiment", key=key))
    return _variant_form_page(item, form, None)


def _show_failure(form: FlaskForm, exc: ValidationError | ConflictError) -> None:
    if isinstance(exc, ValidationError):
        show_errors(form, exc.errors)
    else:
        form.form_errors.append(str(exc))


@require_roles("admin")
def edit_variant(key: str, variant_key: str) -> Any:
    session = get_session()
    item = experiments.get_experiment(session, key)
    variant = experiments.get_variant(item, variant_key)
    form = variant_form_class(item.kind)(
        data={**variant.content, "name": variant.name, "is_control": variant.is_control}
    )
    del form.key  # keys identify a variant's history
    if form.validate_on_submit():
        try:
            current = experiments.edit_variant(session, variant, variant_values(form, item.kind))
        except (ValidationError, ConflictError) as exc:
            session.rollback()
            _show_failure(form, exc)
        else:
            session.commit()
            if current is not variant:
                flash(
                    f"{variant.key!r} had served traffic, so it was retired and the new content "
                    f"is variant {current.key!r}.",
                    "success",
                )
            else:
                flash(f"Saved variant {variant.key!r}.", "success")
            return redirect(url_for("admin.experiment", key=key))
    return _variant_form_page(item, form, variant)


@require_roles("admin", "analyst")
def preview_variant(key: str, variant_key: str) -> Any:
    """The variant filled with sample values; an email body as the recipient would see it."""
    item = experiments.get_experiment(get_session(), key)
    variant = experiments.get_variant(item, variant_key)
    try:
        if item.kind == "body":
            html = compile_body(variant.content.get("mjml", ""), variant.name).render(
                SAMPLE_CONTEXT
            )
            return html, 200, PREVIEW_HEADERS
        filled = {
            name: render_text(value, SAMPLE_CONTEXT, variant.name)
            if item.kind != "landing"
            else value
            for name, value in variant.content.items()
        }
    except TemplateError as exc:
        return render_template("admin/error.html", title="Cannot preview", message=str(exc)), 422
    return (
        render_template(
            "admin/variant_preview.html", experiment=item, variant=variant, filled=filled
        ),
        200,
        PREVIEW_HEADERS,
    )
