"""The one Markdown table writer of the reports (results.md, relations.md, headline.md, the paper table).

Written here rather than taken from pandas' `DataFrame.to_markdown`: that needs the `tabulate` package,
a dependency for what is a few lines, and it pads cells to aligned widths, which would change every
report's bytes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# One letter per column: "l" is Markdown's default alignment (`---`), "r" right-aligned (`---:`).
SEPARATORS = {"l": "---", "r": "---:"}


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    """The header line, the separator line and one line per row, as `| a | b |` with the cells as given
    (no padding). `align` has one letter per column (see SEPARATORS); empty means all "l". A row or an
    `align` whose length is not the header's raises ValueError: a short row would shift its cells under
    the wrong column without any error in the rendered Markdown."""
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - set(SEPARATORS):
        raise ValueError(f"align {align!r}: one of {'/'.join(SEPARATORS)} per column of {list(header)}")
    lines = [_line(header), "|" + "".join(SEPARATORS[a] + "|" for a in align)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(
                f"row {list(row)} has {len(row)} cells; the header {list(header)} has {len(header)}"
            )
        lines.append(_line(row))
    return lines


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
