"""Plain-text rendering of metric results for the command line."""

from __future__ import annotations

from numbers import Integral, Real

MISSING = "–"


def format_ci(d: dict | None) -> str:
    """Render ``{"value", "ci_low", "ci_high"}`` as ``0.912 [0.871, 0.950]`` (``–`` when undefined)."""
    if not d or d.get("value") is None:
        return MISSING
    if d.get("ci_low") is None or d.get("ci_high") is None:
        return f"{d['value']:.3f}"
    return f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"


def _cell(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, dict):
        return format_ci(value)
    if isinstance(value, (bool, Integral)) or not isinstance(value, Real):
        return str(value)
    return f"{value:.3f}"


def _is_numeric(value: object) -> bool:
    return value is None or (isinstance(value, (Real, dict)) and not isinstance(value, bool))


def format_table(rows: list[dict], columns: list[str], title: str | None = None) -> str:
    """Align ``rows`` under ``columns``: floats with 3 decimals, ``None``/missing as ``–``,
    ``{"value", "ci_low", "ci_high"}`` dicts via ``format_ci``; numeric columns are right-aligned."""
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]
    right = [all(_is_numeric(row.get(col)) for row in rows) for col in columns]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out += [line(list(columns)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)
