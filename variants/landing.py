"""The visitor side: landing page, signup, confirmation and "recruit your friends".

Views only translate HTTP; choices and writes live in :mod:`variants.assignment`,
:mod:`variants.attribution`, :mod:`variants.signup` and :mod:`variants.visibility`.

Per visitor (a small signed cookie, :mod:`variants.landing_visitor`): a random visitor id (it
seeds the order of the groups), the sticky landing variant, and the current visit so a reload is
not a second trial. The signup form carries a CSRF token bound to that cookie and a signed
``ctx`` field (visit id, landing variant, the order of the boxes shown), so attribution and the
order survive the POST even if the page sat open for a while. Flask's session is only written
once someone signs up (the thanks page).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData

from engine.app import csrf, settings_of
from engine.db import get_session
from engine.models import Group, Recruiter
from variants import (
    assignment,
    attribution,
    landing_render,
    landing_state,
    landing_visits,
    visibility,
)
from variants import signup as signups
from variants.landing_state import LandingState, init_runtime, runtime_of
from variants.landing_visitor import Visitor, new_visitor

bp = Blueprint(
    "landing",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)


def init_app(app: Flask) -> None:
    """Attach the landing runtime (posterior cache, generator, visitor cookies, signup limit)."""
    init_runtime(app)
    # The signup form's token is bound to the visitor cookie, not to Flask's session; the view
    # checks it first (variants.landing_visitor), so Flask-WTF's session check is not applied.
    csrf.exempt("variants.landing.signup")


# --- views -------------------------------------------------------------------------------------

_NO_ATTRIBUTION = attribution.Attribution()  # frozen: shared by the views without a link


@bp.get("/")
def index() -> ResponseReturnValue:
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    runtime = runtime_of(app)
    settings = settings_of(app)
    state = runtime.state()
    known = runtime.visitors.read(request)
    arm, visitor = _sticky_arm(state.snapshot, runtime, known or new_visitor())
    source = _NO_ATTRIBUTION
    if request.query_string and request.args:  # parsed only when there is a query
        db = get_session()
        source = attribution.resolve_attribution(
            db,
            request.args,
            secret_key=settings.secret_key,
            send_token_max_age_seconds=settings.web.send_token_days * 86400,
            group_ids_by_slug=state.group_ids_by_slug,
        )
        db.rollback()  # it only read; on SQLite its transaction would hold the write lock
    variant_id = arm.variant_id if arm is not None else None
    visit_key = (variant_id, *_attribution_key(source))
    current = visitor.visit_key
    if (
        current is not None
        and current[0] == variant_id
        and (source.is_empty or current == visit_key)
    ):
        visit_id = visitor.visit_id  # a reload (or a link without attribution): not a new trial
    else:
        visit = attribution.new_visit(visitor.id, variant_id, source, runtime.now())
        visit_id = _record_visit(runtime, visit)
        visitor = visitor.with_visit(visit_id, visit_key)
    cards = visibility.order_for_visitor(
        state.cards,
        visitor.id,
        floor=settings.landing.visibility_floor,
        sigma=settings.landing.visibility_noise_sigma,
    )
    context = runtime.form_signer.sign_json(_context_json(visit_id, variant_id, cards, state))
    page = landing_render.fresh_page(
        state, arm, cards, context, runtime.visitors.csrf_token(visitor)
    )
    return _page_response(runtime, page, 200, visitor, known)


@bp.post("/signup")
def signup() -> ResponseReturnValue:
    runtime = runtime_of(current_app)
    settings = settings_of(current_app)
    visitor = runtime.visitors.read(request)
    runtime.visitors.check_csrf(request, visitor)  # CSRFError: see form_expired
    if not runtime.signup_limit.hit(request.remote_addr or ""):
        message = "Too many signups from your network just now. Please wait a minute and try again."
        return _render_form_again({"form": message}, 429)
    state = runtime.state()
    context = _form_context(runtime)
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
    cards = _cards_as_shown(state, context.get("o"), visitor)
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
    if result.new_contact or session.get("contact") == result.contact_id:
        session["contact"] = result.contact_id
    else:
        # An address we already had: typing it proves nothing, so this browser gets neither
        # its personal link nor the right to enrol it as a recruiter.
        session.pop("contact", None)
    session["joined"] = list(checked.group_ids)
    response = redirect(url_for(".thanks"), 303)
    if visitor is not None:  # the next page view is a new visit
        runtime.visitors.write(response, visitor.with_visit(None, None))
    return response


@bp.get("/thanks")
def thanks() -> ResponseReturnValue:
    contact_id = session.get("contact")
    joined_ids = session.get("joined")
    if joined_ids is None:
        return redirect(url_for(".index"))
    db = get_session()
    joined = db.scalars(
        sa.select(Group.name).where(Group.id.in_(joined_ids)).order_by(Group.name)
    ).all()
    code = contact_id and db.scalar(
        sa.select(Recruiter.code).where(Recruiter.contact_id == contact_id, Recruiter.active)
    )
    link = signups.referral_link(settings_of(current_app).web.base_url, code) if code else None
    return render_template(
        "landing/thanks.html", joined=joined, referral_link=link, known=contact_id is not None
    )


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
    visitor = runtime_of(current_app).visitors.read(request)
    rows = visibility.explain(
        state.cards,
        visitor.id if visitor is not None else "example-visitor",
        floor=settings.landing.visibility_floor,
        sigma=settings.landing.visibility_noise_sigma,
    )
    return render_template(
        "landing/visibility.html",
        rows=rows,
        floor=settings.landing.visibility_floor,
        sigma=settings.landing.visibility_noise_sigma,
        is_own_order=visitor is not None,
    )


@bp.errorhandler(CSRFError)
def form_expired(_error: CSRFError) -> ResponseReturnValue:
    if request.endpoint == "landing.signup":
        message = "This form expired. Please check your details and submit again."
        return _render_form_again({"form": message}, 400)
    return render_template("landing/message.html", title="This form expired", status=400), 400


# --- helpers -----------------------------------------------------------------------------------


def _sticky_arm(
    snapshot: assignment.ExperimentSnapshot | None,
    runtime: landing_state.LandingRuntime,
    visitor: Visitor,
) -> tuple[assignment.ArmSnapshot | None, Visitor]:
    """The visitor's landing variant while it is servable, else a new draw (remembered)."""
    if snapshot is None:
        return None, visitor
    if visitor.experiment_id == snapshot.experiment_id:
        arm = snapshot.servable(visitor.variant_id)
        if arm is not None:
            return arm, visitor
    arm = runtime.chooser.choose(snapshot)
    if arm is None:
        return None, visitor
    chosen = Visitor(
        visitor.id, snapshot.experiment_id, arm.variant_id, visitor.visit_id, visitor.visit_key
    )
    return arm, chosen


def _record_visit(runtime: landing_state.LandingRuntime, visit: landing_visits.NewVisit) -> int:
    """Store the visit, committed; returns its id."""
    if runtime.visit_engine is not None:
        return landing_visits.record_visit_committed(
            runtime.visit_engine, visit, checkpoint_seconds=runtime.checkpoint_seconds
        )
    db = get_session()  # sessions bound to one connection (the tests' rolled-back transaction)
    visit_id = landing_visits.record_visit(db, visit)
    db.commit()
    return visit_id


# The page holds this visitor's CSRF token and variant: never a shared cache's copy.
_PAGE_HEADERS = (
    ("Cache-Control", "private, no-store"),
    ("Vary", "Cookie"),
    ("Content-Type", "text/html; charset=utf-8"),
)


def _page_response(
    runtime: landing_state.LandingRuntime,
    page: str | bytes,
    status: int,
    visitor: Visitor,
    known: Visitor | None,
) -> Response:
    """The page, remembering ``visitor`` in its cookie when it changed."""
    headers = list(_PAGE_HEADERS)
    if visitor != known:
        headers.append(runtime.visitors.cookie_header(visitor))
    return Response(page, status, headers)


def _attribution_key(source: attribution.Attribution) -> list[int | None]:
    return [source.source_group_id, source.recruiter_id, source.send_id, source.share_variant_id]


def _context_json(
    visit_id: int | None,
    variant_id: int | None,
    cards: list[visibility.GroupCard],
    state: LandingState,
) -> str:
    """The form's context ``{"v": visit id, "l": landing variant, "o": [slugs shown]}`` as
    compact JSON, exactly as :meth:`~variants.landing_visitor.FormContextSigner.dumps` encodes
    it: written out, because the generic encoder cost as much as signing it."""
    numbers = ["null" if n is None else str(n) for n in (visit_id, variant_id)]
    slugs = ",".join([state.slug_json[card.slug] for card in cards])
    return f'{{"v":{numbers[0]},"l":{numbers[1]},"o":[{slugs}]}}'


def _form_context(runtime: landing_state.LandingRuntime) -> dict[str, Any]:
    """The signed ``ctx`` field of the form, or an empty context if it is missing or forged."""
    try:
        value = runtime.form_signer.loads(request.form.get("ctx", ""))
    except BadData:
        return {}
    return value if isinstance(value, dict) else {}


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cards_as_shown(
    state: LandingState, order: object, visitor: Visitor | None
) -> list[visibility.GroupCard]:
    """The active groups in the order the visitor saw them (groups added since go last)."""
    if not isinstance(order, list):
        settings = settings_of(current_app)
        return visibility.order_for_visitor(
            state.cards,
            visitor.id if visitor is not None else "",
            floor=settings.landing.visibility_floor,
            sigma=settings.landing.visibility_noise_sigma,
        )
    rank = {slug: index for index, slug in enumerate(order)}
    return sorted(state.cards, key=lambda card: (rank.get(card.slug, len(rank)), card.slug))


def _render_form_again(errors: dict[str, str], status: int) -> ResponseReturnValue:
    """The landing page again with the visitor's entries kept and the messages by the fields
    (and a visitor cookie, so the next POST carries a valid token even if this one had none)."""
    runtime = runtime_of(current_app)
    state = runtime.state()
    known = runtime.visitors.read(request)
    visitor = known or new_visitor()
    context = _form_context(runtime)
    cards = _cards_as_shown(state, context.get("o"), visitor)
    arm = state.snapshot.arm(_int_or_none(context.get("l"))) if state.snapshot else None
    if not context:
        context = {"v": None, "l": None, "o": [card.slug for card in cards]}
    values = {
        "email": request.form.get("email", ""),
        "zip": request.form.get("zip", ""),
        "groups": set(request.form.getlist("groups")),
    }
    page = landing_render.render_page(
        arm,
        cards,
        runtime.form_signer.dumps(context),
        runtime.visitors.csrf_token(visitor),
        errors,
        values,
    )
    return _page_response(runtime, page, status, visitor, known)
