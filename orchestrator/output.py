"""Printing results as a rich table, JSON or YAML (`--output`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

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
    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[fmt_cell(v) for v in r])
    return t


def fmt_cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.1f}%"
