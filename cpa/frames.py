"""Rows of a DataFrame as dicts: read column by column, and once per table while a task runs.

``DataFrame.to_dict("records")`` is the slow part of code that walks small tables row by row
(validation, charts, booklet data). :func:`records` builds the dicts from each column's
``tolist()`` (Python scalars, as ``to_dict`` gives), and inside a :func:`memo` block it builds
them once per table object and hands each caller a new list.
"""

from __future__ import annotations

from contextlib import contextmanager

_memo: dict | None = None


def row_dicts(frame) -> list[dict]:
    """Every row of ``frame`` as a dict (column → Python value)."""
    cols = list(frame.columns)
    values = [frame[c].tolist() for c in cols]
    return [dict(zip(cols, row, strict=True)) for row in zip(*values, strict=True)]


def records(frame) -> list[dict]:
    """Like :func:`row_dicts`, memoised per table inside a :func:`memo` block; None → []."""
    if frame is None:
        return []
    if _memo is None:
        return row_dicts(frame)
    hit = _memo.get(id(frame))
    if hit is None or hit[0] is not frame:
        hit = _memo[id(frame)] = (frame, row_dicts(frame))
    return list(hit[1])  # a new list: callers filter and sort it


@contextmanager
def memo():
    """Within the block, :func:`records` reads each table once (nested blocks share it)."""
    global _memo
    outer = _memo is None
    if outer:
        _memo = {}
    try:
        yield
    finally:
        if outer:
            _memo = None
