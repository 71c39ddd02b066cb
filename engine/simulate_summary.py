"""What a simulation run achieved, judged by the simulator's hidden true rates.

Per mail experiment: the variant promoted and when (or the leader when none was), guardrail
pauses, the true best variant, and conversions — observed (what the webhook credited), and the
expected conversions of three plans on the *same* sends: the bandit's actual allocation, an
oracle that always sends the true best variant, and "test evenly on the first 20 % of sends,
then send the test's winner". A send's expected conversions under variant ``v`` are
P(delivered) × the metric's true rate of the variants it would carry (``v`` plus what the other
experiments gave it), so every plan faces the same recipients, days and other variants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from engine.models import Decision, Experiment, Mailing, Send
from engine.simulate_plans import TEST_SHARE, PlanValues, metric_rate, plan_values
from engine.simulator.truth import TrueRates

KIND_COLUMNS = {
    "subject": Send.subject_variant_id,
    "body": Send.body_variant_id,
    "share": Send.share_variant_id,
}
SUCCESS_COLUMNS = {
    "click": Send.first_click_at,
    "open": Send.first_open_at,
    "signup": Send.converted_at,
}


@dataclass(frozen=True)
class DayShares:
    """The allocation set for the next mailing at the end of one day: experiment → variant →
    share."""

    day: int
    weights: dict[str, dict[str, float]]


@dataclass
class ExperimentSummary:
    """How one mail experiment fared; ``decided_day`` is 1-based, like the printed days."""

    key: str
    kind: str
    metric: str
    status: str
    sends: int
    observed: int
    true_rates: dict[str, float] | None  # None: the simulator does not model this metric
    expected: PlanValues | None
    winner: str | None = None
    decided_day: int | None = None
    leader: str | None = None
    pauses: list[str] = field(default_factory=list)

    @property
    def true_best(self) -> list[str]:
        """The variants with the highest true rate (several on a tie; none when not modelled)."""
        if not self.true_rates:
            return []
        top = max(self.true_rates.values())
        return [key for key, rate in self.true_rates.items() if np.isclose(rate, top)]

    def lines(self, start: date) -> list[str]:
        """The experiment's summary in words, one fact a line."""
        lines = [f"{self.key} ({self.kind}, metric {self.metric}): {_count(self.sends, 'send')}"]
        if self.winner is not None and self.decided_day is not None:
            when = start + timedelta(days=self.decided_day - 1)
            lines.append(f"  chosen: {self.winner}, promoted on day {self.decided_day} ({when})")
        elif self.status == "finished":
            lines.append(f"  chosen: none — no clear winner by day {self.decided_day}")
        else:
            lines.append(f"  chosen: none yet ({self.status}); leading: {self.leader or '—'}")
        lines += [f"  paused: {pause}" for pause in self.pauses]
        if self.true_rates is None:
            lines.append(
                f"  truth: the simulator does not model {self.metric}s (they happen on the "
                "landing site), so no variant is truly better; expected values not computed"
            )
        else:
            rates = ", ".join(f"{key} {rate:.2%}" for key, rate in self.true_rates.items())
            best = " = ".join(self.true_best)
            lines.append(f"  true best: {best} (true {self.metric} rates: {rates})")
        lines.append(f"  conversions ({self.metric}s): observed {self.observed:,}")
        if self.expected is not None:
            plans = self.expected
            lines.append(
                f"  expected: bandit {plans.bandit:,.1f} · oracle {plans.oracle:,.1f} · "
                f"test {TEST_SHARE:.0%} evenly, then the winner {plans.test_then_winner:,.1f}"
            )
            if plans.oracle > 0:
                lines.append(
                    f"  bandit reached {plans.bandit / plans.oracle:.1%} of the oracle "
                    f"(test-then-winner {plans.test_then_winner / plans.oracle:.1%})"
                )
        return lines


@dataclass
class SimulationResult:
    """Everything ``resistry simulate`` prints and draws."""

    start: date
    days: int
    seed: int
    recruiters: int
    mailings: int
    sends: int
    simulator_stats: dict[str, int]
    experiments: list[ExperimentSummary]
    shares: list[DayShares]
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The whole summary, as ``resistry simulate`` prints it (no wall-clock values, so a seed
        always prints the same)."""
        stats = self.simulator_stats
        lines = [
            f"simulated {_count(self.days, 'day')} from {self.start} (seed {self.seed}): "
            f"{_count(self.recruiters, 'recruiter')}, {_count(self.mailings, 'mailing')}, "
            f"{_count(self.sends, 'send')}",
            f"webhook: {stats.get('events_delivered', 0):,} events posted "
            f"({stats.get('duplicates_queued', 0):,} duplicates), "
            f"{stats.get('events_dropped', 0):,} dropped",
        ]
        for experiment in self.experiments:
            lines += ["", *experiment.lines(self.start)]
        if self.notes:
            lines += ["", *self.notes]
        return lines


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def summarize(
    session: so.Session,
    *,
    truth: TrueRates,
    experiment_ids: Mapping[str, int],
    start: datetime,
    days: int,
    seed: int,
    recruiters: int,
    shares: list[DayShares],
    notes: Sequence[str],
    simulator_stats: dict[str, Any],
) -> SimulationResult:
    """Judge the finished run in ``session``'s database; returns the :class:`SimulationResult`."""
    experiments = {kind: session.get(Experiment, i) for kind, i in experiment_ids.items()}
    labels = {
        variant.id: f"{experiment.key}/{variant.key}"
        for experiment in experiments.values()
        if experiment is not None
        for variant in experiment.variants
    }
    summaries = []
    for index, (kind, experiment) in enumerate(experiments.items()):
        assert experiment is not None
        rng = np.random.default_rng([seed, index])
        summaries.append(_summarize_experiment(session, experiment, kind, labels, truth, rng))
        _add_decisions(session, summaries[-1], experiment, start)
        final = shares[-1].weights.get(experiment.key, {}) if shares else {}
        summaries[-1].leader = _leader(final)
    mailings = session.scalar(sa.select(sa.func.count()).select_from(Mailing)) or 0
    sent = session.scalar(sa.select(sa.func.count()).where(Send.status == "sent")) or 0
    return SimulationResult(
        start=start.date(),
        days=days,
        seed=seed,
        recruiters=recruiters,
        mailings=mailings,
        sends=sent,
        simulator_stats=dict(simulator_stats),
        experiments=summaries,
        shares=shares,
        notes=list(notes),
    )


def _leader(weights: Mapping[str, float]) -> str | None:
    """The variant with the largest share and its share, or "even split" when none leads."""
    if not weights:
        return None
    top = max(weights.values())
    leaders = [key for key, weight in weights.items() if np.isclose(weight, top)]
    if len(leaders) > 1:
        return f"even split between {', '.join(leaders)}"
    return f"{leaders[0]} ({top:.0%} of the next mailing)"


def _summarize_experiment(
    session: so.Session,
    experiment: Experiment,
    kind: str,
    labels: dict[int, str],
    truth: TrueRates,
    rng: np.random.Generator,
) -> ExperimentSummary:
    variants = list(experiment.variants)
    success = SUCCESS_COLUMNS[experiment.metric]
    rows = session.execute(
        sa.select(*KIND_COLUMNS.values(), success.is_not(None))
        .where(Send.status == "sent", KIND_COLUMNS[kind].is_not(None))
        .order_by(Send.id)
    ).all()
    column = list(KIND_COLUMNS).index(kind)
    default_rate = metric_rate(truth.defaults, experiment.metric)
    true_rates = expected = None
    if default_rate is not None:
        alone = {v.key: truth.rates_for([labels[v.id]]) for v in variants}
        true_rates = {
            key: metric_rate(rates, experiment.metric) or 0.0 for key, rates in alone.items()
        }
        chances, assigned = _chances(rows, column, variants, labels, truth, experiment.metric)
        expected = plan_values(chances, assigned, rng)
    return ExperimentSummary(
        key=experiment.key,
        kind=kind,
        metric=experiment.metric,
        status=experiment.status,
        sends=len(rows),
        observed=sum(1 for row in rows if row[-1]),
        true_rates=true_rates,
        expected=expected,
    )


def _chances(
    rows: Sequence[Any],
    column: int,
    variants: list[Any],
    labels: dict[int, str],
    truth: TrueRates,
    metric: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``chances[s, j]`` and ``assigned[s]`` for :func:`plan_values` (see the module docstring)."""
    delivered = 1.0 - min(1.0, truth.defaults.bounce + truth.defaults.blocked)
    position = {variant.id: index for index, variant in enumerate(variants)}
    by_context: dict[tuple[str, ...], np.ndarray] = {}
    chances = np.zeros((len(rows), len(variants)))
    assigned = np.zeros(len(rows), dtype=np.intp)
    for s, row in enumerate(rows):
        context = tuple(labels.get(i, "") for c, i in enumerate(row[:3]) if c != column and i)
        vector = by_context.get(context)
        if vector is None:
            vector = by_context[context] = np.array(
                [
                    delivered
                    * (metric_rate(truth.rates_for([labels[v.id], *context]), metric) or 0)
                    for v in variants
                ]
            )
        chances[s] = vector
        assigned[s] = position[row[column]]
    return chances, assigned


def _add_decisions(
    session: so.Session, summary: ExperimentSummary, experiment: Experiment, start: datetime
) -> None:
    decisions = session.scalars(
        sa.select(Decision)
        .where(
            Decision.experiment_id == experiment.id,
            Decision.kind.in_(("promote", "guardrail_pause", "no_clear_winner")),
        )
        .order_by(Decision.created_at, Decision.id)
    )
    for decision in decisions:
        day = (decision.created_at - start).days + 1
        if decision.kind == "guardrail_pause":
            key = decision.variant.key if decision.variant else "?"
            reason = decision.reason.removeprefix(f"{key} paused: ")
            summary.pauses.append(f"{key} on day {day} — {reason}")
        else:
            summary.winner = decision.variant.key if decision.variant else None
            summary.decided_day = day
