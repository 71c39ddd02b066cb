"""MJML and Jinja rendering of variant content: compile once per variant, fill per recipient.

``compile_body`` turns an MJML email body into HTML once (mjml, ~6 ms) and keeps it as a Jinja
template; ``CompiledBody.render`` fills it for one recipient in microseconds. ``render_text``
fills subject lines, preheaders and share texts. Placeholders are limited to :data:`PLACEHOLDERS`
and checked when a template is compiled, so an unknown name fails when staff save a variant, not
in the middle of a mailing.

Templates hold ``{{ placeholder }}`` expressions only, never ``{% %}`` statements: mjml escapes
what sits between its tags (``>`` becomes ``&gt;``), so logic there would silently change meaning.
Branching belongs in the data: the mailer passes ready values such as ``friends_count``.

Staff write these templates, but the sandboxed environment still keeps them from reaching Python
internals (``{{ first_name.__class__ }}``), so a stolen admin session cannot run code.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from mjml import mjml_to_html

# The documented placeholders every template may use (and nothing else).
PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "first_name",  # the recipient's first name ("" when unknown)
        "referral_link",  # the recruiter's personal signed link to the landing page
        "friends_count",  # friends who signed up through the recruiter's link
        "groups_count",  # groups the recruiter signed up for
        "share_text",  # the share-text variant chosen for this send, already filled
        "unsubscribe_url",  # one-click unsubscribe page for this send
        "recruiter_page_url",  # the recruiter's magic link to their own page
    }
)

# Realistic values used to preview templates and to measure rendered subject lengths.
SAMPLE_CONTEXT: Mapping[str, object] = {
    "first_name": "Alexandria",
    "referral_link": "https://resistry.example/?r=k7Qm2xPz9a&t=eyJzZW5kIjoxMjM0NTZ9.Zx1YbQ.sig",
    "friends_count": 12,
    "groups_count": 3,
    "share_text": "I just signed up to help flip my state legislature. Join me!",
    "unsubscribe_url": "https://resistry.example/unsubscribe/eyJzZW5kIjoxMjM0NTZ9.Zx1YbQ.sig",
    "recruiter_page_url": "https://resistry.example/recruiter/eyJyIjo0MiJ9.Zx1YbQ.sig",
}

_MJML_ROOT = re.compile(r"\A\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<mjml[\s>]", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


class TemplateError(ValueError):
    """A template cannot be used: names the variant, what is wrong and, when known, the line."""

    def __init__(self, variant_name: str, problem: str, line: int | None = None) -> None:
        self.variant_name = variant_name
        self.problem = problem
        self.line = line
        where = f" (line {line})" if line else ""
        super().__init__(f"variant {variant_name!r}{where}: {problem}")


@functools.cache
def _environment(autoescape: bool) -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(
        autoescape=autoescape, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )


def _parse(
    source: str, variant_name: str, *, autoescape: bool
) -> tuple[jinja2.Template, frozenset[str]]:
    """Parse ``source``, refuse statements and unknown placeholders.

    Returns the template and the placeholders it uses; raises :class:`TemplateError`.
    """
    environment = _environment(autoescape)
    try:
        tree = environment.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(variant_name, f"template syntax: {exc.message}", exc.lineno) from None
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            raise TemplateError(
                variant_name,
                "{% %} statements are not allowed; use only {{ placeholder }} values "
                "(put branching in the data)",
                node.lineno,
            )
    _refuse_logic(tree, variant_name)
    used = frozenset(meta.find_undeclared_variables(tree))
    unknown = used - PLACEHOLDERS
    if unknown:
        raise TemplateError(
            variant_name,
            f"unknown placeholder(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(PLACEHOLDERS))}",
            _line_of(source, min(unknown)),
        )
    return environment.from_string(tree), used


# What ``{{ }}`` may hold: placeholders, text, presentation filters, ``or`` and ``if … else``.
# Arithmetic, calls and attribute or item access are refused when staff save: they could fail
# for one recipient in the middle of a mailing (``6 // (groups_count - 1)``) or cost a worker
# seconds and megabytes (``'a' * 100000000``).
_EXPRESSIONS = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const, nodes.Filter,
    nodes.CondExpr, nodes.And, nodes.Or, nodes.Not, nodes.Compare, nodes.Operand, nodes.Concat,
)  # fmt: skip
FILTERS = frozenset({"upper", "lower", "title", "capitalize", "trim", "default", "d", "string"})


def _refuse_logic(tree: nodes.Template, variant_name: str) -> None:
    for node in tree.find_all(nodes.Node):
        if isinstance(node, nodes.Filter) and node.name not in FILTERS:
            allowed = ", ".join(sorted(FILTERS))
            problem = f"the filter |{node.name} is not allowed; allowed: {allowed}"
            raise TemplateError(variant_name, problem, node.lineno)
        if not isinstance(node, _EXPRESSIONS):
            raise TemplateError(
                variant_name,
                "{{ }} may hold a placeholder, text, filters, `or` and `if … else`, not"
                f" arithmetic, calls or attribute access (found {type(node).__name__})",
                node.lineno,
            )


def _line_of(source: str, name: str) -> int | None:
    index = source.find(name)
    return source.count("\n", 0, index) + 1 if index >= 0 else None


def placeholders_in(source: str, variant_name: str = "template") -> frozenset[str]:
    """The placeholders ``source`` uses. Raises :class:`TemplateError` if it cannot be used."""
    return _parse(source, variant_name, autoescape=False)[1]


@dataclass(frozen=True)
class CompiledBody:
    """An email body compiled from MJML: HTML with placeholders, ready to fill per recipient."""

    variant_name: str
    html: str
    placeholders: frozenset[str]
    _template: jinja2.Template = field(repr=False, compare=False)

    def render(self, context: Mapping[str, object]) -> str:
        """Return the HTML for one recipient.

        Raises :class:`TemplateError` if a placeholder's value is missing from ``context``.
        """
        try:
            return self._template.render(context)
        except Exception as exc:  # e.g. a value a filter cannot take: this variant's problem
            raise TemplateError(self.variant_name, f"rendering failed: {exc}") from None


class _MjmlTagChecker(HTMLParser):
    """Finds unclosed or mismatched ``mj-*`` tags, which mjml would otherwise render silently."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, int]] = []
        self.problem: tuple[str, int] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "mjml" or tag.startswith("mj-"):
            self.open.append((tag, self.getpos()[0]))

    def handle_endtag(self, tag: str) -> None:
        if self.problem or not (tag == "mjml" or tag.startswith("mj-")):
            return
        if not self.open or self.open[-1][0] != tag:
            expected = f"</{self.open[-1][0]}>" if self.open else "nothing"
            self.problem = (f"</{tag}> closes nothing open (expected {expected})", self.getpos()[0])
            return
        self.open.pop()


def _check_mjml_structure(source: str, variant_name: str) -> None:
    if not _MJML_ROOT.match(source):
        raise TemplateError(variant_name, "MJML must start with an <mjml> root element", 1)
    checker = _MjmlTagChecker()
    checker.feed(source)
    checker.close()
    if checker.problem:
        raise TemplateError(variant_name, checker.problem[0], checker.problem[1])
    if checker.open:
        tag, line = checker.open[-1]
        raise TemplateError(variant_name, f"<{tag}> is never closed", line)
    if "<mj-body" not in source:
        raise TemplateError(variant_name, "MJML has no <mj-body>")


def _mjml_to_html(source: str, variant_name: str) -> str:
    try:
        result = mjml_to_html(source)
    except KeyError as exc:  # mjml's way of saying it does not know a tag
        raise TemplateError(variant_name, f"unknown MJML tag <{exc.args[0]}>") from None
    except Exception as exc:  # mjml raises assorted exceptions for bad input
        raise TemplateError(
            variant_name, f"MJML does not compile: {type(exc).__name__}: {exc}"
        ) from None
    if result.errors:  # always empty in mjml 0.12; kept in case a release fills it
        raise TemplateError(variant_name, f"MJML errors: {result.errors}")
    html = result.html or ""
    body = html.partition("<body")[2]
    visible = _TAG.sub("", body.partition(">")[2]).strip()
    if not visible and "<img" not in body:
        raise TemplateError(variant_name, "MJML renders an empty email (no text or image)")
    return html


def compile_body(mjml_source: str, variant_name: str) -> CompiledBody:
    """Compile an MJML email body to HTML once and return it ready to fill per recipient.

    Raises :class:`TemplateError` naming the variant when the source is not usable: Jinja syntax,
    statements, unknown placeholders, no ``<mjml>`` root, unclosed tags, MJML that does not
    compile or compiles to an empty email, or placeholders that mjml mangled.
    """
    if not isinstance(mjml_source, str) or not mjml_source.strip():
        raise TemplateError(variant_name, "the MJML body is empty")
    used = placeholders_in(mjml_source, variant_name)
    _check_mjml_structure(mjml_source, variant_name)
    html = _mjml_to_html(mjml_source, variant_name)
    try:
        template, survived = _parse(html, variant_name, autoescape=True)
    except TemplateError as exc:
        raise TemplateError(
            variant_name, f"placeholders do not survive MJML compilation: {exc.problem}"
        ) from None
    if survived != used:
        lost = ", ".join(sorted(used - survived)) or "none"
        raise TemplateError(
            variant_name,
            f"placeholders lost in MJML compilation: {lost} (placeholders belong in text or "
            "attribute values, not in tag names or mj-attributes)",
        )
    _try_render(template, variant_name)
    return CompiledBody(variant_name=variant_name, html=html, placeholders=used, _template=template)


def _try_render(template: jinja2.Template, variant_name: str) -> None:
    """Fill with sample values once, so unsafe attribute access or bad filters fail at save time."""
    try:
        template.render(SAMPLE_CONTEXT)
    except Exception as exc:  # whatever a template raises is the template's problem
        raise TemplateError(variant_name, f"cannot be filled: {exc}") from None


@functools.lru_cache(maxsize=1024)
def _text_template(template: str, variant_name: str) -> jinja2.Template:
    compiled = _parse(template, variant_name, autoescape=False)[0]
    _try_render(compiled, variant_name)
    return compiled


def render_text(template: str, context: Mapping[str, object], variant_name: str) -> str:
    """Fill a subject line, preheader or share text (no HTML escaping) and return it.

    Raises :class:`TemplateError` for bad syntax, statements, unknown placeholders or a value
    missing from ``context``. Compiled templates are cached, so repeated calls cost microseconds.
    """
    compiled = _text_template(template, variant_name)
    try:
        return compiled.render(context)
    except Exception as exc:  # e.g. a value a filter cannot take: this variant's problem
        raise TemplateError(variant_name, f"rendering failed: {exc}") from None
