"""Writing result tables: JSON records, CSV files and a simple workbook.

Every writer is atomic (temporary file, then replace) and refuses to overwrite without
``force``. Text cells that a spreadsheet would run (``= + - @``, tab, CR at the start) are
written as literal strings.
"""

from __future__ import annotations

import io
import json
import math
import os

from cpa.io import OutputExistsError, atomic_write


def records(df) -> list[dict]:
    """DataFrame rows as JSON-ready dicts: NaN → None, numpy scalars → Python, dates → ISO."""
    import datetime as dt

    out = []
    cols = list(df.columns)
    for row in zip(*(df[c].tolist() for c in cols), strict=True):
        rec = {}
        for c, v in zip(cols, row, strict=True):
            if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
                v = None
            elif isinstance(v, (dt.date, dt.datetime)):
                v = v.isoformat()
            elif hasattr(v, "item"):
                v = v.item()
            rec[c] = v
        out.append(rec)
    return out


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=str, allow_nan=False)


def write_csv_dir(folder: str, tables: dict, force: bool = False) -> list[str]:
    """One UTF-8 CSV per table in ``folder``; returns the paths written."""
    paths = []
    for name in tables:
        path = os.path.join(folder, f"{name}.csv")
        if os.path.exists(path) and not force:
            raise OutputExistsError(path)
    for name, df in tables.items():
        buf = io.StringIO()
        safe = df.copy()
        for c in safe.columns:
            if safe[c].dtype == object or str(safe[c].dtype).startswith("str"):
                safe[c] = safe[c].map(_defuse)
        safe.to_csv(buf, index=False)
        path = os.path.join(folder, f"{name}.csv")
        atomic_write(path, buf.getvalue().encode("utf-8-sig"), force=True)
        paths.append(path)
    return paths


def _defuse(v):
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def write_xlsx(path: str, tables: dict, force: bool = False) -> None:
    """A workbook with one sheet per table (header row bold, frozen)."""
    import xlsxwriter

    if os.path.exists(path) and not force:
        raise OutputExistsError(path)
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_formulas": False,
                                   "strings_to_urls": False, "nan_inf_to_errors": False})
    bold = wb.add_format({"bold": True, "bg_color": "#E8EEF4", "text_wrap": True})
    for name, df in tables.items():
        ws = wb.add_worksheet(name[:31])
        cols = list(df.columns)
        for j, c in enumerate(cols):
            ws.write_string(0, j, str(c), bold)
            ws.set_column(j, j, max(10, min(40, len(str(c)) + 2)))
        for i, rec in enumerate(records(df), start=1):
            for j, c in enumerate(cols):
                v = rec[c]
                if v is None:
                    continue
                if isinstance(v, bool):
                    ws.write_boolean(i, j, v)
                elif isinstance(v, (int, float)):
                    ws.write_number(i, j, v)
                else:
                    ws.write_string(i, j, str(v))
        ws.freeze_panes(1, 0)
    wb.close()
    atomic_write(path, buf.getvalue(), force=force)
