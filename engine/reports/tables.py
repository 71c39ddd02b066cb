"""The shape every report returns: named tables of JSON-ready rows, rendered as HTML, JSON, CSV.

Rows hold plain values (int, float, str, bool, None) computed once; the three renderings only
format them, so a number on the page, in the JSON and in the CSV is the same number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# How a column's values are shown to people (JSON and CSV carry the raw value).
COLUMN_KINDS = ("text", "int", "rate", "probability", "float", "bool", "date")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.kind not in COLUMN_KINDS:
            raise ValueError(f"column {self.key!r}: unknown kind {self.kind!r}")


@dataclass
class Table:
    """A titled table; ``name`` is URL-safe and names its CSV download."""

    name: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "note": self.note,
            "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in self.columns],
            "rows": self.rows,
        }


def sig(value: float | None, digits: int = 6) -> float | None:
    """``value`` rounded to ``digits`` significant digits, so JSON stays short and stable."""
    if value is None:
        return None
    return float(f"{float(value):.{digits}g}")


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator`` rounded by :func:`sig`, or ``None`` when nothing to divide by."""
    return sig(numerator / denominator) if denominator else None


def iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def format_cell(value: Any, kind: str) -> str:
    """How a value reads on a page: thousands separators, rates as percentages, dashes for none."""
    if value is None:
        return "—"
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "int" and isinstance(value, int | float):
        return f"{value:,.0f}"
    if kind == "rate" and isinstance(value, int | float):
        return f"{value * 100:.2f}%"
    if kind == "probability" and isinstance(value, int | float):
        return f"{value:.3f}" if value >= 0.001 or value == 0 else f"{value:.1e}"
    if kind == "float" and isinstance(value, int | float):
        return f"{value:.4g}"
    return str(value)
