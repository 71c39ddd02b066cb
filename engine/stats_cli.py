"""``resistry stats``: posterior statistics and the policy decision for counts read as JSON.

Input on stdin::

    {"arms": [{"name": "A", "trials": 1000, "successes": 100}, ...],
     "prior": [1, 1], "control": "A"}

"prior" defaults to [1, 1] and "control" to the first arm; an arm may also carry
"guardrail_events" ({"unsubscribe": 3}) and "paused" (true). Bad JSON or bad counts exit
with status 2 and a one-line message on stderr.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

import click

from engine import stats
from engine.policy import ArmCounts, PolicyConfig, decide

# Past 2**53 a float no longer holds every whole count and the statistics lose all precision
# (NaN from about 1e17), so a posterior's alpha + beta must stay at or below it.
MAX_POSTERIOR_TOTAL = 2.0**53


class InputError(ValueError):
    """The input is not what ``resistry stats`` reads; the message says what is wrong."""


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # a JSON integer beyond the float range
        raise InputError(f"{what} is too large") from None


def _parse(text: str) -> tuple[list[ArmCounts], tuple[float, float], int]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"invalid JSON: {error}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("arms"), list):
        raise InputError('expected an object with an "arms" list')
    arms = []
    for i, raw in enumerate(payload["arms"]):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InputError(f"arm {i} must be an object with a string name")
        events = raw.get("guardrail_events", {})
        if not isinstance(events, dict):
            raise InputError(f"arm {raw['name']!r}: guardrail_events must be an object")
        arms.append(
            ArmCounts(
                name=raw["name"],
                trials=_number(raw.get("trials"), f"arm {raw['name']!r} trials"),
                successes=_number(raw.get("successes"), f"arm {raw['name']!r} successes"),
                guardrail_events={k: _number(v, f"{k} events") for k, v in events.items()},
                paused=bool(raw.get("paused", False)),
            )
        )
    if not arms:
        raise InputError("no arms given")
    prior = payload.get("prior", [1, 1])
    if not isinstance(prior, list) or len(prior) != 2:
        raise InputError('"prior" must be a list [alpha, beta]')
    alpha, beta = _number(prior[0], "prior alpha"), _number(prior[1], "prior beta")
    # Any NaN compares false here and is left for stats.posterior to name.
    if alpha + beta > MAX_POSTERIOR_TOTAL:
        raise InputError(f'"prior" alpha + beta must be at most 2**53, got {alpha:g} + {beta:g}')
    for arm in arms:
        if arm.trials + alpha + beta > MAX_POSTERIOR_TOTAL:
            raise InputError(f"arm {arm.name!r}: trials + prior must be at most 2**53")
    names = [arm.name for arm in arms]
    control = payload.get("control", names[0])
    if control not in names:
        raise InputError(f"control {control!r} is not one of the arms {names}")
    return arms, (alpha, beta), names.index(control)


def summarize(arms: list[ArmCounts], prior: tuple[float, float], control: int) -> dict[str, Any]:
    """Return the JSON-ready statistics of every arm and the policy decision.

    Raises ValueError (naming the problem) on bad counts or prior.
    """
    alpha, beta = stats.posterior(
        [arm.trials for arm in arms], [arm.successes for arm in arms], *prior
    )
    p_best, loss, relative = stats.best_arm_summary(alpha, beta)
    beat = stats.p_beat_control(alpha, beta, control)
    low, high = stats.credible_interval(alpha, beta)
    remaining = stats.value_remaining(alpha, beta)
    decision = decide(arms, PolicyConfig(prior_alpha=prior[0], prior_beta=prior[1]))
    rows = [
        {
            "name": arm.name,
            "trials": arm.trials,
            "successes": arm.successes,
            "mean": float(alpha[i] / (alpha[i] + beta[i])),
            "ci95": [float(low[i]), float(high[i])],
            "p_best": float(p_best[i]),
            "p_beat_control": float(beat[i]),
            "expected_loss": float(loss[i]),
            "expected_loss_relative": float(relative[i]),
            "value_remaining95": float(remaining[i]),
        }
        for i, arm in enumerate(arms)
    ]
    return {
        "arms": rows,
        "control": arms[control].name,
        "prior": list(prior),
        "value_remaining_draws": stats.VALUE_REMAINING_DRAWS,
        "value_remaining_seed": stats.VALUE_REMAINING_SEED,
        "decision": {
            "status": decision.status,
            "weights": decision.weights,
            "winner": decision.winner,
            "paused": list(decision.paused),
            "reason": decision.reason,
        },
    }


@click.command("stats")
@click.argument("source", type=click.File("r"), default="-")
@click.option("--indent", type=int, default=2, show_default=True, help="JSON indent (0: one line).")
def stats_command(source: TextIO, indent: int) -> None:
    """Read arm counts as JSON from SOURCE (default stdin); print P(best), expected losses,
    credible intervals, value remaining and the policy decision as JSON."""
    try:
        arms, prior, control = _parse(source.read())
        result = summarize(arms, prior, control)
    except ValueError as error:  # InputError included
        click.echo(f"resistry stats: {' '.join(str(error).split())}", err=True)
        raise SystemExit(2) from None
    # Every statistic is finite by construction; allow_nan=False makes a bug loud, not silent.
    click.echo(json.dumps(result, indent=indent or None, allow_nan=False))
