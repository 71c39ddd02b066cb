"""Admin UI pages for partner groups: list, create, edit, issue the partner API token, and the
contacts CSV a group manager downloads (their own group only; admins any; analysts never).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    url_for,
)

from engine.auth import calling_user, require_roles
from engine.db import get_session
from engine.models import Group, User
from variants import contacts_export, groups
from variants.admin_forms import ActionForm, GroupForm, show_errors
from variants.validation import ValidationError


def register(bp: Blueprint) -> None:
    """Add the group pages to the admin blueprint."""
    for rule, endpoint, view, methods in (
        ("/groups", "groups", groups_page, ["GET"]),
        ("/groups/new", "new_group", new_group, ["GET", "POST"]),
        ("/groups/<slug>", "group", group_page, ["GET"]),
        ("/groups/<slug>/edit", "edit_group", edit_group, ["GET", "POST"]),
        ("/groups/<slug>/token", "issue_group_token", issue_group_token, ["POST"]),
        ("/groups/<slug>/contacts.csv", "group_contacts_csv", contacts_csv, ["GET"]),
    ):
        bp.add_url_rule(rule, endpoint=endpoint, view_func=view, methods=methods)


def _user() -> User:
    user = calling_user()
    assert user is not None
    return user


@require_roles("admin", "analyst")
def groups_page() -> Any:
    return render_template("admin/groups.html", summaries=groups.list_groups(get_session()))


@require_roles("admin", "analyst", "group_manager")
def group_page(slug: str) -> Any:
    """A group and its signup count; a group manager sees only their own group."""
    session = get_session()
    group = groups.get_group(session, slug)
    user = _user()
    if user.role == "group_manager" and user.group_id != group.id:
        abort(403, description="you manage another group")
    return render_template(
        "admin/group.html",
        group=group,
        signups=groups.signup_count(session, group),
        may_pull=contacts_export.may_pull_contacts(user, group),
        can_edit=user.role == "admin",
        action=ActionForm(),
    )


def _group_form_page(form: GroupForm, group: Group | None) -> Any:
    status = 422 if form.is_submitted() else 200
    return render_template("admin/group_form.html", form=form, group=group), status


@require_roles("admin")
def new_group() -> Any:
    form = GroupForm()
    if form.validate_on_submit():
        session = get_session()
        try:
            created = groups.create_group(session, form.values())
        except ValidationError as exc:
            session.rollback()
            show_errors(form, exc.errors)
        else:
            session.commit()
            flash(f"Created group {created.name!r}.", "success")
            return redirect(url_for("admin.group", slug=created.slug))
    return _group_form_page(form, None)


@require_roles("admin")
def edit_group(slug: str) -> Any:
    session = get_session()
    group = groups.get_group(session, slug)
    values = {name: getattr(group, name) for name in GroupForm.FIELDS}
    form = GroupForm(
        data={
            **values,
            "roles": ", ".join(group.roles),
            "policy_areas": ", ".join(group.policy_areas),
        }
    )
    del form.slug  # partners' links carry the slug
    if form.validate_on_submit():
        values = {name: value for name, value in form.values().items() if name != "slug"}
        try:
            changed = groups.update_group(session, group, values)
        except ValidationError as exc:
            session.rollback()
            show_errors(form, exc.errors)
        else:
            session.commit()
            flash(f"Saved ({', '.join(changed) or 'no changes'}).", "success")
            return redirect(url_for("admin.group", slug=slug))
    return _group_form_page(form, group)


@require_roles("admin")
def issue_group_token(slug: str) -> Any:
    """Issue the group's partner API token and show it once."""
    if not ActionForm().validate_on_submit():
        abort(400, description="the form expired; reload the page and try again")
    session = get_session()
    group = groups.get_group(session, slug)
    token = groups.issue_group_token(session, group)
    session.commit()
    page = render_template(
        "admin/token.html",
        title=f"Partner API token for {group.name}",
        token=token,
        back=url_for("admin.group", slug=slug),
        usage="Partners send it as “Authorization: Bearer <token>” to /api/v1/assign "
        "and /api/v1/convert. The previous token no longer works.",
    )
    return page, 201, {"Cache-Control": "no-store"}


@require_roles("admin", "group_manager")
def contacts_csv(slug: str) -> Any:
    """The group's contacts with consent text and time, as a CSV download."""
    session = get_session()
    group = groups.get_group(session, slug)
    if not contacts_export.may_pull_contacts(_user(), group):
        abort(403, description="you may download only your own group's contacts")
    filename = f"{group.slug}-contacts-{date.today().isoformat()}.csv"
    # Read everything first and end the transaction: streaming from an open transaction would
    # hold SQLite's lock (and block signups) for as long as a slow download takes.
    body = "".join(contacts_export.iter_contacts_csv(session, group))
    session.rollback()
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",  # email addresses must not linger in shared caches
        },
    )
