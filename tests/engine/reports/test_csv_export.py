import csv
import io

from engine.reports.csv_export import csv_cell, table_csv
from engine.reports.tables import Column, Table, format_cell


def test_csv_has_keys_then_raw_values() -> None:
    table = Table(
        "t",
        "T",
        [Column("name", "Name"), Column("n", "N", "int"), Column("rate", "Rate", "rate")],
        [{"name": "plain", "n": 1200, "rate": 0.125}, {"name": "none", "n": 0, "rate": None}],
    )
    rows = list(csv.reader(io.StringIO(table_csv(table))))
    assert rows == [["name", "n", "rate"], ["plain", "1200", "0.125"], ["none", "0", ""]]


def test_formula_like_text_is_defused_and_structures_are_json() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("-5 reasons") == "'-5 reasons"
    assert csv_cell(-5) == -5
    assert csv_cell({"b": 1, "a": [2]}) == '{"a": [2], "b": 1}'
    assert csv_cell(True) == "true"


def test_cells_read_well_on_pages() -> None:
    assert format_cell(1234567, "int") == "1,234,567"
    assert format_cell(0.12345, "rate") == "12.35%"
    assert format_cell(0.00001, "probability") == "1.0e-05"
    assert format_cell(None, "int") == "—"
    assert format_cell(False, "bool") == "no"
