import json
import re

import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Flask
from flask.testing import FlaskClient

from engine import tokens
from engine.app import create_app
from engine.models import Contact, Decision, Mailing, Recruiter, Send, Signup, Visit
from engine.settings import Settings, SettingsError, load_settings
from tests.variants.landing_support import (
    NOW,
    add_experiment,
    add_groups,
    checkbox_order,
    form_fields,
    headline,
    sign_up,
)
from variants import landing, landing_visits
from variants.landing_state import LockedGenerator, runtime_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    runtime = runtime_of(app)
    fake = FakeClock()
    runtime.cache.clock = fake
    runtime.chooser = LockedGenerator(np.random.default_rng(2026))
    runtime.now = lambda: NOW
    return fake


def count(session: so.Session, model: type) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def test_default_page_without_a_landing_experiment(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert headline(response) == "Find the people already doing the work"
    assert '<label for="email">' in html and '<label for="zip">' in html
    assert "<main" in html and 'href="#main"' in html and "<script" not in html
    assert sorted(checkbox_order(html)) == sorted(
        ["swing-left", "indivisible", "sister-district", "flippable"]
    )
    assert "Phone banker" in html  # the roles overview
    assert form_fields(html)["csrf_token"]
    visit = session.scalars(sa.select(Visit)).one()
    assert visit.landing_variant_id is None


def test_each_new_visitor_is_a_trial_and_keeps_their_variant(
    app: Flask, session: so.Session, clock: FakeClock
) -> None:
    add_groups(session)
    experiment = add_experiment(session)
    seen = set()
    for _ in range(12):
        visitor = app.test_client()
        first = headline(visitor.get("/"))
        assert {headline(visitor.get("/")) for _ in range(5)} == {first}  # sticky
        seen.add(first)
    assert seen == {"Headline A", "Headline B"}  # Thompson sampling explores both
    session.expire_all()
    assert sum(v.trials for v in experiment.variants) == 12  # reloads are not new trials
    assert count(session, Visit) == 12


def test_a_visit_with_new_attribution_is_a_new_visit(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    client.get("/")
    client.get("/")
    client.get("/?g=indivisible")
    assert count(session, Visit) == 2


def test_promotion_moves_every_visitor_to_the_winner_after_the_refresh(
    session: so.Session, app: Flask, clock: FakeClock
) -> None:
    add_groups(session)
    experiment = add_experiment(session)
    visitors = [app.test_client() for _ in range(8)]
    assert {headline(v.get("/")) for v in visitors} == {"Headline A", "Headline B"}
    experiment.status = "promoted"
    session.add(
        Decision(
            experiment=experiment,
            variant_id=experiment.variants[1].id,
            kind="promote",
            reason="P(best) 0.97",
            created_at=NOW,
        )
    )
    session.flush()
    assert {headline(v.get("/")) for v in visitors} == {"Headline A", "Headline B"}  # cached
    clock.now += 5
    assert {headline(v.get("/")) for v in visitors} == {"Headline B"}


def test_choosing_a_variant_reads_the_posterior_once_per_refresh(
    session: so.Session, app: Flask, clock: FakeClock
) -> None:
    add_groups(session)
    add_experiment(session)
    runtime = runtime_of(app)
    for _ in range(10):
        app.test_client().get("/")
    assert runtime.cache.loads == 1
    clock.now += 5
    app.test_client().get("/")
    assert runtime.cache.loads == 2


def test_attribution_is_recorded_and_credited_on_signup(
    session: so.Session, client: FlaskClient, settings: Settings, clock: FakeClock
) -> None:
    groups = add_groups(session)
    experiment = add_experiment(session, arms=1)
    recruiter = Recruiter(
        contact=Contact(email="rita@example.org", zip_code="10001"), code="rita-code"
    )
    mailing = Mailing(key="m1", asm_group_id=1, scheduled_for=NOW)
    session.add_all([recruiter, mailing])
    session.flush()
    send = Send(mailing_id=mailing.id, recruiter_id=recruiter.id)
    session.add(send)
    session.flush()
    token = tokens.sign(settings.secret_key, tokens.SEND, send.id)
    response = sign_up(client, query=f"?g=flippable&r=rita-code&t={token}")
    assert response.status_code == 303 and response.headers["Location"].endswith("/thanks")
    visit = session.scalars(sa.select(Visit)).one()
    session.refresh(visit)
    assert visit.source_group_id == groups[3].id and visit.recruiter_id == recruiter.id
    assert visit.send_id == send.id and visit.contact_id is not None and visit.converted_at == NOW
    session.refresh(send)
    assert send.converted_at == NOW
    session.refresh(experiment.variants[0])
    assert (experiment.variants[0].trials, experiment.variants[0].successes) == (1, 1)


def test_forged_tokens_and_unknown_codes_are_never_credited(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    recruiter = Recruiter(
        contact=Contact(email="rita@example.org", zip_code="10001"), code="rita-code"
    )
    mailing = Mailing(key="m1", asm_group_id=1, scheduled_for=NOW)
    session.add_all([recruiter, mailing])
    session.flush()
    send = Send(mailing_id=mailing.id, recruiter_id=recruiter.id)
    session.add(send)
    session.flush()
    forged = tokens.sign("not-our-secret", tokens.SEND, send.id)
    response = sign_up(client, query=f"?g=nobody&r=guessed&t={forged}&s=garbage")
    assert response.status_code == 303
    visit = session.scalars(sa.select(Visit)).one()
    session.refresh(visit)
    assert (visit.source_group_id, visit.recruiter_id, visit.send_id, visit.share_variant_id) == (
        None,
        None,
        None,
        None,
    )
    session.refresh(send)
    assert send.converted_at is None


def test_signup_stores_the_order_the_boxes_were_shown_in(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    page = client.get("/").get_data(as_text=True)
    shown = checkbox_order(page)
    data = {
        **form_fields(page),
        "email": "ada@example.org",
        "zip": "10001-1234",
        "groups": [shown[2], shown[0]],
    }
    assert client.post("/signup", data=data).status_code == 303
    rows = session.scalars(sa.select(Signup)).all()
    assert {row.position for row in rows} == {0, 2}
    assert all(row.groups_order == shown for row in rows)
    assert session.scalars(sa.select(Contact.zip_code)).one() == "10001-1234"


def test_same_email_twice_merges_groups(session: so.Session, app: Flask, clock: FakeClock) -> None:
    add_groups(session)
    sign_up(app.test_client(), email="Ada@Example.org", groups=["indivisible"])
    response = sign_up(
        app.test_client(), email=" ada@example.org ", groups=["indivisible", "flippable"]
    )
    assert response.status_code == 303
    assert count(session, Contact) == 1 and count(session, Signup) == 2


def test_bad_zip_re_renders_the_form_with_the_message_and_the_values(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    response = sign_up(
        client, email="ada@example.org", zip_code="1234", groups=["flippable", "indivisible"]
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(r'<p class="error" id="zip-error">Enter a US ZIP code', html)
    assert 'aria-invalid="true"' in html
    assert 'value="ada@example.org"' in html and 'value="1234"' in html
    assert (
        len(
            re.findall(
                r'value="(flippable|indivisible)"\s+aria-describedby="[^"]+"\s+checked', html
            )
        )
        == 2
    )
    assert count(session, Contact) == 0


def test_missing_email_and_groups_are_named(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    html = sign_up(client, email=" ", groups=[]).get_data(as_text=True)
    assert (
        'id="email-error"' in html and 'id="groups-error"' in html and 'id="zip-error"' not in html
    )


def test_honeypot_stores_nothing(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    response = sign_up(client, website="http://spam.example")
    assert response.status_code == 400
    assert count(session, Contact) == 0 and count(session, Signup) == 0


def test_missing_csrf_token_is_a_clear_400(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    client.get("/")
    response = client.post(
        "/signup", data={"email": "ada@example.org", "zip": "10001", "groups": ["indivisible"]}
    )
    assert response.status_code == 400
    assert "This form expired" in response.get_data(as_text=True)
    assert count(session, Contact) == 0


def test_a_forged_form_context_still_signs_up_but_credits_nothing(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    experiment = add_experiment(session, arms=1)
    page = client.get("/").get_data(as_text=True)
    data = {
        **form_fields(page),
        "ctx": "eyJ2IjoxfQ.forged",
        "email": "a@example.org",
        "zip": "10001",
        "groups": ["indivisible"],
    }
    assert client.post("/signup", data=data).status_code == 303
    session.refresh(experiment.variants[0])
    assert experiment.variants[0].successes == 0 and count(session, Signup) == 1


def test_signup_rate_limit_per_ip_is_429_with_the_values_kept(
    settings: Settings, sessions: so.sessionmaker[so.Session], session: so.Session
) -> None:
    add_groups(session)
    session.commit()
    limited = create_app(
        {"TESTING": True},
        settings=settings.replace(web={"signup_rate_limit": "2 per minute"}),
        sessions=sessions,
    )
    client = limited.test_client()
    statuses = [sign_up(client, email=f"p{i}@example.org").status_code for i in range(3)]
    assert statuses == [303, 303, 429]
    html = sign_up(client, email="keep@example.org", zip_code="10002").get_data(as_text=True)
    assert "Too many signups" in html and 'value="keep@example.org"' in html
    assert count(session, Contact) == 2


@pytest.mark.parametrize("trusted_proxies", [0, 1])
def test_the_signup_limit_keys_on_the_forwarded_address_only_behind_a_trusted_proxy(
    settings: Settings,
    sessions: so.sessionmaker[so.Session],
    session: so.Session,
    trusted_proxies: int,
) -> None:
    add_groups(session)
    session.commit()
    web = {"signup_rate_limit": "1 per minute", "trusted_proxies": trusted_proxies}
    app = create_app({"TESTING": True}, settings=settings.replace(web=web), sessions=sessions)

    def sign_up_from(address: str, email: str) -> int:
        client = app.test_client()  # every request arrives from the proxy's own address
        client.environ_base["HTTP_X_FORWARDED_FOR"] = address
        return sign_up(client, email=email).status_code

    first = sign_up_from("203.0.113.7", "first@example.org")
    other_visitor = sign_up_from("198.51.100.9", "other@example.org")
    same_visitor = sign_up_from("203.0.113.7", "again@example.org")
    if trusted_proxies:  # two visitors behind one proxy: each has a limit of their own
        assert (first, other_visitor, same_visitor) == (303, 303, 429)
    else:  # served directly, a forged header must not buy a fresh limit
        assert (first, other_visitor, same_visitor) == (303, 429, 429)


def test_a_trusted_proxy_count_out_of_range_stops_start_up() -> None:
    with pytest.raises(SettingsError, match=r"trusted_proxies must be in \[0, 5\]"):
        load_settings(environ={"RESISTRY_WEB__TRUSTED_PROXIES": "-1"})


def test_confirmation_makes_the_contact_a_recruiter_with_a_personal_link(
    session: so.Session, client: FlaskClient, settings: Settings, clock: FakeClock
) -> None:
    add_groups(session)
    sign_up(client, groups=["indivisible", "flippable"])
    page = client.get("/thanks").get_data(as_text=True)
    assert "Indivisible" in page and "Flippable" in page and "Swing Left" not in page
    response = client.post("/recruit", data=form_fields(page))
    assert response.status_code == 303
    recruiter = session.scalars(sa.select(Recruiter)).one()
    link = f"{settings.web.base_url}/?r={recruiter.code}"
    assert link in client.get("/thanks").get_data(as_text=True)
    client.post("/recruit", data=form_fields(page))
    assert count(session, Recruiter) == 1


def test_typing_a_known_address_reveals_no_link_and_enrols_no_one(
    app: Flask, session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    sign_up(client, email="owner@example.org")
    client.post("/recruit", data=form_fields(client.get("/thanks").get_data(as_text=True)))
    code = session.scalars(sa.select(Recruiter.code)).one()
    sign_up(client, email="owner@example.org", groups=["flippable"])  # the owner again: kept
    assert code in client.get("/thanks").get_data(as_text=True)

    stranger = app.test_client()
    sign_up(stranger, email="owner@example.org", groups=["swing-left"])
    page = stranger.get("/thanks").get_data(as_text=True)
    assert "Swing Left" in page and "already signed up" in page
    assert code not in page and "/recruit" not in page
    sign_up(app.test_client(), email="bystander@example.org")
    impostor = app.test_client()
    sign_up(impostor, email="bystander@example.org")
    csrf = form_fields(impostor.get("/").get_data(as_text=True))["csrf_token"]
    assert impostor.post("/recruit", data={"csrf_token": csrf}).status_code == 400
    assert count(session, Recruiter) == 1


def test_recruit_without_signing_up_is_refused(client: FlaskClient, clock: FakeClock) -> None:
    page = client.get("/").get_data(as_text=True)
    response = client.post("/recruit", data={"csrf_token": form_fields(page)["csrf_token"]})
    assert response.status_code == 400
    assert client.get("/thanks").status_code == 302


def test_visibility_page_documents_the_formula(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    html = client.get("/about/visibility").get_data(as_text=True)
    assert "max(10, generated" in html and "SHA-256" in html and "Indivisible" in html


def test_the_stylesheet_is_served(client: FlaskClient) -> None:
    with client.get("/assets/site.css") as response:
        assert response.status_code == 200 and b"@media" in response.data


class RecordingCursor:
    """A DBAPI cursor that notes the first word of each statement it runs."""

    def __init__(self, cursor: object, statements: list[str]) -> None:
        self._cursor = cursor
        self._statements = statements

    def execute(self, statement: str, *args: object) -> object:
        self._statements.append(statement.split()[0].upper())
        self._cursor.execute(statement, *args)  # type: ignore[attr-defined]
        return self

    def __getattr__(self, name: str) -> object:
        return getattr(self._cursor, name)


def test_a_warm_landing_page_reads_nothing_from_the_database(
    session: so.Session, app: Flask, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_groups(session)
    add_experiment(session)
    app.test_client().get("/")  # fills the cache
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0].upper())

    # SQLAlchemy's statements through its events, the visit write's raw ones through its cursor.
    cursor_of = landing_visits.cursor_of
    monkeypatch.setattr(
        landing_visits, "cursor_of", lambda conn: RecordingCursor(cursor_of(conn), statements)
    )
    bind = session.get_bind()
    sa.event.listen(bind, "before_cursor_execute", record)
    try:
        for _ in range(5):
            assert app.test_client().get("/").status_code == 200
    finally:
        sa.event.remove(bind, "before_cursor_execute", record)
    assert "SELECT" not in statements
    # Per view: the visit, its report rollup (one upsert, an INSERT … ON CONFLICT), the trial.
    assert statements.count("INSERT") == 10 and statements.count("UPDATE") == 5


def test_a_paused_variant_moves_its_visitors_to_a_live_one(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    experiment = add_experiment(session)
    first = headline(client.get("/"))
    paused = next(v for v in experiment.variants if v.content["headline"] == first)
    paused.status = "paused"
    session.flush()
    clock.now += 5
    assert headline(client.get("/")) != first
    assert count(session, Visit) == 2  # a different variant: a new visit and a new trial


def test_a_running_experiment_without_live_variants_shows_the_default_page(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    experiment = add_experiment(session)
    for variant in experiment.variants:
        variant.status = "paused"
    session.flush()
    assert headline(client.get("/")) == "Find the people already doing the work"


def test_landing_html_is_sanitized_and_escaped(
    session: so.Session, client: FlaskClient, clock: FakeClock
) -> None:
    add_groups(session)
    experiment = add_experiment(session, arms=1)
    experiment.variants[0].content = {
        "headline": "<b>Bold</b> claims",
        "body": '<p>Fine</p><script>alert("x")</script><img src=x onerror="alert(1)">',
        "call_to_action": "Go",
    }
    session.flush()
    html = client.get("/").get_data(as_text=True)
    assert "&lt;b&gt;Bold&lt;/b&gt; claims" in html
    assert "<p>Fine</p>" in html and "<script" not in html and "onerror" not in html


def test_a_bad_signup_rate_limit_stops_start_up_with_the_key_named() -> None:
    with pytest.raises(SettingsError, match=r"web\.signup_rate_limit 'lots'"):
        load_settings(environ={"RESISTRY_WEB__SIGNUP_RATE_LIMIT": "lots"})


def test_the_fast_page_is_exactly_the_fully_rendered_page(
    session: so.Session, app: Flask, clock: FakeClock
) -> None:
    from markupsafe import Markup

    from variants import landing_render, visibility

    add_groups(session)
    add_experiment(session)
    with app.test_request_context("/"):
        state = runtime_of(app).state()
        cards = visibility.order_for_visitor(list(state.cards), "visitor", floor=10, sigma=0.35)
        for arm in (*state.snapshot.arms, None):
            fast = landing_render.fresh_page(state, arm, cards, "ctx-<&>", "tok<en>")
            again = landing_render.fresh_page(state, arm, cards, "ctx-<&>", "tok<en>")  # shell
            choices = Markup("").join(state.choice_html[card.slug] for card in cards)
            full = landing_render.render_page(
                arm, cards, "ctx-<&>", "tok<en>", choices_html=choices
            )
            assert fast == again == full.encode()  # the page as the response sends it
            assert 'value="ctx-&lt;&amp;&gt;"' in full and 'value="tok&lt;en&gt;"' in full


def test_each_visitor_keeps_their_own_order_of_the_groups(
    session: so.Session, app: Flask, clock: FakeClock
) -> None:
    add_groups(session)
    orders = set()
    for _ in range(10):
        visitor = app.test_client()
        first = checkbox_order(visitor.get("/").get_data(as_text=True))
        assert checkbox_order(visitor.get("/?g=flippable").get_data(as_text=True)) == first
        orders.add(tuple(first))
    assert len(orders) > 3


def test_flashed_messages_are_still_shown_on_the_landing_page(
    session: so.Session, app: Flask, clock: FakeClock
) -> None:
    add_groups(session)
    add_experiment(session)
    visitor = app.test_client()
    visitor.get("/")  # the fast page is ready
    with visitor.session_transaction() as flask_session:
        flask_session["_flashes"] = [("success", "Your groups were saved.")]
    assert "Your groups were saved." in visitor.get("/").get_data(as_text=True)
    assert "Your groups were saved." not in visitor.get("/").get_data(as_text=True)  # once


def test_the_form_context_is_the_json_the_signer_would_make(
    session: so.Session, app: Flask, clock: FakeClock
) -> None:
    add_groups(session, ["swing-left", "grüne-jugend", 'quote"slug'])
    with app.test_request_context("/"):
        state = runtime_of(app).state()
        cards = list(reversed(state.cards))
        for visit_id, variant_id in [(None, None), (12, None), (None, 3), (987654321, 7)]:
            context = {"v": visit_id, "l": variant_id, "o": [card.slug for card in cards]}
            expected = json.dumps(context, separators=(",", ":"))
            assert landing._context_json(visit_id, variant_id, cards, state) == expected


@pytest.mark.parametrize("value", ["", "abc-DEF_0.9=", "a<b>&'\"", "é", "tok en"])
def test_attribute_values_are_escaped_as_the_template_escapes_them(value: str) -> None:
    from markupsafe import escape

    from variants import landing_render

    assert landing_render._attribute_value(value) == str(escape(value)).encode()
