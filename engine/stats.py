"""Beta-Binomial posterior statistics for binary outcomes (pure: NumPy and SciPy only).

Each arm has a Beta(α, β) posterior: α = prior_alpha + successes, β = prior_beta + failures.
Functions take the posterior parameters as arrays (one entry per arm) and return arrays.

P(best), P(beats control) and expected loss are deterministic quadratures. They integrate in the
logit variable t = log(x / (1 − x)), where every Beta density is smooth and log-concave (its
singularities at 0 and 1 move to ±∞), on Gauss-Legendre panels whose width follows the local
scale of the narrowest arm present, so a million-trial arm and a ten-trial arm are both resolved.
Only the posterior mass outside the quantiles [1e-15, 1 − 1e-15] of each arm is neglected.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

TAIL = 1e-15  # posterior mass neglected in each tail of each arm
PANEL_NODES = 12  # Gauss-Legendre nodes per panel
# A panel spans at most _PANEL_WIDTH local standard deviations, lets the log-density change by
# at most _PANEL_WIDTH·_SLOPE_SCALE (e^-18 over 12 nodes integrates to 1e-10 relative), and
# spans at most _POLE times its distance to the densities' singularities at t = ±iπ.
_PANEL_WIDTH, _SLOPE_SCALE, _POLE, _MAX_PANELS = 3.0, 6.0, 0.7, 20_000
_GL_X, _GL_W = np.polynomial.legendre.leggauss(PANEL_NODES)
VALUE_REMAINING_DRAWS = 20_000
VALUE_REMAINING_SEED = 2015  # Scott (2015); the default generator, so results repeat

Array = NDArray[np.float64]


def _as_array(name: str, values: ArrayLike) -> Array:
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if array.ndim != 1:
        raise ValueError(f"{name} must be a number or a 1-D sequence, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = "NaN" if np.isnan(array).any() else "an infinite value"
        raise ValueError(f"{name} contains {bad}")
    return array


def posterior(
    trials: ArrayLike, successes: ArrayLike, prior_alpha: float = 1.0, prior_beta: float = 1.0
) -> tuple[Array, Array]:
    """Return the posterior parameters (α, β) per arm for counts under a Beta prior.

    Trials may be fractional (effective trials, see :mod:`engine.delay`).
    Raises ValueError naming the bad argument: NaN or infinite values, negative counts,
    successes greater than trials, mismatched lengths, or a prior parameter that is not > 0.
    """
    for name, value in (("prior_alpha", prior_alpha), ("prior_beta", prior_beta)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    n, s = _as_array("trials", trials), _as_array("successes", successes)
    if n.shape != s.shape:
        raise ValueError(f"trials has {n.size} entries but successes has {s.size}")
    for name, values in (("trials", n), ("successes", s)):
        if (values < 0).any():
            raise ValueError(f"{name} must be >= 0, got {values[values < 0][0]!r}")
    if (s > n).any():
        i = int(np.argmax(s > n))
        raise ValueError(f"successes ({s[i]:g}) exceed trials ({n[i]:g}) for arm {i}")
    return prior_alpha + s, prior_beta + (n - s)


def _params(alpha: ArrayLike, beta: ArrayLike) -> tuple[Array, Array]:
    a, b = _as_array("alpha", alpha), _as_array("beta", beta)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"alpha and beta need the same length >= 1, got {a.size} and {b.size}")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("alpha and beta must be > 0")
    return a, b


def posterior_mean(alpha: ArrayLike, beta: ArrayLike) -> Array:
    """Return the posterior mean α / (α + β) per arm. Raises ValueError on bad parameters."""
    a, b = _params(alpha, beta)
    return a / (a + b)


def credible_interval(
    alpha: ArrayLike, beta: ArrayLike, level: float = 0.95
) -> tuple[Array, Array]:
    """Return the equal-tailed credible interval (lower, upper) per arm at ``level``.
    Raises ValueError on bad parameters or a level outside (0, 1)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    a, b = _params(alpha, beta)
    tail = (1 - level) / 2
    return special.betaincinv(a, b, tail), special.betaincinv(a, b, 1 - tail)


def p_rate_above(alpha: ArrayLike, beta: ArrayLike, limit: float) -> Array:
    """Return P(θ > limit) per arm, e.g. the chance an unsubscribe rate exceeds its limit."""
    a, b = _params(alpha, beta)
    if not 0 <= limit <= 1:
        raise ValueError(f"limit must be in [0, 1], got {limit!r}")
    return special.betaincc(a, b, limit)


# -- quadrature in the logit variable -------------------------------------------------------


# _GL_S[k, l] = ∫_{-1}^{x_k} ℓ_l(s) ds for the Lagrange basis ℓ_l on the Gauss-Legendre nodes x.
_GL_S = np.column_stack(
    [
        np.polynomial.legendre.legval(_GL_X, np.polynomial.legendre.legint(e, lbnd=-1))
        for e in np.eye(PANEL_NODES)
    ]
) @ np.linalg.inv(np.polynomial.legendre.legvander(_GL_X, PANEL_NODES - 1))


def _stirling_error(z: Array) -> Array:
    """lgamma(z) − [(z − ½) log z − z + ½ log 2π], without cancellation for large z."""
    big = z >= 15
    zs = np.where(big, z, 15.0)
    series = (
        1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - 1 / (1188 * zs**2)) / zs**2) / zs**2) / zs**2
    ) / zs
    zd = np.where(big, 1.0, z)
    direct = special.gammaln(zd) - ((zd - 0.5) * np.log(zd) - zd + 0.5 * np.log(2 * np.pi))
    return np.where(big, series, direct)


def _log_mix(u: Array, p: Array, q: Array) -> Array:
    """log(p + q·e^u) for p + q = 1: via log1p near u = 0, via logaddexp far from it."""
    near = np.log1p(q * np.expm1(np.clip(u, -1.0, 1.0)))
    far = np.logaddexp(np.log(p), np.log(q) + u)
    return np.where(np.abs(u) < 1, near, far)


def _log_density(a: Array, b: Array, t: Array) -> Array:
    """Log-density of logit(θ) for θ ~ Beta(a, b), shape (K, M), accurate for a + b ≈ 1e7.

    Written relative to the mode t_m = log(a/b) so that no two large terms cancel:
    log g(t) = log g(t_m) − a·log(x_m + y_m e^{−u}) − b·log(y_m + x_m e^{u}), u = t − t_m.
    """
    A, B = a[:, None], b[:, None]
    n = A + B
    x_m, y_m = A / n, B / n
    u = t[None, :] - (np.log(A) - np.log(B))
    log_peak = 0.5 * np.log(A * B / (2 * np.pi * n)) - _stirling_error(A) - _stirling_error(B)
    log_peak = log_peak + _stirling_error(n)
    return log_peak - A * _log_mix(-u, x_m, y_m) - B * _log_mix(u, y_m, x_m)


def _cdf_at(a: Array, b: Array, t: float) -> Array:
    """Each arm's CDF at logit t, exact where x = expit(t) or 1 − x is tiny."""
    if t > 30:  # x rounds to 1: use 1 − I_{1−x}(b, a)
        return special.betaincc(b, a, special.expit(-t))
    if t < -700:  # x underflows: F ≈ x^a / (a B(a, b)) with log x ≈ t
        return np.exp(a * t - np.log(a) - special.betaln(a, b))
    return special.betainc(a, b, special.expit(t))


def _support(a: Array, b: Array) -> tuple[Array, Array]:
    """Logits of the TAIL and 1 − TAIL quantiles, computed without rounding x to 0 or 1."""
    x_lo = special.betaincinv(a, b, TAIL)
    y_hi = special.betaincinv(b, a, TAIL)  # 1 − (upper quantile), exact near 1
    # When a quantile underflows, use the tail law F(x) ≈ x^a / (a B(a, b)).
    tail_lo = (np.log(TAIL) + np.log(a) + special.betaln(a, b)) / a
    tail_hi = -(np.log(TAIL) + np.log(b) + special.betaln(a, b)) / b
    ok_lo, ok_hi = x_lo > 1e-300, y_hi > 1e-300
    x_lo, y_hi = np.where(ok_lo, x_lo, 0.5), np.where(ok_hi, y_hi, 0.5)
    t_lo = np.where(ok_lo, np.log(x_lo) - np.log1p(-x_lo), tail_lo)
    t_hi = np.where(ok_hi, np.log1p(-y_hi) - np.log(y_hi), tail_hi)
    return t_lo, t_hi


def _panels(a: Array, b: Array, lo: Array, hi: Array, start: float, stop: float) -> Array:
    """Panel edges from start to stop, each no wider than the arms overlapping it allow.

    In t the log-density of arm j has slope a − (a+b)x and curvature −(a+b)x(1−x), so
    1/sqrt(curvature + (slope/SLOPE)²) is its standard deviation at the mode and shrinks in the
    tails; convex in x, it is worst at a panel's ends. Arms whose support misses a panel do not
    constrain it, so a narrow arm costs panels only where its mass is.
    """
    n = a + b
    # The max over many arms is narrower than any one arm (≈ σ/√(2 ln K)).
    width = _PANEL_WIDTH / np.sqrt(1.0 + np.log(a.size))
    entries = np.sort(lo)
    shrink = 0.5 ** np.arange(10.0)

    def allowed(t: float, steps: Array) -> Array:
        """Widest panel the arms allow, for panels [t, t + step] (one per candidate step)."""
        ends = t + steps
        x0 = special.expit(np.maximum(lo, t))
        x1 = special.expit(np.minimum(hi, ends[:, None]))
        d0 = n * x0 * (1 - x0) + ((a - n * x0) / _SLOPE_SCALE) ** 2
        d1 = n * x1 * (1 - x1) + ((a - n * x1) / _SLOPE_SCALE) ** 2
        near = (hi > t) & (lo < ends[:, None])
        demand = np.where(near, np.maximum(d0, d1), 0.0).max(axis=1)
        gap = np.where((t < 0) & (ends > 0), 0.0, np.minimum(abs(t), np.abs(ends)))
        return np.minimum(width / np.sqrt(demand + 1e-300), _POLE * np.hypot(gap, np.pi))

    edges, t, previous = [start], start, np.inf
    while t < stop and len(edges) <= _MAX_PANELS:
        if previous == np.inf:
            previous = float(allowed(t, np.zeros(1))[0]) / 2
        k = np.searchsorted(entries, t, side="right")
        landing = entries[k] - t if k < entries.size else np.inf
        steps = np.append(min(2 * previous, stop - t) * shrink, landing)
        steps = steps[steps <= steps[0]]
        room = allowed(t, steps)
        fits = room >= steps
        # The widest candidate that fits; failing all, the room the smallest one leaves fits.
        step = float(steps[fits].max()) if fits.any() else float(room[np.argmin(steps)])
        if not t + step > t:
            break
        t = min(t + step, stop)
        edges.append(t)
        previous = step
    return np.asarray(edges)


def _grid(a: Array, b: Array, start: float | None = None) -> tuple[Array, Array, Array, Array]:
    """Nodes over [start, max upper support]; start defaults to the highest lower support.

    Returns x = expit(t) and the weights at the nodes (M,), and each arm's logit density and
    CDF at the nodes (K, M). The CDFs integrate the densities panel by panel with the
    Gauss-Legendre integration matrix, from each arm's exact CDF at ``start``: consistent with
    the densities, and far cheaper than an incomplete beta function per node.
    """
    lo, hi = _support(a, b)
    begin = float(np.max(lo)) if start is None else start
    edges = _panels(a, b, lo, hi, begin, float(np.max(hi)))
    half = (edges[1:] - edges[:-1]) / 2
    t = ((edges[1:] + edges[:-1])[:, None] / 2 + half[:, None] * _GL_X).ravel()
    density = np.exp(_log_density(a, b, t))
    panels = density.reshape(a.size, half.size, PANEL_NODES) * half[None, :, None]
    mass = panels @ _GL_W
    before = np.cumsum(mass, axis=1) - mass + _cdf_at(a, b, begin)[:, None]
    cdf = np.clip(before[:, :, None] + panels @ _GL_S.T, 0.0, 1.0).reshape(a.size, -1)
    return special.expit(t), (half[:, None] * _GL_W).ravel(), density, cdf


def _others_product(cdf: Array) -> Array:
    """Π_{j≠i} F_j at every node, for every i, by prefix and suffix products (no division)."""
    ones = np.ones((1, cdf.shape[1]))
    prefix = np.vstack([ones, np.cumprod(cdf[:-1], axis=0)])
    suffix = np.vstack([np.cumprod(cdf[::-1], axis=0)[::-1][1:], ones])
    return prefix * suffix


def _best_moments(a: Array, b: Array) -> tuple[Array, float]:
    """P(i best) per arm and E[max θ], from one grid."""
    if a.size == 1:
        return np.ones(1), float(a[0] / (a[0] + b[0]))
    x, weight, density, cdf = _grid(a, b)
    win = density * _others_product(cdf) * weight
    probability = np.clip(win.sum(axis=1), 0.0, 1.0)
    expected_max = float((win * x).sum())
    return probability, expected_max


def best_arm_summary(alpha: ArrayLike, beta: ArrayLike) -> tuple[Array, Array, Array]:
    """Return (p_best, expected_loss, expected_loss_relative) per arm from one quadrature.
    Raises ValueError on bad parameters."""
    a, b = _params(alpha, beta)
    probability, expected_max = _best_moments(a, b)
    loss = np.maximum(expected_max - a / (a + b), 0.0)
    return probability, loss, loss / expected_max


def p_best(alpha: ArrayLike, beta: ArrayLike) -> Array:
    """Return P(arm i has the highest rate) per arm (summing to 1 within 1e-9).
    Raises ValueError on bad parameters."""
    return best_arm_summary(alpha, beta)[0]


def expected_loss(alpha: ArrayLike, beta: ArrayLike) -> Array:
    """Return E[max_j θ_j − θ_i] per arm, with E[max θ] = Σ_i E[θ_i; i best] by quadrature.
    Raises ValueError on bad parameters."""
    return best_arm_summary(alpha, beta)[1]


def expected_loss_relative(alpha: ArrayLike, beta: ArrayLike) -> Array:
    """Return E[max θ − θ_i] / E[max θ] per arm: the share of the best rate given up.

    This ratio of expectations stands in for E[(max θ − θ_i)/θ_i], which is infinite for an arm
    with no successes under a prior α ≤ 1 (E[1/θ] diverges); it always lies in [0, 1].
    Raises ValueError on bad parameters.
    """
    return best_arm_summary(alpha, beta)[2]


def p_beat_control(alpha: ArrayLike, beta: ArrayLike, control: int = 0) -> Array:
    """Return P(θ_i > θ_control) per arm; the control's own entry is 0.5 by convention.
    Raises ValueError on bad parameters or a control index out of range."""
    a, b = _params(alpha, beta)
    if not 0 <= control < a.size:
        raise ValueError(f"control must index one of {a.size} arms, got {control!r}")
    result = np.full(a.size, 0.5)
    others = np.arange(a.size) != control
    if not others.any():
        return result
    lo, _ = _support(a, b)
    start = max(float(np.min(lo[others])), float(lo[control]))
    _, weight, density, cdf = _grid(a, b, start=start)
    win = (density[others] * cdf[control] * weight).sum(axis=1)
    result[others] = np.clip(win, 0.0, 1.0)
    return result


def value_remaining(
    alpha: ArrayLike,
    beta: ArrayLike,
    *,
    quantile: float = 0.95,
    draws: int = VALUE_REMAINING_DRAWS,
    rng: np.random.Generator | None = None,
) -> Array:
    """Return, per arm i, the ``quantile`` of (θ_max − θ_i) / θ_i by Monte Carlo.

    For the champion (the arm with the highest P(best)) this is the potential value remaining
    of Scott (2015): how much better than the champion another arm might still be. Uses
    ``draws`` joint posterior draws from ``rng`` (default: a generator seeded with
    VALUE_REMAINING_SEED, so results repeat). Raises ValueError on bad parameters, quantile or
    draws.
    """
    a, b = _params(alpha, beta)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    rng = np.random.default_rng(VALUE_REMAINING_SEED) if rng is None else rng
    theta = rng.beta(a, b, size=(draws, a.size))
    # A draw can underflow to 0 under a tiny prior; the ratio stays finite.
    base = np.maximum(theta, np.finfo(np.float64).tiny)
    return np.quantile((theta.max(axis=1, keepdims=True) - base) / base, quantile, axis=0)
