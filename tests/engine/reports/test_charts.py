from datetime import UTC, date, datetime

from engine.reports import charts

POSTERIORS = [("a", 3.0, 40.0), ("b", 9.0, 30.0)]


def test_svg_is_deterministic_and_undated() -> None:
    first = charts.posterior_densities(POSTERIORS, "click")
    second = charts.posterior_densities(POSTERIORS, "click")
    assert first == second
    assert first.lstrip().startswith("<?xml")
    assert "<dc:date>" not in first


def test_charts_carry_title_axis_labels_and_safe_colours() -> None:
    svg = charts.posterior_densities(POSTERIORS, "click")
    for text in ("Posterior of each variant", "click rate", "Density"):
        assert text in svg
    assert charts.OKABE_ITO[0].lower() in svg.lower()
    assert charts.OKABE_ITO[1].lower() in svg.lower()


def test_many_series_change_line_style_after_the_palette() -> None:
    assert charts.style(0) == {"color": charts.OKABE_ITO[0], "linestyle": "-"}
    assert charts.style(len(charts.OKABE_ITO)) == {"color": charts.OKABE_ITO[0], "linestyle": "--"}


def test_time_series_handles_one_instant_and_no_rows() -> None:
    one_day = [{"day": "2026-10-01", "variant": "a", "cumulative": 3}]
    svg = charts.time_series(
        one_day, x_key="day", series_key="variant", y_key="cumulative", title="T", y_label="Y"
    )
    assert "Date (UTC)" in svg
    empty = charts.time_series(
        [], x_key="day", series_key="variant", y_key="cumulative", title="T", y_label="Y"
    )
    assert "No data in this range" in empty


def test_other_chart_kinds_render() -> None:
    at = datetime(2026, 10, 1, tzinfo=UTC)
    assert "Funnel" in charts.horizontal_bars(
        ["Sent", "Delivered"], [10, 9], title="Funnel", x_label="n"
    )
    assert "Groups" in charts.grouped_bars(
        ["g1"], [("made", [1]), ("got", [2])], title="Groups", y_label="n"
    )
    svg = charts.rates_with_intervals(["climate"], [0.1], [0.12], [0.2], title="Areas", x_label="r")
    assert "climate" in svg  # a rate just outside its interval still draws
    wide = charts.wide_time_series(
        [{"day": date(2026, 10, 1), "a": 1}, {"day": at.date(), "a": 2}],
        x_key="day",
        columns=[("a", "Contacts")],
        title="Ladder",
    )
    assert "Ladder" in wide


def test_data_uri_round_trips() -> None:
    import base64

    svg = charts.posterior_densities(POSTERIORS, "open")
    uri = charts.data_uri(svg)
    assert uri.startswith("data:image/svg+xml;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]).decode() == svg
