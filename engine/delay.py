"""Delayed rewards: effective trials for sends whose conversions may not have arrived yet.

A delay CDF maps the age of a send (hours, or any unit used consistently) to the share of its
eventual conversions that have arrived by that age. A send made an hour ago with a 12-hour mean
delay has had a fraction of its chance to convert, so it counts as that fraction of a trial:
a fresh variant is not punished for conversions that are still on their way.

Why successes are not reweighted: an arrived conversion is an observed fact, whatever its age;
dividing it by the CDF would invent conversions that have not happened and overstate certainty.
What is uncertain is the failures. Send i is observed as converted with probability θ·F(age_i),
so the likelihood is θ^s · Π_{not converted} (1 − θ·F(age_i)) ≈ θ^s (1 − θ)^{Σ F(age_i)}: a
Beta posterior whose failures are the not-yet-converted sends each weighted by F(age_i). Hence
effective trials = successes + Σ_{not converted} F(age_i) (never fewer than the successes),
and the arrived successes stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

DelayCdf = Callable[[ArrayLike], NDArray[np.float64]]


def _ages(values: ArrayLike, name: str = "ages") -> NDArray[np.float64]:
    ages = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if np.isnan(ages).any() or (ages < 0).any():
        raise ValueError(f"{name} must be >= 0 and not NaN")
    return ages


def exponential_delay_cdf(mean: float, cap: float | None = None) -> DelayCdf:
    """Return the CDF of an exponential delay with the given mean, optionally truncated at
    ``cap`` (every conversion has arrived by then). Raises ValueError unless mean > 0 and
    cap > 0."""
    if not mean > 0 or (cap is not None and not cap > 0):
        raise ValueError(f"mean and cap must be > 0, got mean={mean!r}, cap={cap!r}")
    scale = 1.0 if cap is None else -np.expm1(-cap / mean)

    def cdf(ages: ArrayLike) -> NDArray[np.float64]:
        a = _ages(ages)
        return np.minimum(-np.expm1(-a / mean) / scale, 1.0)

    return cdf


def lognormal_delay_cdf(median: float, sigma: float) -> DelayCdf:
    """Return the CDF of a log-normal delay with the given median and log-scale sigma.
    Raises ValueError unless both are > 0."""
    if not median > 0 or not sigma > 0:
        raise ValueError(f"median and sigma must be > 0, got {median!r}, {sigma!r}")

    def cdf(ages: ArrayLike) -> NDArray[np.float64]:
        a = _ages(ages)
        z = (np.log(np.where(a > 0, a, 1.0)) - np.log(median)) / sigma
        return np.where(a > 0, special.ndtr(z), 0.0)

    return cdf


def empirical_delay_cdf(ages: ArrayLike, shares: ArrayLike) -> DelayCdf:
    """Return a CDF interpolating measured (age, share arrived) points linearly from (0, 0).

    The last point is taken as the age by which every conversion has arrived: shares are
    divided by the last share and the CDF is 1 beyond it. Raises ValueError unless ages are
    increasing and > 0, and shares are in [0, 1], non-decreasing, with a last share > 0.
    """
    x = _ages(ages)
    y = np.atleast_1d(np.asarray(shares, dtype=np.float64))
    if x.shape != y.shape or x.size == 0:
        raise ValueError("ages and shares need the same length >= 1")
    if (x <= 0).any() or (np.diff(x) <= 0).any():
        raise ValueError("ages must be > 0 and increasing")
    if np.isnan(y).any() or (y < 0).any() or (y > 1).any() or (np.diff(y) < 0).any():
        raise ValueError("shares must be in [0, 1] and non-decreasing")
    if y[-1] <= 0:
        raise ValueError("the last share must be > 0")
    knots, values = np.concatenate([[0.0], x]), np.concatenate([[0.0], y / y[-1]])

    def cdf(query: ArrayLike) -> NDArray[np.float64]:
        return np.interp(_ages(query), knots, values, right=1.0)

    return cdf


def effective_trials(
    ages: ArrayLike,
    cdf: DelayCdf,
    *,
    sends: ArrayLike | None = None,
    successes: ArrayLike | None = None,
) -> float:
    """Return successes + Σ (sends − successes)·cdf(age) over groups of sends of one arm.

    Each entry of ``ages`` is a group of ``sends`` sends (default 1 each) of that age, of which
    ``successes`` (default 0) have converted so far; with one entry per send, sends are 1 and
    successes 0 or 1. Raises ValueError on negative or NaN ages, counts, mismatched lengths,
    successes above sends, or a CDF value outside [0, 1].
    """
    age = _ages(ages)
    n = np.ones_like(age) if sends is None else _ages(sends, "sends")
    s = np.zeros_like(age) if successes is None else _ages(successes, "successes")
    if not age.shape == n.shape == s.shape:
        raise ValueError("ages, sends and successes need the same length")
    if (s > n).any():
        raise ValueError("successes exceed sends in some group")
    share = np.asarray(cdf(age), dtype=np.float64)
    if share.shape != age.shape or np.isnan(share).any() or (share < 0).any() or (share > 1).any():
        raise ValueError("the delay CDF must return one value in [0, 1] per age")
    return float(s.sum() + ((n - s) * share).sum())
