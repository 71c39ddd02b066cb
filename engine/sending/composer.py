"""Mail Send v3 request bodies for a recruiter mailing, grouped by variant combination.

How personalization travels (correct and fast): SendGrid has one ``content`` per request, so a
request of up to 1,000 recipients carries the body HTML once and each personalization carries
``substitutions``. The body's MJML is compiled once per variant; Jinja then fills it once per
request group with substitution tags (``%rs.first_name%``) for every placeholder the template
prints as a bare ``{{ name }}``, and each recipient's values, HTML-escaped exactly as Jinja's
autoescape would, go into that recipient's substitutions. A placeholder used any other way
(``{{ first_name or "friend" }}``, a filter) would not survive a tag, so its real value is filled
in by Jinja and recipients are grouped by those values; a recipient whose substitutions would
pass SendGrid's 10,000-byte limit gets a request of their own with fully rendered HTML. Subjects
are rendered per recipient by Jinja and sent as each personalization's ``subject``.

Custom args name the send and its variants; categories carry only experiment/variant keys.
Which placeholders can travel as tags, and the filling of texts, live in
:mod:`engine.sending.placeholders`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from markupsafe import escape

from engine.sending.placeholders import (
    TextFill,
    TextFiller,
    TextRenderer,
    placeholder_usage,
    tag,
)
from engine.settings import SendGridSettings

CATEGORY = "recruiter-mailing"
MAX_CATEGORIES = 10  # SendGrid's limit per message
MAX_SUBSTITUTION_BYTES = 10_000  # SendGrid's limit per personalization
PREHEADER = "preheader"
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058
HIDDEN_PREHEADER = (
    '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;'
    'opacity:0;overflow:hidden;">{}</div>'
)


class CompiledBodyLike(Protocol):
    """What the mailer needs of a compiled body (``variants.rendering.CompiledBody``)."""

    def render(self, context: Mapping[str, object]) -> str: ...


# Injected by the assembly points (CLI, scheduler, tests): engine never imports variants.
BodyCompiler = Callable[[str, str], CompiledBodyLike]  # (mjml_source, variant_name)


@dataclass(frozen=True)
class Renderers:
    """The rendering functions of ``variants.rendering``, handed in by whoever assembles."""

    compile_body: BodyCompiler
    render_text: TextRenderer


@dataclass(frozen=True)
class Arm:
    """A variant chosen for some recipients, as the composer needs it."""

    variant_id: int
    label: str  # "<experiment key>/<variant key>": what custom args and categories carry
    name: str
    content: Mapping[str, Any]


@dataclass(slots=True)  # one per recipient: slots make it quicker to build
class Recipient:
    """One send, ready to compose: its address and every placeholder's value."""

    send_id: int
    email: str
    first_name: str
    context: dict[str, object]
    subject: str = ""
    preheader: str = ""


@dataclass(frozen=True)
class ComposedRequest:
    """One Mail Send request body and the sends it carries, in personalization order."""

    body: dict[str, Any]
    send_ids: list[int]


@dataclass
class PreparedBody:
    """A body variant compiled once, with the placeholders its shared HTML can carry as tags."""

    arm: Arm
    compiled: CompiledBodyLike
    substituted: frozenset[str]
    dynamic: frozenset[str]
    # Shared HTML by the values of the dynamic names and the preheader (only the preheader,
    # as a string, when there are no dynamic names: a dict's keys of one body are all alike).
    _html: dict[object, str] = field(default_factory=dict)
    # Worked out once, used for every recipient: (name, tag) and dynamic names, in name order.
    tags: tuple[tuple[str, str], ...] = field(init=False)
    tags_length: int = field(init=False)  # characters of the tags, together
    dynamic_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.tags = tuple((name, tag(name)) for name in sorted(self.substituted))
        self.tags_length = sum(len(key) for _, key in self.tags)
        self.dynamic_names = tuple(sorted(self.dynamic))


class Composer:
    """Renders recipients and builds request bodies for one mailing."""

    def __init__(
        self,
        renderers: Renderers,
        sendgrid: SendGridSettings,
        *,
        mailing_id: int,
        asm_group_id: int,
    ) -> None:
        self._renderers = renderers
        self._sendgrid = sendgrid
        self._mailing_id = str(mailing_id)
        self._asm_group_id = asm_group_id
        self._bodies: dict[int, PreparedBody] = {}
        self._texts = TextFiller(renderers.render_text)
        self._fillers: dict[tuple[int, int | None], tuple[TextFill, TextFill, TextFill]] = {}
        # The last (subject, share) pair and its fillers: recipients come grouped by pair.
        self._last_pair: tuple[Arm | None, Arm | None] = (None, None)
        self._last_fillers: tuple[TextFill, TextFill, TextFill] | None = None
        self._escaped_preheaders: dict[str, str] = {}
        mailto = sendgrid.unsubscribe_mailto
        self._mailto = f", <mailto:{mailto}?subject=unsubscribe>" if mailto else ""

    def body(self, arm: Arm) -> PreparedBody:
        """The body variant compiled once (MJML → HTML), cached for the run.

        Raises the renderer's ``TemplateError`` when the variant cannot be compiled.
        """
        prepared = self._bodies.get(arm.variant_id)
        if prepared is None:
            source = str(arm.content.get("mjml", ""))
            compiled = self._renderers.compile_body(source, arm.name)
            prepared = PreparedBody(arm, compiled, *placeholder_usage(source))
            self._bodies[arm.variant_id] = prepared
        return prepared

    def text(self, template: str, context: Mapping[str, object], name: str) -> str:
        """Fill a subject, preheader or share text for one recipient (see
        :meth:`engine.sending.placeholders.TextFiller.text`)."""
        return self._texts.text(template, context, name)

    def fill_texts(self, recipient: Recipient, subject: Arm, share: Arm | None) -> None:
        """Render the recipient's share text (into the context), subject and preheader."""
        context = recipient.context
        last_subject, last_share = self._last_pair
        fillers = self._last_fillers
        if fillers is None or subject is not last_subject or share is not last_share:
            fillers = self._last_fillers = self._text_fillers(subject, share, context)
            self._last_pair = (subject, share)
        fill_share, fill_subject, fill_preheader = fillers
        context["share_text"] = fill_share(context)
        # Collapsing whitespace keeps a name with a line break from breaking the header.
        recipient.subject = " ".join(fill_subject(context).split())
        recipient.preheader = fill_preheader(context)

    def _text_fillers(
        self, subject: Arm, share: Arm | None, context: Mapping[str, object]
    ) -> tuple[TextFill, TextFill, TextFill]:
        """The share text's, subject's and preheader's fillers, looked up once per pair."""
        key = (subject.variant_id, share.variant_id if share else None)
        fillers = self._fillers.get(key)
        if fillers is None:
            share_text = str(share.content.get("text", "")) if share else ""
            fillers = self._fillers[key] = (
                self._texts.filler(share_text, context, share.name if share else ""),
                self._texts.filler(str(subject.content.get("subject", "")), context, subject.name),
                self._texts.filler(str(subject.content.get(PREHEADER, "")), context, subject.name),
            )
        return fillers

    def requests(
        self,
        subject: Arm,
        body: Arm,
        share: Arm | None,
        recipients: Sequence[Recipient],
    ) -> Iterator[ComposedRequest]:
        """Request bodies of at most ``personalizations_per_request`` recipients each, for
        recipients who all got this variant combination (call :meth:`fill_texts` first)."""
        prepared = self.body(body)
        preheader_varies = "{" in str(subject.content.get(PREHEADER, ""))
        groups: dict[str, list[tuple[Recipient, dict[str, str]]]] = {}
        for recipient in recipients:
            html, substitutions = self._content_for(prepared, recipient, preheader_varies)
            groups.setdefault(html, []).append((recipient, substitutions))
        arms = {"subject_variant": subject, "body_variant": body, "share_variant": share}
        args = {key: arm.label for key, arm in arms.items() if arm is not None}
        categories = list(dict.fromkeys([CATEGORY, *args.values()]))[:MAX_CATEGORIES]
        size = self._sendgrid.personalizations_per_request
        for html, members in groups.items():
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                yield ComposedRequest(
                    body=self._request_body(html, categories, args, chunk),
                    send_ids=[recipient.send_id for recipient, _ in chunk],
                )

    def _content_for(
        self, prepared: PreparedBody, recipient: Recipient, preheader_varies: bool
    ) -> tuple[str, dict[str, str]]:
        context = recipient.context
        substitutions: dict[str, str] = {}
        size = prepared.tags_length  # characters of the keys; the values' are added below
        for name, key in prepared.tags:  # a plain loop: _escaped inlined for strings (hot)
            value = context[name]
            if type(value) is not str:
                value = str(value) if type(value) is int else _escaped(value)
            elif "&" in value or "<" in value or ">" in value or "'" in value or '"' in value:
                value = _escaped_str(value)
            substitutions[key] = value
            size += len(value)
        if preheader_varies:
            preheader = tag(PREHEADER)
            value = substitutions[preheader] = str(escape(recipient.preheader))
            size += len(preheader) + len(value)
        else:
            preheader = self._escaped_preheader(recipient.preheader)
        # A character takes at most 4 bytes: count bytes only when the characters come near.
        if size > MAX_SUBSTITUTION_BYTES // 4 and (
            sum(len(k.encode()) + len(v.encode()) for k, v in substitutions.items())
            > MAX_SUBSTITUTION_BYTES
        ):
            html = prepared.compiled.render(context)
            return _with_preheader(html, str(escape(recipient.preheader))), {}
        dynamic = prepared.dynamic_names
        key = (*[context[name] for name in dynamic], preheader) if dynamic else preheader
        html = prepared._html.get(key)
        if html is None:
            filled = {**context, **{name: tag_ for name, tag_ in prepared.tags}}
            html = _with_preheader(prepared.compiled.render(filled), preheader)
            prepared._html[key] = html
        return html, substitutions

    def _escaped_preheader(self, preheader: str) -> str:
        """A preheader shared by recipients, escaped once."""
        escaped = self._escaped_preheaders.get(preheader)
        if escaped is None:
            escaped = self._escaped_preheaders[preheader] = str(escape(preheader))
        return escaped

    def _request_body(
        self,
        html: str,
        categories: list[str],
        variant_args: Mapping[str, str],
        members: Sequence[tuple[Recipient, dict[str, str]]],
    ) -> dict[str, Any]:
        mailto = self._mailto
        shared_args = {"mailing_id": self._mailing_id, **variant_args}
        personalizations = []
        for recipient, substitutions in members:
            to: dict[str, str] = {"email": recipient.email}
            if recipient.first_name:
                to["name"] = recipient.first_name
            personalization: dict[str, Any] = {
                "to": [to],
                "subject": recipient.subject,
                "custom_args": {"send_id": str(recipient.send_id), **shared_args},
                "headers": {
                    "List-Unsubscribe": f"<{recipient.context['unsubscribe_url']}>{mailto}",
                    "List-Unsubscribe-Post": ONE_CLICK,
                },
            }
            if substitutions:
                personalization["substitutions"] = substitutions
            personalizations.append(personalization)
        return {
            "personalizations": personalizations,
            "from": {"email": self._sendgrid.from_email, "name": self._sendgrid.from_name},
            "content": [{"type": "text/html", "value": html}],
            "categories": categories,
            "asm": {"group_id": self._asm_group_id},
        }


def _escaped(value: object) -> str:
    """HTML-escaped as Jinja's autoescape does (numbers need no escaping).

    A plain string is escaped by the same five replacements as ``markupsafe.escape``, without
    building a ``Markup`` and copying it back to ``str``, and only when it holds one of the five
    characters (most values, addresses and signed URLs, hold none; tested equal).
    """
    if type(value) is str:
        if "&" in value or "<" in value or ">" in value or "'" in value or '"' in value:
            return _escaped_str(value)
        return value
    return str(value) if type(value) is int else str(escape(value))


def _escaped_str(value: str) -> str:
    """A plain string holding one of the five characters, escaped as ``markupsafe`` does
    (each replacement only when its character is there: links hold ``&`` and nothing else)."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if "'" in value:
        value = value.replace("'", "&#39;")
    if '"' in value:
        value = value.replace('"', "&#34;")
    return value


def _with_preheader(html: str, preheader: str) -> str:
    """Insert the hidden preheader right after ``<body …>`` (inbox preview text)."""
    if not preheader:
        return html
    hidden = HIDDEN_PREHEADER.format(preheader)
    start = html.find("<body")
    end = html.find(">", start) if start >= 0 else -1
    if end < 0:
        return hidden + html
    return html[: end + 1] + hidden + html[end + 1 :]
