"""Validation of SendGrid Mail Send v3 requests, and the recipients an accepted request yields.

SendGrid answers a bad request with 400 and ``{"errors": [{"message", "field", "help"}]}``,
listing every problem it found; :func:`validate` returns the same list so the server can send it.
Only the parts of the API Resistry uses are checked, with SendGrid's limits: 1,000
personalizations and 1,000 recipients per request, custom args under 10,000 bytes per
personalization (merged with the message-level ones), at most 10 categories.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any

from engine.simulator.links import BodyLinks

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# JSON writes a character in at most 6 bytes (\uXXXX) and wraps a pair in 4 quotes, a colon
# and a comma.
_MAX_BYTES_PER_CHARACTER = 6
_BYTES_AROUND_A_PAIR = 6


@dataclass(frozen=True)
class Recipient:
    """One address of an accepted request: SendGrid makes one message (one sg_message_id) each."""

    email: str
    custom_args: dict[str, str]
    categories: tuple[str, ...]
    asm_group_id: int | None
    # Links of the HTML body after this personalization's substitutions, as a browser follows
    # them (entities such as &amp; decoded): what SendGrid reports in click events.
    urls: tuple[str, ...]
    personalization_index: int


def error(message: str, field_name: str | None, anchor: str | None = None) -> dict[str, Any]:
    """One SendGrid-shaped error object."""
    return {
        "message": message,
        "field": field_name,
        "help": f"{HELP}#message.{anchor or field_name}" if field_name else None,
    }


def error_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The body SendGrid sends with a 4xx/5xx: ``{"errors": [...]}``."""
    return {"errors": errors}


def validate(payload: Any) -> list[dict[str, Any]]:
    """Every problem SendGrid would report for ``payload``; an empty list means acceptable."""
    if not isinstance(payload, dict):
        return [error("The request body must be a JSON object.", None)]
    errors: list[dict[str, Any]] = []
    errors += _check_from(payload.get("from"))
    personalizations = payload.get("personalizations")
    errors += _check_personalizations(personalizations)
    uses_template = bool(payload.get("template_id"))
    every_has_subject = (
        isinstance(personalizations, list)
        and bool(personalizations)
        and all(isinstance(p, dict) and p.get("subject") for p in personalizations)
    )
    subject = payload.get("subject")
    if subject is not None and not isinstance(subject, str):
        errors.append(error("Invalid type. Expected: string.", "subject"))
    elif not subject and not uses_template and not every_has_subject:
        errors.append(
            error(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
            )
        )
    errors += _check_content(payload.get("content"), uses_template)
    errors += _check_categories(payload.get("categories"))
    message_args = payload.get("custom_args", {})
    if not _is_string_map(message_args):
        errors.append(error("Invalid type. Expected: object of strings.", "custom_args"))
    elif isinstance(personalizations, list):
        errors += _check_custom_args_size(personalizations, message_args)
    return errors


def _check_from(sender: Any) -> list[dict[str, Any]]:
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        return [
            error(
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.  e.g. "
                '{"email" : "example@example.com"}  or {"email" : "example@example.com", '
                '"name" : "Example Recipient"}.',
                "from.email",
            )
        ]
    if not _is_email(sender["email"]):
        return [error("The from email does not contain a valid address.", "from.email")]
    return []


def _check_personalizations(personalizations: Any) -> list[dict[str, Any]]:
    if not isinstance(personalizations, list) or not personalizations:
        return [
            error(
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
            )
        ]
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return [
            error(
                f"The personalization block is limited to {MAX_PERSONALIZATIONS} "
                f"personalizations per API request. You have provided {len(personalizations)} "
                "personalizations. Please consider splitting this into multiple requests and "
                "resending your request.",
                "personalizations",
            )
        ]
    errors: list[dict[str, Any]] = []
    total = 0
    for index, personalization in enumerate(personalizations):
        where = f"personalizations.{index}"
        if not isinstance(personalization, dict):
            errors.append(error("Invalid type. Expected: object.", where))
            continue
        to = personalization.get("to")
        if not isinstance(to, list) or not to:
            errors.append(
                error(
                    "The to parameter is required for all personalization objects, and must "
                    "have at least one email object with a valid email address.",
                    f"{where}.to",
                    "personalizations.to",
                )
            )
            continue
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            addresses = personalization.get(kind) or []
            if not isinstance(addresses, list):
                errors.append(error("Invalid type. Expected: array.", f"{where}.{kind}"))
                continue
            total += len(addresses)
            for position, address in enumerate(addresses):
                email = address.get("email") if isinstance(address, dict) else None
                if not isinstance(email, str) or not _is_email(email):
                    errors.append(
                        error(
                            "Does not contain a valid address.",
                            f"{where}.{kind}.{position}.email",
                            f"personalizations.{kind}",
                        )
                    )
                elif email.lower() in seen:
                    errors.append(
                        error(
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc.",
                            where,
                            "personalizations",
                        )
                    )
                else:
                    seen.add(email.lower())
        if not _is_string_map(personalization.get("substitutions", {})):
            errors.append(
                error("Invalid type. Expected: object of strings.", f"{where}.substitutions")
            )
        if not _is_string_map(personalization.get("custom_args", {})):
            errors.append(
                error("Invalid type. Expected: object of strings.", f"{where}.custom_args")
            )
    if total > MAX_RECIPIENTS:
        errors.append(
            error(
                f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per "
                f"request. You have provided {total}.",
                "personalizations",
            )
        )
    return errors


def _check_content(content: Any, uses_template: bool) -> list[dict[str, Any]]:
    if content is None and uses_template:
        return []
    if not isinstance(content, list) or not content:
        return [
            error(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block. We typically suggest both "
                "text/plain and text/html blocks are included, but only one block is required.",
                "content",
            )
        ]
    errors = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(error("The content type is required.", f"content.{index}.type"))
        elif not isinstance(block.get("value"), str) or not block["value"]:
            errors.append(
                error(
                    "The content value must be a string at least one character in length.",
                    f"content.{index}.value",
                    "content.value",
                )
            )
    return errors


def _check_categories(categories: Any) -> list[dict[str, Any]]:
    if categories is None:
        return []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return [error("Invalid type. Expected: array of strings.", "categories")]
    if len(categories) > MAX_CATEGORIES:
        return [
            error(
                f"You cannot have more than {MAX_CATEGORIES} categories associated with an "
                f"email. You have provided {len(categories)}.",
                "categories",
            )
        ]
    if any(len(category) > MAX_CATEGORY_LENGTH for category in categories):
        return [error("A category cannot have more than 255 characters.", "categories")]
    return []


def _check_custom_args_size(
    personalizations: list[Any], message_args: dict[str, str]
) -> list[dict[str, Any]]:
    errors = []
    for index, personalization in enumerate(personalizations):
        if not isinstance(personalization, dict):
            continue
        args = personalization.get("custom_args", {})
        if not _is_string_map(args):
            continue  # already reported
        merged = {**message_args, **args} if message_args else args
        if _custom_args_bound(merged) < MAX_CUSTOM_ARGS_BYTES:
            continue  # far from the limit: the exact size is not worth computing
        size = _custom_args_bytes(merged)
        if size >= MAX_CUSTOM_ARGS_BYTES:
            errors.append(
                error(
                    f"The custom_args of a personalization, merged with the message-level "
                    f"custom_args, must be less than {MAX_CUSTOM_ARGS_BYTES} bytes. You have "
                    f"provided {size} bytes.",
                    f"personalizations.{index}.custom_args",
                    "custom_args",
                )
            )
    return errors


def recipients(payload: dict[str, Any]) -> list[Recipient]:
    """The recipients of a request :func:`validate` accepted, in request order.

    Each one's ``urls`` are the tracked links of its copy of the HTML body (after its
    substitutions), decoded as a browser decodes attribute values.
    """
    message_args = payload.get("custom_args") or {}
    categories = tuple(payload.get("categories") or ())
    asm = payload.get("asm")
    asm_group_id = asm.get("group_id") if isinstance(asm, dict) else None
    body = next(
        (b["value"] for b in payload.get("content") or () if b.get("type") == "text/html"), ""
    )
    links = BodyLinks(body)
    result = []
    for index, personalization in enumerate(payload["personalizations"]):
        args = {**message_args, **(personalization.get("custom_args") or {})}
        found = links.urls(personalization.get("substitutions") or {})
        urls = tuple(dict.fromkeys(html.unescape(url) for url in found))
        for kind in ("to", "cc", "bcc"):
            for address in personalization.get(kind) or ():
                result.append(
                    Recipient(
                        email=address["email"],
                        custom_args=args,
                        categories=categories,
                        asm_group_id=asm_group_id if type(asm_group_id) is int else None,
                        urls=urls,
                        personalization_index=index,
                    )
                )
    return result


def recipient_count(payload: dict[str, Any]) -> int:
    """Addresses (to + cc + bcc) of a request :func:`validate` accepted: one message each."""
    return sum(
        len(personalization.get(kind) or ())
        for personalization in payload["personalizations"]
        for kind in ("to", "cc", "bcc")
    )


def is_sandbox(payload: dict[str, Any]) -> bool:
    """Sandbox mode: SendGrid validates, answers 200 and sends nothing."""
    settings = payload.get("mail_settings") or {}
    sandbox = settings.get("sandbox_mode") if isinstance(settings, dict) else None
    return isinstance(sandbox, dict) and sandbox.get("enable") is True


def _custom_args_bytes(args: dict[str, str]) -> int:
    return len(json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode())


def _custom_args_bound(args: dict[str, str]) -> int:
    """An upper bound of :func:`_custom_args_bytes`, without encoding anything."""
    characters = sum(len(key) + len(value) for key, value in args.items())
    return 2 + _MAX_BYTES_PER_CHARACTER * characters + _BYTES_AROUND_A_PAIR * len(args)


def _is_string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _is_email(value: str) -> bool:
    return bool(_EMAIL.match(value))
