import threading

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine import tokens
from engine.models import Contact, Mailing, Recruiter, Send, Signup, Visit
from tests.variants.landing_support import NOW, add_experiment, add_groups
from variants import attribution, signup
from variants.signup import SignupInvalid, SignupRequest

CONSENT = "Yes, {group} may email me."


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  Ada.Lovelace@Example.ORG ", "ada.lovelace@example.org"),
        ("x@sub.example.org", "x@sub.example.org"),
    ],
)
def test_email_is_trimmed_checked_and_lower_cased(raw: str, normalized: str) -> None:
    assert signup.normalize_email(raw) == normalized


@pytest.mark.parametrize(
    "raw", ["", "   ", "ada", "ada@", "@example.org", "a b@example.org", "ada@localhost"]
)
def test_bad_email_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        signup.normalize_email(raw)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("10001", "10001"), (" 10001-1234 ", "10001-1234"), ("100011234", "10001-1234")],
)
def test_zip_and_zip_plus_four_are_accepted(raw: str, normalized: str) -> None:
    assert signup.normalize_zip(raw) == normalized


@pytest.mark.parametrize(
    "raw",
    [
        *["", "1000", "100011", "1000a", "10001-12", "10001--1234", "SW1A 1AA"],
        "\uff11\uff10\uff10\uff10\uff11",  # full-width digits
        "\u0661\u0660\u0660\u0660\u0661",  # Arabic-Indic digits
        "10001-\u0661\u0662\u0663\u0664",
    ],
)
def test_bad_zip_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="US ZIP"):
        signup.normalize_zip(raw)


def test_validation_names_every_bad_field() -> None:
    with pytest.raises(SignupInvalid) as caught:
        signup.validate_signup("nope", "123", [], {"a": 1})
    assert set(caught.value.errors) == {"email", "zip", "groups"}
    with pytest.raises(SignupInvalid) as caught:
        signup.validate_signup("a@example.org", "10001", ["gone"], {"a": 1})
    assert set(caught.value.errors) == {"groups"}
    checked = signup.validate_signup("A@Example.org", "10001", ["b", "a", "b"], {"a": 1, "b": 2})
    assert checked == SignupRequest("a@example.org", "10001", (2, 1))


def record(session: so.Session, groups, email="ada@example.org", zip_code="10001", visit_id=None):  # type: ignore[no-untyped-def]
    order = [g.slug for g in groups]
    return signup.record_signup(
        session,
        SignupRequest(
            signup.normalize_email(email),
            signup.normalize_zip(zip_code),
            tuple(g.id for g in groups),
        ),
        group_names={g.id: g.name for g in groups},
        group_slugs={g.id: g.slug for g in groups},
        groups_order=list(reversed(order)),
        consent_template=CONSENT,
        visit_id=visit_id,
        now=NOW,
    )


def test_signup_stores_consent_time_and_the_order_shown(session: so.Session) -> None:
    groups = add_groups(session, ["alpha", "beta", "gamma"])
    result = record(session, groups[:2])
    assert result.new_contact and result.added_group_ids == (groups[0].id, groups[1].id)
    rows = session.scalars(sa.select(Signup).order_by(Signup.group_id)).all()
    assert [row.consent_text for row in rows] == [
        "Yes, Alpha may email me.",
        "Yes, Beta may email me.",
    ]
    assert [row.groups_order for row in rows] == [["beta", "alpha"]] * 2
    assert [row.position for row in rows] == [1, 0]
    assert all(row.created_at == NOW for row in rows)


def test_same_email_merges_new_groups_into_one_contact(session: so.Session) -> None:
    alpha, beta, gamma = add_groups(session, ["alpha", "beta", "gamma"])
    first = record(session, [alpha, beta])
    second = record(session, [beta, gamma], email="  ADA@example.ORG", zip_code="94110")
    assert second.contact_id == first.contact_id and not second.new_contact
    assert second.added_group_ids == (gamma.id,) and second.existing_group_ids == (beta.id,)
    contacts = session.scalars(sa.select(Contact)).all()
    assert len(contacts) == 1
    assert contacts[0].zip_code == "10001"  # an unauthenticated form does not overwrite data
    assert session.scalar(sa.select(sa.func.count()).select_from(Signup)) == 3


def visit(session: so.Session, **fields: object) -> Visit:
    row = Visit(visitor_id="v", created_at=NOW, **fields)
    session.add(row)
    session.flush()
    return row


def test_conversion_credits_the_landing_variant_once_per_visit(session: so.Session) -> None:
    groups = add_groups(session, ["alpha", "beta"])
    experiment = add_experiment(session)
    variant = experiment.variants[0]
    row = visit(session, landing_variant_id=variant.id)
    assert record(session, groups[:1], visit_id=row.id).converted_visit
    assert not record(session, groups[1:], visit_id=row.id).converted_visit  # same visit
    session.expire_all()
    assert variant.successes == 1
    assert row.contact_id is not None and row.converted_at == NOW


def test_resubmitting_known_groups_is_not_a_conversion(session: so.Session) -> None:
    groups = add_groups(session, ["alpha"])
    experiment = add_experiment(session)
    record(session, groups)
    row = visit(session, landing_variant_id=experiment.variants[0].id)
    assert not record(session, groups, visit_id=row.id).converted_visit
    session.expire_all()
    assert experiment.variants[0].successes == 0 and row.converted_at is None


def make_recruiter_with_send(session: so.Session) -> tuple[Recruiter, Send, object]:
    share = add_experiment(session, key="share", kind="share")
    body = add_experiment(session, key="body", kind="body")
    recruiter = Recruiter(contact=Contact(email="rita@example.org", zip_code="10001"), code="rita")
    mailing = Mailing(key="m1", asm_group_id=1, scheduled_for=NOW)
    session.add_all([recruiter, mailing])
    session.flush()
    send = Send(
        mailing_id=mailing.id,
        recruiter_id=recruiter.id,
        body_variant_id=body.variants[0].id,
        share_variant_id=share.variants[0].id,
    )
    session.add(send)
    session.flush()
    return recruiter, send, share


def test_conversion_credits_the_send_and_the_share_text_of_a_friend(session: so.Session) -> None:
    groups = add_groups(session, ["alpha"])
    recruiter, send, share = make_recruiter_with_send(session)
    row = visit(
        session, send_id=send.id, recruiter_id=recruiter.id, share_variant_id=share.variants[1].id
    )
    assert record(session, groups, visit_id=row.id).converted_visit
    session.expire_all()
    assert send.converted_at == NOW
    # The send's own share variant (a) via the send; the variant the link named (b) directly.
    assert [v.successes for v in share.variants] == [1, 1]


def test_a_recruiter_signing_up_through_their_own_link_is_not_a_friend(session: so.Session) -> None:
    groups = add_groups(session, ["alpha"])
    recruiter, _send, share = make_recruiter_with_send(session)
    row = visit(session, recruiter_id=recruiter.id, share_variant_id=share.variants[1].id)
    record(session, groups, email="rita@example.org", visit_id=row.id)
    session.expire_all()
    assert [v.successes for v in share.variants] == [0, 0]


def test_attribution_drops_forged_and_unknown_sources(session: so.Session) -> None:
    (group,) = add_groups(session, ["alpha"])
    recruiter, send, share = make_recruiter_with_send(session)
    good = {
        "g": "alpha",
        "r": "rita",
        "t": tokens.sign("secret", tokens.SEND, send.id),
        "s": tokens.sign("secret", tokens.SHARE, share.variants[0].id),
    }

    def resolve(params: dict[str, str]) -> attribution.Attribution:
        return attribution.resolve_attribution(
            session,
            params,
            secret_key="secret",
            send_token_max_age_seconds=86400,
            group_ids_by_slug={"alpha": group.id},
        )

    assert resolve(good) == attribution.Attribution(
        group.id, recruiter.id, send.id, share.variants[0].id
    )
    forged = {
        "g": "nobody",
        "r": "guess",
        "t": tokens.sign("other-secret", tokens.SEND, send.id),
        "s": tokens.sign("secret", tokens.SEND, share.variants[0].id),  # wrong purpose
    }
    assert resolve(forged).is_empty
    assert resolve({"t": good["t"][:-2] + "xx", "s": good["s"]}).is_empty  # s needs a recruiter
    assert resolve({"t": tokens.sign("secret", tokens.SEND, 999999)}).is_empty  # no such send
    assert resolve({"r": "x" * 5000, "g": ""}).is_empty


def test_recruiter_code_is_random_and_stable(session: so.Session) -> None:
    groups = add_groups(session, ["alpha"])
    ada = record(session, groups).contact_id
    bob = record(session, groups, email="bob@example.org").contact_id
    first = signup.make_recruiter(session, ada, NOW)
    assert signup.make_recruiter(session, ada, NOW).code == first.code
    assert signup.make_recruiter(session, bob, NOW).code != first.code
    assert len(first.code) >= 11 and first.active
    assert (
        signup.referral_link("https://x.example/", first.code)
        == f"https://x.example/?r={first.code}"
    )
    with pytest.raises(LookupError):
        signup.make_recruiter(session, 10**9, NOW)


def test_simultaneous_signups_of_one_address_make_one_contact(
    committed_sessions: so.sessionmaker[so.Session],
) -> None:
    with committed_sessions.begin() as session:
        groups = add_groups(session, ["alpha", "beta"])
        ids = [(g.id, g.slug, g.name) for g in groups]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def submit(group: tuple[int, str, str]) -> None:
        try:
            with committed_sessions.begin() as session:
                barrier.wait(timeout=10)
                signup.record_signup(
                    session,
                    SignupRequest("same@example.org", "10001", (group[0],)),
                    group_names={group[0]: group[2]},
                    group_slugs={group[0]: group[1]},
                    groups_order=[group[1]],
                    consent_template=CONSENT,
                    visit_id=None,
                    now=NOW,
                )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(group,)) for group in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with committed_sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Contact)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(Signup)) == 2
