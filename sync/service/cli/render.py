"""How the CLI prints records for people: a table when every id fits whole, else one block per record.

Ids (CRM ids, external ids, message ids) are what support copies into the next command (`status ID`,
`replay ID`, `log --record ID`), so they are never cut with an ellipsis nor folded across lines; free text
(messages, errors) wraps. When the terminal is too narrow for a table with whole ids and a readable width for
the text, each record is printed as labelled lines instead. Cells are `Text`, never markup: an error quoting
`[...]` or JSON is printed as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

# The narrowest a text column may become before a table stops being worth reading (a field may ask more).
MIN_TEXT_WIDTH = 8
MESSAGE_WIDTH = 24  # ... and a sentence (a message, an error) somewhat more
# Per column, rich's default box and padding take one border and a space either side; one more border closes.
_CELL_OVERHEAD = 3

Cell = str | None


@dataclass(frozen=True)
class Field:
    """One column of a record listing."""

    label: str
    key: bool = False  # an id: printed whole, never cut or folded
    head: bool = False  # in the block layout, on the record's first line
    min_width: int = MIN_TEXT_WIDTH  # a text column's narrowest in a table (a message wants more)


def print_records(
    console: Console,
    fields: Sequence[Field],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str | None = None,
) -> None:
    """Print `rows` (one cell per field) as a table if one fits `console.width` with whole ids, else as
    blocks."""
    widths = column_widths(console.width, fields, rows)
    if widths is None:
        print_blocks(console, fields, rows, title=title)
        return
    table = Table(title=title)
    for field, width in zip(fields, widths, strict=True):
        table.add_column(field.label, width=width, no_wrap=field.key, overflow="fold")
    for row in rows:
        table.add_row(*(Text(value or "") for value in row))
    console.print(table)


def column_widths(width: int, fields: Sequence[Field], rows: Sequence[Sequence[Cell]]) -> list[int] | None:
    """Each column's width in a table `width` wide, or None when no table fits.

    An id column is as wide as its widest id. Every text column gets at least its `min_width` (less if its
    widest line is shorter); the space left goes to the narrowest text columns first, each up to its widest
    line, so short columns (a level, a date) stay on one line and long ones (a message) share the rest."""
    natural = [
        max([cell_len(field.label), *(_widest_line(row[index] or "") for row in rows)])
        for index, field in enumerate(fields)
    ]
    widths = [n if field.key else min(n, field.min_width) for field, n in zip(fields, natural, strict=True)]
    spare = width - sum(widths) - len(fields) * _CELL_OVERHEAD - 1
    if spare < 0:
        return None
    growing = [i for i, field in enumerate(fields) if not field.key]
    while spare > 0:
        open_ = [i for i in growing if widths[i] < natural[i]]
        if not open_:
            break
        lowest = min(widths[i] for i in open_)
        for i in open_:
            if widths[i] == lowest and spare > 0:
                widths[i] += 1
                spare -= 1
    return widths


def print_blocks(
    console: Console,
    fields: Sequence[Field],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str | None = None,
) -> None:
    """Each record as a first line of its `head` fields, then one indented `label value` line per other
    non-empty field; values wrap under themselves."""
    if title:
        console.print(Text(title, style="bold"))
    label_width = max((cell_len(field.label) + 2 for field in fields if not field.head), default=0)
    for number, row in enumerate(rows):
        if number:
            console.print()
        head = "  ".join(value for field, value in zip(fields, row, strict=True) if field.head and value)
        if head:
            console.print(Text(head, style="bold"), soft_wrap=False)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style="dim", min_width=label_width)
        grid.add_column(overflow="fold")
        for field, value in zip(fields, row, strict=True):
            if value and not field.head:
                grid.add_row(Text(f"  {field.label}"), Text(value))
        console.print(grid)


def print_fields(console: Console, title: str, items: Sequence[tuple[str, str]]) -> None:
    """One record as `label value` lines under a bold title (values wrap under themselves)."""
    console.print(Text(title, style="bold"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column(overflow="fold")
    for label, value in items:
        grid.add_row(Text(f"  {label}"), Text(value))
    console.print(grid)


def _widest_line(text: str) -> int:
    return max(map(cell_len, text.splitlines()), default=0)
