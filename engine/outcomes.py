"""Outcomes of sends and visits, and the rollup counters the bandit reads.

A send is one trial for each of its variants (subject, body, share). An outcome reached for the
first time by a send (``open``, ``click``, ``signup``) is a success for every variant of the send
whose experiment measures that metric; ``unsubscribe`` and ``spam_report`` feed the guardrails.
Callers make sure each outcome is credited once per send (the ``*_at`` columns of
:class:`~engine.models.Send` record it) and call these functions in the same transaction.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Experiment, Send, Variant
from engine.reports import rollups
from engine.reports.rollups import RollupChanges

METRIC_OUTCOMES = ("open", "click", "signup")
GUARDRAIL_COUNTERS = {"unsubscribe": "unsubscribes", "spam_report": "spam_reports"}
OUTCOMES = (*METRIC_OUTCOMES, *GUARDRAIL_COUNTERS)


def variant_ids_of(send: Send) -> list[int]:
    ids = (send.subject_variant_id, send.body_variant_id, send.share_variant_id)
    return [variant_id for variant_id in ids if variant_id is not None]


def add_trials(session: so.Session, trials: Mapping[int, int]) -> None:
    """Add ``trials[variant_id]`` trials to each variant, in one statement per distinct count."""
    by_count: dict[int, list[int]] = {}
    for variant_id, count in trials.items():
        if count:
            by_count.setdefault(count, []).append(variant_id)
    for count, ids in by_count.items():
        session.execute(
            sa.update(Variant).where(Variant.id.in_(ids)).values(trials=Variant.trials + count)
        )


def credit(session: so.Session, outcome: str, variant_counts: Mapping[int, int]) -> None:
    """Credit ``outcome`` ``variant_counts[variant_id]`` times to each variant.

    Metric outcomes only count for variants whose experiment measures that metric.
    Raises ``ValueError`` for an unknown outcome.
    """
    credit_many(session, {outcome: variant_counts})


def credit_many(session: so.Session, credits: Mapping[str, Mapping[int, int]]) -> None:
    """Credit several outcomes at once: ``credits[outcome][variant_id]`` is a count (negative
    counts take back an earlier credit, e.g. a click reclassified as a scanner's).

    One prepared UPDATE run per variant (the driver's executemany), in ascending id order:
    concurrent transactions then lock variant rows in the same order and cannot deadlock.
    Raises ``ValueError`` for an unknown outcome.
    """
    check_outcomes(credits)
    metric_of: dict[int, str] = {}
    if wanted := metric_variant_ids(credits):
        statement = (
            sa.select(Variant.id, Experiment.metric)
            .join(Experiment, Variant.experiment_id == Experiment.id)
            .where(Variant.id.in_(wanted))
        )
        metric_of = {variant_id: metric for variant_id, metric in session.execute(statement)}
    deltas = credited_deltas(credits, metric_of)
    rows = [
        {"v_id": variant_id, **{f"v_{c}": deltas[variant_id][c] for c in CREDITED_COLUMNS}}
        for variant_id in sorted(deltas)
    ]
    if rows:
        session.connection().execute(_credit_statement(), rows)
        expire_counters(session, [row["v_id"] for row in rows])


def expire_counters(session: so.Session, variant_ids: Iterable[int]) -> None:
    """Statements that bypass the ORM credited ``variant_ids``: those this session has loaded
    reload their counters."""
    if not session.identity_map:  # the webhook path loads no variant: nothing to look up
        return
    mapper = so.class_mapper(Variant)
    for variant_id in variant_ids:
        loaded = session.identity_map.get(mapper.identity_key_from_primary_key([variant_id]))
        if loaded is not None:
            session.expire(loaded, list(CREDITED_COLUMNS))


CREDITED_COLUMNS = ("successes", *GUARDRAIL_COUNTERS.values())


def check_outcomes(credits: Mapping[str, Mapping[int, int]]) -> None:
    """Raise ``ValueError`` for an unknown outcome."""
    for outcome in credits:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")


def metric_variant_ids(credits: Mapping[str, Mapping[int, int]]) -> list[int]:
    """The variants whose experiment's metric decides whether their credits are successes."""
    return sorted(
        {
            variant_id
            for outcome, counts in credits.items()
            if outcome in METRIC_OUTCOMES
            for variant_id, count in counts.items()
            if count
        }
    )


def credited_deltas(
    credits: Mapping[str, Mapping[int, int]], metric_of: Mapping[int, str]
) -> dict[int, Counter[str]]:
    """The rule: per variant, what moves on which counter (non-zero variants only). A metric
    outcome is a success only for a variant whose experiment measures it (``metric_of``);
    unsubscribes and spam reports move the guardrail counters."""
    deltas: dict[int, Counter[str]] = {}
    for outcome, counts in credits.items():
        guardrail = GUARDRAIL_COUNTERS.get(outcome)
        for variant_id, count in counts.items():
            if not count:
                continue
            if guardrail is not None:
                column = guardrail
            elif metric_of.get(variant_id) == outcome:
                column = "successes"
            else:
                continue
            deltas.setdefault(variant_id, Counter())[column] += count
    return {variant_id: delta for variant_id, delta in deltas.items() if any(delta.values())}


@functools.cache
def _credit_statement() -> sa.Update:
    table = Variant.__table__
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("v_id"))
        .values({c: table.c[c] + sa.bindparam(f"v_{c}") for c in CREDITED_COLUMNS})
    )


def credit_sends(session: so.Session, outcome: str, sends: Iterable[Send]) -> None:
    """Credit ``outcome`` once for each of ``sends`` (callers pass each send once per outcome)."""
    counts: Counter[int] = Counter()
    for send in sends:
        counts.update(variant_ids_of(send))
    credit(session, outcome, counts)


def credit_signup(
    session: so.Session, send_id: int, at: datetime, changes: RollupChanges | None = None
) -> bool:
    """A signup came through a link in send ``send_id``: mark the send converted (first time only)
    and credit its variants and its report rollup. Returns whether this was the send's first
    conversion.

    ``changes`` collects the rollup increment for a caller that applies its own at the end (see
    :mod:`engine.reports.rollups` for why rollups come last); without it, it is applied here.
    """
    updated = session.execute(
        sa.update(Send)
        .where(Send.id == send_id, Send.converted_at.is_(None))
        .values(converted_at=at)
        .returning(Send.status, *rollups.SEND_KEY_COLUMNS)
    ).first()
    if updated is None:
        return False
    send = session.get(Send, send_id)
    assert send is not None
    credit_sends(session, "signup", [send])
    key = rollups.send_key(*updated)
    if key is not None:
        own = changes is None
        changes = changes or RollupChanges()
        changes.sends[key]["signups"] += 1
        if own:
            changes.apply(session)
    return True
