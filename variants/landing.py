"""The visitor side: landing page, signup, confirmation and "recruit your friends".

Views only translate HTTP; choices and writes live in :mod:`variants.assignment`,
:mod:`variants.attribution`, :mod:`variants.signup` and :mod:`variants.visibility`.

Per visitor (Flask's signed session cookie): a random visitor id (it seeds the order of the
groups), the sticky landing variant, and the current visit so a reload is not a second trial.
The signup form carries a signed ``ctx`` field (visit id, landing variant, the order of the boxes
shown), so attribution and the order survive the POST even if the page sat open for a while.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData

from engine.app import settings_of
from engine.db import get_session
from engine.models import Group, Recruiter
from variants import assignment, attribution, landing_render, landing_state, visibility
from variants import signup as signups
from variants.landing_state import LandingState, init_runtime, runtime_of

bp = Blueprint(
    "landing",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)


def init_app(app: Flask) -> None:
    """Attach the landing runtime (posterior cache, generator) and the signup rate limit."""
    settings = settings_of(app)
    init_runtime(app)
    # One limiter per app, so each app (and each test) starts with empty counters.
    limiter = Limiter(get_remote_address, app=app, storage_uri=settings.web.rate_limit_storage)
    app.view_functions["landing.signup"] = limiter.limit(
        settings.web.signup_rate_limit, methods=["POST"]
    )(app.view_functions["landing.signup"])


# --- views -------------------------------------------------------------------------------------


@bp.get("/")
def index() -> ResponseReturnValue:
    runtime = runtime_of(current_app)
    settings = settings_of(current_app)
    state = runtime.state()
    visitor_id = _visitor_id()
    arm = _sticky_arm(state.snapshot, runtime)
    db = get_session()
    source = attribution.resolve_attribution(
        db,
        request.args,
        secret_key=settings.secret_key,
        send_token_max_age_seconds=settings.web.send_token_days * 86400,
        group_ids_by_slug=state.group_ids_by_slug,
    )
    variant_id = arm.variant_id if arm is not None else None
    visit_key = [variant_id, *_attribution_key(source)]
    current = session.get("visit")
    if (
        isinstance(current, list)
        and len(current) == len(visit_key) + 1
        and current[1] == variant_id
        and (source.is_empty or current[1:] == visit_key)
    ):
        visit_id = current[0]  # a reload (or a link without attribution): not a new trial
    else:
        visit_id = attribution.record_visit(
            db,
            visitor_id=visitor_id,
            landing_variant_id=variant_id,
            attribution=source,
            now=runtime.now(),
        )
        db.commit()
        session["visit"] = [visit_id, *visit_key]
    cards = visibility.order_for_visitor(
        state.cards,
        visitor_id,
        floor=settings.landing.visibility_floor,
        sigma=settings.landing.visibility_noise_sigma,
    )
    context = {"v": visit_id, "l": variant_id, "o": [card.slug for card in cards]}
    return landing_render.fresh_page(state, arm, cards, runtime.form_signer.dumps(context))


@bp.post("/signup")
def signup() -> ResponseReturnValue:
    runtime = runtime_of(current_app)
    settings = settings_of(current_app)
    state = runtime.state()
    context = _form_context(runtime)
    cards = _cards_as_shown(state, context.get("o"))
    if request.form.get(landing_render.HONEYPOT_FIELD):
        return _render_form_again(
            {"form": "Something went wrong with the form. Please leave the last field empty."},
            400,
        )
    try:
        checked = signups.validate_signup(
            request.form.get("email", ""),
            request.form.get("zip", ""),
            request.form.getlist("groups"),
            state.group_ids_by_slug,
        )
    except signups.SignupInvalid as exc:
        return _render_form_again(exc.errors, 400)
    db = get_session()
    result = signups.record_signup(
        db,
        checked,
        group_names={card.id: card.name for card in state.cards},
        group_slugs={card.id: card.slug for card in state.cards},
        groups_order=[card.slug for card in cards],
        consent_template=settings.landing.consent_text,
        visit_id=_int_or_none(context.get("v")),
        now=runtime.now(),
    )
    db.commit()
    session.pop("visit", None)  # the next page view is a new visit
    session["contact"] = result.contact_id
    session["joined"] = list(checked.group_ids)
    return redirect(url_for(".thanks"), 303)


@bp.get("/thanks")
def thanks() -> ResponseReturnValue:
    contact_id = session.get("contact")
    if contact_id is None:
        return redirect(url_for(".index"))
    db = get_session()
    joined = db.scalars(
        sa.select(Group.name).where(Group.id.in_(session.get("joined", []))).order_by(Group.name)
    ).all()
    code = db.scalar(
        sa.select(Recruiter.code).where(Recruiter.contact_id == contact_id, Recruiter.active)
    )
    link = signups.referral_link(settings_of(current_app).web.base_url, code) if code else None
    return render_template("landing/thanks.html", joined=joined, referral_link=link)


@bp.post("/recruit")
def recruit() -> ResponseReturnValue:
    contact_id = session.get("contact")
    if contact_id is None:
        return render_template("landing/message.html", title="Sign up first", status=400), 400
    db = get_session()
    try:
        signups.make_recruiter(db, contact_id, runtime_of(current_app).now())
    except LookupError:
        session.pop("contact", None)
        return render_template("landing/message.html", title="Sign up first", status=400), 400
    db.commit()
    return redirect(url_for(".thanks"), 303)


@bp.get("/about/visibility")
def about_visibility() -> ResponseReturnValue:
    settings = settings_of(current_app)
    state = runtime_of(current_app).state()
    rows = visibility.explain(
        state.cards,
        session.get("vid") or "example-visitor",
        floor=settings.landing.visibility_floor,
        sigma=settings.landing.visibility_noise_sigma,
    )
    return render_template(
        "landing/visibility.html",
        rows=rows,
        floor=settings.landing.visibility_floor,
        sigma=settings.landing.visibility_noise_sigma,
        is_own_order="vid" in session,
    )


@bp.errorhandler(RateLimitExceeded)
def too_many_signups(_error: RateLimitExceeded) -> ResponseReturnValue:
    message = "Too many signups from your network just now. Please wait a minute and try again."
    return _render_form_again({"form": message}, 429)


@bp.errorhandler(CSRFError)
def form_expired(_error: CSRFError) -> ResponseReturnValue:
    if request.endpoint == "landing.signup":
        message = "This form expired. Please check your details and submit again."
        return _render_form_again({"form": message}, 400)
    return render_template("landing/message.html", title="This form expired", status=400), 400


# --- helpers -----------------------------------------------------------------------------------


def _visitor_id() -> str:
    visitor_id = session.get("vid")
    if not isinstance(visitor_id, str) or len(visitor_id) > 36:
        visitor_id = str(uuid.uuid4())
        session["vid"] = visitor_id
        session.permanent = True  # keep the visitor (and their variant) across browser restarts
    return visitor_id


def _sticky_arm(
    snapshot: assignment.ExperimentSnapshot | None, runtime: landing_state.LandingRuntime
) -> assignment.ArmSnapshot | None:
    if snapshot is None:
        return None
    stored = session.get("lv")
    if isinstance(stored, list) and len(stored) == 2 and stored[0] == snapshot.experiment_id:
        arm = snapshot.servable(stored[1])
        if arm is not None:
            return arm
    arm = runtime.chooser.choose(snapshot)
    if arm is not None:
        session["lv"] = [snapshot.experiment_id, arm.variant_id]
    return arm


def _attribution_key(source: attribution.Attribution) -> list[int | None]:
    return [source.source_group_id, source.recruiter_id, source.send_id, source.share_variant_id]


def _form_context(runtime: landing_state.LandingRuntime) -> dict[str, Any]:
    """The signed ``ctx`` field of the form, or an empty context if it is missing or forged."""
    try:
        value = runtime.form_signer.loads(request.form.get("ctx", ""))
    except BadData:
        return {}
    return value if isinstance(value, dict) else {}


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cards_as_shown(state: LandingState, order: object) -> list[visibility.GroupCard]:
    """The active groups in the order the visitor saw them (groups added since go last)."""
    if not isinstance(order, list):
        settings = settings_of(current_app)
        return visibility.order_for_visitor(
            state.cards,
            _visitor_id(),
            floor=settings.landing.visibility_floor,
            sigma=settings.landing.visibility_noise_sigma,
        )
    rank = {slug: index for index, slug in enumerate(order)}
    return sorted(state.cards, key=lambda card: (rank.get(card.slug, len(rank)), card.slug))


def _render_form_again(errors: dict[str, str], status: int) -> ResponseReturnValue:
    """The landing page again with the visitor's entries kept and the messages by the fields."""
    runtime = runtime_of(current_app)
    state = runtime.state()
    context = _form_context(runtime)
    cards = _cards_as_shown(state, context.get("o"))
    arm = state.snapshot.arm(_int_or_none(context.get("l"))) if state.snapshot else None
    if not context:
        context = {"v": None, "l": None, "o": [card.slug for card in cards]}
    values = {
        "email": request.form.get("email", ""),
        "zip": request.form.get("zip", ""),
        "groups": set(request.form.getlist("groups")),
    }
    page = landing_render.render_page(
        arm, cards, runtime.form_signer.dumps(context), errors, values
    )
    return page, status
