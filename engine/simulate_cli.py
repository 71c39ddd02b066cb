"""``resistry simulate``: run the campaign offline with time compressed and print what it achieved.

See :mod:`engine.simulate`. The configured database is never touched: the run lives in a
temporary directory. The summary goes to stdout (the same for the same seed); the progress bar
and the run time go to stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from engine.runtime import Runtime, pass_runtime

DEFAULT_RECRUITERS = 2000  # the demo campaign's


@click.command("simulate")
@click.option(
    "--days", type=click.IntRange(1, 366), default=30, show_default=True, help="Days to simulate."
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    help="Seed of every random draw (default: simulator.seed).",
)
@click.option(
    "--recruiters",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_RECRUITERS,
    show_default=True,
    help="Demo recruiters to mail.",
)
@click.option(
    "--mailings-per-week",
    type=click.IntRange(1, 7),
    default=1,
    show_default=True,
    help="Recruiter mailings per week (at 10:00, evenly spaced, the first on day 1).",
)
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to draw the allocation chart, .svg or .png (default: instance/simulation.svg).",
)
@pass_runtime
def simulate(
    runtime: Runtime,
    days: int,
    seed: int | None,
    recruiters: int,
    mailings_per_week: int,
    chart: Path | None,
) -> None:
    """Simulate DAYS of the campaign against the SendGrid simulator, offline and fast.

    The real policy, mailer and webhook run on a temporary copy of the demo campaign while a
    simulated clock advances; the summary compares the bandit with an oracle and with "test
    20 % evenly, then send the winner".
    """
    from engine.simulate import SimulationError, SimulationOptions, run_simulation
    from engine.simulate_chart import CHART_FORMATS, write_chart

    settings = runtime.settings
    chart_path = chart or settings.base_dir / "instance" / "simulation.svg"
    if chart_path.suffix.lower().lstrip(".") not in CHART_FORMATS:
        raise click.BadParameter("the chart must be a .svg or .png file", param_hint="--chart")
    options = SimulationOptions(
        days=days,
        seed=settings.simulator.seed if seed is None else seed,
        recruiters=recruiters,
        mailings_per_week=mailings_per_week,
    )
    began = time.monotonic()
    try:
        chart_path.parent.mkdir(parents=True, exist_ok=True)  # fail now, not after the run
        with click.progressbar(length=days, label="simulating days", file=sys.stderr) as bar:
            result = run_simulation(settings, options, on_day=lambda _done: bar.update(1))
        write_chart(result, chart_path)
    except (SimulationError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in result.lines():
        click.echo(line)
    click.echo(f"\nchart: {chart_path}")
    click.echo(f"finished in {time.monotonic() - began:.0f} s", err=True)
