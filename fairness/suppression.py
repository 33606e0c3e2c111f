"""Small-cell suppression shared by the reports: which rates are not shown, and complementary
suppression so that no published total minus the shown cells gives back a hidden count."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fairness import columns as C

Row = dict[str, Any]


def hides(numerator: int, denominator: int, small: int) -> bool:
    """A rate is not shown when its denominator is small or when it would reveal a small count:
    the numerator, or the denominator minus it, between 1 and ``small`` − 1."""
    return denominator < small or 0 < numerator < small or 0 < denominator - numerator < small


def complement(values: Sequence[int], hidden: Iterable[int], small: int) -> set[int]:
    """Complementary (secondary) suppression within one set of cells whose total is published:
    the indexes to hide. When exactly one hidden cell is non-zero (so the total minus the shown
    cells would give it back), the next-smallest non-zero shown cell is hidden too, so
    differencing gives only a sum of two hidden values (as is usual, such a sum is accepted)."""
    found = set(hidden)
    if sum(1 for i in found if values[i] > 0) == 1:
        rest = [i for i, value in enumerate(values) if i not in found and value > 0]
        if rest:
            found.add(min(rest, key=lambda i: (values[i], i)))
    return found


def shown(value: Any) -> bool:
    return value is not None and value != C.SUPPRESSED


def hide(row: Row, columns: Iterable[str]) -> None:
    """Suppress ``columns`` (with their interval bounds) where the row has them."""
    for name in columns:
        for column in (name, name + C.LOW, name + C.HIGH):
            if column in row:
                row[column] = C.SUPPRESSED
        if name + C.FLAG in row:
            row[name + C.FLAG] = None


def protect(
    rows: Sequence[Row],
    counts: Sequence[Any],
    total: Row,
    blocks: Sequence[tuple[Sequence[Callable[[Any], int]], Sequence[str]]],
    small: int,
    whole: Sequence[str],
) -> set[int]:
    """Complementary suppression across the rows of a set whose total row is published.

    Each block is (counts it reveals, from a row's counts; the columns revealing them, any one
    shown revealing all); the first block's columns also stand for the whole row (``whole``).
    A block is hidden in a row when none of its columns is shown; rows are hidden further
    (``complement``) until no total minus the shown rows gives back one hidden count.
    Returns the rows hidden whole.
    """
    changed = True
    while changed:
        changed = False
        for number, (values, columns) in enumerate(blocks):
            if not any(shown(total.get(name)) for name in columns):
                continue
            for value in values:
                cells = [value(count) for count in counts]
                hidden = {
                    i for i, row in enumerate(rows) if not any(shown(row.get(n)) for n in columns)
                }
                for i in complement(cells, hidden, small) - hidden:
                    hide(rows[i], whole if number == 0 else columns)
                    changed = True
    return {i for i, row in enumerate(rows) if not shown(row.get(blocks[0][1][0]))}
