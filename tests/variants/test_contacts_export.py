import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from engine.models import Contact, Group, Signup, User
from tests.variants.staff_support import bearer, login, make_group, make_user
from variants import contacts_export, groups
from variants.contacts_export import CursorError, contacts_page, decode_cursor, encode_cursor

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_contact(
    session: so.Session, index: int, groups: list[Group], first_name: str = "Ana"
) -> Contact:
    contact = Contact(email=f"person{index}@example.org", zip_code="19104", first_name=first_name)
    session.add(contact)
    order = [g.slug for g in groups]
    for position, group in enumerate(groups):
        session.add(
            Signup(
                contact=contact,
                group_id=group.id,
                consent_text=f"Yes, {group.name} may email me.",
                groups_order=order,
                position=position,
                created_at=START + timedelta(minutes=index),
            )
        )
    session.flush()
    return contact


@pytest.fixture
def two_groups(session: so.Session) -> tuple[Group, Group]:
    a, b = make_group(session, "group-a", "Group A"), make_group(session, "group-b", "Group B")
    for index in range(5):
        add_contact(session, index, [a, b] if index % 2 else [a])
    add_contact(session, 99, [b])
    return a, b


def test_only_contacts_who_ticked_the_group(
    session: so.Session, two_groups: tuple[Group, Group]
) -> None:
    a, b = two_groups
    emails_a = [c.email for c in contacts_page(session, a).contacts]
    emails_b = [c.email for c in contacts_page(session, b).contacts]
    assert emails_a == [f"person{i}@example.org" for i in range(5)]
    assert emails_b == ["person1@example.org", "person3@example.org", "person99@example.org"]
    first_b = contacts_page(session, b).contacts[0]
    assert first_b.consent_text == "Yes, Group B may email me."
    assert first_b.signed_up_at == START + timedelta(minutes=1)
    assert (first_b.position, first_b.groups_shown) == (1, ["group-a", "group-b"])


def test_cursor_pages_and_resumes_later(
    session: so.Session, two_groups: tuple[Group, Group]
) -> None:
    a, _ = two_groups
    first = contacts_page(session, a, limit=2)
    assert len(first.contacts) == 2 and first.has_more
    second = contacts_page(session, a, first.next_cursor, limit=2)
    third = contacts_page(session, a, second.next_cursor, limit=2)
    assert not third.has_more
    seen = [c.email for page in (first, second, third) for c in page.contacts]
    assert seen == [f"person{i}@example.org" for i in range(5)]
    assert contacts_page(session, a, third.next_cursor).contacts == []  # nothing new yet
    add_contact(session, 7, [a])
    later = contacts_page(session, a, third.next_cursor)
    assert [c.email for c in later.contacts] == ["person7@example.org"]


@pytest.mark.parametrize("cursor", ["garbage!", "c2lnbnVwOng", "YWRtaW46MQ", "%%%", "=" * 3])
def test_bad_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(cursor)


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345


def test_limit_bounds(session: so.Session, two_groups: tuple[Group, Group]) -> None:
    with pytest.raises(ValueError, match="limit"):
        contacts_page(session, two_groups[0], limit=0)


def test_csv_has_consent_and_neutralises_formulas(session: so.Session) -> None:
    group = make_group(session, "group-c", "Group C")
    add_contact(session, 1, [group], first_name='=HYPERLINK("http://evil")')
    text = "".join(contacts_export.iter_contacts_csv(session, group))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(contacts_export.CSV_COLUMNS)
    assert rows[0]["email"] == "person1@example.org"
    assert rows[0]["first_name"].startswith("'=")
    assert rows[0]["consent_text"] == "Yes, Group C may email me."


def test_who_may_pull() -> None:
    a, b = Group(id=1, slug="a", name="A"), Group(id=2, slug="b", name="B")
    assert contacts_export.may_pull_contacts(User(role="admin"), b)
    assert contacts_export.may_pull_contacts(User(role="group_manager", group_id=1), a)
    assert not contacts_export.may_pull_contacts(User(role="group_manager", group_id=1), b)
    assert not contacts_export.may_pull_contacts(User(role="analyst"), a)


# --- over HTTP ---------------------------------------------------------------------------------


def test_a_partner_token_on_the_contacts_route_says_which_token_it_needs(
    client: FlaskClient, session: so.Session, two_groups: tuple[Group, Group]
) -> None:
    group_token = groups.issue_group_token(session, two_groups[0])
    session.commit()
    url = "/api/v1/groups/group-a/contacts"
    wrong_kind = client.get(url, headers=bearer(group_token))
    assert wrong_kind.status_code == 401
    assert "a group manager's, issued under Admin → Users" in wrong_kind.get_json()["message"]
    unknown = client.get(url, headers=bearer("not-a-token"))
    assert unknown.get_json()["message"].startswith("the bearer token is not valid")


def test_api_pull_with_cursor(
    client: FlaskClient, session: so.Session, two_groups: tuple[Group, Group]
) -> None:
    a, _ = two_groups
    _, token = make_user(session, "manager-a", "group_manager", a)
    session.commit()
    page = client.get("/api/v1/groups/group-a/contacts?limit=3", headers=bearer(token)).get_json()
    assert [c["email"] for c in page["contacts"]] == [f"person{i}@example.org" for i in range(3)]
    assert page["has_more"] is True
    rest = client.get(
        f"/api/v1/groups/group-a/contacts?since={page['next_cursor']}", headers=bearer(token)
    ).get_json()
    assert [c["email"] for c in rest["contacts"]] == ["person3@example.org", "person4@example.org"]
    assert rest["contacts"][0]["consent_text"] == "Yes, Group A may email me."
    assert rest["has_more"] is False
    denied = client.get("/api/v1/groups/group-b/contacts", headers=bearer(token))
    assert denied.status_code == 403
    assert "person99" not in denied.get_data(as_text=True)
    bad = client.get("/api/v1/groups/group-a/contacts?since=nonsense", headers=bearer(token))
    assert bad.status_code == 400 and bad.get_json()["error"] == "Bad Request"
    for limit in ("5000", "%C2%B2"):  # too many; a digit to str.isdigit that int() refuses
        bad_limit = client.get(
            f"/api/v1/groups/group-a/contacts?limit={limit}", headers=bearer(token)
        )
        assert bad_limit.status_code == 400 and "limit must be" in bad_limit.get_json()["message"]


def test_csv_download_for_own_group_only(
    client: FlaskClient, session: so.Session, two_groups
) -> None:  # type: ignore[no-untyped-def]
    a, _ = two_groups
    make_user(session, "manager-a", "group_manager", a)
    make_user(session, "analyst", "analyst")
    session.commit()
    login(client, "manager-a")
    response = client.get("/admin/groups/group-a/contacts.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_data(as_text=True).count("@example.org") == 5
    assert client.get("/admin/groups/group-b/contacts.csv").status_code == 403
    analyst = client.application.test_client()
    login(analyst, "analyst")
    assert analyst.get("/admin/groups/group-a/contacts.csv").status_code == 403
