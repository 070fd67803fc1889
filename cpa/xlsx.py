"""Excel workbooks: the enterprise's worksheet, in and out.

Three things live here:

:func:`write_template`
    A blank workbook generated from :mod:`cpa.schema`: an instructions sheet, one sheet per
    table with locked header cells, a note on every header (help, unit, choices) and dropdown
    lists for choices, yes/no, units and references to other sheets.
:func:`read_raw_xlsx`
    The *safe* raw reader. Before any spreadsheet parser sees a file it checks that the file is a
    zip at all, that the zip is not a bomb (sizes and compression ratios from the central
    directory, before anything is decompressed), that no XML part carries a DTD or an entity
    declaration, that no sheet reaches absurdly far (declared ``<dimension>`` and actual cell
    references), and which formula cells have no cached value. Only then does python-calamine
    read the cell values, from an in-memory copy of the workbook that holds nothing but the XML
    parts that passed these checks (macros, pictures and embedded objects are left behind).
:func:`write_export`
    The worksheet's tables in the template's layout (so ``cpa import`` reads them back), plus
    result tables. Text is always written as text: a cell beginning with ``= + - @`` is never a
    formula.

The workbook layout (format ``cpa-xlsx`` version :data:`FORMAT_VERSION`) is recorded in a
very hidden sheet ``_cpa`` that maps each sheet name to its table. The reader also accepts a
sheet named by the table id or by its English or Vietnamese label, so a workbook an enterprise
assembled by hand is read too. See ``docs/excel.md``.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import posixpath
import re
import sys
import unicodedata
import zipfile
from collections.abc import Sequence
from functools import lru_cache

from cpa import schema
from cpa.errors import CPAError, Problem
from cpa.worksheet import Loc, RawTable, RawWorksheet, format_plain_number

FORMAT = "cpa-xlsx"
FORMAT_VERSION = 1
META_SHEET = "_cpa"
LISTS_SHEET = "_lists"

#: Limits of what the reader accepts. A real facility workbook is far inside all of them.
MAX_FILE_BYTES = 100 * 2**20          # the .xlsx file itself
MAX_UNCOMPRESSED = 256 * 2**20        # all XML parts together, unpacked
MAX_RATIO = 100                       # unpacked / packed, per part and overall ...
RATIO_FLOOR = 2**20                   # ... for parts (and totals) larger than this
MAX_MEMBERS = 2000                    # parts in the zip
MAX_ROWS = 200_000                    # rows of a sheet
MAX_COLS = 200                        # columns of a sheet
MAX_CELLS = 10_000_000                # rows x columns of the grid a sheet spans
MAX_REPORTED = 50                     # problems of one kind reported per sheet

#: Rows of a table sheet that carry dropdown lists.
ENTRY_ROWS = 10_000

_WB_OPTIONS = {"strings_to_formulas": False, "strings_to_urls": False,
               "strings_to_numbers": False, "in_memory": True}
_FORBIDDEN_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
_CELL_REF = re.compile(r"^\$?([A-Z]{1,3})\$?([0-9]{1,7})$")
_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"([^\"]*)\"")
_FAST_CELL = re.compile(rb"<c r=\"([A-Z]{1,4})([0-9]{1,8})\"")
_FAST_CELL_ROW = re.compile(rb"<c r=\"[A-Z]{1,4}([0-9]{1,8})\"")
_FAST_CELL_COL = re.compile(rb"<c r=\"([A-Z]{1,4})")
_FORMULA = re.compile(rb"<f[ >/]")
_INJECTION_START = ("=", "+", "-", "@", "\t", "\r", "\n")

_TEXT = {
    "vi": {
        "instructions": "Hướng dẫn",
        "field": "trường",
        "value": "giá trị",
        "yes": "có",
        "no": "không",
        "required": "Bắt buộc.",
        "unit": "Đơn vị",
        "unit_in": "Đơn vị ghi ở cột",
        "choices": "Chọn một mã",
        "dims": "Đơn vị thuộc đại lượng",
        "refers": "Mã của một dòng trong trang",
        "date": "Ngày dạng YYYY-MM-DD.",
        "int": "Số nguyên.",
        "id": "Mã ngắn: chữ, số, _ - . (không dấu cách).",
        "bool": "có / không.",
        "column": "Cột",
        "not_choice": "Chọn một giá trị trong danh sách.",
        "suggest": "Giá trị ngoài danh sách gợi ý; cpa check sẽ kiểm tra.",
    },
    "en": {
        "instructions": "Instructions",
        "field": "field",
        "value": "value",
        "yes": "yes",
        "no": "no",
        "required": "Required.",
        "unit": "Unit",
        "unit_in": "Unit in column",
        "choices": "One of the ids",
        "dims": "A unit of",
        "refers": "The id of a row of sheet",
        "date": "A date YYYY-MM-DD.",
        "int": "A whole number.",
        "id": "A short id: letters, digits, _ - . (no spaces).",
        "bool": "yes / no.",
        "column": "Column",
        "not_choice": "Pick a value from the list.",
        "suggest": "Not one of the suggested values; cpa check will check it.",
    },
}

#: Units offered in the dropdown of a unit column, by dimension (any unit cpa reads is accepted).
DIM_UNITS: dict[str, tuple[str, ...]] = {
    "mass": ("t", "kg", "g"),
    "volume": ("m3", "L"),
    "normal_volume": ("Nm3",),
    "energy": ("kWh", "MWh", "GJ", "MJ", "Gcal"),
    "count": ("piece",),
    "area": ("m2",),
    "emission": ("tCO2e", "kgCO2e"),
    "money": ("VND", "million_VND", "billion_VND"),
}
#: Units offered for unit columns without a fixed dimension, by table.
TABLE_UNITS: dict[str, tuple[str, ...]] = {
    "prices": ("VND/t", "VND/kg", "VND/m3", "VND/L", "VND/kWh", "VND/MWh", "VND/GJ", "VND/Nm3",
               "VND/piece", "VND/m2", "million_VND/t"),
    "factors": ("GJ/t", "MJ/kg", "GJ/m3", "MJ/Nm3", "MJ/L", "kgCO2e/GJ", "tCO2e/MWh", "kgCO2e/kWh",
                "TOE_VN/t", "TOE_VN/MWh", "TOE_VN/m3", "t/m3", "kg/L", "kg/piece", "t/piece"),
    "effects": ("%", "t/yr", "m3/yr", "kWh/yr", "GJ/yr", "VND/yr", "m3/t", "kWh/t", "GJ/t", "t/t"),
}


# ----------------------------------------------------------------------------------------------
# names of sheets


def _fold(text) -> str:
    return unicodedata.normalize("NFC", str(text)).strip().casefold()


def sheet_title(text: str) -> str:
    """A valid Excel sheet name from a label: no ``[]:*?/\\``, at most 31 characters."""
    s = _FORBIDDEN_SHEET_CHARS.sub("-", unicodedata.normalize("NFC", text)).strip().strip("'")
    return s[:31].rstrip() or "sheet"


def table_sheet_name(table: str, lang: str) -> str:
    """The sheet name of a table in a workbook written in ``lang``."""
    return sheet_title(schema.table(table).label(lang))


@lru_cache(maxsize=1)
def sheet_lookup() -> dict[str, str]:
    """Every accepted sheet name (folded) → table: the id, the labels and their sheet forms."""
    out = {}
    for t in schema.TABLES:
        for text in (t.name, t.en, t.vi):
            out[_fold(text)] = t.name
            out[_fold(sheet_title(text))] = t.name
    return out


def _col_letter(index: int) -> str:
    """0-based column index → letters (0 → A)."""
    s = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        s = chr(65 + rem) + s
    return s


def _col_index(letters: str) -> int:
    """Letters → 0-based column index (A → 0)."""
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def _ref(row: int, col: int) -> str:
    """0-based row and column → ``B7``."""
    return f"{_col_letter(col)}{row + 1}"


# ----------------------------------------------------------------------------------------------
# reading: safety checks before any parser


class _Refused(Exception):
    """Internal: the workbook is refused; carries the problem."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def _file_problem(path, message, found="", expected="", fix="", code="", table="", cell="",
                  severity="error") -> Problem:
    return Problem(path, message, found=found, expected=expected, fix=fix, table=table, cell=cell,
                   severity=severity, code=code)


_RESAVE = "open it in Excel or LibreOffice Calc and save it as an Excel workbook (.xlsx)"


def _not_a_zip(path: str, head: bytes) -> Problem:
    """Say what a file that is not a zip most likely is."""
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return _file_problem(
            path, "not an .xlsx workbook: an old-format .xls workbook, or a workbook locked with a password",
            found="an OLE2 (Excel 97–2003 or encrypted) file",
            expected="an Excel workbook (.xlsx)", code="not_xlsx",
            fix=_RESAVE + ", without a password to open")
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    low = text[:2048].lower()
    if low.startswith((b"<!doctype html", b"<html")) or b"<table" in low or b"<body" in low:
        return _file_problem(path, "not an .xlsx workbook: a web page (HTML) with an .xlsx name",
                             found="HTML text", expected="an Excel workbook (.xlsx)", code="not_xlsx",
                             fix=_RESAVE)
    if low.startswith(b"<?xml") or low.startswith(b"<"):
        return _file_problem(path, "not an .xlsx workbook: an XML file (perhaps 'XML Spreadsheet 2003')",
                             found="XML text", expected="an Excel workbook (.xlsx)", code="not_xlsx",
                             fix=_RESAVE)
    if head.startswith(b"PK"):
        return _file_problem(path, "the workbook is damaged or incomplete (the zip container is broken)",
                             found="a truncated or corrupt zip file", expected="a complete .xlsx file",
                             code="damaged", fix="copy the file again from where it came from, or re-save it "
                                                 "in Excel or LibreOffice Calc")
    sample = head[:4096]
    try:
        decoded = sample.decode("utf-8")
        is_text = True
    except UnicodeDecodeError:
        decoded = sample.decode("latin-1")
        is_text = b"\x00" not in sample
    if is_text and any(sep in decoded for sep in (",", ";", "\t")) and "\n" in decoded:
        return _file_problem(path, "not an .xlsx workbook: CSV text with an .xlsx name",
                             found="comma- or tab-separated text", expected="an Excel workbook (.xlsx)",
                             code="not_xlsx", fix="open the CSV in Excel or LibreOffice Calc and save it "
                                                  "as .xlsx, or start from cpa template OUT.xlsx")
    if is_text:
        return _file_problem(path, "not an .xlsx workbook: plain text with an .xlsx name",
                             found="text", expected="an Excel workbook (.xlsx)", code="not_xlsx",
                             fix="a text worksheet is named *.cpa.md; a workbook must be saved as .xlsx")
    return _file_problem(path, "not an .xlsx workbook", found="binary data that is not a zip file",
                         expected="an Excel workbook (.xlsx)", code="not_xlsx", fix=_RESAVE)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _declared_members(path: str, size: int) -> int | None:
    """The number of members the zip's end record declares, read before :mod:`zipfile` builds
    an object per member (a crafted directory could list millions)."""
    with open(path, "rb") as f:
        f.seek(max(0, size - 65557))
        tail = f.read()
        pos = tail.rfind(b"PK\x05\x06")
        if pos == -1 or pos + 22 > len(tail):
            return None
        count = int.from_bytes(tail[pos + 10: pos + 12], "little")
        if count != 0xFFFF:
            return count
        loc = tail.rfind(b"PK\x06\x07", 0, pos)       # zip64 end locator
        if loc == -1 or loc + 20 > len(tail):
            return None
        offset = int.from_bytes(tail[loc + 8: loc + 16], "little")
        if offset + 56 > size:
            return None
        f.seek(offset)
        rec = f.read(56)
        if not rec.startswith(b"PK\x06\x06"):
            return None
        return int.from_bytes(rec[32:40], "little")


def _check_zip(path: str, zf: zipfile.ZipFile, file_size: int) -> list[zipfile.ZipInfo]:
    """Refuse a zip bomb from its central directory alone (nothing is decompressed here)."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _Refused(_file_problem(path, "the workbook has too many parts", found=f"{len(infos):,} zip members",
                                     expected=f"at most {MAX_MEMBERS:,}", code="zip_bomb",
                                     fix="copy the worksheet sheets into a new workbook"))
    names = set()
    total = packed = 0
    for info in infos:
        if info.filename in names:
            raise _Refused(_file_problem(path, "the workbook is malformed: a part appears twice",
                                         found=info.filename, expected="each zip member once",
                                         code="damaged", fix=_RESAVE))
        names.add(info.filename)
        if info.flag_bits & 0x1:
            raise _Refused(_file_problem(path, "the workbook is encrypted", found=info.filename,
                                         expected="an unencrypted .xlsx", code="encrypted",
                                         fix="save it without a password"))
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Refused(_file_problem(path, "the workbook uses a compression method cpa does not read",
                                         found=f"method {info.compress_type} in {info.filename}",
                                         expected="deflate, as Excel and LibreOffice write", code="damaged",
                                         fix=_RESAVE))
        size, csize = info.file_size, info.compress_size
        if size > MAX_UNCOMPRESSED:
            raise _Refused(_file_problem(
                path, "refused before unpacking: a part of the workbook is far too large",
                found=f"{info.filename} unpacks to {_mb(size)}", expected=f"at most {_mb(MAX_UNCOMPRESSED)}",
                code="zip_bomb", fix="a facility worksheet is much smaller; check where the file came from"))
        if size > RATIO_FLOOR and size > MAX_RATIO * max(csize, 1):
            ratio = size / max(csize, 1)
            raise _Refused(_file_problem(
                path, "refused before unpacking: a zip bomb (compression ratio too high)",
                found=f"{info.filename}: {_mb(csize)} packed unpacks to {_mb(size)} (ratio {ratio:,.0f}:1)",
                expected=f"a compression ratio of at most {MAX_RATIO}:1", code="zip_bomb",
                fix="a real workbook compresses far less; check where the file came from"))
        total += size
        packed += csize
    if total > MAX_UNCOMPRESSED:
        raise _Refused(_file_problem(
            path, "refused before unpacking: the workbook unpacks to too much data",
            found=f"{_mb(file_size)} file unpacks to {_mb(total)}", expected=f"at most {_mb(MAX_UNCOMPRESSED)}",
            code="zip_bomb", fix="split the facility into several workbooks"))
    if total > RATIO_FLOOR and total > MAX_RATIO * max(packed, 1):
        raise _Refused(_file_problem(
            path, "refused before unpacking: a zip bomb (compression ratio too high)",
            found=f"{_mb(packed)} packed unpacks to {_mb(total)} (ratio {total / max(packed, 1):,.0f}:1)",
            expected=f"a compression ratio of at most {MAX_RATIO}:1", code="zip_bomb",
            fix="a real workbook compresses far less; check where the file came from"))
    return infos


def _is_xml_part(name: str) -> bool:
    low = name.lower()
    return low.endswith((".xml", ".rels")) and not name.endswith("/")


def _check_xml(path: str, name: str, data: bytes) -> None:
    """Refuse an XML part with a DTD or entity declarations, or in an encoding that hides them."""
    head = data[:4]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:64]:
        raise _Refused(_file_problem(path, "an XML part of the workbook is not UTF-8", found=name,
                                     expected="UTF-8 XML, as Excel and LibreOffice write", code="xml",
                                     fix=_RESAVE))
    pos = data.find(b"<!")
    while pos != -1:
        tail = data[pos + 2: pos + 9]
        if not (tail.startswith(b"--") or tail.startswith(b"[CDATA[")):
            kind = "ENTITY" if tail.upper().startswith(b"ENTITY") else "DOCTYPE"
            raise _Refused(_file_problem(
                path, f"refused: an XML part of the workbook declares a DTD or entities (<!{kind})",
                found=f"{name}: {data[pos:pos + 40].decode('utf-8', 'replace')!r}",
                expected="XML without <!DOCTYPE> or <!ENTITY> (Excel never writes them)", code="dtd",
                fix="this file was crafted or damaged; " + _RESAVE))
        pos = data.find(b"<!", pos + 2)


def _xml(data: bytes):
    """Parse a small XML part (already checked) with defusedxml: no DTD, no entities."""
    import defusedxml.ElementTree as DET  # noqa: N812 - defusedxml's customary name

    return DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attr(elem, name: str):
    """An attribute by local name, whatever its namespace."""
    if name in elem.attrib:
        return elem.attrib[name]
    for key, value in elem.attrib.items():
        if key.endswith("}" + name):
            return value
    return None


def _workbook_sheets(path: str, parts: dict[str, bytes]) -> tuple[list[tuple[str, str, str]], bool]:
    """(sheet name as stored, part name, state) of every worksheet, and whether the file
    recalculates on load."""
    wb_part = "xl/workbook.xml"
    rels = parts.get("_rels/.rels")
    if rels is not None:
        for rel in _xml(rels).iter():
            if _local(rel.tag) == "Relationship" and (rel.get("Type") or "").endswith("/officeDocument"):
                wb_part = posixpath.normpath((rel.get("Target") or wb_part).lstrip("/"))
    if wb_part not in parts:
        binary = "xl/workbook.bin" if wb_part == "xl/workbook.xml" else ""
        raise _Refused(_file_problem(
            path, "not an .xlsx workbook: the zip has no workbook part",
            found="a binary .xlsb workbook" if binary and binary in parts else "a zip file of another kind "
                  "(perhaps .docx, .ods or a zipped folder)",
            expected="an Excel workbook (.xlsx)", code="not_xlsx", fix=_RESAVE))
    base = posixpath.dirname(wb_part)
    rel_name = posixpath.join(base, "_rels", posixpath.basename(wb_part) + ".rels")
    targets = {}
    if rel_name in parts:
        for rel in _xml(parts[rel_name]).iter():
            if _local(rel.tag) == "Relationship":
                target = rel.get("Target") or ""
                full = target.lstrip("/") if target.startswith("/") else posixpath.join(base, target)
                targets[rel.get("Id")] = posixpath.normpath(full)
    root = _xml(parts[wb_part])
    sheets, recalc = [], False
    for elem in root.iter():
        tag = _local(elem.tag)
        if tag == "sheet":
            raw_name = elem.get("name") or ""
            part = targets.get(_attr(elem, "id") or "", "")
            sheets.append((raw_name, part, elem.get("state") or "visible"))
        elif tag == "calcPr":
            recalc = (elem.get("fullCalcOnLoad") or "").lower() in ("1", "true")
    return sheets, recalc


class _SheetScan:
    """What a streaming look at a sheet's XML found: extent, declared dimension, formulas."""

    def __init__(self):
        self.dimension: str | None = None
        self.max_row = 0            # 1-based
        self.max_col = 0            # 1-based
        self.min_row = 0
        self.min_col = 0
        self.far_cell = ""
        self.bad_ref = ""
        self.formulas: list[tuple[str, bool]] = []   # (cell, has a cached value)


def _scan_sheet(data: bytes) -> _SheetScan:
    scan = _SheetScan()
    head = data[:65536]
    m = _DIMENSION.search(head)
    if m:
        scan.dimension = m.group(1).decode("ascii", "replace")
    standard = re.search(rb"<worksheet[\s>]", head) is not None
    n_cells = data.count(b"<c ") + data.count(b"<c>") + data.count(b"<c/>")
    cell_rows = _FAST_CELL_ROW.findall(data) if standard else []
    if not standard or len(cell_rows) != n_cells:
        return _scan_sheet_slow(data, scan)
    if cell_rows:
        row_numbers = [int(r) for r in set(cell_rows)]
        col_numbers = [_col_index(c.decode()) + 1 for c in set(_FAST_CELL_COL.findall(data))]
        scan.max_row, scan.min_row = max(row_numbers), min(row_numbers)
        scan.max_col, scan.min_col = max(col_numbers), min(col_numbers)
        scan.far_cell = f"{_col_letter(scan.max_col - 1)}{scan.max_row}"
        if scan.max_row > MAX_ROWS or scan.max_col > MAX_COLS:
            for m in _FAST_CELL.finditer(data):        # name a real cell that lies too far
                c, r = m.group(1), m.group(2)
                if int(r) > MAX_ROWS or _col_index(c.decode()) + 1 > MAX_COLS:
                    scan.far_cell = (c + r).decode()
                    break
    for fm in _FORMULA.finditer(data):
        pos = fm.start()
        start = data.rfind(b"<c ", 0, pos)
        end = data.find(b"</c>", pos)
        cm = _FAST_CELL.match(data, start) if start != -1 else None
        ref = (cm.group(1) + cm.group(2)).decode() if cm else "?"
        value_part = data[pos: end if end != -1 else len(data)]
        has_value = b"<v>" in value_part or b"<v " in value_part or b"<v/>" in value_part
        scan.formulas.append((ref, has_value))
    return scan


def _scan_sheet_slow(data: bytes, scan: _SheetScan) -> _SheetScan:
    """Exact positions for sheets whose cells lack ``r`` or use a namespace prefix (defusedxml)."""
    import defusedxml.ElementTree as DET  # noqa: N812

    row = 0
    col = 0
    rows_seen, cols_seen = [], []
    cell_ref = ""
    too_far = ""
    has_f = has_v = False
    for event, elem in DET.iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True,
                                     forbid_entities=True, forbid_external=True):
        tag = _local(elem.tag)
        if event == "start":
            if tag == "dimension" and scan.dimension is None:
                scan.dimension = elem.get("ref")
            elif tag == "row":
                r = elem.get("r")
                row = int(r) if r and r.isdigit() else row + 1
                col = 0
            elif tag == "c":
                r = elem.get("r")
                if r:
                    m = _CELL_REF.match(r)
                    if not m:
                        scan.bad_ref = scan.bad_ref or r
                        continue
                    col = _col_index(m.group(1)) + 1
                    rr = int(m.group(2))
                else:
                    col += 1
                    rr = row
                cell_ref = f"{_col_letter(col - 1)}{rr}"
                if not too_far and (rr > MAX_ROWS or col > MAX_COLS):
                    too_far = cell_ref
                rows_seen.append(rr)
                cols_seen.append(col)
                if rr > scan.max_row or col > scan.max_col:
                    scan.max_row = max(scan.max_row, rr)
                    scan.max_col = max(scan.max_col, col)
                has_f = has_v = False
        else:
            if tag == "f":
                has_f = True
            elif tag == "v":
                has_v = True
            elif tag == "c":
                if has_f:
                    scan.formulas.append((cell_ref, has_v))
                elem.clear()
            elif tag == "row":
                elem.clear()
    if rows_seen:
        scan.min_row, scan.min_col = min(rows_seen), min(cols_seen)
        scan.far_cell = too_far or f"{_col_letter(scan.max_col - 1)}{scan.max_row}"
    return scan


def _extent_problems(path: str, sheet: str, scan: _SheetScan) -> list[Problem]:
    """Refuse a sheet that reaches too far (declared or actual); nothing has been allocated yet."""
    out = []
    if scan.bad_ref:
        out.append(_file_problem(path, "a cell has an invalid reference", table=sheet, found=scan.bad_ref,
                                 expected="a reference such as B7", code="damaged", fix=_RESAVE))
    if scan.dimension:
        last = scan.dimension.split(":")[-1]
        m = _CELL_REF.match(last)
        if m and (int(m.group(2)) > MAX_ROWS or _col_index(m.group(1)) + 1 > MAX_COLS):
            last_cell = scan.far_cell or "no cell at all"
            out.append(_file_problem(
                path, "the sheet declares a used range far larger than its cells; cpa ignores the "
                      "declaration and reads only the cells", table=sheet,
                found=f"declared dimension {scan.dimension}; the last cell is {last_cell}",
                expected=f"at most {MAX_ROWS:,} rows and {MAX_COLS} columns", code="dimension",
                severity="warning",
                fix="nothing to do if the data is complete; re-saving in Excel or LibreOffice repairs it"))
    if scan.max_row > MAX_ROWS or scan.max_col > MAX_COLS:
        out.append(_file_problem(
            path, "a cell lies far outside any worksheet table", table=sheet, cell=scan.far_cell,
            found=f"a cell at {scan.far_cell}",
            expected=f"cells within {MAX_ROWS:,} rows and {MAX_COLS} columns ({_col_letter(MAX_COLS - 1)})",
            code="too_large", fix=f"delete the content and formatting of cell {scan.far_cell}, save, and try again"))
    elif scan.max_row and (scan.max_row - scan.min_row + 1) * (scan.max_col - scan.min_col + 1) > MAX_CELLS:
        out.append(_file_problem(
            path, "the sheet spans too many cells", table=sheet, cell=scan.far_cell,
            found=f"{scan.max_row:,} rows x {scan.max_col} columns", expected=f"at most {MAX_CELLS:,} cells",
            code="too_large", fix="split the facility into several workbooks, or delete unused cells"))
    return out


def _formula_problems(path: str, sheet: str, scan: _SheetScan, recalc: bool) -> list[Problem]:
    out = []
    bad = [(ref, has) for ref, has in scan.formulas if not has or recalc]
    for ref, has in bad[:MAX_REPORTED]:
        if not has:
            msg = "a formula without a calculated value"
            found = "a formula whose result was never saved"
        else:
            msg = "a formula whose value was never calculated"
            found = "a formula; the workbook asks to be recalculated on opening, so its saved value is a placeholder"
        out.append(_file_problem(
            path, msg, table=sheet, cell=ref, found=found,
            expected="a value, or a formula whose value Excel or LibreOffice has calculated", code="formula",
            fix="open the workbook in Excel or LibreOffice Calc and save it (that calculates every formula), "
                "or type the value"))
    if len(bad) > MAX_REPORTED:
        out.append(_file_problem(path, f"{len(bad) - MAX_REPORTED:,} more formulas without a calculated value",
                                 table=sheet, code="formula",
                                 fix="open the workbook in Excel or LibreOffice Calc and save it"))
    return out


# ----------------------------------------------------------------------------------------------
# reading: cells into raw tables


class _RowLocs(Sequence):
    """Cell locations of one row, made on demand (a workbook may have a million cells)."""

    __slots__ = ("letters", "row")

    def __init__(self, letters: list[str], row: int):
        self.letters = letters
        self.row = row

    def __len__(self):
        return len(self.letters)

    def __getitem__(self, c):
        return Loc(cell=f"{self.letters[c]}{self.row}")


class _CellLocs(Sequence):
    __slots__ = ("first_row", "letters", "n")

    def __init__(self, letters: list[str], first_row: int, n: int):
        self.letters = letters
        self.first_row = first_row
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, r):
        if not 0 <= r < self.n:
            raise IndexError(r)
        return _RowLocs(self.letters, self.first_row + r)


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _text_of(value) -> str:
    """A cell value as the text a text column holds."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format_plain_number(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return unicodedata.normalize("NFC", str(value))


def _cell_value(col: schema.Column | None, value):
    """What the builder gets for a cell: numbers and dates pass typed, the rest as NFC text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if col is not None:
        if col.type in ("number", "int") and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if col.type == "date" and isinstance(value, dt.date):
            if isinstance(value, dt.datetime) and value.time() == dt.time(0):
                return value.date()
            return value
    return _text_of(value)


def _converter(col: schema.Column | None):
    """A fast per-column version of :func:`_cell_value`."""
    nfc = unicodedata.normalize
    if col is not None and col.type in ("number", "int"):
        def conv(v):
            t = type(v)
            if t is float or t is int:
                return v
            return nfc("NFC", v) if t is str else _cell_value(col, v)
    elif col is not None and col.type == "date":
        def conv(v):
            return nfc("NFC", v) if type(v) is str else _cell_value(col, v)
    else:
        def conv(v):
            return nfc("NFC", v) if type(v) is str else _text_of(v) if v is not None else ""
    return conv


def _convert_column(values, col: schema.Column | None) -> list | tuple:
    """Convert a column of cells; text-only columns are NFC-normalised in one go."""
    kinds = set(map(type, values))
    if kinds <= {str}:
        joined = "\x00".join(values)
        if joined.isascii():
            return values
        if joined.count("\x00") == len(values) - 1:
            # NUL never composes, so normalising the joined column equals normalising each cell
            out = unicodedata.normalize("NFC", joined).split("\x00")
            if len(out) == len(values):
                return out
        return [unicodedata.normalize("NFC", v) for v in values]
    conv = _converter(col)
    return [conv(v) for v in values]


def _find_header(rows: list[list], table: str) -> int | None:
    """Index of the header row: the first of the first rows naming a known column."""
    lookup = schema.header_lookup(table)
    first_nonempty = None
    for i, row in enumerate(rows[:30]):
        if all(_empty(v) for v in row):
            continue
        if first_nonempty is None:
            first_nonempty = i
        if any(isinstance(v, str) and _fold(v) in lookup for v in row):
            return i
    return first_nonempty


def _table_from_grid(path: str, sheet: str, table: str, rows: list[list],
                     merged, problems: list[Problem]) -> RawTable:
    spec = schema.table(table)
    rt = RawTable(table, Loc(cell="A1"))
    if spec.keyvalue:
        return _keyvalue_from_grid(path, sheet, rt, rows, problems)
    h = _find_header(rows, table)
    if h is None:
        rt.cell_locs = _CellLocs([], 1, 0)
        return rt
    header_row = rows[h]
    for i in range(h):
        for c, v in enumerate(rows[i]):
            if not _empty(v):
                problems.append(_file_problem(path, "text above the header row is ignored", table=sheet,
                                              cell=_ref(i, c), found=_text_of(v)[:60], severity="warning",
                                              code="ignored", fix="delete it if it is not a note"))
                break
    last_row = len(rows)
    while last_row > h + 1 and all(_empty(v) for v in rows[last_row - 1]):
        last_row -= 1
    body = rows[h + 1: last_row]
    width = max((c + 1 for c, v in enumerate(header_row) if not _empty(v)), default=0)
    keep = []
    for c in range(width):
        if _empty(header_row[c]) and all(c >= len(r) or _empty(r[c]) for r in body):
            continue
        keep.append(c)
    lookup = schema.header_lookup(table)
    cols_spec = [spec.column(lookup[_fold(header_row[c])]) if isinstance(header_row[c], str)
                 and _fold(header_row[c]) in lookup else None for c in keep]
    letters = [_col_letter(c) for c in keep]
    rt.header = [(_text_of(header_row[c]).strip() if not _empty(header_row[c]) else "",
                  Loc(cell=_ref(h, c))) for c in keep]
    # column by column: a workbook may hold a million cells, and most columns need no work
    n_rows = len(body)
    grid_width = max((len(r) for r in body), default=0)
    if any(len(r) != grid_width for r in body):
        body = [list(r) + [""] * (grid_width - len(r)) for r in body]
    columns = list(zip(*body, strict=True)) if body else []
    blank = ("",) * n_rows
    converted = [_convert_column(columns[c] if c < grid_width else blank, col)
                 for c, col in zip(keep, cols_spec, strict=True)]
    rt.rows = [list(r) for r in zip(*converted, strict=True)] if converted else [[] for _ in range(n_rows)]
    first_letter = letters[0] if letters else "A"
    rt.row_locs = [Loc(cell=f"{first_letter}{h + 2 + r}") for r in range(n_rows)]
    stray = 0
    for c in range(width, grid_width):
        for r, v in enumerate(columns[c]):
            if not _empty(v):
                stray += 1
                if stray <= MAX_REPORTED:
                    problems.append(_file_problem(
                        path, "a value in a column without a heading", table=sheet, cell=_ref(h + 1 + r, c),
                        found=_text_of(v)[:60], expected="values only under the table's headings",
                        code="stray", fix="move the value into the right column, or delete it"))
    rt.cell_locs = _CellLocs(letters, h + 2, len(rt.rows))
    _merged_warnings(path, sheet, merged, h, problems)
    return rt


def _keyvalue_from_grid(path, sheet, rt: RawTable, rows, problems) -> RawTable:
    lookup = schema.header_lookup(rt.name)
    headers = {_fold(t[k]) for t in _TEXT.values() for k in ("field", "value")} | {"field", "value"}
    start = 0
    while start < len(rows) and all(_empty(v) for v in rows[start]):
        start += 1
    if start < len(rows):
        first = rows[start]
        a = first[0] if first else None
        if not (isinstance(a, str) and _fold(a) in lookup) and any(
                isinstance(v, str) and _fold(v) in headers for v in first):
            rt.header = [(_text_of(v), Loc(cell=_ref(start, c))) for c, v in enumerate(first[:2])]
            start += 1
    spec = schema.table(rt.name)
    for r in range(start, len(rows)):
        row = rows[r]
        if all(_empty(v) for v in row):
            continue
        name = row[0] if row else None
        col = None
        if isinstance(name, str) and _fold(name) in lookup:
            col = spec.column(lookup[_fold(name)])
        cells = [_cell_value(None, name)] + [_cell_value(col, v) for v in row[1:]]
        while len(cells) > 2 and _empty(cells[-1]):
            cells.pop()
        rt.rows.append(cells)
        rt.row_locs.append(Loc(cell=_ref(r, 0)))
    first_rows = [loc.cell for loc in rt.row_locs]
    rt.cell_locs = _KeyValueLocs(first_rows, max((len(r) for r in rt.rows), default=2))
    return rt


class _KeyValueLocs(Sequence):
    __slots__ = ("rows", "width")

    def __init__(self, first_cells: list[str], width: int):
        self.rows = [int(c[1:]) for c in first_cells]
        self.width = width

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, r):
        return _RowLocs([_col_letter(c) for c in range(self.width)], self.rows[r])


def _merged_warnings(path, sheet, merged, header_index, problems):
    for (r0, c0), (r1, c1) in (merged or [])[:MAX_REPORTED]:
        if r1 <= header_index or (r0 == r1 and c0 == c1):
            continue
        problems.append(_file_problem(
            path, "merged cells: only the top-left cell holds the value, the others are read as empty",
            table=sheet, cell=f"{_ref(r0, c0)}:{_ref(r1, c1)}", found="a merged range in the table",
            expected="one value in every cell", severity="warning", code="merged",
            fix="unmerge the cells and fill the value into each row"))


def _read_meta(rows: list[list]) -> tuple[int | None, dict[str, tuple[str, str]]]:
    """The ``_cpa`` sheet: format version and sheet name → (table, kind)."""
    version = None
    mapping = {}
    for row in rows:
        cells = [_text_of(v).strip() if not _empty(v) else "" for v in row] + ["", "", ""]
        if cells[0] == FORMAT:
            try:
                version = int(float(cells[1]))
            except ValueError:
                version = None
        elif cells[0] and cells[0] not in ("lang", "sheet") and cells[2]:
            mapping[unicodedata.normalize("NFC", cells[0])] = (cells[1], cells[2])
    return version, mapping


def read_raw_xlsx(path) -> RawWorksheet:
    """Read a workbook into raw tables, safely; every problem is located (``Sheet!B7``).

    The file is checked before any parser sees it (see the module notes); a file that fails a
    check gives a :class:`RawWorksheet` with no tables and the problem that says why.

    Parameters
    ----------
    path : str or os.PathLike
        An ``.xlsx`` (or ``.xlsm``, whose macros are ignored) workbook.

    Returns
    -------
    RawWorksheet
        One :class:`RawTable` per sheet that maps to a table; ``sheet_names`` maps each table to
        its sheet, so that :func:`cpa.worksheet.build` reports problems as ``Sheet!B7``.

    Raises
    ------
    CPAError
        When the file cannot be opened at all (missing, unreadable).
    """
    path = os.fspath(path)
    try:
        return _read(path)
    except _Refused as exc:
        return RawWorksheet(path, {}, [exc.problem])
    except CPAError:
        raise
    except (MemoryError, RecursionError) as exc:
        return RawWorksheet(path, {}, [_file_problem(path, "the workbook is too complex to read",
                                                     found=type(exc).__name__, code="too_large",
                                                     fix=_RESAVE)])
    except Exception as exc:  # the boundary: nothing a user's file holds may end in a traceback
        return RawWorksheet(path, {}, [_file_problem(
            path, "the workbook could not be read", found=f"{type(exc).__name__}: {exc}"[:300],
            expected="an Excel workbook (.xlsx) saved by Excel or LibreOffice Calc", code="damaged",
            fix=_RESAVE)])


def _read(path: str) -> RawWorksheet:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise CPAError(f"{path}: cannot read the file ({exc.strerror})") from exc
    if size == 0:
        raise _Refused(_file_problem(path, "the file is empty", found="0 bytes",
                                     expected="an Excel workbook (.xlsx)", code="empty",
                                     fix="start from a blank workbook: cpa template OUT.xlsx"))
    if size > MAX_FILE_BYTES:
        raise _Refused(_file_problem(path, "the file is too large for a worksheet workbook",
                                     found=_mb(size), expected=f"at most {_mb(MAX_FILE_BYTES)}",
                                     code="too_large", fix="split the facility into several workbooks"))
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise _Refused(_not_a_zip(path, head))
    declared = _declared_members(path, size)
    if declared is not None and declared > MAX_MEMBERS:
        raise _Refused(_file_problem(path, "the workbook has too many parts", found=f"{declared:,} zip members",
                                     expected=f"at most {MAX_MEMBERS:,}", code="zip_bomb",
                                     fix="copy the worksheet sheets into a new workbook"))
    problems: list[Problem] = []
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise _Refused(_not_a_zip(path, head)) from exc
    with zf:
        infos = _check_zip(path, zf, size)
        parts: dict[str, bytes] = {}
        for info in infos:
            name = info.filename
            if name.lower().endswith("vbaproject.bin"):
                problems.append(_file_problem(
                    path, "the workbook contains macros (VBA); they are ignored and never run",
                    found=name, severity="warning", code="macros",
                    fix="nothing to do; save as .xlsx to drop the macros"))
                continue
            if not _is_xml_part(name):
                continue        # pictures, printer settings, embedded objects: left behind unread
            try:
                with zf.open(info) as member:
                    data = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise _Refused(_file_problem(path, "the workbook is damaged (a part cannot be unpacked)",
                                             found=f"{name}: {exc}", code="damaged", fix=_RESAVE)) from exc
            except Exception as exc:  # zlib.error and friends
                raise _Refused(_file_problem(path, "the workbook is damaged (a part cannot be unpacked)",
                                             found=f"{name}: {exc}", code="damaged", fix=_RESAVE)) from exc
            if len(data) > info.file_size:
                raise _Refused(_file_problem(path, "the workbook is damaged (a part is larger than declared)",
                                             found=name, code="zip_bomb", fix=_RESAVE))
            _check_xml(path, name, data)
            parts[name] = data
    sheets, recalc = _workbook_sheets(path, parts)
    scans: dict[str, _SheetScan] = {}

    def scan(sheet_name: str, part: str) -> _SheetScan | None:
        if part not in parts:
            problems.append(_file_problem(path, "a sheet of the workbook is missing its data", table=sheet_name,
                                          found=part or "(no part)", code="damaged", fix=_RESAVE))
            return None
        if part not in scans:
            scans[part] = _scan_sheet(parts[part])
        return scans[part]

    # -- which sheet is which table ------------------------------------------------------------
    clean = _clean_copy(parts, {part for _, part, _ in sheets})
    import python_calamine

    try:
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(clean))
    except Exception as exc:
        raise _Refused(_file_problem(path, "the workbook could not be read", found=str(exc)[:300],
                                     code="damaged", fix=_RESAVE)) from exc
    with book:
        mapping: dict[str, tuple[str, str]] = {}
        meta = [s for s in sheets if s[0] == META_SHEET]
        if meta:
            sc = scan(META_SHEET, meta[0][1])
            if sc is not None and not [p for p in _extent_problems(path, META_SHEET, sc)
                                       if p.severity == "error"]:
                version, mapping = _read_meta(book.get_sheet_by_name(META_SHEET).to_python(skip_empty_area=False))
                if version is not None and version > FORMAT_VERSION:
                    problems.append(_file_problem(
                        path, "the workbook was written by a newer cpa", table=META_SHEET,
                        found=f"{FORMAT} version {version}", expected=f"version {FORMAT_VERSION} or older",
                        severity="warning", code="version", fix="update cpa"))
        lookup = sheet_lookup()
        tables: dict[str, RawTable] = {}
        sheet_names: dict[str, str] = {}
        instructions = {_fold(t["instructions"]) for t in _TEXT.values()}
        for stored_name, part, state in sheets:
            name = unicodedata.normalize("NFC", stored_name)
            if name == META_SHEET:
                continue
            kind = None
            table = None
            if name in mapping:
                table, kind = mapping[name]
                if kind == "table" and table not in schema.tables():
                    table, kind = None, None
            if kind is None:
                table = lookup.get(_fold(name))
                kind = "table" if table else None
            if kind != "table":
                if kind is None and state == "visible" and _fold(name) not in instructions \
                        and name != LISTS_SHEET:
                    problems.append(_file_problem(
                        path, "a sheet that is not a worksheet table is ignored", table=name,
                        found=name, expected="sheets named by table: " + ", ".join(t.name for t in schema.TABLES),
                        severity="warning", code="unknown_sheet",
                        fix="rename the sheet to its table's name, or ignore this if it holds notes"))
                continue
            if table in tables:
                problems.append(_file_problem(
                    path, f"table '{table}' appears in two sheets", table=name,
                    found=f"sheets '{sheet_names[table]}' and '{name}'", expected="each table in one sheet",
                    code="duplicate", fix="merge the rows into one sheet and delete the other"))
                continue
            sc = scan(name, part)
            if sc is None:
                continue
            extent = _extent_problems(path, name, sc)
            for p in extent:
                if p.severity == "error":
                    raise _Refused(p)
            problems.extend(extent)
            problems.extend(_formula_problems(path, name, sc, recalc))
            sheet = book.get_sheet_by_name(stored_name)
            rows = sheet.to_python(skip_empty_area=False) if sc.max_row else []
            try:
                merged = sheet.merged_cell_ranges
            except Exception:  # pragma: no cover - merged ranges are a courtesy
                merged = None
            tables[table] = _table_from_grid(path, name, table, rows, merged, problems)
            sheet_names[table] = name
    if not tables:
        problems.append(_file_problem(
            path, "no sheet of the workbook is a worksheet table",
            found=", ".join(unicodedata.normalize("NFC", n) for n, _, st in sheets if st == "visible")[:200]
            or "no visible sheet",
            expected="sheets named by table, e.g. " + ", ".join(
                f"{t.name} ({t.vi})" for t in schema.TABLES[:3]) + " …",
            code="no_tables", fix="start from a blank workbook: cpa template OUT.xlsx, and copy the data in"))
    return RawWorksheet(path, tables, problems, sheet_names)


def _clean_copy(parts: dict[str, bytes], sheet_parts: set[str]) -> bytes:
    """An in-memory workbook holding only the checked XML parts (stored, not compressed).

    The sheets' declared ``<dimension>`` is dropped: cpa has measured the real extent, and no
    parser downstream should size anything from a declaration.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as out:
        for name, data in parts.items():
            if name in sheet_parts:
                m = _DIMENSION.search(data, 0, 65536)
                if m:
                    end = data.find(b">", m.end()) + 1
                    data = data[: m.start()] + data[end:]
            out.writestr(name, data)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# writing


class _Exact(float):
    """A float that XlsxWriter writes with every digit (it formats numbers with ``.16G``)."""

    def __format__(self, spec):
        if spec.upper() == ".16G":
            return repr(float(self))
        return super().__format__(spec)


class _Writer:
    def __init__(self, lang: str):
        if lang not in ("vi", "en"):
            raise CPAError(f"unknown language {lang!r}: use vi or en")
        import xlsxwriter

        self.lang = lang
        self.t = _TEXT[lang]
        self.buf = io.BytesIO()
        self.wb = xlsxwriter.Workbook(self.buf, dict(_WB_OPTIONS))
        self.wb.set_properties({"title": "cpa worksheet", "comments": f"{FORMAT} {FORMAT_VERSION}"})
        wb = self.wb
        # every cell is unlocked unless its format locks it (headers, facility field names), so
        # that whole rows can be inserted and deleted on a protected sheet
        wb.formats[0].set_locked(False)
        self.f_header = wb.add_format({"bold": True, "text_wrap": True, "valign": "top", "locked": True,
                                       "bg_color": "#DDEBF7", "border": 1})
        self.f_header_req = wb.add_format({"bold": True, "text_wrap": True, "valign": "top", "locked": True,
                                           "bg_color": "#F8CBAD", "border": 1})
        self.f_locked = wb.add_format({"locked": True, "text_wrap": True, "valign": "top"})
        self.f_label = wb.add_format({"locked": True, "bg_color": "#DDEBF7", "border": 1})
        self.f_label_req = wb.add_format({"locked": True, "bold": True, "bg_color": "#F8CBAD", "border": 1})
        self.f_text = wb.add_format({"locked": False, "num_format": "@"})
        self.f_text_quote = wb.add_format({"locked": False, "num_format": "@", "quote_prefix": True})
        self.f_general = wb.add_format({"locked": False})
        self.f_date = wb.add_format({"locked": False, "num_format": "yyyy-mm-dd"})
        entry = {"locked": False, "bg_color": "#FFF2CC", "border": 1, "border_color": "#BFBFBF",
                 "align": "left"}
        self.f_entry_text = wb.add_format(entry | {"num_format": "@"})
        self.f_entry_quote = wb.add_format(entry | {"num_format": "@", "quote_prefix": True})
        self.f_entry_general = wb.add_format(entry)
        self.f_entry_date = wb.add_format(entry | {"num_format": "yyyy-mm-dd"})
        self.f_title = wb.add_format({"bold": True, "font_size": 14})
        self.f_bold = wb.add_format({"bold": True, "text_wrap": True, "valign": "top"})
        self.f_wrap = wb.add_format({"text_wrap": True, "valign": "top"})
        self.f_res_header = wb.add_format({"bold": True, "bg_color": "#E2EFDA", "border": 1, "text_wrap": True})
        self.f_res_text = wb.add_format({"num_format": "@"})
        self.f_res_quote = wb.add_format({"num_format": "@", "quote_prefix": True})
        self.meta: list[tuple[str, str, str]] = []
        self.used_names: set[str] = set()
        self.lists: dict[tuple, tuple[str, list[str]]] = {}

    # -- helpers ------------------------------------------------------------------------------
    def unique_name(self, name: str) -> str:
        base = sheet_title(name)
        out, n = base, 2
        while out.casefold() in self.used_names or out == META_SHEET or out == LISTS_SHEET:
            suffix = f" ({n})"
            out = base[: 31 - len(suffix)] + suffix
            n += 1
        self.used_names.add(out.casefold())
        return out

    def list_range(self, key: tuple, values: list[str]) -> str:
        """The absolute range of a column of ``_lists`` that will hold ``values`` (written last)."""
        if key in self.lists:
            return self.lists[key][0]
        letter = _col_letter(len(self.lists))
        rng = f"='{LISTS_SHEET}'!${letter}$2:${letter}${len(values) + 1}"
        self.lists[key] = (rng, list(values))
        return rng

    def write_text(self, ws, row, col, text: str, quote_fmt, plain_fmt):
        """Write text as a string cell; text that a spreadsheet would run gets a quote prefix."""
        text = str(text)
        ws.write_string(row, col, text, quote_fmt if text.startswith(_INJECTION_START) else plain_fmt)

    def comment_text(self, table: schema.Table, col: schema.Column) -> str:
        t = self.t
        lines = [f"{col.label(self.lang)}  [{col.name}]"]
        if col.help(self.lang):
            lines.append(col.help(self.lang))
        if col.required:
            lines.append(t["required"])
        if col.type == "choice":
            opts = schema.choices(col.choices)
            lines.append(t["choices"] + ":")
            lines += [f"  {c.id} = {c.vi if self.lang == 'vi' else c.en}" for c in opts[:25]]
            if len(opts) > 25:
                lines.append(f"  … (+{len(opts) - 25})")
        elif col.type == "bool":
            lines.append(t["bool"])
        elif col.type == "date":
            lines.append(t["date"])
        elif col.type == "int":
            lines.append(t["int"])
        elif col.type == "id":
            lines.append(t["id"])
        elif col.type == "ref":
            lines.append(f"{t['refers']} '{table_sheet_name(col.ref, self.lang)}'.")
        elif col.type == "unit":
            if col.dims:
                lines.append(f"{t['dims']}: {', '.join(col.dims)}.")
            lines.append(", ".join(self.unit_choices(table, col)) + " …")
        if col.unit:
            lines.append(f"{t['unit']}: {col.unit}")
        if col.unit_column:
            other = table.column(col.unit_column)
            lines.append(f"{t['unit_in']} '{other.label(self.lang)}'.")
        return "\n".join(lines)

    def add_comment(self, ws, row, col, text):
        n_lines = text.count("\n") + 1 + len(text) // 45
        ws.write_comment(row, col, text, {"author": "cpa", "x_scale": 2.2, "y_scale": max(1.0, n_lines / 4.5),
                                          "font_size": 9})

    @staticmethod
    def unit_choices(table: schema.Table, col: schema.Column) -> list[str]:
        if col.dims:
            out = []
            for d in col.dims:
                out += DIM_UNITS.get(d, ())
            return out
        return list(TABLE_UNITS.get(table.name, DIM_UNITS["mass"] + DIM_UNITS["volume"] + DIM_UNITS["energy"]))

    def validation(self, ws, first_row, last_row, col_i, table: schema.Table, col: schema.Column):
        t = self.t
        opts = None
        if col.type == "choice":
            values = [c.id for c in schema.choices(col.choices)]
            opts = {"validate": "list", "source": self.list_range(("choice", col.choices), values),
                    "error_type": "stop", "error_message": t["not_choice"]}
        elif col.type == "bool":
            opts = {"validate": "list", "source": [t["yes"], t["no"]], "error_type": "stop",
                    "error_message": t["not_choice"]}
        elif col.type == "unit":
            units = self.unit_choices(table, col)
            opts = {"validate": "list", "source": self.list_range(("unit", table.name, col.name), units),
                    "error_type": "warning", "error_message": t["suggest"]}
        elif col.type == "ref":
            target = schema.table(col.ref)
            sheet = table_sheet_name(col.ref, self.lang).replace("'", "''")
            letter = _col_letter(target.column_names.index("id"))
            opts = {"validate": "list", "source": f"='{sheet}'!${letter}$2:${letter}${ENTRY_ROWS + 1}",
                    "error_type": "warning", "error_message": t["suggest"]}
        if opts:
            ws.data_validation(first_row, col_i, last_row, col_i, opts)

    def col_format(self, col: schema.Column, entry: bool = False):
        if col.type == "date":
            return self.f_entry_date if entry else self.f_date
        if col.type in ("number", "int"):
            return self.f_entry_general if entry else self.f_general
        return self.f_entry_text if entry else self.f_text

    @staticmethod
    def page_setup(ws, landscape=True):
        """Print on A4, one page wide, the heading row repeated, with gridlines."""
        ws.set_paper(9)
        if landscape:
            ws.set_landscape()
        ws.fit_to_pages(1, 0)
        ws.repeat_rows(0)
        ws.hide_gridlines(0)

    # -- sheets -------------------------------------------------------------------------------
    def instructions(self):
        vi = self.lang == "vi"
        name = self.unique_name(self.t["instructions"])
        ws = self.wb.add_worksheet(name)
        self.meta.append((name, "", "instructions"))
        ws.set_column(0, 0, 34)
        ws.set_column(1, 1, 90)
        self.page_setup(ws, landscape=False)
        ws.repeat_rows(0, 0)
        lines = _INSTRUCTIONS_VI if vi else _INSTRUCTIONS_EN
        ws.write_string(0, 0, lines[0], self.f_title)
        ws.set_row(0, 22)
        r = 2
        for line in lines[1:]:
            heading = line.startswith("#")
            text = line.lstrip("# ")
            ws.merge_range(r, 0, r, 1, text, self.f_bold if heading else self.f_wrap)
            ws.set_row(r, 15 * max(1, -(-len(text) // 120)))
            r += 1
        r += 1
        ws.write_string(r, 0, "Trang" if vi else "Sheet", self.f_res_header)
        ws.write_string(r, 1, "Nội dung" if vi else "What it holds", self.f_res_header)
        r += 1
        for spec in schema.TABLES:
            mark = " *" if spec.required else ""
            ws.write_string(r, 0, table_sheet_name(spec.name, self.lang) + mark, self.f_bold)
            help_text = spec.help(self.lang)
            ws.write_string(r, 1, help_text, self.f_wrap)
            ws.set_row(r, 15 * max(1, -(-len(help_text) // 85)))
            r += 1
        r += 1
        note = ("* bắt buộc. Tiêu đề màu cam là cột bắt buộc; đưa chuột vào tiêu đề để xem ghi chú. "
                "Ô màu vàng ở trang 'Thông tin cơ sở' là ô cần điền.") if vi else \
               ("* required. An orange heading marks a required column; hover over a heading to read its "
                "note. Yellow cells in 'Facility profile' are the ones to fill.")
        ws.merge_range(r, 0, r, 1, note, self.f_wrap)
        ws.set_row(r, 30)
        ws.activate()

    def facility(self, values: dict | None, sector: str | None):
        spec = schema.table("facility")
        name = self.unique_name(table_sheet_name("facility", self.lang))
        ws = self.wb.add_worksheet(name)
        self.meta.append((name, "facility", "table"))
        ws.set_column(0, 0, 42, self.f_locked)
        ws.set_column(1, 1, 60, self.f_general)
        ws.write_string(0, 0, self.t["field"], self.f_header)
        ws.write_string(0, 1, self.t["value"], self.f_header)
        ws.freeze_panes(1, 0)
        for r, col in enumerate(spec.columns, start=1):
            ws.write_string(r, 0, col.label(self.lang), self.f_label_req if col.required else self.f_label)
            self.add_comment(ws, r, 0, self.comment_text(spec, col))
            if values is not None:
                value = values.get(col.name)
            elif col.name == "sector" and sector:
                value = sector
            else:
                value = col.default or None
                if value is not None and col.type in ("number", "int"):
                    value = float(value)
                elif value is not None and col.type == "bool":
                    value = value == "yes"
            self.write_value(ws, r, 1, col, value, entry=True)
            self.validation(ws, r, r, 1, spec, col)
        self.page_setup(ws, landscape=False)
        ws.protect("", {"format_columns": True, "format_rows": True, "format_cells": True})

    def table(self, spec: schema.Table, frame=None, min_rows: int = ENTRY_ROWS):
        name = self.unique_name(table_sheet_name(spec.name, self.lang))
        ws = self.wb.add_worksheet(name)
        self.meta.append((name, spec.name, "table"))
        for i, col in enumerate(spec.columns):
            width = min(40, max(12, len(col.label(self.lang)) * 0.9 + 3))
            ws.set_column(i, i, width, self.col_format(col))
            ws.write_string(0, i, col.label(self.lang), self.f_header_req if col.required else self.f_header)
            self.add_comment(ws, 0, i, self.comment_text(spec, col))
        ws.set_row(0, 45, self.f_locked)
        ws.freeze_panes(1, 0)
        self.page_setup(ws)
        n = 0
        if frame is not None and len(frame):
            names = spec.column_names
            columns = [frame[c].tolist() for c in names]
            n = len(columns[0])
            for r in range(n):
                for i, col in enumerate(spec.columns):
                    self.write_value(ws, r + 1, i, col, columns[i][r])
        last = max(min_rows, n + 1000)
        for i, col in enumerate(spec.columns):
            self.validation(ws, 1, last, i, spec, col)
        ws.protect("", {"format_cells": True, "format_columns": True, "format_rows": True,
                        "insert_rows": True, "delete_rows": True, "sort": True, "autofilter": True})

    def write_value(self, ws, row, col_i, col: schema.Column, value, entry: bool = False):
        value = _plain(value)
        fmt = self.col_format(col, entry)
        f_text = self.f_entry_text if entry else self.f_text
        if value is None:
            if entry:       # a table's empty cells take the column's format; no cell is written
                ws.write_blank(row, col_i, None, fmt)
        elif isinstance(value, bool):
            ws.write_string(row, col_i, self.t["yes"] if value else self.t["no"], f_text)
        elif isinstance(value, (int, float)):
            if col.type in ("number", "int"):
                ws.write_number(row, col_i, _Exact(value), fmt)
            else:
                from cpa.worksheet import format_plain_number

                text = str(value) if isinstance(value, int) else format_plain_number(value)
                ws.write_string(row, col_i, text, f_text)
        elif isinstance(value, (dt.date, dt.datetime)):
            if col.type == "date":
                ws.write_datetime(row, col_i, value, self.f_entry_date if entry else self.f_date)
            else:
                ws.write_string(row, col_i, value.isoformat(), f_text)
        else:
            self.write_text(ws, row, col_i, str(value), self.f_entry_quote if entry else self.f_text_quote,
                            f_text)

    def results(self, name: str, frame):
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame(frame)
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()
        sheet = self.unique_name(str(name))
        ws = self.wb.add_worksheet(sheet)
        self.meta.append((sheet, str(name), "results"))
        cols = [str(c) for c in frame.columns]
        for i, c in enumerate(cols):
            self.write_text(ws, 0, i, c, self.f_res_header, self.f_res_header)
            ws.set_column(i, i, min(40, max(10, len(c) + 2)))
        ws.set_row(0, 30)
        ws.freeze_panes(1, 0)
        for i, c in enumerate(frame.columns):
            for r, value in enumerate(frame[c].tolist(), start=1):
                value = _plain(value)
                if value is None:
                    continue
                if isinstance(value, bool):
                    ws.write_boolean(r, i, value)
                elif isinstance(value, (int, float)):
                    if value != value or value in (float("inf"), float("-inf")):
                        ws.write_string(r, i, str(value), self.f_res_text)
                    else:
                        ws.write_number(r, i, _Exact(value))
                elif isinstance(value, (dt.date, dt.datetime)):
                    ws.write_datetime(r, i, value, self.f_date)
                else:
                    self.write_text(ws, r, i, str(value), self.f_res_quote, self.f_res_text)

    def finish(self) -> bytes:
        if self.lists:
            ws = self.wb.add_worksheet(LISTS_SHEET)
            ws.very_hidden()
            self.meta.append((LISTS_SHEET, "", "lists"))
            for col, (key, (_, values)) in enumerate(self.lists.items()):
                ws.write_string(0, col, ":".join(key))
                for r, v in enumerate(values, start=1):
                    ws.write_string(r, col, v)
            ws.protect()
        ws = self.wb.add_worksheet(META_SHEET)
        ws.very_hidden()
        ws.write_string(0, 0, FORMAT)
        ws.write_string(0, 1, str(FORMAT_VERSION))
        ws.write_string(1, 0, "lang")
        ws.write_string(1, 1, self.lang)
        ws.write_string(2, 0, "sheet")
        ws.write_string(2, 1, "table")
        ws.write_string(2, 2, "kind")
        for r, (sheet, table, kind) in enumerate(self.meta, start=3):
            ws.write_string(r, 0, sheet)
            ws.write_string(r, 1, table)
            ws.write_string(r, 2, kind)
        ws.protect()
        self.wb.close()
        return self.buf.getvalue()


def _plain(value):
    """numpy scalars, NaN, pandas NA → plain Python values or None."""
    if value is None:
        return None
    pd = sys.modules.get("pandas")
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date()
    return value


def _check_out(path: str, force: bool) -> str:
    path = os.fspath(path)
    if not path.lower().endswith(".xlsx"):
        raise CPAError(f"{path}: a workbook is written as .xlsx")
    if os.path.exists(path) and not force:
        from cpa.io import OutputExistsError

        raise OutputExistsError(path)
    return path


def write_template(path, lang: str = "vi", sector: str | None = None, force: bool = False) -> None:
    """Write a blank facility workbook generated from :mod:`cpa.schema`.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.xlsx``; written through a temporary file, never over an existing file unless
        ``force``.
    lang : {"vi", "en"}
        Language of the sheet names, headings, notes and instructions.
    sector : str, optional
        A sector id or label (see ``schema.CHOICES["sector"]``) prefilled in the facility sheet.
    force : bool
        Replace ``path`` if it exists.
    """
    path = _check_out(path, force)
    if sector:
        sid = schema.choice_lookup("sector").get(_fold(sector))
        if sid is None:
            raise CPAError(f"unknown sector {sector!r}: use one of "
                           + ", ".join(c.id for c in schema.choices("sector")))
        sector = sid
    w = _Writer(lang)
    w.instructions()
    w.facility(None, sector)
    for spec in schema.TABLES:
        if not spec.keyvalue:
            w.table(spec)
    from cpa.io import atomic_write

    atomic_write(path, w.finish(), force=force)


def write_export(path, ws, results: dict | None = None, lang: str = "en", force: bool = False) -> None:
    """Write a worksheet (and result tables) to a workbook that ``cpa import`` reads back.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.xlsx``.
    ws : cpa.worksheet.Worksheet
        The worksheet; its tables are written in the template's layout, with its dropdowns.
    results : dict of str to pandas.DataFrame, optional
        Result tables, one sheet each, after the worksheet's sheets.
    lang : {"vi", "en"}
        Language of sheet names and headings.
    force : bool
        Replace ``path`` if it exists.
    """
    path = _check_out(path, force)
    w = _Writer(lang)
    w.instructions()
    w.facility(ws.facility, None)
    for spec in schema.TABLES:
        if not spec.keyvalue:
            w.table(spec, ws.tables.get(spec.name), min_rows=ENTRY_ROWS)
    for name, frame in (results or {}).items():
        w.results(name, frame)
    from cpa.io import atomic_write

    atomic_write(path, w.finish(), force=force)


_INSTRUCTIONS_VI = [
    "Phiếu đánh giá sản xuất sạch hơn (SXSH) — sổ tính Excel của cpa",
    "# Cách điền",
    "1. Mỗi trang là một bảng. Bắt đầu từ trang 'Thông tin cơ sở', rồi 'Giai đoạn', 'Công đoạn sản xuất', "
    "'Dòng vật chất và năng lượng', 'Sản lượng' và 'Dòng vào-ra'.",
    "2. Mỗi dòng là một bản ghi, ngay dưới dòng tiêu đề. Không đổi tên trang, không sửa tiêu đề (tiêu đề bị khóa); "
    "có thể thêm, xóa dòng.",
    "3. Đưa chuột vào tiêu đề để xem ghi chú: ý nghĩa, đơn vị, các lựa chọn. Ô có danh sách thả xuống: chọn trong "
    "danh sách (mã).",
    "4. Mỗi số liệu có đơn vị ở cột 'đơn vị' (t, kg, m3, L, kWh, MWh, GJ, Nm3, VND/t ...) và cơ sở số liệu: "
    "đo đạc, ước tính hoặc tính toán; không dùng số thiết kế.",
    "5. Gõ số như số bình thường. Nếu gõ số dạng chữ có dấu phẩy thập phân (1.234,5), khai báo "
    "'định dạng số của phiếu' = vi ở trang 'Thông tin cơ sở'.",
    "6. Ngày ghi dạng YYYY-MM-DD (ví dụ 2024-01-31). Mã (mã dòng, mã công đoạn...) ngắn, không dấu cách; "
    "các trang khác chọn mã này trong danh sách.",
    "7. Có thể dùng công thức, nhưng hãy lưu sổ tính bằng Excel hoặc LibreOffice để giá trị được tính. "
    "Macro bị bỏ qua.",
    "8. Kiểm tra: cpa check TỆP.xlsx — chuyển sang phiếu văn bản: cpa import TỆP.xlsx TỆP.cpa.md",
]

_INSTRUCTIONS_EN = [
    "Cleaner-production assessment worksheet — cpa workbook",
    "# How to fill it in",
    "1. Each sheet is one table. Start with 'Facility profile', then 'Periods', 'Process steps', 'Streams', "
    "'Production' and 'Flows'.",
    "2. One record per row, right under the heading row. Do not rename sheets or edit headings (they are "
    "locked); add and delete rows freely.",
    "3. Hover over a heading to read its note: meaning, unit, choices. Cells with a dropdown take a value "
    "from the list (an id).",
    "4. Every figure has its unit in the 'unit' column (t, kg, m3, L, kWh, MWh, GJ, Nm3, VND/t ...) and its "
    "basis: measured, estimated or calculated; never a design figure.",
    "5. Type numbers as numbers. If you type numbers as text with decimal commas (1.234,5), set "
    "'number format of this worksheet' = vi in 'Facility profile'.",
    "6. Dates are YYYY-MM-DD (e.g. 2024-01-31). Ids (stream, step ...) are short, without spaces; other "
    "sheets pick them from a dropdown.",
    "7. Formulas are fine, but save the workbook in Excel or LibreOffice so their values are calculated. "
    "Macros are ignored.",
    "8. Check it: cpa check FILE.xlsx — turn it into a text worksheet: cpa import FILE.xlsx FILE.cpa.md",
]
