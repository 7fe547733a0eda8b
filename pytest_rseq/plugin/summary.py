"""The ``rseq summary``: a table that fits the terminal, the totals line, the per-CPU chart.

Each run shows its status (``rows.status``: the run's verdict read with
the outcome of the test that made it, so a FAILED test is a failure).

Test ids are never cut at the start: a row whose id does not fit beside the
figures gets the id on a line of its own, and an id longer than the whole
line loses its middle, keeping the file name's start and the function name.
Columns that still do not fit are left out, least useful first, and the
table says which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..elf.mutation import mutation_lines
from ..gate.report import format_table
from .rows import per_cpu_chart, status, totals_line

ELLIPSIS = "..."
INDENT = "  "
HEAD_MIN = 12
"""Characters of a shortened id's start kept even when its function name is cut."""
ABORT_CAUSES = ("signal", "membarrier", "preemption")
"""``aborts_by_cause`` keys, in the order of the ``sig/mb/pre`` column."""


def shorten_id(test: str, width: int) -> str:
    """``test`` in at most ``width`` characters, its middle cut out when needed.

    The start (the file name's start) and the end after the last ``::`` (the
    function name and parameters) are kept as far as they fit.
    """
    if len(test) <= width:
        return test
    keep = max(width - len(ELLIPSIS), 2)
    tail = test[test.rfind("::") :] if "::" in test else ""
    head_room = max(keep - len(tail), min(HEAD_MIN, keep // 3))
    tail_room = keep - head_room
    return test[:head_room] + ELLIPSIS + (test[-tail_room:] if tail_room else "")


def label(row: dict[str, Any]) -> str:
    """The test id, the run's index after the first and the xdist worker."""
    text = str(row["test"])
    if row.get("index"):
        text += f" #{row['index']}"
    if row.get("worker") not in (None, "main"):
        text += f" [{row['worker']}]"
    return text


def _causes(row: dict[str, Any]) -> str:
    causes = row.get("aborts_by_cause")
    if not isinstance(causes, dict):
        return "-"
    return "/".join(f"{int(causes.get(key, 0)):,}" for key in ABORT_CAUSES)


@dataclass(frozen=True)
class Column:
    """A figure column: its header, how to read a row, and how early it is left out."""

    header: str
    cell: Callable[[dict[str, Any]], Any]
    drop_order: int = 0
    """0: always shown; otherwise the column with the highest number goes first."""


def columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    """The figure columns for ``rows`` (the abort causes only when a row has them)."""
    cols = [
        Column("path", lambda r: r.get("path", "?")),
        Column("registration", lambda r: r.get("registration", "?"), 3),
        Column("ops/s", lambda r: r.get("ops_per_s", 0)),
        Column("aborts", lambda r: r.get("aborts", 0)),
    ]
    if any(isinstance(r.get("aborts_by_cause"), dict) for r in rows):
        cols.append(Column("sig/mb/pre", _causes, 4))
    cols += [
        Column("migrations", lambda r: r.get("migrations", 0), 6),
        Column("signals", lambda r: r.get("signals_delivered", 0), 5),
        Column("churn", lambda r: r.get("churn", 0), 7),
        Column("verdict", status),
    ]
    return cols


def _table_width(lines: Sequence[str]) -> int:
    return max(len(line) for line in lines)


def _fit(
    rows: Sequence[dict[str, Any]], width: int, first: str, firsts: list[str]
) -> tuple[list[str], list[str]]:
    """The table with ``first`` as its first column, and the headers left out to fit ``width``."""
    cols = columns(rows)
    dropped: list[str] = []
    while True:
        table = format_table(
            [first] + [c.header for c in cols],
            [[name] + [c.cell(r) for c in cols] for name, r in zip(firsts, rows, strict=True)],
        )
        droppable = [c for c in cols if c.drop_order]
        if _table_width(table) <= width or not droppable:
            return table, dropped
        worst = max(droppable, key=lambda c: c.drop_order)
        cols.remove(worst)
        dropped.append(worst.header)


def table_lines(rows: Sequence[dict[str, Any]], width: int) -> list[str]:
    """The table: one line per run when the ids fit beside the figures, else grouped by test.

    The flat layout wins when it leaves out no more columns than the grouped one.
    """
    runs = [f"{INDENT}#{r.get('index', 0)}" for r in rows]
    table, dropped = _fit(rows, width, "run", runs)
    flat, flat_dropped = _fit(rows, width, "test", [label(r) for r in rows])
    if _table_width(flat) <= width and len(flat_dropped) <= len(dropped):
        return flat + _left_out(flat_dropped, width)
    lines = table[:2]
    previous = None
    for row, line in zip(rows, table[2:], strict=True):
        group = (row["test"], row.get("worker"))
        if group != previous:
            name = label({**row, "index": 0})
            lines.append(shorten_id(name, width))
            previous = group
        lines.append(line)
    return lines + _left_out(dropped, width)


def _left_out(headers: list[str], width: int) -> list[str]:
    if not headers:
        return []
    note = f"(left out at {width} columns: {', '.join(headers)}; every figure is in --rseq-json)"
    if len(note) <= width:
        return [note]
    # Too long for the terminal: the list of columns on a line of its own.
    return [
        f"(left out at {width} columns, every figure is in --rseq-json:",
        f" {', '.join(headers)})",
    ]


def summary_lines(rows: Sequence[dict[str, Any]], width: int = 100) -> list[str]:
    """The ``rseq`` summary: the table, the totals line, then the per-CPU chart."""
    lines = table_lines(rows, width)
    if any(isinstance(r.get("aborts_by_cause"), dict) for r in rows) and any(
        "sig/mb/pre" in line for line in lines[:1]
    ):
        lines.append("sig/mb/pre: aborts caused by a signal, a membarrier, a preemption")
    lines += ["", totals_line(rows), ""]
    mutated = mutation_lines(rows)
    if mutated:
        lines += [*mutated, ""]
    lines += per_cpu_chart(rows)
    return lines
