"""Turn a webhook body into events: the body must be a JSON array; each element stands alone.

A body that is not a JSON array is refused whole (:class:`BodyError`, a 400). Inside a valid array
each element is validated on its own: a usable one becomes a :class:`ParsedEvent`, anything else a
:class:`Rejected` with the reason, kept in quarantine so nothing is silently dropped.

:func:`parse_elements` is the hot path: msgspec reads, in C, only the fields ingestion uses and
each element's raw text (stored as the payload, exactly as SendGrid sent it), instead of building
a dict per element and serializing it again. Anything it does not take as is (a body msgspec
refuses, text that is not UTF-8, an element the rules reject) goes through the general path,
:func:`parse_body` and :func:`parse_event`, which decides; both apply one set of rules
(:func:`_parse_fields`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from engine.models.events import event_digest

# Maps every digit to "0" and everything else to " ", so a run of digits is a run of zeros.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))

# Event types SendGrid documents; others are stored and otherwise ignored.
DELIVERY_TYPES = frozenset({"processed", "deferred", "delivered", "bounce", "dropped"})
ENGAGEMENT_TYPES = frozenset(
    {"open", "click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe"}
)
EMAIL_TYPES = DELIVERY_TYPES | ENGAGEMENT_TYPES
KNOWN_TYPES = EMAIL_TYPES | {"account_status_change"}

# Column sizes (see engine.models.events) and SendGrid's documented limits.
MAX_EVENT_ID = 100
MAX_EVENT_TYPE = 40
MAX_MESSAGE_ID = 200
MAX_EMAIL = 320
MAX_DATABASE_ID = 2**31 - 1
# Timestamps from 1e11 on are milliseconds (1e11 seconds is the year 5138).
MILLISECONDS_FROM = 100_000_000_000
LATEST_SECONDS = 4_102_444_800  # 2100-01-01: later instants are garbage, not events


class BodyError(ValueError):
    """The body is not a JSON array; the message says what is wrong with it."""


@dataclass(slots=True)
class ParsedEvent:
    """A usable event and what ingestion needs from it; ``payload_json`` is stored as is."""

    key: str
    digest: bytes  # the stored unique key (time, then key), see engine.models.events
    event_type: str
    occurred_at: datetime | None
    email: str | None  # normalized: trimmed, lower-cased
    sg_message_id: str | None
    message_prefix: str | None  # the X-Message-Id of the send request
    send_id_arg: int | None  # our custom arg, not yet trusted
    mailing_id_arg: int | None
    label: str | None
    asm_group_id: int | None
    status_type: str | None  # account_status_change: what happened to the account
    url: str | None  # clicks: the link
    payload_json: str
    send_id: int | None = None  # set by attribution
    occurred_native: Any = None  # occurred_at in the driver's form (webhooks.native)
    event_id: int | None = None  # the stored row's id, set when this request inserted it
    outcome_column: str | None = None  # the Send column it may set (webhooks.apply)
    suppression: Any = None  # the SuppressionChange it makes if new (webhooks.ingest)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An element that cannot be used, with the reason and the element as JSON text."""

    reason: str
    raw: str


def parse_body(body: bytes) -> list[Any]:
    """The elements of a body that is a JSON array. Raises :class:`BodyError` otherwise."""
    if not body.strip():
        raise BodyError("the body is empty; expected a JSON array of events")
    try:
        elements = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses lone surrogate escapes and rounds huge integers; the standard library
        # takes both, so valid JSON is never refused (such elements are judged one by one).
        elements = _parse_strictly(body)
    else:
        if _may_hold_huge_integers(body):
            elements = _parse_strictly(body)
    if not isinstance(elements, list):
        raise BodyError(f"the body is a JSON {type(elements).__name__}; expected an array")
    return elements


def _parse_strictly(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise BodyError(f"the body is not valid JSON: {detail}") from None


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _may_hold_huge_integers(body: bytes) -> bool:
    # orjson keeps integers up to 64 bits exactly; 20 digits in a row may be more than that.
    # (bytes.translate and a substring search are ~15x faster than a regex over 768 KB.)
    return b"0" * 20 in body.translate(_DIGITS_AS_ZEROS)


def parse_event(element: Any) -> ParsedEvent | Rejected:
    """Validate one element; return the event or the reason it cannot be used."""
    if not isinstance(element, dict):
        return Rejected(f"element is a JSON {type(element).__name__}, not an object", _raw(element))
    try:
        return _parse_object(element)
    except _Invalid as exc:
        return Rejected(str(exc), _raw(element))


class _Invalid(ValueError):
    pass


class _Fields(msgspec.Struct):
    """The fields of an event that ingestion reads, as any JSON value (the rules below judge
    them); absent is ``None``, as JSON null is. Every other field stays in the payload only."""

    event: Any = None
    timestamp: Any = None
    email: Any = None
    sg_event_id: Any = None
    sg_message_id: Any = None
    send_id: Any = None  # our custom args
    mailing_id: Any = None
    sg_machine_open: Any = None
    url: Any = None
    type: Any = None
    asm_group_id: Any = None


_RAW_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
_FIELDS_OF_ELEMENTS = msgspec.json.Decoder(list[_Fields])
_FIELDS_OF_ONE = msgspec.json.Decoder(_Fields)


class _General(Exception):
    """The body needs the general path (:func:`parse_body`), which decides what it is."""


def parse_elements(body: bytes) -> list[ParsedEvent | Rejected]:
    """Each element of a body that is a JSON array, parsed or rejected, in order.

    Raises :class:`BodyError` when the body is not a JSON array."""
    try:
        return _parse_fast(body)
    except _General:
        return [parse_event(element) for element in parse_body(body)]


def count_elements(body: bytes) -> int:
    """How many elements a body holds, checking only that it is a JSON array of valid UTF-8
    (what the endpoint must refuse; the applier judges each element later).

    Raises :class:`BodyError` when the body is not a JSON array."""
    try:
        elements = _RAW_ELEMENTS.decode(body)
        body.decode("utf-8")  # msgspec skips what it does not read without checking its UTF-8
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return len(parse_body(body))  # the general path decides, as when parsing
    return len(elements)


def _parse_fast(body: bytes) -> list[ParsedEvent | Rejected]:
    try:
        raws = _RAW_ELEMENTS.decode(body)
        try:
            fields: list[_Fields | None] = list(_FIELDS_OF_ELEMENTS.decode(body))
        except msgspec.ValidationError:  # an element that is not an object: one at a time
            fields = [_fields_of_one(raw) for raw in raws]
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # not an array, …
        raise _General from None
    results: list[ParsedEvent | Rejected] = []
    for raw, these in zip(raws, fields, strict=True):
        try:
            # msgspec skips over the fields it does not read without checking their UTF-8.
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise _General from None
        if these is not None:
            try:
                results.append(_parse_fields(these, text))
                continue
            except _Invalid:
                pass
        # The general path gives the reason and the element's storable raw form.
        try:
            results.append(parse_event(json.loads(text)))
        except RecursionError:
            raise _General from None
    return results


def _fields_of_one(raw: msgspec.Raw) -> _Fields | None:
    try:
        return _FIELDS_OF_ONE.decode(raw)
    except msgspec.ValidationError:
        return None


def _parse_object(element: dict[str, Any]) -> ParsedEvent:
    return _parse_fields(msgspec.convert(element, _Fields), None, element)


def _parse_fields(
    fields: _Fields, text: str | None, element: dict[str, Any] | None = None
) -> ParsedEvent:
    """The rules of an event, from its ``fields`` and either its raw JSON ``text`` (stored as
    is) or the decoded ``element`` (serialized for storage). Raises ``_Invalid``."""
    # The hot path of ingestion (a thousand calls per batch, before the writer's turn): the
    # common shapes tested first.
    event_type = fields.event
    if type(event_type) is not str or not event_type.strip():
        raise _Invalid("missing or empty 'event'")
    if len(event_type) > MAX_EVENT_TYPE:
        raise _Invalid(f"'event' is longer than {MAX_EVENT_TYPE} characters")
    if text is None:
        assert element is not None
        payload_json = _storable_json(element)
    elif "\\u0000" in text:
        raise _Invalid("contains a NUL character, which the database cannot store")
    else:
        payload_json = text

    timestamp = fields.timestamp
    if timestamp is None:
        if event_type in KNOWN_TYPES:
            raise _Invalid("missing 'timestamp'")
        occurred_at = None
    else:
        occurred_at = parse_timestamp(timestamp)

    email = fields.email
    # Measured after lower-casing, which can lengthen it ("İ" is two characters in lower case).
    if isinstance(email, str) and (email := email.strip().lower()) and len(email) <= MAX_EMAIL:
        pass
    elif event_type in EMAIL_TYPES:
        raise _Invalid("missing or invalid 'email'")
    else:
        email = None

    sg_message_id = fields.sg_message_id
    if sg_message_id is None:
        prefix = None
    elif isinstance(sg_message_id, str) and len(sg_message_id) <= MAX_MESSAGE_ID:
        # sg_message_id is "<X-Message-Id of the request>.<filter and recipient suffix>".
        prefix = sg_message_id.partition(".")[0] or None
        sg_message_id = sg_message_id or None
    else:
        raise _Invalid(f"'sg_message_id' must be a string of at most {MAX_MESSAGE_ID} characters")

    label = None
    asm_group_id = None
    status_type = None
    url = None
    if event_type in _PLAIN_TYPES:
        pass
    elif event_type == "open":
        label = "machine" if fields.sg_machine_open in (True, 1, "true") else "human"
    elif event_type == "click":
        label = "human"  # provisional: apply.py reclassifies suspected scanner clicks
        url = _text_of(fields.url)
    elif event_type == "bounce":
        label = "blocked" if fields.type == "blocked" else "bounce"
    elif event_type in ("group_unsubscribe", "group_resubscribe"):
        asm_group_id = _database_id(fields.asm_group_id)
        if asm_group_id is None:
            raise _Invalid(f"{event_type} without a positive integer 'asm_group_id'")
    elif event_type == "account_status_change":
        status_type = str(fields.type or "unknown")[:64]

    key = fields.sg_event_id
    if type(key) is not str or not key or len(key) > MAX_EVENT_ID:
        key = _event_key(json.loads(text) if element is None else element)
    return ParsedEvent(
        key,
        event_digest(key, occurred_at),
        event_type,
        occurred_at,
        email,
        sg_message_id,
        prefix,
        _database_id(fields.send_id),
        _database_id(fields.mailing_id),
        label,
        asm_group_id,
        status_type,
        url,
        payload_json,
    )


# Known types without a label or extra field of their own.
_PLAIN_TYPES = frozenset(
    {"processed", "deferred", "delivered", "dropped", "spamreport", "unsubscribe"}
)
# Integer timestamps -> their UTC datetime: a batch's events share seconds (bounded, see below).
_MOMENTS: dict[int, datetime] = {}
_MOMENTS_KEPT = 65_536


def parse_timestamp(value: Any) -> datetime:
    """A UTC datetime from seconds, milliseconds or a numeric string. Raises ``_Invalid``."""
    if type(value) is int and 0 < value < LATEST_SECONDS:  # what SendGrid sends: fast path
        moment = _MOMENTS.get(value)
        if moment is None:
            if len(_MOMENTS) >= _MOMENTS_KEPT:
                _MOMENTS.clear()
            moment = _MOMENTS[value] = datetime.fromtimestamp(value, UTC)
        return moment
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _Invalid(f"'timestamp' {value[:40]!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("'timestamp' must be a number of seconds or milliseconds")
    if isinstance(value, int) and value.bit_length() > 63:  # too large even to be a float
        raise _Invalid(f"'timestamp' {str(value)[:40]}… is out of range")
    if not math.isfinite(value):
        raise _Invalid("'timestamp' must be a number of seconds or milliseconds")
    seconds = value / 1000 if value >= MILLISECONDS_FROM else value
    if not 0 < seconds < LATEST_SECONDS:
        raise _Invalid(f"'timestamp' {value!r} is out of range")
    return datetime.fromtimestamp(seconds, UTC)


def _text_of(value: Any) -> str | None:
    """A JSON value as text, as the database's ``->>`` reads it back: strings as is."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _database_id(value: Any) -> int | None:
    """A positive id from our custom args (strings of digits) or an integer field."""
    if isinstance(value, str) and len(value) < 11 and value.isdigit() and value.isascii():
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        return None
    return number if 0 < number <= MAX_DATABASE_ID else None


def _event_key(element: dict[str, Any]) -> str:
    """``sg_event_id``, or a hash of the canonical event when SendGrid sent none."""
    event_id = element.get("sg_event_id")
    if event_id is not None and event_id != "":
        if not isinstance(event_id, str) or len(event_id) > MAX_EVENT_ID:
            raise _Invalid(f"'sg_event_id' must be a string of at most {MAX_EVENT_ID} characters")
        return event_id
    try:
        canonical = orjson.dumps(element, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        canonical = json.dumps(element, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _storable_json(element: dict[str, Any]) -> str:
    """The element as JSON text every backend stores exactly, or ``_Invalid`` saying why not."""
    try:
        text = orjson.dumps(element).decode("utf-8")
    except TypeError as exc:
        if "surrogates" in str(exc):
            raise _Invalid("contains an unpaired UTF-16 surrogate, which is not text") from None
        # Integers beyond 64 bits: the standard library writes them exactly.
        text = json.dumps(element, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        # PostgreSQL cannot store NUL in text or JSONB; refusing it on every backend keeps the
        # two stores identical.
        raise _Invalid("contains a NUL character, which the database cannot store")
    return text


def _raw(element: Any) -> str:
    """The element as ASCII JSON: escapes keep NUL and lone surrogates storable anywhere."""
    return json.dumps(element, ensure_ascii=True)
