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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import jinja2
from jinja2 import nodes
from markupsafe import escape

from engine.settings import SendGridSettings

CATEGORY = "recruiter-mailing"
MAX_CATEGORIES = 10  # SendGrid's limit per message
MAX_SUBSTITUTION_BYTES = 10_000  # SendGrid's limit per personalization
PREHEADER = "preheader"
HIDDEN_PREHEADER = (
    '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;'
    'opacity:0;overflow:hidden;">{}</div>'
)


class CompiledBodyLike(Protocol):
    """What the mailer needs of a compiled body (``variants.rendering.CompiledBody``)."""

    def render(self, context: Mapping[str, object]) -> str: ...


# Injected by the assembly points (CLI, scheduler, tests): engine never imports variants.
BodyCompiler = Callable[[str, str], CompiledBodyLike]  # (mjml_source, variant_name)
TextRenderer = Callable[[str, Mapping[str, object], str], str]  # (template, context, name)


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


@dataclass
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


_TAG_PATTERN = re.compile(r"%rs\.(\w+)%")


def tag(name: str) -> str:
    """The substitution tag that stands for placeholder ``name`` in a shared body."""
    return f"%rs.{name}%"


def placeholder_usage(source: str) -> tuple[frozenset[str], frozenset[str]]:
    """Split the names a template uses into (bare, dynamic).

    Bare names are only ever printed as ``{{ name }}``, so a substitution tag can stand in for
    them; dynamic names are used any other way and must be filled with their real values.
    Raises ``jinja2.TemplateSyntaxError`` for a template that does not parse.
    """
    tree = jinja2.Environment().parse(source)
    used = frozenset(name.name for name in tree.find_all(nodes.Name))
    if any(tree.find_all((nodes.ScopedEvalContextModifier, nodes.EvalContextModifier))):
        return frozenset(), used  # autoescape switched inside the template: fill for real
    bare: set[str] = set()
    for output in tree.find_all(nodes.Output):
        bare.update(child.name for child in output.nodes if isinstance(child, nodes.Name))
    dynamic = {
        name.name
        for node in tree.find_all(nodes.Expr)
        if not isinstance(node, nodes.Name)
        for name in node.find_all(nodes.Name)
    }
    return frozenset(bare - dynamic), frozenset(dynamic)


@dataclass
class PreparedBody:
    """A body variant compiled once, with the placeholders its shared HTML can carry as tags."""

    arm: Arm
    compiled: CompiledBodyLike
    substituted: frozenset[str]
    dynamic: frozenset[str]
    _html: dict[tuple[object, ...], str] = field(default_factory=dict)


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
        self._texts: dict[tuple[str, str], list[str]] = {}

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
        """Fill a subject, preheader or share text for one recipient.

        Jinja renders each template once, with tags for the placeholders it prints bare; each
        recipient then costs one join of the pieces with their values (same result, ~1 µs).
        A template that uses a placeholder any other way is rendered by Jinja every time.
        Raises the renderer's ``TemplateError`` for a template it refuses.
        """
        if "{" not in template:
            return template
        pieces = self._texts.get((template, name))
        if pieces is None:
            pieces = self._texts[(template, name)] = self._text_pieces(template, context, name)
        if not pieces:
            return self._renderers.render_text(template, context, name)
        return "".join(
            piece if i % 2 == 0 else str(context[piece]) for i, piece in enumerate(pieces)
        )

    def _text_pieces(self, template: str, context: Mapping[str, object], name: str) -> list[str]:
        """Literal text and placeholder names, alternating; empty when not splittable."""
        try:
            bare, dynamic = placeholder_usage(template)
        except jinja2.TemplateSyntaxError:
            return []  # let the renderer report it with the variant's name
        if dynamic:
            return []
        tagged = {**context, **{placeholder: tag(placeholder) for placeholder in bare}}
        pieces = _TAG_PATTERN.split(self._renderers.render_text(template, tagged, name))
        return pieces if all(p in bare for p in pieces[1::2]) else []

    def fill_texts(self, recipient: Recipient, subject: Arm, share: Arm | None) -> None:
        """Render the recipient's share text (into the context), subject and preheader."""
        context = recipient.context
        context["share_text"] = (
            self.text(str(share.content.get("text", "")), context, share.name) if share else ""
        )
        # Collapsing whitespace keeps a name with a line break from breaking the header.
        recipient.subject = " ".join(
            self.text(str(subject.content.get("subject", "")), context, subject.name).split()
        )
        recipient.preheader = self.text(
            str(subject.content.get(PREHEADER, "")), context, subject.name
        )

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
        substitutions = {tag(name): _escaped(context[name]) for name in prepared.substituted}
        if preheader_varies:
            substitutions[tag(PREHEADER)] = str(escape(recipient.preheader))
        key: tuple[object, ...] = tuple((name, context[name]) for name in sorted(prepared.dynamic))
        preheader = tag(PREHEADER) if preheader_varies else str(escape(recipient.preheader))
        size = sum(len(k) + len(v) for k, v in substitutions.items())
        if size > MAX_SUBSTITUTION_BYTES // 4 and (
            sum(len(k.encode()) + len(v.encode()) for k, v in substitutions.items())
            > MAX_SUBSTITUTION_BYTES
        ):
            html = prepared.compiled.render(context)
            return _with_preheader(html, str(escape(recipient.preheader))), {}
        key = (*key, preheader)
        html = prepared._html.get(key)
        if html is None:
            filled = {**context, **{name: tag(name) for name in prepared.substituted}}
            html = _with_preheader(prepared.compiled.render(filled), preheader)
            prepared._html[key] = html
        return html, substitutions

    def _request_body(
        self,
        html: str,
        categories: list[str],
        variant_args: Mapping[str, str],
        members: Sequence[tuple[Recipient, dict[str, str]]],
    ) -> dict[str, Any]:
        mailto = self._sendgrid.unsubscribe_mailto
        personalizations = []
        for recipient, substitutions in members:
            to: dict[str, str] = {"email": recipient.email}
            if recipient.first_name:
                to["name"] = recipient.first_name
            unsubscribe = f"<{recipient.context['unsubscribe_url']}>"
            if mailto:
                unsubscribe += f", <mailto:{mailto}?subject=unsubscribe>"
            personalization: dict[str, Any] = {
                "to": [to],
                "subject": recipient.subject,
                "custom_args": {
                    "send_id": str(recipient.send_id),
                    "mailing_id": self._mailing_id,
                    **variant_args,
                },
                "headers": {
                    "List-Unsubscribe": unsubscribe,
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
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
    """HTML-escaped as Jinja's autoescape does (numbers need no escaping)."""
    return str(value) if type(value) is int else str(escape(value))


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
