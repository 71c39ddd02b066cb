import statistics

import pytest
import sqlalchemy.orm as so

from engine.models import Contact, Signup, Visit
from tests.variants.landing_support import NOW, add_groups
from variants import visibility
from variants.visibility import GroupCard


def card(slug: str, generated: int) -> GroupCard:
    return GroupCard(
        id=hash(slug) % 1000,
        slug=slug,
        name=slug,
        description="",
        roles=(),
        website="",
        logo_url="",
        policy_areas=(),
        generated=generated,
    )


def test_without_noise_groups_rank_by_contacts_generated_above_the_floor() -> None:
    cards = [card("a-small", 3), card("b-big", 50), card("c-new", 0), card("d-mid", 20)]
    order = visibility.order_for_visitor(cards, "visitor-1", floor=10, sigma=0.0)
    # Below the floor everyone counts as 10: the small and the new group tie, by slug.
    assert [c.slug for c in order] == ["b-big", "d-mid", "a-small", "c-new"]


def test_order_is_reproducible_per_visitor_and_differs_between_visitors() -> None:
    cards = [card(f"group-{i}", 10) for i in range(6)]
    first = visibility.order_for_visitor(cards, "visitor-1", floor=10, sigma=0.35)
    again = visibility.order_for_visitor(list(reversed(cards)), "visitor-1", floor=10, sigma=0.35)
    assert first == again
    orders = {
        tuple(c.slug for c in visibility.order_for_visitor(cards, f"v{n}", floor=10, sigma=0.35))
        for n in range(50)
    }
    assert len(orders) > 30  # equal groups: the noise spreads the places around


def test_the_order_is_the_documented_formula_for_every_visitor() -> None:
    cards = [card(slug, n) for slug, n in [("a", 0), ("b", 12), ("c", 30), ("d", 9), ("e", 60)]]
    for n in range(500):
        visitor = f"visitor-{n}"
        by_formula = sorted(
            cards,
            key=lambda c: (
                -visibility.score(
                    c.generated, visibility.noise(visitor, c.slug), floor=10, sigma=0.35
                ),
                c.slug,
            ),
        )
        assert visibility.order_for_visitor(cards, visitor, floor=10, sigma=0.35) == by_formula


def test_noise_is_standard_normal_and_auditable() -> None:
    draws = [visibility.noise(f"visitor-{n}", "indivisible") for n in range(20000)]
    assert statistics.fmean(draws) == pytest.approx(0.0, abs=0.03)
    assert statistics.pstdev(draws) == pytest.approx(1.0, abs=0.03)
    # The documented formula, recomputed by hand for one visitor.
    import hashlib
    from statistics import NormalDist

    digest = hashlib.sha256(b"visitor-7:indivisible").digest()
    u = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
    assert visibility.noise("visitor-7", "indivisible") == NormalDist().inv_cdf(u)


def test_small_groups_are_still_seen_first_at_the_expected_rate() -> None:
    # P(new group first) = Φ(log(10/15) / (σ√2)) ≈ 0.21 with floor 10, σ = 0.35.
    cards = [card("new", 0), card("bigger", 15)]
    firsts = sum(
        visibility.order_for_visitor(cards, f"visitor-{n}", floor=10, sigma=0.35)[0].slug == "new"
        for n in range(4000)
    )
    assert 0.17 < firsts / 4000 < 0.25


def test_adding_a_group_keeps_the_relative_order_of_the_others() -> None:
    cards = [card(f"group-{i}", 5 * i) for i in range(5)]
    before = [c.slug for c in visibility.order_for_visitor(cards, "v", floor=10, sigma=0.35)]
    after = visibility.order_for_visitor([*cards, card("late", 12)], "v", floor=10, sigma=0.35)
    assert [c.slug for c in after if c.slug != "late"] == before


def test_explain_shows_the_terms_of_the_formula() -> None:
    cards = [card("a", 3), card("b", 40)]
    rows = visibility.explain(cards, "v", floor=10, sigma=0.35)
    for row in rows:
        assert row["base"] == max(10, row["generated"])
        assert row["score"] == pytest.approx(
            visibility.score(row["generated"], row["noise"], floor=10, sigma=0.35)
        )
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)


def test_generated_counts_distinct_contacts_who_signed_up_from_a_group_visit(
    session: so.Session,
) -> None:
    sender, other, _idle = add_groups(session, ["sender", "other", "idle"])
    ada = Contact(email="ada@example.org", zip_code="10001")
    bob = Contact(email="bob@example.org", zip_code="10001")
    session.add_all([ada, bob])
    session.flush()
    visits = [
        Visit(visitor_id="1", source_group_id=sender.id, contact_id=ada.id, converted_at=NOW),
        Visit(visitor_id="2", source_group_id=sender.id, contact_id=ada.id, converted_at=NOW),
        Visit(visitor_id="3", source_group_id=sender.id, contact_id=bob.id, converted_at=NOW),
        Visit(visitor_id="4", source_group_id=sender.id),  # no signup
        Visit(visitor_id="5", source_group_id=None, contact_id=bob.id, converted_at=NOW),
    ]
    session.add_all(visits)
    session.flush()
    for visit, group in zip(visits, [other, sender, other, None, sender], strict=True):
        if group is not None:
            session.add(
                Signup(
                    contact_id=visit.contact_id,
                    group_id=group.id,
                    visit_id=visit.id,
                    consent_text="yes",
                    created_at=NOW,
                )
            )
    session.flush()
    assert visibility.generated_contacts(session) == {sender.id: 2}
    cards = {c.slug: c.generated for c in visibility.load_group_cards(session)}
    assert cards == {"idle": 0, "other": 0, "sender": 2}
