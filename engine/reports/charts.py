"""Server-side SVG charts drawn by matplotlib: no JavaScript, no CDN, deterministic bytes.

matplotlib is imported inside the functions (never at import time) and used through its object
API with the SVG canvas, so no GUI backend is ever chosen. The SVG is deterministic: a fixed
``svg.hashsalt`` for element ids and no date in the metadata. Colours are the Okabe-Ito palette,
which stays distinguishable with the common colour-vision deficiencies; past eight series the
line style changes too.
"""

from __future__ import annotations

import base64
import io
import threading
import warnings
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
LINE_STYLES = ("-", "--", ":", "-.")
_RC = {
    "svg.hashsalt": "resistry-reports",
    "svg.fonttype": "none",  # text stays text: smaller, selectable, read by screen readers
    "font.family": "sans-serif",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
# matplotlib's rcParams are process-wide and its drawing is not thread-safe: draw one at a time.
_DRAWING = threading.Lock()


def style(index: int) -> dict[str, Any]:
    """Colour and line style of series ``index``."""
    return {
        "color": OKABE_ITO[index % len(OKABE_ITO)],
        "linestyle": LINE_STYLES[(index // len(OKABE_ITO)) % len(LINE_STYLES)],
    }


def _render(draw: Any, *, width: float = 7.5, height: float = 3.6) -> str:
    """Run ``draw(figure)`` on a fresh figure and return the SVG text."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    with _DRAWING, matplotlib.rc_context(_RC), warnings.catch_warnings():
        # Inside the lock, so the filter cannot leak into another thread's work.
        warnings.filterwarnings("ignore", "AutoDateLocator was unable", UserWarning)
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasSVG(figure)
        draw(figure)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def data_uri(svg: str) -> str:
    """The SVG as a ``data:`` URI for an ``<img>``: each chart keeps its own element ids apart
    from the page's, and the page needs no second request."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def _empty(axes: Any, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _legend(axes: Any, count: int) -> None:
    if count:
        axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)


def _date_axis(axes: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=8)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def posterior_densities(posteriors: Sequence[tuple[str, float, float]], metric: str) -> str:
    """Beta posterior density of each arm's rate: (label, alpha, beta) per arm."""
    import numpy as np
    from scipy import stats as distributions

    def draw(figure: Any) -> None:
        axes = figure.add_subplot()
        axes.set_title(f"Posterior of each variant's {metric} rate")
        axes.set_xlabel(f"{metric} rate")
        axes.set_ylabel("Density")
        if not posteriors:
            _empty(axes, "No variants to compare")
            return
        alphas = np.array([a for _, a, _ in posteriors])
        betas = np.array([b for _, _, b in posteriors])
        low = float(np.min(distributions.beta.ppf(0.0005, alphas, betas)))
        high = float(np.max(distributions.beta.ppf(0.9995, alphas, betas)))
        x = np.linspace(low, high, 400)
        for index, (label, alpha, beta) in enumerate(posteriors):
            axes.plot(x, distributions.beta.pdf(x, alpha, beta), label=label, **style(index))
        axes.xaxis.set_major_formatter(_percent())
        _legend(axes, len(posteriors))

    return _render(draw)


def _percent() -> Any:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=None)


def time_series(
    rows: Sequence[dict[str, Any]],
    *,
    x_key: str,
    series_key: str,
    y_key: str,
    title: str,
    y_label: str,
    as_share: bool = False,
    steps: bool = False,
) -> str:
    """One line per value of ``series_key`` over ``x_key`` (ISO dates or datetimes)."""
    series: dict[str, list[tuple[datetime | date, float]]] = defaultdict(list)
    for row in rows:
        if row[y_key] is not None:
            series[str(row[series_key])].append((_when(row[x_key]), row[y_key]))

    def draw(figure: Any) -> None:
        axes = figure.add_subplot()
        axes.set_title(title)
        axes.set_xlabel("Date (UTC)")
        axes.set_ylabel(y_label)
        if not series:
            _empty(axes, "No data in this range")
            return
        for index, (label, points) in enumerate(series.items()):
            xs, ys = zip(*points, strict=True)
            if steps:
                axes.step(xs, ys, where="post", label=label, **style(index))
            else:
                axes.plot(xs, ys, marker="." if len(xs) < 40 else None, label=label, **style(index))
        if as_share:
            axes.yaxis.set_major_formatter(_percent())
            axes.set_ylim(0, None)
        moments = [x for points in series.values() for x, _ in points]
        if min(moments) == max(moments):  # one instant: widen, or the date axis has no scale
            axes.set_xlim(min(moments) - timedelta(days=1), max(moments) + timedelta(days=1))
        _date_axis(axes)
        _legend(axes, len(series))

    return _render(draw)


def wide_time_series(
    rows: Sequence[dict[str, Any]], *, x_key: str, columns: Sequence[tuple[str, str]], title: str
) -> str:
    """Several columns of the same rows as lines over ``x_key``: (key, label) per line."""
    long_rows = [
        {"x": row[x_key], "series": label, "y": row[key]} for row in rows for key, label in columns
    ]
    return time_series(
        long_rows, x_key="x", series_key="series", y_key="y", title=title, y_label="Count"
    )


def horizontal_bars(
    labels: Sequence[str], values: Sequence[float], *, title: str, x_label: str
) -> str:
    """A bar per label, top to bottom, with its value printed at the end of the bar."""

    def draw(figure: Any) -> None:
        axes = figure.add_subplot()
        axes.set_title(title)
        axes.set_xlabel(x_label)
        if not labels:
            _empty(axes, "No data in this range")
            return
        positions = list(range(len(labels)))[::-1]
        bars = axes.barh(positions, values, color=OKABE_ITO[0])
        axes.set_yticks(positions, labels)
        axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
        axes.margins(x=0.15)

    return _render(draw, height=max(2.4, 0.4 * len(labels) + 1.2))


def grouped_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    y_label: str,
) -> str:
    """Bars of each series side by side for every category."""
    import numpy as np

    def draw(figure: Any) -> None:
        axes = figure.add_subplot()
        axes.set_title(title)
        axes.set_ylabel(y_label)
        if not categories:
            _empty(axes, "No data in this range")
            return
        width = 0.8 / max(1, len(series))
        x = np.arange(len(categories))
        for index, (label, values) in enumerate(series):
            axes.bar(x + index * width, values, width, label=label, color=style(index)["color"])
        axes.set_xticks(x + width * (len(series) - 1) / 2, categories, rotation=30, ha="right")
        _legend(axes, len(series))

    return _render(draw)


def rates_with_intervals(
    labels: Sequence[str],
    rates: Sequence[float | None],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    *,
    title: str,
    x_label: str,
) -> str:
    """A point per label at its rate with a horizontal bar for its credible interval."""

    def draw(figure: Any) -> None:
        axes = figure.add_subplot()
        axes.set_title(title)
        axes.set_xlabel(x_label)
        shown = [
            (label, rate, low, high)
            for label, rate, low, high in zip(labels, rates, lows, highs, strict=True)
            if rate is not None and low is not None and high is not None
        ]
        if not shown:
            _empty(axes, "No trials in this range")
            return
        positions = list(range(len(shown)))[::-1]
        for position, (_, rate, low, high) in zip(positions, shown, strict=True):
            axes.errorbar(
                rate, position, xerr=[[max(0.0, rate - low)], [max(0.0, high - rate)]], fmt="o",
                capsize=3,
                color=OKABE_ITO[0],
            )  # fmt: skip
        axes.set_yticks(positions, [label for label, *_ in shown])
        axes.xaxis.set_major_formatter(_percent())

    return _render(draw, height=max(2.4, 0.4 * len(labels) + 1.2))


def _when(value: Any) -> datetime | date:
    if isinstance(value, datetime | date):
        return value
    text = str(value)
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
