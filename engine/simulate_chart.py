"""The chart of a simulation: each mail experiment's allocation share per day, per variant.

matplotlib is imported inside the function and used through its object API (no GUI backend, no
pyplot state). SVG output is deterministic: fixed element-id salt and no date in the metadata.
"""

from __future__ import annotations

from pathlib import Path

from engine.simulate_summary import SimulationResult

CHART_FORMATS = ("svg", "png")
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
_RC = {
    "svg.hashsalt": "resistry-simulation",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def write_chart(result: SimulationResult, path: Path) -> None:
    """Draw the allocation share per day of every mail experiment (one panel each, subject
    lines first) into ``path``; the format follows the suffix (.svg or .png).

    Raises ``ValueError`` for another suffix and ``OSError`` when the file cannot be written.
    """
    chart_format = path.suffix.lower().lstrip(".")
    if chart_format not in CHART_FORMATS:
        raise ValueError(f"the chart must be a .svg or .png file, not {path.name!r}")
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [e for e in result.experiments if any(e.key in d.weights for d in result.shares)]
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(8.0, 2.6 * max(len(panels), 1) + 0.6), layout="constrained")
        FigureCanvasAgg(figure)
        figure.suptitle(
            f"Allocation share per day — {result.days} simulated days, seed {result.seed}"
        )
        axes_list = figure.subplots(max(len(panels), 1), 1, squeeze=False)[:, 0]
        for axes, experiment in zip(axes_list, panels, strict=False):
            days = [d.day for d in result.shares] + [len(result.shares) + 1]
            keys = list(result.shares[-1].weights.get(experiment.key, {}))
            series = [
                [d.weights.get(experiment.key, {}).get(key, 0.0) for d in result.shares]
                for key in keys
            ]
            series = [values + values[-1:] for values in series]  # draw the last day's step
            colours = [COLOURS[i % len(COLOURS)] for i in range(len(keys))]
            axes.stackplot(days, series, labels=keys, colors=colours, step="post", alpha=0.85)
            if experiment.winner and experiment.decided_day:
                axes.axvline(experiment.decided_day, color="#333333", linestyle="--", lw=1)
                axes.annotate(
                    f"promoted {experiment.winner}",
                    (experiment.decided_day, 1.0),
                    xytext=(4, -12),
                    textcoords="offset points",
                    fontsize=8,
                )
            axes.set_title(f"{experiment.key} ({experiment.kind}, metric {experiment.metric})")
            axes.set_xlabel("day of the simulation (weights set for the next mailing)")
            axes.set_ylabel("allocation share")
            # A day's weights hold until the next day's: its step spans [day, day + 1).
            axes.set_xlim(1, len(days) + 1)
            axes.set_ylim(0, 1)
            axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
        if not panels:
            axes_list[0].text(0.5, 0.5, "no mail experiment was simulated", ha="center")
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"Date": None} if chart_format == "svg" else None
        figure.savefig(path, format=chart_format, metadata=metadata)
