"""Report pages (/reports/...), their CSV downloads, and the JSON API (/api/v1/reports/...).

Views only translate HTTP: they parse the filters (a bad one is a 400 naming it), call the report
services and render the result. Every route is for admins and analysts only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from engine.app import csrf, settings_of
from engine.auth import require_roles
from engine.db import get_session
from engine.reports import DateRange, ReportInputError, charts, parse_date_range
from engine.reports.csv_export import table_csv
from engine.reports.experiment import ExperimentNotFound, experiment_report, list_experiments
from engine.reports.funnel import funnel_report, overall_steps
from engine.reports.policy_areas import policy_area_report
from engine.reports.reciprocity import reciprocity_report
from engine.reports.recruiters import recruiter_report
from engine.reports.tables import format_cell

bp = Blueprint(
    "reports",
    __name__,
    url_prefix="/reports",
    template_folder="templates",
)
api = Blueprint("reports_api", __name__, url_prefix="/api/v1/reports")
READERS = ("admin", "analyst")
MAX_LEADERBOARD = 10_000
# The reports other than the per-experiment one: URL name → (title, template).
REPORTS = {
    "funnel": ("Funnel", "reports/funnel.html"),
    "reciprocity": ("Groups: reciprocity", "reports/reciprocity.html"),
    "recruiters": ("Recruiters", "reports/recruiters.html"),
    "policy-areas": ("Policy areas", "reports/policy_areas.html"),
}


def init_app(app: Flask) -> None:
    # The JSON API takes bearer tokens (sessions only for GET), so CSRF does not apply.
    csrf.exempt(api)
    app.register_blueprint(bp)
    app.register_blueprint(api)
    app.add_template_filter(format_cell, "report_cell")


# --- filters -----------------------------------------------------------------------------------


def _date_range() -> DateRange:
    try:
        return parse_date_range(request.args.get("start"), request.args.get("end"))
    except ReportInputError as exc:
        abort(400, description=str(exc))


def _leaderboard_limit() -> int:
    raw = request.args.get("limit", "50").strip()
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LEADERBOARD:
        abort(400, description=f"limit must be a whole number from 1 to {MAX_LEADERBOARD}")
    return int(raw)


def _build(name: str, date_range: DateRange) -> Any:
    """The report called ``name`` over ``date_range``; 404 for an unknown name."""
    session = get_session()
    settings = settings_of(current_app)
    builders: dict[str, Callable[[], Any]] = {
        "funnel": lambda: funnel_report(session, date_range),
        "reciprocity": lambda: reciprocity_report(
            session, visibility_floor=settings.landing.visibility_floor, date_range=date_range
        ),
        "recruiters": lambda: recruiter_report(
            session,
            leader_min_friends=settings.reports.leader_min_friends,
            date_range=date_range,
            limit=_leaderboard_limit(),
        ),
        "policy-areas": lambda: policy_area_report(session, date_range),
    }
    if name not in builders:
        abort(404, description=f"no report called {name!r}")
    return builders[name]()


def _experiment(experiment_id: int, date_range: DateRange) -> Any:
    try:
        return experiment_report(get_session(), experiment_id, date_range)
    except ExperimentNotFound as exc:
        abort(404, description=str(exc))


def _csv(table: Any, filename: str) -> Response:
    return Response(
        table_csv(table),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def _find_table(report: Any, table_name: str) -> Any:
    for table in report.tables():
        if table.name == table_name:
            return table
    abort(404, description=f"this report has no table {table_name!r}")


def _filters() -> dict[str, str]:
    """The query string to carry into CSV links, so a download matches the page."""
    return {key: value for key, value in request.args.items() if key in ("start", "end", "limit")}


# --- pages -------------------------------------------------------------------------------------


@bp.get("/")
@require_roles(*READERS)
def index() -> ResponseReturnValue:
    experiments = list_experiments(get_session())
    return render_template("reports/index.html", experiments=experiments, reports=REPORTS)


@bp.get("/experiments/<int:experiment_id>")
@require_roles(*READERS)
def experiment_page(experiment_id: int) -> ResponseReturnValue:
    report = _experiment(experiment_id, _date_range())
    metric = report.experiment["metric"] if report.experiment["kind"] != "landing" else "signup"
    chart_svgs = {
        "posterior": charts.posterior_densities(report.posteriors, metric),
        "allocation": charts.time_series(
            report.allocation.rows,
            x_key="at",
            series_key="variant",
            y_key="weight",
            title="Allocation share over time",
            y_label="Share of traffic",
            as_share=True,
            steps=True,
        ),
        "cumulative": charts.time_series(
            report.cumulative.rows,
            x_key="day",
            series_key="variant",
            y_key="cumulative",
            title=f"Cumulative {metric}s per variant, by day of the trial",
            y_label=f"{metric}s (cumulative)",
        ),
    }
    return render_template(
        "reports/experiment.html",
        report=report,
        charts={name: charts.data_uri(svg) for name, svg in chart_svgs.items()},
        csv_endpoint="reports.experiment_csv",
        csv_args={"experiment_id": experiment_id, **_filters()},
        json_url=url_for("reports_api.experiment_json", experiment_id=experiment_id, **_filters()),
    )


@bp.get("/<report_name>")
@require_roles(*READERS)
def report_page(report_name: str) -> ResponseReturnValue:
    if report_name not in REPORTS:
        abort(404, description=f"no report called {report_name!r}")
    report = _build(report_name, _date_range())
    title, template = REPORTS[report_name]
    return render_template(
        template,
        title=title,
        report=report,
        charts={
            name: charts.data_uri(svg) for name, svg in _charts_for(report_name, report).items()
        },
        csv_endpoint="reports.report_csv",
        csv_args={"report_name": report_name, **_filters()},
        json_url=url_for("reports_api.report_json", report_name=report_name, **_filters()),
    )


def _charts_for(name: str, report: Any) -> dict[str, str]:
    """The SVG charts drawn for a report page, by name."""
    if name == "funnel":
        steps = overall_steps(report)
        return {
            "funnel": charts.horizontal_bars(
                [label for label, _ in steps],
                [count for _, count in steps],
                title="Funnel, all mailings in the range",
                x_label="Sends reaching the step (groups ticked: signup rows)",
            )
        }
    if name == "reciprocity":
        ledger = report.ledger.rows
        return {
            "ledger": charts.grouped_bars(
                [row["group"] for row in ledger],
                [
                    ("Contacts generated", [row["contacts_generated"] for row in ledger]),
                    ("Contacts received", [row["contacts_received"] for row in ledger]),
                ],
                title="Contacts generated and received per group",
                y_label="Contacts",
            ),
            "visibility": charts.time_series(
                report.visibility.rows,
                x_key="day",
                series_key="group",
                y_key="visibility_share",
                title="Earned visibility share over time",
                y_label="Share of visibility",
                as_share=True,
            ),
        }
    if name == "recruiters":
        return {
            "ladder": charts.wide_time_series(
                report.ladder.rows,
                x_key="day",
                columns=[
                    ("contacts", "Contacts"),
                    ("recruiters", "Recruiters"),
                    ("active_recruiters", "Active recruiters"),
                    ("leaders", "Leaders"),
                ],
                title="Engagement ladder over time",
            )
        }
    rows = report.areas.rows
    return {
        "areas": charts.rates_with_intervals(
            [f"{row['policy_area']} ({row['metric']})" for row in rows],
            [row["rate"] for row in rows],
            [row["ci_low"] for row in rows],
            [row["ci_high"] for row in rows],
            title="Conversion rate by policy area, with 95% credible intervals",
            x_label="Rate (successes / trials)",
        )
    }


# --- CSV ---------------------------------------------------------------------------------------


@bp.get("/experiments.csv")
@require_roles(*READERS)
def experiments_csv() -> ResponseReturnValue:
    return _csv(list_experiments(get_session()), "experiments")


@bp.get("/experiments/<int:experiment_id>/<table_name>.csv")
@require_roles(*READERS)
def experiment_csv(experiment_id: int, table_name: str) -> ResponseReturnValue:
    report = _experiment(experiment_id, _date_range())
    return _csv(_find_table(report, table_name), f"experiment-{experiment_id}-{table_name}")


@bp.get("/<report_name>/<table_name>.csv")
@require_roles(*READERS)
def report_csv(report_name: str, table_name: str) -> ResponseReturnValue:
    report = _build(report_name, _date_range())
    return _csv(_find_table(report, table_name), f"{report_name}-{table_name}")


# --- JSON --------------------------------------------------------------------------------------


@api.get("/experiments")
@require_roles(*READERS)
def experiments_json() -> ResponseReturnValue:
    return jsonify(list_experiments(get_session()).as_json())


@api.get("/experiments/<int:experiment_id>")
@require_roles(*READERS)
def experiment_json(experiment_id: int) -> ResponseReturnValue:
    return jsonify(_experiment(experiment_id, _date_range()).as_json())


@api.get("/<report_name>")
@require_roles(*READERS)
def report_json(report_name: str) -> ResponseReturnValue:
    return jsonify(_build(report_name, _date_range()).as_json())
