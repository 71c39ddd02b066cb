"""CSV downloads of report tables: one header row of column keys, then the rows' raw values.

Text that a spreadsheet would run as a formula (starting with =, +, -, @, tab or carriage return)
is prefixed with an apostrophe, since names and reasons are typed by staff.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from engine.reports.tables import Table

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str | int | float:
    """The CSV form of one value: numbers as they are, JSON for structures, safe text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def table_csv(table: Table) -> str:
    """The table as CSV text (RFC 4180 quoting, ``\\r\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([column.key for column in table.columns])
    for row in table.rows:
        writer.writerow([csv_cell(row.get(column.key)) for column in table.columns])
    return buffer.getvalue()
