"""The hidden truth of the simulator: default rates, timings, and per-variant overrides.

Loaded from ``true_rates.toml`` (its header explains how overrides of several variants
combine). The app never reads it: the bandit must discover these rates from webhook events.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGED_TRUE_RATES = Path(__file__).with_name("true_rates.toml")
OVERRIDABLE = ("open", "click", "unsubscribe", "spam_report")


class TrueRatesError(ValueError):
    """The true-rates file is missing, not TOML, or has an unknown key or impossible value."""


@dataclass(frozen=True)
class Rates:
    bounce: float = 0.01
    blocked: float = 0.005
    async_bounce_share: float = 0.2
    deferred: float = 0.03
    machine_open: float = 0.35
    open: float = 0.22
    click: float = 0.03
    scanner_click: float = 0.04
    unsubscribe: float = 0.004
    resubscribe_share: float = 0.05
    spam_report: float = 0.0008


@dataclass(frozen=True)
class Timing:
    open_median_hours: float = 2.0
    click_median_hours: float = 6.0
    sigma: float = 1.2
    horizon_hours: float = 48.0


@dataclass(frozen=True)
class TrueRates:
    """Default rates, timings, and per-"<experiment>/<variant>" overrides of OVERRIDABLE rates."""

    defaults: Rates = Rates()
    timing: Timing = Timing()
    variants: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    # Combined rates per set of overridden variants: a mailing has few distinct combinations.
    _combined: dict[frozenset[str], Rates] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def rates_for(self, variant_keys: Iterable[str]) -> Rates:
        """The rates of a recipient whose custom args carry ``variant_keys``.

        Each override multiplies the default by ``override / default``; see true_rates.toml.
        """
        overridden = frozenset(key for key in variant_keys if key in self.variants)
        rates = self._combined.get(overridden)
        if rates is None:
            rates = self._combined[overridden] = self._combine(overridden)
        return rates

    def _combine(self, overridden: frozenset[str]) -> Rates:
        changes: dict[str, float] = {}
        overrides = [self.variants[key] for key in sorted(overridden)]
        for name in OVERRIDABLE:
            values = [o[name] for o in overrides if name in o]
            if not values:
                continue
            base = getattr(self.defaults, name)
            if base == 0:
                changes[name] = max(values)
            else:
                changes[name] = min(1.0, base * math.prod(v / base for v in values))
        return dataclasses.replace(self.defaults, **changes)


def load_true_rates(path: Path | str | None = None) -> TrueRates:
    """Read a true-rates file (default: the packaged true_rates.toml).

    Raises :class:`TrueRatesError` naming the file and the key of the first problem.
    """
    path = Path(path) if path else PACKAGED_TRUE_RATES
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrueRatesError(f"{path}: true-rates file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise TrueRatesError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(raw) - {"defaults", "timing", "variants"}
    if unknown:
        raise TrueRatesError(f"{path}: unknown section [{sorted(unknown)[0]}]")
    defaults = _numbers(Rates, raw.get("defaults", {}), "defaults", path)
    timing = _numbers(Timing, raw.get("timing", {}), "timing", path)
    for name, value in dataclasses.asdict(defaults).items():
        if not 0 <= value <= 1:
            raise TrueRatesError(f"{path}: defaults.{name} must be in [0, 1], got {value}")
    if defaults.bounce + defaults.blocked > 1:
        raise TrueRatesError(f"{path}: defaults.bounce + defaults.blocked must be ≤ 1")
    for name, value in dataclasses.asdict(timing).items():
        if value <= 0:
            raise TrueRatesError(f"{path}: timing.{name} must be > 0, got {value}")
    variants: dict[str, dict[str, float]] = {}
    for key, overrides in raw.get("variants", {}).items():
        if "/" not in key or not isinstance(overrides, dict):
            raise TrueRatesError(
                f'{path}: variants."{key}" must be "<experiment>/<variant>" = {{ rate = … }}'
            )
        for name, value in overrides.items():
            if name not in OVERRIDABLE:
                raise TrueRatesError(
                    f'{path}: variants."{key}".{name} is not one of {", ".join(OVERRIDABLE)}'
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise TrueRatesError(f'{path}: variants."{key}".{name} must be in [0, 1]')
        variants[key] = {name: float(value) for name, value in overrides.items()}
    return TrueRates(defaults=defaults, timing=timing, variants=variants)


def _numbers(cls: type, values: Any, section: str, path: Path) -> Any:
    if not isinstance(values, dict):
        raise TrueRatesError(f"{path}: [{section}] must be a table")
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in known:
            raise TrueRatesError(f"{path}: unknown key {section}.{key}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TrueRatesError(f"{path}: {section}.{key} must be a number, got {value!r}")
    return cls(**{key: float(value) for key, value in values.items()})
