import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from webhooks import wire
from webhooks.parse import (
    BodyError,
    ParsedEvent,
    Rejected,
    parse_body,
    parse_elements,
    parse_event,
)

SECONDS = 1_795_000_000
MOMENT = datetime.fromtimestamp(SECONDS, UTC)


def parsed(element: object) -> ParsedEvent:
    result = parse_event(element)
    assert isinstance(result, ParsedEvent), result
    return result


def rejected(element: object) -> str:
    result = parse_event(element)
    assert isinstance(result, Rejected), result
    return result.reason


def base(kind: str, **fields: object) -> dict[str, object]:
    return {"event": kind, "email": "Ada@Example.org ", "timestamp": SECONDS, **fields}


@pytest.mark.parametrize(
    ("element", "label"),
    [
        (base("processed"), None),
        (base("deferred", attempt="2", response="try later"), None),
        (base("delivered", response="250 OK"), None),
        (base("bounce", type="bounce", reason="550 no such user"), "bounce"),
        (base("bounce", type="blocked", reason="spam block"), "blocked"),
        (base("bounce"), "bounce"),
        (base("dropped", reason="Bounced Address"), None),
        (base("open", sg_machine_open=False, useragent="Mozilla"), "human"),
        (base("open", sg_machine_open=True), "machine"),
        (base("click", url="https://example.org/a", url_offset={"index": 0}), "human"),
        (base("spamreport"), None),
        (base("unsubscribe"), None),
        (base("group_unsubscribe", asm_group_id=101), None),
        (base("group_resubscribe", asm_group_id=101), None),
    ],
)
def test_every_event_type(element: dict, label: str | None) -> None:
    event = parsed(element)
    assert event.event_type == element["event"]
    assert event.label == label
    assert event.email == "ada@example.org"
    assert event.occurred_at == MOMENT
    assert json.loads(event.payload_json) == element


def test_account_status_change_needs_no_email() -> None:
    event = parsed(
        {"event": "account_status_change", "timestamp": SECONDS, "type": "compliance_suspend"}
    )
    assert event.email is None
    assert event.status_type == "compliance_suspend"


def test_unknown_types_and_fields_are_kept() -> None:
    element = {"event": "future_thing", "novel": {"nested": [1, 2]}, "timestamp": SECONDS}
    event = parsed(element)
    assert event.event_type == "future_thing"
    assert json.loads(event.payload_json) == element
    assert parsed({"event": "future_without_time"}).occurred_at is None


@pytest.mark.parametrize("category", ["recruiter", ["recruiter", "weekly"], []])
def test_category_string_or_list(category: object) -> None:
    assert json.loads(parsed(base("open", category=category)).payload_json)["category"] == category


@pytest.mark.parametrize(
    "value",
    [SECONDS, SECONDS * 1000, str(SECONDS), f" {SECONDS * 1000} ", float(SECONDS), f"{SECONDS}.0"],
)
def test_timestamps_in_seconds_milliseconds_or_strings(value: object) -> None:
    assert parsed(base("delivered", timestamp=value)).occurred_at == MOMENT


def test_millisecond_precision_is_kept() -> None:
    event = parsed(base("delivered", timestamp=SECONDS * 1000 + 250))
    assert event.occurred_at == MOMENT.replace(microsecond=250_000)


_BAD_ELEMENTS = [
    ({"email": "a@example.org", "timestamp": SECONDS}, "missing or empty 'event'"),
    (base(""), "missing or empty 'event'"),
    (base(["open"]), "missing or empty 'event'"),
    (base("x" * 41), "longer than 40"),
    ({"event": "open", "email": "a@example.org"}, "missing 'timestamp'"),
    (base("open", timestamp="yesterday"), "is not a number"),
    (base("open", timestamp=True), "must be a number"),
    (base("open", timestamp=None), "missing 'timestamp'"),
    (base("open", timestamp=-5), "out of range"),
    (base("open", timestamp=10**16), "out of range"),
    (base("open", timestamp="nan"), "must be a number"),
    ({"event": "open", "timestamp": SECONDS}, "'email'"),
    (base("open", email=42), "'email'"),
    (base("open", email="x" * 400), "'email'"),
    (base("bounce", email="İ" * 300 + "@example.org"), "'email'"),  # 612 characters lower-cased
    (base("open", timestamp=10**400), "out of range"),
    (base("open", sg_event_id=12345), "'sg_event_id'"),
    (base("open", sg_event_id="x" * 101), "'sg_event_id'"),
    (base("open", sg_message_id=["a"]), "'sg_message_id'"),
    (base("open", sg_message_id="m" * 201), "'sg_message_id'"),
    (base("group_unsubscribe"), "asm_group_id"),
    (base("group_unsubscribe", asm_group_id="abc"), "asm_group_id"),
    (base("open", note="a\x00b"), "NUL"),
    (base("open", note="\ud800"), "surrogate"),
]


@pytest.mark.parametrize(("element", "reason"), _BAD_ELEMENTS)
def test_bad_elements_are_rejected_with_a_reason(element: dict, reason: str) -> None:
    assert reason in rejected(element)


@pytest.mark.parametrize("element", [[1, 2], "open", 42, None, True])
def test_non_objects_are_rejected(element: object) -> None:
    assert "not an object" in rejected(element)


def test_rejected_raw_is_storable_ascii_json() -> None:
    result = parse_event(base("open", note="\x00\ud800é"))
    assert isinstance(result, Rejected)
    assert result.raw.isascii()
    assert json.loads(result.raw)["note"] == "\x00\ud800é"


def test_fallback_key_is_a_stable_hash_of_the_event() -> None:
    first = parsed(base("open"))
    again = parsed(dict(reversed(list(base("open").items()))))
    other = parsed(base("open", timestamp=SECONDS + 1))
    assert first.key.startswith("sha256:")
    assert first.key == again.key != other.key
    assert parsed(base("open", sg_event_id="abc")).key == "abc"


def test_custom_args_and_message_prefix() -> None:
    event = parsed(base("open", send_id="12", mailing_id="3", sg_message_id="XMSG.filter0001.16-0"))
    assert (event.send_id_arg, event.mailing_id_arg, event.message_prefix) == (12, 3, "XMSG")
    odd = parsed(base("open", send_id="12abc", mailing_id="-1", sg_message_id=".x"))
    assert (odd.send_id_arg, odd.mailing_id_arg, odd.message_prefix) == (None, None, None)


def test_unicode_raw_and_escaped_parse_to_the_same_text() -> None:
    element = base("click", url="https://example.org/ünï?q=😀", subject_variant="Ünïcödé ✊🏽")
    raw = parse_body(wire.build_body([element]))
    escaped = parse_body(wire.build_body([element], ascii_only=True))
    assert raw == escaped == [element]
    assert json.loads(parsed(raw[0]).payload_json) == element


def test_lone_surrogate_escape_does_not_reject_the_body() -> None:
    elements = parse_body(b'[{"event":"open","note":"\\ud800"},{"event":"open"}]\r\n')
    assert len(elements) == 2
    assert "surrogate" in rejected(elements[0])


def test_huge_integers_are_kept_exactly() -> None:
    elements = parse_body(b'[{"event":"x","n":123456789012345678901234567890}]')
    assert elements[0]["n"] == 123456789012345678901234567890
    assert "123456789012345678901234567890" in parsed(elements[0]).payload_json


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"  \r\n", "empty"),
        (b"not json", "not valid JSON"),
        (b'[{"event":"open"},\r\n{"event":', "not valid JSON"),
        (b'{"event":"open"}', "JSON dict"),
        (b"null", "JSON NoneType"),
        (b"42", "JSON int"),
        (b'"[]"', "JSON str"),
        (b'[{"event":"op\xffen"}]', "not valid UTF-8"),
        (b"[NaN]", "not valid JSON"),
        (b"\xef\xbb\xbf[]", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "JSON"),
        (b'[{"event":"x","n":' + b"[" * 5000 + b"]" * 5000 + b"}]", "nested too deeply"),
    ],
)
@pytest.mark.parametrize("parse", [parse_body, parse_elements])
def test_bodies_that_are_not_json_arrays(body: bytes, message: str, parse: Any) -> None:
    with pytest.raises(BodyError, match=message):
        parse(body)


def test_empty_array_is_fine() -> None:
    assert parse_body(b"[]\r\n") == []


# Every element the tests above judge, as SendGrid would post it: the fast path (msgspec, raw
# payload) must decide exactly as the general path (a dict per element) does.
_ELEMENTS = [
    base("processed"),
    base("bounce", type="blocked", reason="spam block"),
    base("open", sg_machine_open=True, category=["a", "b"]),
    base("click", url="https://example.org/ünï?q=😀", url_offset={"index": 0}),
    base("click", url={"not": "a string"}),
    base("group_unsubscribe", asm_group_id=101),
    base("group_resubscribe", asm_group_id="102"),
    base("open", send_id="12", mailing_id="3", sg_message_id="XMSG.filter0001.16-0"),
    base("open", send_id=12, mailing_id=True, sg_event_id="evt-1"),
    base("delivered", timestamp=f" {SECONDS * 1000} "),
    base("delivered", timestamp=float(SECONDS) + 0.5),
    base("delivered", n=123456789012345678901234567890),
    {"event": "account_status_change", "timestamp": SECONDS, "type": "compliance_suspend"},
    {"event": "future_thing", "novel": {"nested": [1, 2]}},
    # (a lone surrogate cannot be posted as UTF-8: see the refused bodies below)
    *(element for element, reason in _BAD_ELEMENTS if reason != "surrogate"),
    [1, 2],
    "open",
    None,
]


def _same_decision(fast: ParsedEvent | Rejected, general: ParsedEvent | Rejected) -> None:
    assert type(fast) is type(general)
    if isinstance(general, Rejected):
        assert isinstance(fast, Rejected)
        assert fast.reason == general.reason
        assert json.loads(fast.raw) == json.loads(general.raw)  # keys sorted as posted
        return
    assert isinstance(fast, ParsedEvent)
    assert json.loads(fast.payload_json) == json.loads(general.payload_json)
    for name in ParsedEvent.__slots__:
        if name != "payload_json":
            assert getattr(fast, name) == getattr(general, name), name


@pytest.mark.parametrize("ascii_only", [False, True])
def test_fast_path_decides_as_the_general_path(ascii_only: bool) -> None:
    body = wire.build_body(_ELEMENTS, ascii_only=ascii_only)
    results = parse_elements(body)
    assert len(results) == len(_ELEMENTS)
    for element, result in zip(_ELEMENTS, results, strict=True):
        _same_decision(result, parse_event(element))


def test_fast_path_stores_each_element_as_sent() -> None:
    elements = [base("open", note="é ✊🏽"), base("delivered", response="250 OK")]
    body = wire.build_body(elements)
    texts = body.decode()[1:-3].split(",\r\n")
    assert [e.payload_json for e in parse_elements(body)] == texts  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [
        b'[{"event":"open","note":"\\ud800"},{"event":"open"}]\r\n',  # msgspec refuses these
        b'[{"event":"open","email":"a@example.org","timestamp":1795000000,"x":"\xff"}]',
    ],
)
def test_bodies_the_fast_path_refuses_go_the_general_way(body: bytes) -> None:
    try:
        expected: list[object] = [parse_event(e) for e in parse_body(body)]
    except BodyError as exc:
        with pytest.raises(BodyError, match=re.escape(str(exc))):
            parse_elements(body)
        return
    assert parse_elements(body) == expected
