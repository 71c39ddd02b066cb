"""Per-process landing state: the posterior and groups cache, the generator, the signers.

Nothing here reads the database per request: :class:`PosteriorCache` keeps what
:func:`load_state` read for ``[landing] posterior_refresh_seconds`` (its clock is injectable), and
the Thompson draws share one locked ``numpy.random.Generator`` per process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import numpy as np
import sqlalchemy as sa
from flask import Flask, current_app, get_template_attribute
from markupsafe import Markup

from engine.app import settings_of
from engine.models import utcnow
from engine.rate_limits import RateLimit
from variants import assignment, visibility
from variants import signup as signups
from variants.landing_visitor import FormContextSigner, VisitorCookies

FORM_CONTEXT_SALT = "resistry.landing-form"
T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    value: T
    loaded_at: float


class PosteriorCache:
    """Values loaded at most once per ``refresh_seconds`` per key, shared by a process's threads.

    ``clock`` returns seconds (monotonic by default); tests pass their own to move time.
    """

    def __init__(self, refresh_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._entries: dict[str, _Entry[Any]] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times a loader ran (tests and the benchmark read it)

    def get(self, key: str, load: Callable[[], T]) -> T:
        """The cached value of ``key``, reloaded with ``load()`` when missing or stale.

        A ``None`` from ``load`` is returned but not kept, so unknown keys are asked again.
        """
        entry = self._entries.get(key)
        if entry is not None and self.clock() - entry.loaded_at < self.refresh_seconds:
            return entry.value
        with self._lock:
            entry = self._entries.get(key)  # another thread may have refreshed it meanwhile
            if entry is None or self.clock() - entry.loaded_at >= self.refresh_seconds:
                value = load()
                self.loads += 1
                if value is None:  # not cached: keys can come from callers, memory must not
                    self._entries.pop(key, None)
                    return value
                entry = _Entry(value, self.clock())
                self._entries[key] = entry
            return entry.value

    def clear(self) -> None:
        """Forget every value (the next ``get`` reloads)."""
        with self._lock:
            self._entries.clear()


class LockedGenerator:
    """A numpy Generator shared by threads (Generators are not thread-safe on their own)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._lock = threading.Lock()

    def choose(self, snapshot: assignment.ExperimentSnapshot) -> assignment.ArmSnapshot | None:
        with self._lock:
            return assignment.choose_arm(snapshot, self._rng)


@dataclass(frozen=True)
class LandingState:
    """What every landing request needs, loaded once per refresh period.

    ``choice_html`` holds each group's rendered (unticked) checkbox, and ``choice_utf8`` the
    same encoded: a page only joins them in the visitor's order instead of rendering every group
    again. ``page_shells`` holds, per landing variant, the fresh page cut around its per-visitor
    parts: UTF-8 pieces, and the names of the parts the view fills in
    (:func:`variants.landing_render.fresh_page`).
    """

    snapshot: assignment.ExperimentSnapshot | None
    cards: tuple[visibility.GroupCard, ...]
    group_ids_by_slug: Mapping[str, int]
    choice_html: Mapping[str, Markup]
    choice_utf8: Mapping[str, bytes]
    slug_json: Mapping[str, str]  # each slug as a JSON string, for the form's context
    page_shells: dict[int | None, tuple[bytes | str, ...]] = field(default_factory=dict)


@dataclass
class LandingRuntime:
    """Per-app, per-process pieces; tests replace ``cache.clock``, ``chooser`` or ``now``."""

    cache: PosteriorCache
    chooser: LockedGenerator
    form_signer: FormContextSigner
    visitors: VisitorCookies
    signup_limit: RateLimit
    # Where a landing view writes its visit in a transaction of its own
    # (variants.landing_visits.record_visit_committed); None when the app's sessions are bound
    # to one connection (the tests' rolled-back transaction): the view then uses its session.
    visit_engine: sa.Engine | None = None
    checkpoint_seconds: float = 0.0  # [database] wal_checkpoint_seconds
    now: Callable[[], datetime] = field(default=utcnow)

    def state(self) -> LandingState:
        return self.cache.get("landing", load_state)


def load_state() -> LandingState:
    """Read the groups and the landing posterior in a short session of their own.

    Not the request's session: on SQLite every transaction takes the write lock, and the
    request's would hold it until the visit is committed.
    """
    with current_app.extensions["resistry.sessions"]() as db:
        cards = tuple(visibility.load_group_cards(db))
        snapshot = assignment.load_landing_snapshot(db)
        db.rollback()
    consent_template = settings_of(current_app).landing.consent_text
    group_choice = get_template_attribute("landing/_choice.html", "group_choice")
    choice_html = {
        card.slug: Markup(group_choice(card, signups.consent_text(consent_template, card.name)))
        for card in cards
    }
    return LandingState(
        snapshot=snapshot,
        cards=cards,
        group_ids_by_slug={card.slug: card.id for card in cards},
        choice_html=choice_html,
        choice_utf8={slug: html.encode() for slug, html in choice_html.items()},
        slug_json={card.slug: json.dumps(card.slug) for card in cards},
    )


def runtime_of(app: Flask) -> LandingRuntime:
    return app.extensions["resistry.landing"]


def init_runtime(app: Flask) -> LandingRuntime:
    """Attach a fresh runtime (empty cache, OS-seeded generator) to ``app`` and return it."""
    settings = settings_of(app)
    bind = app.extensions["resistry.sessions"].kw.get("bind")
    runtime = LandingRuntime(
        cache=PosteriorCache(settings.landing.posterior_refresh_seconds),
        chooser=LockedGenerator(np.random.default_rng()),
        form_signer=FormContextSigner(settings.secret_key, salt=FORM_CONTEXT_SALT),
        visitors=VisitorCookies(
            settings.secret_key,
            secure=bool(app.config["SESSION_COOKIE_SECURE"]),
            max_age=app.permanent_session_lifetime,
        ),
        # One per app, so each app (and each test) starts with empty counters.
        signup_limit=RateLimit(
            "signup", settings.web.signup_rate_limit, settings.web.rate_limit_storage
        ),
        visit_engine=bind if isinstance(bind, sa.Engine) else None,
        checkpoint_seconds=settings.database.wal_checkpoint_seconds,
    )
    app.extensions["resistry.landing"] = runtime
    return runtime
