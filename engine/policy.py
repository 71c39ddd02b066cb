"""The bandit policy: Thompson allocation and the decision rule (pure: NumPy and SciPy only).

:func:`decide` turns per-arm counts into a :class:`Decision`: burn-in (equal split until every
live arm has ``burn_in`` sends), then Thompson weights with a floor, promotion of a winner when
P(best) ≥ 0.95 or the potential value remaining is under 1 % of the champion (Scott 2015), "no
clear winner" at the maximum sample, and a guardrail pause of any arm whose unsubscribe or
spam-report rate is credibly above its limit. It is stateless: called before every batch, it
keeps a promoted winner at weight 1 while P(best) or value remaining still clears its threshold
and resumes exploring (floor and all) if new data undo the promotion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from engine import stats

Status = Literal["burn_in", "exploring", "promoted", "no_clear_winner", "all_paused"]


@dataclass(frozen=True)
class ArmCounts:
    """What the policy knows of one arm.

    ``trials`` may be effective (fractional) trials from :mod:`engine.delay`; ``sends`` is then
    the raw count, which burn-in uses (default: ``trials``). ``guardrail_events`` counts events
    per guardrail metric (e.g. {"unsubscribe": 3}); ``paused`` marks an arm already paused by
    staff or an earlier decision.
    """

    name: str
    trials: float
    successes: float
    guardrail_events: Mapping[str, float] = field(default_factory=dict)
    paused: bool = False
    sends: float | None = None


def _default_guardrails() -> dict[str, float]:
    return {"unsubscribe": 0.01, "spam_report": 0.003}


@dataclass(frozen=True)
class PolicyConfig:
    """Settings of the decision rule; every field is validated (ValueError names it).

    floor: share of each batch every live arm gets until promotion, unless it is clearly
    losing (P(best) < floor_release). max_trials: total sends (all arms) after which an
    unresolved experiment ends with "no clear winner"; None for no limit. guardrails: limit on
    the rate of each guardrail metric; an arm with at least guardrail_min_trials trials is
    paused when P(rate > limit) ≥ guardrail_confidence under a Beta(1, 1) prior.
    """

    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    # 600, not 300: in bench/regret.py a best arm unlucky in its first ~300 sends was at times
    # promoted away for good (1 run in 200); 600 costs one more even batch and removed that.
    burn_in: float = 600.0
    p_best_threshold: float = 0.95
    value_remaining_threshold: float = 0.01
    floor: float = 0.01
    floor_release: float = 0.001
    max_trials: float | None = None
    guardrails: Mapping[str, float] = field(default_factory=_default_guardrails)
    guardrail_confidence: float = 0.95
    guardrail_min_trials: float = 1000.0
    value_remaining_draws: int = 10_000
    unit: str = "sends"

    def __post_init__(self) -> None:
        object.__setattr__(self, "guardrails", dict(self.guardrails))
        checks = {
            "prior_alpha": 0 < self.prior_alpha < np.inf,
            "prior_beta": 0 < self.prior_beta < np.inf,
            "burn_in": self.burn_in >= 0,
            "p_best_threshold": 0.5 <= self.p_best_threshold < 1,
            "value_remaining_threshold": self.value_remaining_threshold >= 0,
            "floor": 0 <= self.floor < 1,
            "floor_release": 0 <= self.floor_release < 1,
            "max_trials": self.max_trials is None or self.max_trials > 0,
            "guardrail_confidence": 0.5 <= self.guardrail_confidence < 1,
            "guardrail_min_trials": self.guardrail_min_trials >= 0,
            "value_remaining_draws": self.value_remaining_draws >= 1,
        }
        for name, ok in checks.items():
            if not ok:  # NaN fails every comparison, so it lands here too
                value = getattr(self, name)
                raise ValueError(f"PolicyConfig.{name} is out of range: {value!r}")
        for metric, limit in self.guardrails.items():
            if not 0 < limit < 1:
                raise ValueError(
                    f"PolicyConfig.guardrails[{metric!r}] must be in (0, 1): {limit!r}"
                )


@dataclass(frozen=True)
class Decision:
    """The policy's answer. ``weights`` maps every arm to its share of the next traffic (paused
    arms 0; a promoted winner 1); ``paused`` names every paused arm (by staff or a guardrail);
    ``snapshot`` is the JSON-ready posterior to store ("value_remaining" is None unless it was
    needed, i.e. past burn-in with P(best) under its threshold)."""

    status: Status
    weights: dict[str, float]
    winner: str | None
    paused: tuple[str, ...]
    reason: str
    snapshot: dict[str, Any]


def thompson_weights(
    alpha: ArrayLike,
    beta: ArrayLike,
    *,
    floor: float = 0.0,
    live: ArrayLike | None = None,
    floored: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Return each arm's share of traffic: its share of Thompson draws, with a floor.

    A Thompson draw picks the live arm whose posterior sample is highest, so the share of
    draws an arm wins is exactly its P(best) among the live arms; it is computed by quadrature,
    without sampling noise. Each ``floored`` live arm (default: every live arm) then gets at
    least ``floor``, the others giving up traffic in proportion; arms not ``live`` get 0. A
    floor above 1/(floored arms) becomes an even split. Raises ValueError on bad parameters, a
    floor outside [0, 1) or no live arm.
    """
    a, b = np.atleast_1d(np.asarray(alpha, float)), np.atleast_1d(np.asarray(beta, float))
    on = np.ones(a.size, bool) if live is None else np.asarray(live, bool)
    if on.shape != a.shape or not on.any():
        raise ValueError("live must mark at least one arm, one flag per arm")
    share = np.zeros(a.size)
    share[on] = stats.p_best(a[on], b[on])
    return _apply_floor(share, on, on if floored is None else on & np.asarray(floored, bool), floor)


def _apply_floor(
    share: NDArray[np.float64], live: NDArray[np.bool_], low: NDArray[np.bool_], floor: float
) -> NDArray[np.float64]:
    """Raise each ``low`` arm to ``floor`` and rescale the other live arms (water-filling)."""
    if not 0 <= floor < 1:
        raise ValueError(f"floor must be in [0, 1), got {floor!r}")
    if floor * low.sum() >= 1:
        return low / low.sum()
    pinned = np.zeros(share.size, bool)
    while True:
        free = live & ~pinned
        mass = share[free].sum()
        rest = 1 - floor * pinned.sum()
        scaled = np.where(free, share * rest / mass, 0.0) if mass > 0 else free * rest / free.sum()
        newly = low & free & (scaled < floor)
        if not newly.any():
            return np.where(pinned, floor, scaled)
        pinned |= newly


def assign_batch(weights: ArrayLike, n: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """Return an array of ``n`` arm indices, in random order, allocated by ``weights``.

    Arm i gets ⌊w_i·n⌋ units, and one more with probability equal to the fractional part
    (systematic sampling), so its expected count is exactly w_i·n and a floored arm never
    falls below ⌊floor·n⌋; arms of weight 0 get none. Weights are normalised to sum to 1.
    Raises ValueError on negative, non-finite or all-zero weights, or a negative n.
    """
    w = np.atleast_1d(np.asarray(weights, float))
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be finite, >= 0 and not all 0")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    exact = w / w.sum() * n
    counts = np.floor(exact).astype(np.intp)
    extra = n - int(counts.sum())
    if extra > 0:  # one unit each to `extra` arms, chosen with probability = fractional part
        cumulative = np.cumsum(exact - counts)
        cumulative *= extra / cumulative[-1]
        chosen = np.searchsorted(cumulative, rng.uniform() + np.arange(extra), side="right")
        counts += np.bincount(chosen, minlength=w.size)
    return rng.permutation(np.repeat(np.arange(w.size, dtype=np.intp), counts))


def guardrail_breaches(arm: ArmCounts, config: PolicyConfig) -> dict[str, float]:
    """Return {metric: P(rate > limit)} for each guardrail the arm credibly breaches.

    Arms with fewer than ``guardrail_min_trials`` trials are never breached. Raises ValueError
    on a negative or NaN event count or more events than trials.
    """
    # Unsubscribes and spam reports arrive within hours, long before the conversion metric's
    # delay has run its course, so they are judged against raw sends, not effective trials
    # (which would inflate the rate right after a mailing and trip the breaker falsely).
    exposure = arm.trials if arm.sends is None else arm.sends
    breaches: dict[str, float] = {}
    for metric, limit in config.guardrails.items():
        events = arm.guardrail_events.get(metric, 0.0)
        if not 0 <= events <= exposure:  # also rejects NaN
            raise ValueError(f"arm {arm.name!r}: {metric} events {events!r} not in [0, sends]")
        if exposure < config.guardrail_min_trials:
            continue
        p = float(stats.p_rate_above(1 + events, 1 + exposure - events, limit)[0])
        if p >= config.guardrail_confidence:
            breaches[metric] = p
    return breaches


def _fmt(trials: float) -> str:
    return f"{trials:,.0f}"


def decide(
    arms: Sequence[ArmCounts],
    config: PolicyConfig | None = None,
    rng: np.random.Generator | None = None,
) -> Decision:
    """Return the Decision for the next batch, given every arm's counts.

    ``rng`` drives the Monte Carlo value remaining (default: seeded, so decisions repeat).
    Raises ValueError on no arms, duplicate names or bad counts (naming the arm).
    """
    config = config or PolicyConfig()
    if not arms or len({arm.name for arm in arms}) != len(arms):
        raise ValueError("decide needs at least one arm and unique arm names")
    names = [arm.name for arm in arms]
    for arm in arms:
        try:
            stats.posterior(arm.trials, arm.successes, config.prior_alpha, config.prior_beta)
            if arm.sends is not None and not arm.sends >= 0:
                raise ValueError(f"sends must be >= 0, got {arm.sends!r}")
        except ValueError as error:
            raise ValueError(f"arm {arm.name!r}: {error}") from None
    trials = np.array([arm.trials for arm in arms], float)
    alpha, beta = stats.posterior(
        trials, [arm.successes for arm in arms], config.prior_alpha, config.prior_beta
    )
    notes, paused = [], [arm.name for arm in arms if arm.paused]
    breaches = {arm.name: guardrail_breaches(arm, config) for arm in arms if not arm.paused}
    for name, found in breaches.items():
        if found:
            paused.append(name)
            sent = _fmt(trials[names.index(name)])
            notes += [
                f"{name} paused: {metric} rate credibly above {config.guardrails[metric]:.2%} "
                f"(P = {p:.3f} after {sent} {config.unit})"
                for metric, p in found.items()
            ]
    live = np.array([name not in paused for name in names])
    snapshot = _snapshot(arms, alpha, beta, live, breaches, config)

    def result(status: Status, w: ArrayLike, winner: str | None, why: str) -> Decision:
        weights = {name: float(v) for name, v in zip(names, np.asarray(w, float), strict=True)}
        reason = "; ".join([why, *notes])
        return Decision(status, weights, winner, tuple(paused), reason, snapshot)

    if not live.any():
        return result("all_paused", np.zeros(len(arms)), None, "all arms are paused")
    index = np.flatnonzero(live)
    p_live = np.array([snapshot["arms"][i]["p_best"] for i in index])
    if live.sum() == 1:
        winner = names[index[0]]
        return result("promoted", live, winner, f"{winner} promoted: the only live arm")
    sent = np.array([arm.trials if arm.sends is None else arm.sends for arm in arms], float)
    fewest = index[np.argmin(sent[index])]
    if sent[fewest] < config.burn_in:
        why = (
            f"burn-in: {live.sum()} live arms split evenly until each has "
            f"{_fmt(config.burn_in)} {config.unit} ({names[fewest]} has {_fmt(sent[fewest])})"
        )
        return result("burn_in", live / live.sum(), None, why)
    champion = int(index[np.argmax(p_live)])
    leader, p_top = names[champion], float(p_live.max())
    after = f"after {_fmt(sent.sum())} {config.unit}"  # sends made, not delay-weighted trials
    if p_top >= config.p_best_threshold:
        why = f"{leader} promoted: P(best) = {p_top:.3f} ≥ {config.p_best_threshold:g} {after}"
        return result("promoted", np.array(names) == leader, leader, why)
    remaining = stats.value_remaining(
        alpha[index], beta[index], draws=config.value_remaining_draws, rng=rng
    )[int(np.argmax(p_live))]
    snapshot["value_remaining"] = float(remaining)
    if remaining < config.value_remaining_threshold:
        why = (
            f"{leader} promoted: value remaining {remaining:.2%} < "
            f"{config.value_remaining_threshold:.0%} of {leader}'s rate {after}"
        )
        return result("promoted", np.array(names) == leader, leader, why)
    state = f"{leader} leads with P(best) = {p_top:.3f}, value remaining {remaining:.1%}, {after}"
    share = np.array([row["p_best"] for row in snapshot["arms"]])
    if config.max_trials is not None and sent.sum() >= config.max_trials:  # Thompson, no floor
        why = f"no clear winner at the maximum of {_fmt(config.max_trials)} {config.unit}: "
        return result("no_clear_winner", share, None, why + state)
    floored = np.zeros(len(arms), bool)
    floored[index] = p_live >= config.floor_release
    weights = _apply_floor(share, live, floored, config.floor)
    return result("exploring", weights, None, f"exploring: {state}")


def _snapshot(
    arms: Sequence[ArmCounts],
    alpha: NDArray[np.float64],
    beta: NDArray[np.float64],
    live: NDArray[np.bool_],
    breaches: Mapping[str, Mapping[str, float]],
    config: PolicyConfig,
) -> dict[str, Any]:
    """The posterior per arm (P(best) and losses among live arms), ready for json.dumps."""
    low, high = stats.credible_interval(alpha, beta)
    p_best, loss, relative = np.zeros(len(arms)), np.zeros(len(arms)), np.zeros(len(arms))
    if live.any():
        p_best[live], loss[live], relative[live] = stats.best_arm_summary(alpha[live], beta[live])
    rows = [
        {
            "name": arm.name,
            "trials": float(arm.trials),
            "successes": float(arm.successes),
            "alpha": float(alpha[i]),
            "beta": float(beta[i]),
            "mean": float(alpha[i] / (alpha[i] + beta[i])),
            "ci95": [float(low[i]), float(high[i])],
            "p_best": float(p_best[i]),
            "expected_loss": float(loss[i]),
            "expected_loss_relative": float(relative[i]),
            "paused": not bool(live[i]),
            "guardrail_breaches": dict(breaches.get(arm.name, {})),
        }
        for i, arm in enumerate(arms)
    ]
    return {"arms": rows, "value_remaining": None, "config": asdict(config)}
