"""Printing results as a rich table, JSON or YAML (`--output`)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Off a terminal rich would wrap at 80 columns and truncate wide tables: give them room.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def emit(data: Any, fmt: Format, tables: Sequence[Table] = ()) -> None:
    """JSON/YAML go to stdout as data; a table format prints the given rich tables."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif fmt is Format.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
        for t in tables:
            console.print(t)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """Cells and title are plain text: a value like `[/x]` is shown, never read as markup.
    Readable at 80 columns: no vertical rules; when the table is wider than the console, its
    headers wrap between words so values stay whole (long text folds). Numbers are
    right-aligned, text left-aligned."""
    t = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
              pad_edge=False, collapse_padding=True)
    cells = [[fmt_cell(v) for v in r] for r in rows]
    values = [max((len(r[i]) for r in cells), default=0) for i in range(len(columns))]
    gaps = 2 * (len(columns) - 1)
    natural = sum(max(v, len(c)) for v, c in zip(values, columns, strict=True)) + gaps
    compact = [max([v, *map(len, c.split())]) for v, c in zip(values, columns, strict=True)]
    # Narrow console: headers wrap so values stay whole, if that is enough to fit.
    narrow = natural > console.width >= sum(min(w, 16) for w in compact) + gaps
    for i, c in enumerate(columns):
        numeric = bool(rows) and all(_numeric(r[i]) for r in rows)
        fixed = compact[i] if narrow and compact[i] <= 16 else None
        t.add_column(Text(c), justify="right" if numeric else "left", overflow="fold",
                     min_width=fixed, max_width=fixed)
    for r in cells:
        t.add_row(*map(Text, r))
    return t


def _numeric(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool)) or (
        isinstance(v, str) and bool(re.match(r"^[+-]?\d", v)))


def fmt_cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.1f}%"
