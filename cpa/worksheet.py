"""The facility worksheet: reading, validating and writing it.

A worksheet is read in two stages, whatever the file format:

1. a *raw* reader turns the file into :class:`RawTable` objects, each cell with its location
   (a line of a text worksheet, or ``Sheet!B7`` of a workbook);
2. :func:`build` converts every cell by the schema (:mod:`cpa.schema`), checks references and
   cross-row rules, and returns a :class:`Worksheet` together with **every** problem found.

The canonical text form is Markdown: a ``## table`` heading per table followed by a pipe table
whose first row names the columns (by id, or by their English or Vietnamese label). Lines that
are not headings or table rows are free text and ignored. See ``docs/worksheet-format.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from dataclasses import dataclass, field

from cpa import schema
from cpa.errors import CPAError, NumberError, Problem, UnitError, WorksheetError

MAX_TEXT_BYTES = 512 * 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HEADING = re.compile(r"^##\s+(.+?)\s*$")
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


# ----------------------------------------------------------------------------------------------
# raw tables


@dataclass
class Loc:
    """Where a cell is: a text line, or a workbook cell."""

    line: int | None = None
    cell: str = ""


@dataclass
class RawTable:
    name: str                       # schema table name
    loc: Loc                        # the heading (or sheet)
    header: list[tuple[str, Loc]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    row_locs: list[Loc] = field(default_factory=list)
    cell_locs: list[list[Loc]] | None = None  # per-cell locations (workbooks); else the row's

    def cell_loc(self, r: int, c: int) -> Loc:
        if self.cell_locs is not None and c < len(self.cell_locs[r]):
            return self.cell_locs[r][c]
        return self.row_locs[r]


@dataclass
class RawWorksheet:
    path: str
    tables: dict[str, RawTable]
    problems: list[Problem]
    sheet_names: dict[str, str] = field(default_factory=dict)  # table -> sheet name (xlsx)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _split_row(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    if "\\" not in s:
        if "<br>" in s:
            return [c.strip().replace("<br>", "\n") for c in s.split("|")]
        return [c.strip() for c in s.split("|")]
    cells, cur, i = [], [], 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] in "|\\":
            cur.append(s[i + 1])
            i += 2
            continue
        if ch == "|":
            cells.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    cells.append("".join(cur))
    return [c.strip().replace("<br>", "\n") for c in cells]


def decode_text(data: bytes, path: str) -> tuple[str | None, list[Problem]]:
    """Decode a text worksheet, refusing binary data and text that is not UTF-8."""
    if not data.strip():
        return None, [Problem(path, "the file is empty", found="0 bytes of text",
                              expected="a worksheet with a facility table",
                              fix="start from a blank worksheet: cpa template OUT.cpa.md")]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError:
            pass
    if data.startswith(b"PK\x03\x04"):
        return None, [Problem(path, "this is a zip file (perhaps a workbook), not a text worksheet",
                              found="zip signature", expected="UTF-8 text",
                              fix="give it a .xlsx name if it is a workbook")]
    if b"\x00" in data[:8192]:
        return None, [Problem(path, "the file is binary, not a text worksheet",
                              found="NUL bytes", expected="UTF-8 text",
                              fix="give the worksheet (.cpa.md) or a workbook (.xlsx)")]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        bad = data[exc.start: exc.start + 4]
        return None, [Problem(path, "the file is not UTF-8 text", line=line,
                              found=f"byte(s) {bad!r}",
                              expected="UTF-8 (Vietnamese text saved in Unicode)",
                              fix="save the file as UTF-8 (in a text editor: Save As → encoding UTF-8)")]


def read_raw_text(path: str, data: bytes | None = None) -> RawWorksheet:
    """Read a Markdown worksheet into raw tables (no conversion yet)."""
    problems: list[Problem] = []
    if data is None:
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise CPAError(f"{path}: cannot read the file ({exc.strerror})") from exc
        if size > MAX_TEXT_BYTES:
            return RawWorksheet(path, {}, [Problem(path, "the file is too large for a worksheet",
                                                   found=f"{size:,} bytes",
                                                   expected=f"at most {MAX_TEXT_BYTES:,} bytes",
                                                   fix="split the facility into several worksheets")])
        with open(path, "rb") as f:
            data = f.read()
    text, problems = decode_text(data, path)
    if text is None:
        return RawWorksheet(path, {}, problems)
    text = _nfc(text)
    tables: dict[str, RawTable] = {}
    current: RawTable | None = None
    expect_separator = False
    lookup = schema.table_lookup()
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _HEADING.match(line)
        if m:
            title = m.group(1)
            key = re.split(r"\s+[—–-]\s+|\s*/\s*|\s*\(", title, maxsplit=1)[0].strip().casefold()
            name = lookup.get(key) or lookup.get(title.strip().casefold())
            if name is None:
                current = None
                problems.append(Problem(path, "unknown table heading", line=lineno, found=title,
                                        expected="one of: " + ", ".join(t.name for t in schema.TABLES),
                                        fix="rename the heading, or make it a ### heading if it is a note",
                                        severity="error"))
                continue
            if name in tables:
                problems.append(Problem(path, f"table '{name}' appears twice", line=lineno,
                                        table=name, found=f"also at line {tables[name].loc.line}",
                                        expected="each table once",
                                        fix="merge the rows into one table"))
                current = None
                continue
            current = RawTable(name, Loc(line=lineno))
            tables[name] = current
            expect_separator = False
            continue
        stripped = line.strip()
        if not stripped.startswith("|"):
            if stripped.startswith("#") and not stripped.startswith("###") and current is not None:
                current = None
            continue
        if current is None:
            problems.append(Problem(path, "a table row outside any known table", line=lineno,
                                    found=stripped[:60], expected="rows under a ## table heading",
                                    fix="add the heading above the rows"))
            continue
        if not current.header:
            current.header = [(c, Loc(line=lineno)) for c in _split_row(stripped)]
            expect_separator = True
            continue
        if expect_separator:
            expect_separator = False
            if _SEPARATOR.match(stripped):
                continue
            problems.append(Problem(path, "the header row must be followed by a |---| separator row",
                                    line=lineno, table=current.name, found=stripped[:60],
                                    expected="| --- | --- |", fix="insert a separator row under the header"))
        current.rows.append(_split_row(stripped))
        current.row_locs.append(Loc(line=lineno))
    return RawWorksheet(path, tables, problems)


# ----------------------------------------------------------------------------------------------
# the model


@dataclass
class Worksheet:
    """A facility worksheet, converted and checked.

    ``facility`` holds the profile fields (typed); ``tables`` holds one pandas DataFrame per table
    with one column per schema column plus ``_loc`` (where the row came from, for messages).
    Empty cells are ``None`` (text, dates, choices) or NaN (numbers).
    """

    path: str
    facility: dict
    tables: dict
    problems: list[Problem]
    facility_locs: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def id(self) -> str:
        return self.facility.get("id") or ""

    @property
    def illustrative(self) -> bool:
        return bool(self.facility.get("illustrative"))

    def table(self, name: str):
        return self.tables[name]

    def factor_set(self):
        """The factors in force: cpa's defaults plus this worksheet's overrides."""
        from cpa.factors import Factor, FactorSet

        rows = self.tables["factors"]
        overrides = [
            Factor(factor=r["factor"], key=str(r["applies_to"]), value=float(r["value"]),
                   unit=r["unit"], document=r["source"], status=r["status"],
                   note=r["note"] or "", origin=f"{self.path}:{_loc_text(r['_loc'])}")
            for r in rows.to_dict("records")
        ]
        return FactorSet(overrides)


def _loc_text(loc: Loc) -> str:
    return loc.cell if loc.cell else str(loc.line)


class _Builder:
    def __init__(self, raw: RawWorksheet):
        self.raw = raw
        self.path = raw.path
        self.problems: list[Problem] = list(raw.problems)
        self.locale = "plain"

    def problem(self, message, loc: Loc | None = None, table="", column="", found="", expected="",
                fix="", severity="error", code=""):
        sheet = self.raw.sheet_names.get(table, table)
        p = Problem(self.path, message, found=str(found), expected=expected, fix=fix,
                    table=sheet if (loc and loc.cell) else table, column=column,
                    line=loc.line if loc else None, cell=loc.cell if loc else "",
                    severity=severity, code=code)
        self.problems.append(p)
        return p

    # -- cells --------------------------------------------------------------------------------
    def convert(self, col: schema.Column, text: str, loc: Loc, table: str):
        """Convert one cell; returns the value, or None (after recording a problem)."""
        if text is None:
            text = ""
        if not isinstance(text, str):
            raw_value = text
            text = str(text)
        else:
            raw_value = None
        text = text.strip()
        if text == "":
            if col.default and col.type != "text":
                text = col.default
            else:
                if col.required:
                    self.problem("a required value is missing", loc, table, col.name, found="(empty)",
                                 expected=f"{col.en} ({col.type})", fix=f"fill in the {col.en}",
                                 code="missing")
                return None
        t = col.type
        try:
            if t == "text":
                return text
            if t == "id":
                if not _ID.match(text):
                    self.problem("not a valid id", loc, table, col.name, found=text,
                                 expected="letters, digits, _ - . (no spaces)",
                                 fix=f"write e.g. {re.sub(r'[^A-Za-z0-9_.-]+', '_', text) or 'id1'}",
                                 code="id")
                    return None
                return text
            if t == "ref":
                return text
            if t in ("number", "int"):
                from cpa.numbers import parse_number

                value = parse_number(raw_value if raw_value is not None else text, self.locale)
                if t == "int":
                    if value != int(value):
                        self.problem("not a whole number", loc, table, col.name, found=text,
                                     expected="a whole number", fix="remove the decimals", code="int")
                        return None
                    return int(value)
                return value
            if t == "date":
                if isinstance(raw_value, (dt.date, dt.datetime)):
                    return raw_value if isinstance(raw_value, dt.date) and not isinstance(raw_value, dt.datetime) else raw_value.date()
                if not _DATE.match(text[:10]) or len(text) not in (10, 19):
                    raise ValueError
                return dt.date.fromisoformat(text[:10])
            if t == "bool":
                key = text.casefold()
                if key in ("yes", "có", "co", "true", "1", "x"):
                    return True
                if key in ("no", "không", "khong", "false", "0"):
                    return False
                self.problem("not yes or no", loc, table, col.name, found=text,
                             expected="yes / no (có / không)", fix="write yes or no", code="bool")
                return None
            if t == "choice":
                lookup = schema.choice_lookup(col.choices)
                cid = lookup.get(text.casefold())
                if cid is None:
                    import difflib

                    ids = [c.id for c in schema.choices(col.choices)]
                    close = difflib.get_close_matches(text.casefold(), list(lookup), n=1)
                    hint = f"did you mean {lookup[close[0]]!r}? " if close else ""
                    self.problem(f"not one of the {col.en} choices", loc, table, col.name, found=text,
                                 expected=", ".join(ids), fix=hint + "pick one of the listed values",
                                 code="choice")
                return cid
            if t == "unit":
                from cpa.units import dimension_of, parse_unit

                parse_unit(text)
                if col.dims and dimension_of(text) not in col.dims:
                    self.problem("a unit of the wrong dimension", loc, table, col.name, found=f"{text} ({dimension_of(text)})",
                                 expected="a unit of " + " or ".join(col.dims), fix="use a unit of that dimension",
                                 code="dimension")
                    return None
                return text
        except NumberError as exc:
            expected = {"plain": "a plain number such as 1234.5", "vi": "a number such as 1.234,5",
                        "en": "a number such as 1,234.5"}[self.locale if self.locale in ("vi", "en") else "plain"]
            self.problem(f"not a valid number: {exc.reason}", loc, table, col.name, found=exc.text,
                         expected=expected, fix=exc.fix, code="number")
            return None
        except UnitError as exc:
            self.problem(f"not a valid unit: {exc.reason}", loc, table, col.name, found=text,
                         expected="a unit such as t, kg, m3, L, kWh, GJ, VND/t (see docs/units-and-factors.md)",
                         fix=exc.fix, code="unit")
            return None
        except ValueError:
            self.problem("not a valid date", loc, table, col.name, found=text,
                         expected="a date YYYY-MM-DD", fix="write the date as e.g. 2024-01-31", code="date")
            return None
        raise AssertionError(t)

    # -- tables -------------------------------------------------------------------------------
    def facility(self) -> tuple[dict, dict]:
        spec = schema.table("facility")
        rt = self.raw.tables.get("facility")
        values, locs = {}, {}
        if rt is None:
            self.problem("the facility table is missing", Loc(line=1), "facility",
                         expected="a '## facility' table with id, name, sector...",
                         fix="copy the facility table from a blank worksheet", code="missing_table")
            return values, locs
        lookup = schema.header_lookup("facility")
        raw_fields: dict[str, tuple[str, Loc]] = {}
        for r, row in enumerate(rt.rows):
            if not row or all(not c for c in row):
                continue
            name_text, loc = row[0], rt.cell_loc(r, 0)
            value_text = row[1] if len(row) > 1 else ""
            if len(row) > 2 and any(c for c in row[2:]):
                self.problem("a facility row has more than two cells", loc, "facility", found=" | ".join(row),
                             expected="| field | value |", fix="put one field and its value per row")
            name = lookup.get(name_text.strip().casefold())
            if name is None:
                self.problem("unknown facility field", loc, "facility", found=name_text,
                             expected=", ".join(spec.column_names), fix="use one of the listed fields",
                             code="unknown_field")
                continue
            if name in raw_fields:
                self.problem("a facility field appears twice", loc, "facility", name, found=name_text,
                             expected="each field once", fix="delete one of the two rows", code="duplicate")
                continue
            raw_fields[name] = (value_text, rt.cell_loc(r, 1) if len(row) > 1 else loc)
        # the locale first: it decides how the other numbers are read
        loc_col = spec.column("number_locale")
        text, loc = raw_fields.get("number_locale", ("", rt.loc))
        self.locale = self.convert(loc_col, text, loc, "facility") or "plain"
        for col in spec.columns:
            text, loc = raw_fields.get(col.name, ("", rt.loc))
            values[col.name] = self.convert(col, text, loc, "facility") if col.name != "number_locale" else self.locale
            locs[col.name] = loc
        return values, locs

    def table(self, spec: schema.Table):
        import pandas as pd

        rt = self.raw.tables.get(spec.name)
        cols = spec.column_names
        if rt is None:
            if spec.required:
                self.problem(f"the {spec.name} table is missing", Loc(line=None), spec.name,
                             expected=f"a '## {spec.name}' table", fix="copy it from a blank worksheet",
                             code="missing_table")
            return pd.DataFrame({c: pd.Series(dtype=_dtype(spec.column(c))) for c in cols} | {"_loc": pd.Series(dtype=object)})
        lookup = schema.header_lookup(spec.name)
        positions: dict[str, int] = {}
        for i, (text, loc) in enumerate(rt.header):
            if text.strip() == "" and i == len(rt.header) - 1:
                continue
            name = lookup.get(text.strip().casefold())
            if name is None:
                self.problem("unknown column", loc, spec.name, found=text, expected=", ".join(cols),
                             fix="rename the column or delete it", code="unknown_column")
                continue
            if name in positions:
                self.problem("a column appears twice", loc, spec.name, name, found=text,
                             expected="each column once", fix="delete one of them", code="duplicate")
                continue
            positions[name] = i
        for col in spec.columns:
            if col.required and col.name not in positions and rt.header:
                self.problem("a required column is missing", rt.header[0][1], spec.name, col.name,
                             expected=f"a column '{col.name}' ({col.en})",
                             fix=f"add the column '{col.name}'", code="missing_column")
        data = {c: [] for c in cols}
        data["_loc"] = []
        width = len(rt.header)
        for r, (row, rloc) in enumerate(zip(rt.rows, rt.row_locs, strict=True)):
            if all((c or "").strip() == "" if isinstance(c, str) else c is None for c in row):
                continue
            if len(row) != width and not (len(row) == width - 1):
                self.problem("a row has the wrong number of cells", rloc, spec.name,
                             found=f"{len(row)} cells", expected=f"{width} cells, as in the header",
                             fix="check for a missing or extra | in the row", code="shape")
            for col in spec.columns:
                pos = positions.get(col.name)
                if pos is None or pos >= len(row):
                    text, loc = "", rloc
                else:
                    text, loc = row[pos], rt.cell_loc(r, pos)
                data[col.name].append(self.convert(col, text, loc, spec.name))
            data["_loc"].append(rloc)
        frame = pd.DataFrame({c: pd.Series(v, dtype=_dtype(spec.column(c)) if c != "_loc" else object)
                              for c, v in ((c, data[c]) for c in cols + ["_loc"])})
        return frame


def _dtype(col: schema.Column):
    if col.type == "number":
        return "float64"
    return object


def build(raw: RawWorksheet) -> Worksheet:
    """Convert raw tables by the schema and check them; every problem is collected."""
    b = _Builder(raw)
    if not raw.tables and raw.problems:
        return Worksheet(raw.path, {}, {}, b.problems)
    facility, facility_locs = b.facility()
    tables = {t.name: b.table(t) for t in schema.TABLES if not t.keyvalue}
    ws = Worksheet(raw.path, facility, tables, b.problems, facility_locs)
    from cpa.validate import validate

    validate(ws, b)
    ws.problems.sort(key=_problem_order)
    return ws


def _problem_order(p: Problem):
    """Errors first, then in file order: by line, or by sheet, row and column of a cell."""
    m = re.match(r"^([A-Z]+)(\d+)$", p.cell or "")
    if m:
        col = 0
        for ch in m.group(1):
            col = col * 26 + ord(ch) - 64
        return (p.severity != "error", 0, p.table, int(m.group(2)), col)
    return (p.severity != "error", p.line or 0, "", 0, 0)


def read(path: str) -> Worksheet:
    """Read and check a worksheet (text or workbook); problems are in ``.problems``."""
    p = str(path)
    if p.lower().endswith((".xlsx", ".xlsm")):
        from cpa.xlsx import read_raw_xlsx

        raw = read_raw_xlsx(p)
    else:
        raw = read_raw_text(p)
    return build(raw)


def load(path: str) -> Worksheet:
    """Read a worksheet and raise :class:`WorksheetError` if it has any error."""
    ws = read(path)
    if ws.errors:
        raise WorksheetError(str(path), ws.problems)
    return ws


# ----------------------------------------------------------------------------------------------
# writing


def _format_cell(col: schema.Column, value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return format_plain_number(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")


def format_plain_number(value: float) -> str:
    """Shortest exact text of a float that the 'plain' locale reads back unambiguously."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = repr(float(value))
    from cpa.numbers import _AMBIGUOUS_DOT

    if _AMBIGUOUS_DOT.match(text):
        text += "0"
    return text


def to_text(ws: Worksheet) -> str:
    """The canonical text of a worksheet: column ids, plain numbers, ISO dates."""
    out = [f"# {ws.facility.get('name') or ws.id} — cpa worksheet", ""]
    if ws.illustrative:
        out += ["*Illustrative example (minh họa): a fictional facility, figures within published ranges.*", ""]
    fac_spec = schema.table("facility")
    out += [f"## facility — {fac_spec.en} / {fac_spec.vi}", "", "| field | value |", "| --- | --- |"]
    for col in fac_spec.columns:
        value = ws.facility.get(col.name)
        if value is None:
            continue
        out.append(f"| {col.name} | {_format_cell(col, value)} |")
    out.append("")
    for spec in schema.TABLES:
        if spec.keyvalue:
            continue
        frame = ws.tables.get(spec.name)
        if frame is None or len(frame) == 0:
            continue
        names = spec.column_names
        used = [c for c in names if spec.column(c).required or frame[c].notna().any()]
        out += [f"## {spec.name} — {spec.en} / {spec.vi}", ""]
        out.append("| " + " | ".join(used) + " |")
        out.append("|" + "|".join(" --- " for _ in used) + "|")
        for rec in frame[used].to_dict("records"):
            cells = [_format_cell(spec.column(c), _clean(rec[c])) for c in used]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _clean(value):
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, float) and value != value:
        return None
    return value


def blank_text(lang: str = "en") -> str:
    """A blank worksheet for a consultant to fill, headed and labelled in ``lang`` (vi or en)."""
    vi = lang == "vi"
    title = "Phiếu đánh giá sản xuất sạch hơn (SXSH)" if vi else "Cleaner-production assessment worksheet"
    intro = (
        "Điền mỗi bảng dưới đây. Số liệu ghi rõ đơn vị và cơ sở (đo đạc / ước tính / tính toán). "
        "Dòng bắt đầu bằng | là dữ liệu; các dòng khác là ghi chú. Kiểm tra bằng lệnh: cpa check TỆP"
        if vi else
        "Fill in each table below. Every figure carries its unit and its basis (measured / estimated / "
        "calculated). Lines starting with | are data; other lines are notes. Check it with: cpa check FILE"
    )
    out = [f"# {title}", "", intro, "",
           "<!-- generated from cpa/schema.py by `cpa template`; do not edit by hand -->", ""]
    for spec in schema.TABLES:
        out += [f"## {spec.name} — {spec.label(lang)}", "", spec.help(lang), ""]
        if spec.keyvalue:
            field_h, value_h = ("trường", "giá trị") if vi else ("field", "value")
            out += [f"| {field_h} | {value_h} |", "| --- | --- |"]
            for col in spec.columns:
                out.append(f"| {col.label(lang)} | {col.default} |")
        else:
            out.append("| " + " | ".join(c.label(lang) for c in spec.columns) + " |")
            out.append("|" + "|".join(" --- " for _ in spec.columns) + "|")
        out.append("")
        lines = []
        for col in spec.columns:
            mark = " *" if col.required else ""
            hint = col.help(lang)
            if col.type == "choice":
                opts = ", ".join(c.id for c in schema.choices(col.choices))
                hint = (hint + " " if hint else "") + ("Chọn: " if vi else "One of: ") + opts
            if col.unit:
                hint = (hint + " " if hint else "") + f"[{col.unit}]"
            if hint:
                lines.append(f"- `{col.name}`{mark} ({col.label(lang)}): {hint}")
        if lines:
            out += lines + [""]
    return "\n".join(out)
