"""Human and machine output for the commands: rich tables for people, JSON with ``--json``."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

# Wide enough for the status table when piped (rich would assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)


def emit_json(value: Any) -> None:
    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        return str(o)

    sys.stdout.write(json.dumps(value, default=default, indent=2, sort_keys=True) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[Text("" if v is None else str(v)) for v in r])  # text, never markup: "[converge]" stays
    console.print(t)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


@contextmanager
def progress(enabled: bool = True) -> Iterator[Progress]:
    """A progress bar on stderr (quiet with --json or when stderr is not a terminal... still shown once)."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=not enabled,
        transient=False,
    )
    with bar:
        yield bar


def fail(message: str, code: int = 2) -> int:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return code
