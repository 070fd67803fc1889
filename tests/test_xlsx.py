"""Excel workbooks (issue 8): template, safe reading, export, import, and every hostile workbook.

Hostile workbooks are built here at test time from raw XML with :mod:`zipfile`, so the tests say
exactly what each file holds. A refused file must give a located problem (file, sheet, cell),
never a traceback, and nothing may be written.
"""

import glob
import os
import re
import shutil
import subprocess
import unicodedata
import zipfile

import click
import pytest
from click.testing import CliRunner

from cpa import schema
from cpa.commands_xlsx import export_cmd, import_cmd, template_xlsx
from cpa.errors import CPAError
from cpa.worksheet import build, read, to_text
from cpa.xlsx import (
    DIM_UNITS,
    FORMAT,
    FORMAT_VERSION,
    MAX_RATIO,
    TABLE_UNITS,
    read_raw_xlsx,
    sheet_lookup,
    table_sheet_name,
    write_export,
    write_template,
)

HERE = os.path.dirname(__file__)
MINI = os.path.join(HERE, "data", "mini.cpa.md")
EXAMPLES = sorted(glob.glob(os.path.join(HERE, "..", "examples", "*.cpa.md")))

M = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"


# ----------------------------------------------------------------------------------------------
# helpers: a CLI group, hand-made workbooks, patching a workbook's parts


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Test group holding the workbook commands."""


cli.add_command(import_cmd)
cli.add_command(export_cmd)


@cli.command("template")
@click.argument("out")
@click.option("--lang", default="vi")
@click.option("--sector", default=None)
@click.option("--force", is_flag=True)
def _template(out, lang, sector, force):
    template_xlsx(out, lang, sector, force)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def cell_xml(ref, value):
    if isinstance(value, str):
        return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{value}</t></is></c>'
    return f'<c r="{ref}"><v>{value}</v></c>'


def rows_xml(rows, first=1):
    out = []
    for i, row in enumerate(rows, start=first):
        cells = "".join(cell_xml(f"{chr(65 + j)}{i}", v) for j, v in enumerate(row) if v is not None)
        out.append(f'<row r="{i}">{cells}</row>')
    return "".join(out)


def sheet_xml(rows="", dimension=None, before="", after=""):
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{before}'
            f'<worksheet xmlns="{M}" xmlns:r="{R}">{dim}<sheetData>{rows}</sheetData>{after}</worksheet>')


def make_xlsx(path, sheets, extra=None, workbook_tail="", compression=zipfile.ZIP_DEFLATED):
    """A minimal valid workbook: ``sheets`` is a list of (name, sheet XML)."""
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(1, len(sheets) + 1))
    parts = {
        "[Content_Types].xml":
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
            '"/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.'
            f'main+xml"/>{overrides}</Types>',
        "_rels/.rels":
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}"><Relationship Id="rId1" '
            f'Type="{R}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml":
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{M}" xmlns:r="{R}"><sheets>'
            + "".join(f'<sheet name="{name}" sheetId="{i}" r:id="rId{i}"/>'
                      for i, (name, _) in enumerate(sheets, start=1))
            + f"</sheets>{workbook_tail}</workbook>",
        "xl/_rels/workbook.xml.rels":
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}">'
            + "".join(f'<Relationship Id="rId{i}" Type="{R}/worksheet" Target="worksheets/sheet{i}.xml"/>'
                      for i in range(1, len(sheets) + 1))
            + "</Relationships>",
    }
    for i, (_, xml) in enumerate(sheets, start=1):
        parts[f"xl/worksheets/sheet{i}.xml"] = xml
    parts.update(extra or {})
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return str(path)


STEPS = [("steps", sheet_xml(rows_xml([["id", "name_vi"], ["prep", "Tiền xử lý"]])))]


def part_of(path, sheet_name):
    """The zip member holding a sheet, found from workbook.xml and its relationships."""
    with zipfile.ZipFile(path) as z:
        wb = z.read("xl/workbook.xml").decode()
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
    rid = re.search(rf'<sheet name="{re.escape(sheet_name)}" sheetId="\d+"(?: state="\w+")? r:id="(rId\d+)"', wb)
    target = re.search(rf'Id="{rid.group(1)}"[^>]*Target="([^"]+)"', rels) or \
        re.search(rf'Target="([^"]+)"[^>]*Id="{rid.group(1)}"', rels)
    return "xl/" + target.group(1).lstrip("/").removeprefix("xl/")


def patch(src, dst, changes: dict, add: dict | None = None):
    """Copy a workbook, replacing members by ``changes[name](bytes) -> bytes`` and adding ``add``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename in changes:
                data = changes[info.filename](data)
            zout.writestr(info.filename, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return str(dst)


def errors_of(raw):
    return [p for p in raw.problems if p.severity == "error"]


def snapshot(path):
    st = os.stat(path)
    with open(path, "rb") as f:
        return f.read(), st.st_mtime_ns


@pytest.fixture(scope="module")
def mini_ws():
    ws = read(MINI)
    assert ws.errors == []
    return ws


@pytest.fixture(scope="module")
def mini_xlsx(tmp_path_factory, mini_ws):
    p = tmp_path_factory.mktemp("export") / "mini.xlsx"
    write_export(p, mini_ws, lang="vi")
    return str(p)


@pytest.fixture(scope="module")
def template_vi(tmp_path_factory):
    p = tmp_path_factory.mktemp("tmpl") / "template-vi.xlsx"
    write_template(p, lang="vi", sector="textile")
    return str(p)


# ----------------------------------------------------------------------------------------------
# template


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_template_sheets_headers_validations_notes(tmp_path, lang):
    import openpyxl

    out = tmp_path / f"t-{lang}.xlsx"
    write_template(out, lang=lang)
    wb = openpyxl.load_workbook(out)
    instructions = "Hướng dẫn" if lang == "vi" else "Instructions"
    visible = [ws.title for ws in wb.worksheets if ws.sheet_state == "visible"]
    assert visible == [instructions] + [table_sheet_name(t.name, lang) for t in schema.TABLES]
    assert all(len(name) <= 31 for name in wb.sheetnames)
    meta = wb["_cpa"]
    assert meta.sheet_state == "veryHidden"
    assert [meta["A1"].value, meta["B1"].value, meta["B2"].value] == [FORMAT, str(FORMAT_VERSION), lang]

    for spec in schema.TABLES:
        ws = wb[table_sheet_name(spec.name, lang)]
        assert ws.protection.sheet, f"{spec.name} is not protected"
        validated = {}
        for dv in ws.data_validations.dataValidation:
            for rng in dv.sqref.ranges:
                validated.setdefault(rng.min_col, []).append(dv)
        if spec.keyvalue:
            assert [ws["A1"].value, ws["B1"].value] == (["trường", "giá trị"] if lang == "vi" else ["field", "value"])
            for r, col in enumerate(spec.columns, start=2):
                assert ws.cell(r, 1).value == col.label(lang)
                assert ws.cell(r, 1).protection.locked
                assert not ws.cell(r, 2).protection.locked
                assert ws.cell(r, 1).comment is not None and col.name in ws.cell(r, 1).comment.text
                if col.type in ("choice", "bool", "ref"):
                    assert any(rng.coord == f"B{r}" for dv in ws.data_validations.dataValidation
                               for rng in dv.sqref.ranges), f"facility.{col.name} has no dropdown"
            continue
        for i, col in enumerate(spec.columns, start=1):
            head = ws.cell(1, i)
            assert head.value == col.label(lang)
            assert head.protection.locked
            assert head.comment is not None and col.name in head.comment.text
            if col.help(lang):
                assert col.help(lang) in head.comment.text
            if col.unit:
                assert col.unit in head.comment.text
            if col.type in ("choice", "bool", "unit", "ref"):
                assert i in validated, f"{spec.name}.{col.name} has no dropdown"
                dv = validated[i][0]
                assert dv.type == "list"
                if col.type == "ref":
                    assert table_sheet_name(col.ref, lang) in dv.formula1
        # data cells are editable: every column's format is unlocked, the heading row's is locked
        for i, col in enumerate(spec.columns, start=1):
            dim = next(d for d in ws.column_dimensions.values() if d.min <= i <= d.max)
            assert not dim.protection.locked
            assert dim.number_format == {"date": "yyyy-mm-dd", "number": "General", "int": "General"}.get(
                col.type, "@"), col.name
        assert ws.row_dimensions[1].protection.locked


def test_template_choice_list_holds_the_ids(template_vi):
    import openpyxl

    wb = openpyxl.load_workbook(template_vi)
    ws = wb[table_sheet_name("flows", "vi")]
    basis_col = schema.table("flows").column_names.index("basis") + 1
    dv = next(dv for dv in ws.data_validations.dataValidation
              if any(r.min_col == basis_col for r in dv.sqref.ranges))
    sheet, rng = dv.formula1.split("!")
    lists = wb[sheet.strip("'")]
    cells = [c.value for row in lists[rng.replace("$", "")] for c in row]
    assert cells == [c.id for c in schema.choices("basis")]


def test_template_sector_prefilled_and_reads_back_with_only_missing(template_vi):
    raw = read_raw_xlsx(template_vi)
    assert raw.problems == []
    assert set(raw.tables) == {t.name for t in schema.TABLES}
    ws = build(raw)
    assert ws.errors, "an empty template is not a valid worksheet"
    assert {p.code for p in ws.errors} == {"missing"}
    assert ws.facility["sector"] == "textile"
    assert ws.facility["number_locale"] == "plain"
    # the problems point at the cells to fill: Sheet!B2 (the facility id)
    facility_sheet = table_sheet_name("facility", "vi")
    assert any(p.table == facility_sheet and p.cell == "B2" and p.column == "id" for p in ws.errors)


def test_template_en_reads_back_with_only_missing(tmp_path):
    out = tmp_path / "t.xlsx"
    write_template(out, lang="en")
    ws = read(str(out))
    assert {p.code for p in ws.errors} == {"missing"}


def test_template_refuses_to_overwrite_and_leaves_no_temp_file(tmp_path):
    out = tmp_path / "t.xlsx"
    out.write_bytes(b"precious")
    with pytest.raises(CPAError, match="--force"):
        write_template(out)
    assert out.read_bytes() == b"precious"
    write_template(out, force=True)
    assert zipfile.is_zipfile(out)
    assert sorted(os.listdir(tmp_path)) == ["t.xlsx"]


def test_template_unknown_sector_and_language(tmp_path):
    with pytest.raises(CPAError, match="unknown sector"):
        write_template(tmp_path / "t.xlsx", sector="spaceships")
    with pytest.raises(CPAError, match="language"):
        write_template(tmp_path / "t.xlsx", lang="fr")
    assert not (tmp_path / "t.xlsx").exists()


def test_template_sector_by_label(tmp_path):
    out = tmp_path / "t.xlsx"
    write_template(out, sector="Dệt nhuộm")
    assert read(str(out)).facility["sector"] == "textile"


def test_template_command(tmp_path):
    out = tmp_path / "t.xlsx"
    r = run("template", out, "--lang", "en", "--sector", "cashew")
    assert r.exit_code == 0, r.output
    assert r.output == f"wrote {out}\n"
    assert read(str(out)).facility["sector"] == "cashew"
    r = run("template", out)
    assert r.exit_code == 1 and "--force" in r.output


def test_suggested_units_are_units_cpa_reads():
    from cpa.units import dimension_of, parse_unit

    for dim, units in DIM_UNITS.items():
        for u in units:
            parse_unit(u)
            assert dimension_of(u) == dim, u
    for units in TABLE_UNITS.values():
        for u in units:
            parse_unit(u)


def test_sheet_names_accepted_for_every_table():
    look = sheet_lookup()
    for t in schema.TABLES:
        for name in (t.name, t.en, t.vi, table_sheet_name(t.name, "vi"), table_sheet_name(t.name, "en")):
            assert look[unicodedata.normalize("NFC", name).strip().casefold()] == t.name


# ----------------------------------------------------------------------------------------------
# round trip


@pytest.mark.parametrize("lang", ["vi", "en"])
@pytest.mark.parametrize("path", [MINI] + EXAMPLES, ids=os.path.basename)
def test_round_trip_is_lossless(tmp_path, path, lang):
    original = read(path)
    assert original.errors == [], [str(p) for p in original.errors]
    out = tmp_path / "w.xlsx"
    write_export(out, original, lang=lang)
    back = read(str(out))
    assert back.errors == [], [str(p) for p in back.errors]
    assert to_text(back) == to_text(original)


def test_round_trip_keeps_every_digit(tmp_path, mini_ws):
    text = open(MINI, encoding="utf-8").read()
    text = text.replace("| base | grey | | prep | 102 |", "| base | grey | | prep | 0.30000000000000004 |")
    assert "0.30000000000000004" in text
    src = tmp_path / "w.cpa.md"
    src.write_text(text, encoding="utf-8")
    ws = read(str(src))
    out = tmp_path / "w.xlsx"
    write_export(out, ws)
    back = read(str(out))
    assert 0.30000000000000004 in back.tables["flows"]["quantity"].tolist()
    assert to_text(back) == to_text(ws)


def test_export_accepts_results_and_reads_back(tmp_path, mini_ws):
    import pandas as pd

    results = {
        "Balances": pd.DataFrame({"step": ["prep", "dye"], "closure %": [1.5, float("nan")]}),
        "Indicators by period": pd.DataFrame({"value": [40.0]}, index=pd.Index(["base"], name="period")),
    }
    out = tmp_path / "w.xlsx"
    write_export(out, mini_ws, results=results)
    raw = read_raw_xlsx(out)
    assert raw.problems == []           # result sheets are known to _cpa: no 'unknown sheet'
    assert to_text(build(raw)) == to_text(mini_ws)
    import openpyxl

    wb = openpyxl.load_workbook(out)
    assert wb["Balances"]["B2"].value == 1.5
    assert wb["Indicators by period"]["A1"].value == "period"


def test_sheets_named_by_table_id_or_label_without_map(tmp_path, mini_xlsx):
    """A workbook whose _cpa map is gone and whose sheets carry ids or English labels."""
    flows_vi = table_sheet_name("flows", "vi")
    streams_vi = table_sheet_name("streams", "vi")

    def rename(data):
        text = data.decode()
        text = text.replace(f'name="{flows_vi}"', 'name="flows"')
        text = text.replace(f'name="{streams_vi}"', 'name="Streams"')
        return re.sub(r'<sheet name="_cpa"[^>]*/>', "", text).encode()

    out = patch(mini_xlsx, tmp_path / "renamed.xlsx", {"xl/workbook.xml": rename})
    raw = read_raw_xlsx(out)
    assert raw.sheet_names["flows"] == "flows" and raw.sheet_names["streams"] == "Streams"
    assert to_text(build(raw)) == to_text(read(MINI))


def test_problems_name_sheet_and_cell(tmp_path, mini_ws):
    ws = read(MINI)
    ws.tables["flows"].loc[2, "unit"] = "bananas"
    out = tmp_path / "w.xlsx"
    write_export(out, ws, lang="vi")
    back = read(str(out))
    [p] = back.errors
    assert (p.table, p.cell, p.column, p.code) == (table_sheet_name("flows", "vi"), "F4", "unit", "unit")
    assert f"{table_sheet_name('flows', 'vi')}!F4" in str(p)


# ----------------------------------------------------------------------------------------------
# cells: numbers, ids, text, merged cells, Unicode


def test_numbers_in_id_columns_and_text_numbers_with_locale(tmp_path):
    facility = sheet_xml(rows_xml([["field", "value"], ["id", 7], ["number_locale", "vi"],
                                   ["operating_days_per_year", "1.234,5"]]))
    steps = sheet_xml(rows_xml([["id", "name_vi"], [1, "Một"], [2.5, "Hai"]]))
    path = make_xlsx(tmp_path / "w.xlsx", [("facility", facility), ("steps", steps)])
    raw = read_raw_xlsx(path)
    assert raw.tables["steps"].rows == [["1", "Một"], ["2.5", "Hai"]]
    ws = build(raw)
    assert ws.facility["id"] == "7"
    assert ws.facility["operating_days_per_year"] == 1234.5
    assert ws.tables["steps"]["id"].tolist() == ["1", "2.5"]


def test_decomposed_unicode_and_trailing_spaces(tmp_path, mini_xlsx):
    def nfd(data):
        text = unicodedata.normalize("NFD", data.decode())
        return text.replace("<t>prep</t>", '<t xml:space="preserve">prep   </t>').encode()

    out = patch(mini_xlsx, tmp_path / "nfd.xlsx", {"xl/sharedStrings.xml": nfd,
                                                   "xl/workbook.xml": nfd})
    with zipfile.ZipFile(out) as z:
        assert "Nhuộm".encode() not in z.read("xl/sharedStrings.xml")      # really decomposed
    back = read(out)
    assert back.errors == []
    assert to_text(back) == to_text(read(MINI))


def test_merged_cells_warn_and_read_top_left(tmp_path, mini_xlsx):
    import openpyxl

    wb = openpyxl.load_workbook(mini_xlsx)
    ws = wb[table_sheet_name("steps", "vi")]
    ws.merge_cells("C2:C3")
    wb.save(tmp_path / "merged.xlsx")
    raw = read_raw_xlsx(tmp_path / "merged.xlsx")
    merged = [p for p in raw.problems if p.code == "merged"]
    assert merged and merged[0].severity == "warning" and merged[0].cell == "C2:C3"
    steps = raw.tables["steps"]
    assert steps.rows[0][2] == "Pretreatment" and steps.rows[1][2] == ""


def test_value_outside_the_headed_columns_is_an_error(tmp_path):
    steps = sheet_xml(rows_xml([["id", "name_vi"], ["prep", "Tiền xử lý", None, "stray note"]]))
    raw = read_raw_xlsx(make_xlsx(tmp_path / "w.xlsx", [("steps", steps)]))
    [p] = errors_of(raw)
    assert (p.table, p.cell, p.code) == ("steps", "D2", "stray")


def test_unknown_sheet_is_a_warning(tmp_path):
    notes = sheet_xml(rows_xml([["anything"]]))
    raw = read_raw_xlsx(make_xlsx(tmp_path / "w.xlsx", STEPS + [("My notes", notes)]))
    [p] = raw.problems
    assert (p.severity, p.code, p.table) == ("warning", "unknown_sheet", "My notes")


def test_workbook_without_any_table_is_an_error(tmp_path):
    path = make_xlsx(tmp_path / "w.xlsx", [("Sheet1", sheet_xml(rows_xml([["a", "b"], [1, 2]])))])
    ws = read(path)
    assert [p.code for p in ws.errors] == ["no_tables"]
    assert "Sheet1" in ws.errors[0].found


def test_same_table_in_two_sheets(tmp_path):
    raw = read_raw_xlsx(make_xlsx(tmp_path / "w.xlsx", STEPS + [("Process steps", STEPS[0][1])]))
    [p] = errors_of(raw)
    assert p.code == "duplicate" and "steps" in p.message


# ----------------------------------------------------------------------------------------------
# hostile workbooks: each gives a located problem, fast, and nothing is written

LOL = ('<!DOCTYPE lolz [<!ENTITY lol "lol">'
       + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
       + "]>")


def hostile_billion_laughs_shared_strings(tmp_path):
    sst = (f'<?xml version="1.0" encoding="UTF-8"?>{LOL}<sst xmlns="{M}" count="1" uniqueCount="1">'
           "<si><t>&lol9;</t></si></sst>")
    rows = '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
    return make_xlsx(tmp_path / "lol.xlsx", [("steps", sheet_xml(rows))],
                     extra={"xl/sharedStrings.xml": sst}), "dtd", "xl/sharedStrings.xml"


def hostile_billion_laughs_sheet(tmp_path):
    xml = sheet_xml(rows_xml([["id"]]), before=LOL)
    return make_xlsx(tmp_path / "lol2.xlsx", [("steps", xml)]), "dtd", "sheet1.xml"


def hostile_doctype_after_long_comment(tmp_path):
    xml = sheet_xml(rows_xml([["id"]]), before="<!--" + "x" * 200_000 + "-->" + '<!DOCTYPE w SYSTEM "file:///etc/passwd">')
    return make_xlsx(tmp_path / "late-dtd.xlsx", [("steps", xml)]), "dtd", "DOCTYPE"


def hostile_zip_bomb(tmp_path):
    # 60 MB of one repeated cell packs into ~60 KB: the ratio alone refuses it, unread
    filler = b"<row><c><v>0</v></c></row>" * (60 * 2**20 // 26)
    xml = sheet_xml().encode().replace(b"<sheetData>", b"<sheetData>" + filler)
    return make_xlsx(tmp_path / "bomb.xlsx", [("steps", xml)]), "zip_bomb", "ratio"


def hostile_far_cell(tmp_path):
    rows = rows_xml([["id", "name_vi"], ["prep", "x"]]) + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
    return make_xlsx(tmp_path / "far.xlsx", [("steps", sheet_xml(rows))]), "too_large", "XFD1048576"


def hostile_small_dimension_huge_data(tmp_path):
    rows = rows_xml([["id", "name_vi"], ["prep", "x"]]) + '<row r="300000"><c r="A300000"><v>1</v></c></row>'
    xml = sheet_xml(rows, dimension="A1:B2")
    return make_xlsx(tmp_path / "lying-dim.xlsx", [("steps", xml)]), "too_large", "A300000"


def hostile_cells_without_references(tmp_path):
    # no r= attributes: positions are implicit; of 500 cells in a row, the 201st (GS1) is too far
    row = "<row>" + "<c><v>1</v></c>" * 500 + "</row>"
    return make_xlsx(tmp_path / "no-r.xlsx", [("steps", sheet_xml(row))]), "too_large", "GS1"


def hostile_renamed_csv(tmp_path):
    p = tmp_path / "data.xlsx"
    p.write_text("id,name_vi\nprep,Tiền xử lý\n", encoding="utf-8")
    return str(p), "not_xlsx", "CSV"


def hostile_renamed_html(tmp_path):
    p = tmp_path / "page.xlsx"
    p.write_text("<!DOCTYPE html><html><body><table><tr><td>1</td></tr></table></body></html>")
    return str(p), "not_xlsx", "HTML"


def hostile_old_xls(tmp_path):
    p = tmp_path / "old.xlsx"
    p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    return str(p), "not_xlsx", ".xls"


def hostile_truncated(tmp_path):
    whole = tmp_path / "whole.xlsx"
    write_template(whole, lang="en")
    data = whole.read_bytes()
    p = tmp_path / "truncated.xlsx"
    p.write_bytes(data[: len(data) // 2])
    return str(p), "damaged", "truncated"


def hostile_empty(tmp_path):
    p = tmp_path / "empty.xlsx"
    p.write_bytes(b"")
    return str(p), "empty", "empty"


def hostile_not_a_workbook_zip(tmp_path):
    p = tmp_path / "doc.xlsx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("word/document.xml", "<document/>")
    return str(p), "not_xlsx", "no workbook part"


def hostile_utf16_part(tmp_path):
    xml = sheet_xml(rows_xml([["id"]])).replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    return make_xlsx(tmp_path / "u16.xlsx", [("steps", xml)]), "xml", "UTF-8"


def hostile_formula_without_value(tmp_path):
    rows = rows_xml([["id", "name_vi"], ["prep", None]])[:-6] + '<c r="B2" t="str"><f>UPPER("x")</f></c></row>'
    return make_xlsx(tmp_path / "formula.xlsx", [("steps", sheet_xml(rows))]), "formula", "B2"


HOSTILE = [hostile_billion_laughs_shared_strings, hostile_billion_laughs_sheet,
           hostile_doctype_after_long_comment, hostile_zip_bomb, hostile_far_cell,
           hostile_small_dimension_huge_data, hostile_cells_without_references, hostile_renamed_csv,
           hostile_renamed_html, hostile_old_xls, hostile_truncated, hostile_empty,
           hostile_not_a_workbook_zip, hostile_utf16_part, hostile_formula_without_value]


@pytest.mark.parametrize("make", HOSTILE, ids=lambda f: f.__name__.removeprefix("hostile_"))
def test_hostile_workbook_gives_a_located_problem(tmp_path, make):
    path, code, fragment = make(tmp_path)
    raw = read_raw_xlsx(path)
    errors = errors_of(raw)
    assert errors, raw.problems
    p = errors[0]
    assert p.code == code, str(p)
    assert p.file == path
    assert fragment in str(p), str(p)
    ws = build(raw)                       # the builder copes too, and keeps the problem
    assert any(q.code == code for q in ws.errors)


@pytest.mark.parametrize("make", HOSTILE, ids=lambda f: f.__name__.removeprefix("hostile_"))
def test_hostile_workbook_import_writes_nothing(tmp_path, make):
    path, code, fragment = make(tmp_path)
    before = snapshot(path)
    out = tmp_path / "out.cpa.md"
    r = run("import", path, out)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert fragment in r.output
    assert "nothing was written" in r.output
    assert not out.exists()
    assert snapshot(path) == before
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".cpa-")]


def test_zip_bomb_refused_before_any_decompression(tmp_path, monkeypatch):
    path, _, _ = hostile_zip_bomb(tmp_path)
    info = zipfile.ZipFile(path).getinfo("xl/worksheets/sheet1.xml")
    assert info.file_size > 50 * 2**20 and info.compress_size < 2**20
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *a, **kw):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *a, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    raw = read_raw_xlsx(path)
    [p] = raw.problems
    assert p.code == "zip_bomb" and "before unpacking" in p.message
    assert "ratio" in p.found and f"{MAX_RATIO}:1" in p.expected
    assert opened == [], "a member was unpacked before the refusal"


def test_zip_bomb_with_a_lying_declared_size(tmp_path, monkeypatch):
    """A central directory that declares 4 GB for a member is refused from the declaration alone."""
    path = make_xlsx(tmp_path / "w.xlsx", STEPS)
    data = bytearray(open(path, "rb").read())
    name = b"xl/worksheets/sheet1.xml"
    cd = data.find(b"PK\x01\x02")
    while cd != -1:
        name_len = int.from_bytes(data[cd + 28: cd + 30], "little")
        if data[cd + 46: cd + 46 + name_len] == name:
            data[cd + 24: cd + 28] = (0xFFFFFFFF - 1).to_bytes(4, "little")     # uncompressed size
            break
        cd = data.find(b"PK\x01\x02", cd + 4)
    assert cd != -1
    lying = tmp_path / "lying.xlsx"
    lying.write_bytes(bytes(data))
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: pytest.fail("unpacked"))
    [p] = read_raw_xlsx(lying).problems
    assert p.code == "zip_bomb" and "4,096.0 MB" in p.found


def test_too_many_members_refused_from_the_end_record(tmp_path, monkeypatch):
    extra = {f"xl/media/pad{i}.xml": "" for i in range(2500)}
    path = make_xlsx(tmp_path / "many.xlsx", STEPS, extra=extra)
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: pytest.fail("zipfile parsed the directory"))
    [p] = read_raw_xlsx(path).problems
    assert p.code == "zip_bomb" and "2,505 zip members" in p.found


def test_false_dimension_huge_while_data_small_is_read(tmp_path):
    xml = sheet_xml(rows_xml([["id", "name_vi"], ["prep", "x"]]), dimension="A1:XFD1048576")
    raw = read_raw_xlsx(make_xlsx(tmp_path / "w.xlsx", [("steps", xml)]))
    [p] = raw.problems
    assert (p.severity, p.code, p.table) == ("warning", "dimension", "steps")
    assert "A1:XFD1048576" in p.found and "B2" in p.found
    assert raw.tables["steps"].rows == [["prep", "x"]]


def test_far_cell_names_sheet_and_cell(tmp_path):
    path, _, _ = hostile_far_cell(tmp_path)
    [p] = read_raw_xlsx(path).problems
    assert (p.table, p.cell) == ("steps", "XFD1048576")
    assert "steps!XFD1048576" in p.location


def test_formula_problem_says_the_fix(tmp_path):
    path, _, _ = hostile_formula_without_value(tmp_path)
    raw = read_raw_xlsx(path)
    [p] = [q for q in raw.problems if q.code == "formula"]
    assert (p.table, p.cell) == ("steps", "B2")
    assert "open the workbook in Excel or LibreOffice Calc and save it" in p.fix


def test_formula_with_cached_value_is_read(tmp_path):
    rows = rows_xml([["id", "name_vi"], ["prep", None]])[:-6] + '<c r="B2" t="str"><f>UPPER("x")</f><v>X</v></c></row>'
    raw = read_raw_xlsx(make_xlsx(tmp_path / "w.xlsx", [("steps", sheet_xml(rows))]))
    assert raw.problems == []
    assert raw.tables["steps"].rows == [["prep", "X"]]


def test_formula_in_a_workbook_never_calculated(tmp_path):
    """XlsxWriter-style files store 0 and ask for recalculation on load: the 0 is not a value."""
    rows = rows_xml([["id", "name_vi"], ["prep", None]])[:-6] + '<c r="B2"><f>1+1</f><v>0</v></c></row>'
    path = make_xlsx(tmp_path / "w.xlsx", [("steps", sheet_xml(rows))],
                     workbook_tail='<calcPr calcId="124519" fullCalcOnLoad="1"/>')
    [p] = [q for q in read_raw_xlsx(path).problems if q.code == "formula"]
    assert p.cell == "B2" and "never calculated" in p.message


def test_xlsm_macros_ignored_with_a_notice(tmp_path, mini_xlsx):
    xlsm = patch(mini_xlsx, tmp_path / "macro.xlsm", {}, add={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0" + bytes(600)})
    raw = read_raw_xlsx(xlsm)
    [p] = raw.problems
    assert (p.severity, p.code) == ("warning", "macros") and "never run" in p.message
    assert to_text(build(raw)) == to_text(read(MINI))
    out = tmp_path / "out.cpa.md"
    r = run("import", xlsm, out)
    assert r.exit_code == 0, r.output
    assert "macros" in r.output and out.exists()


def test_defusedxml_parses_the_parts_cpa_reads(tmp_path, monkeypatch, mini_xlsx):
    import defusedxml.ElementTree as DET

    calls = []
    real = DET.fromstring

    def spy(data, *a, **kw):
        calls.append(kw.get("forbid_dtd"))
        return real(data, *a, **kw)

    monkeypatch.setattr(DET, "fromstring", spy)
    read_raw_xlsx(mini_xlsx)
    assert calls and all(calls)


def test_formula_injection_is_written_as_text(tmp_path):
    import openpyxl
    import pandas as pd

    nasty = ['=HYPERLINK("http://example.com","click")', "+1+2", "-3+4", "@SUM(A1)", "=1+1"]
    text = open(MINI, encoding="utf-8").read()
    row = "| c1 | ww | dye | process_control | Tỷ lệ dung dịch cao |"
    extra = "".join(f"\n| c{i + 2} | ww | dye | equipment | {s} |" for i, s in enumerate(nasty))
    src = tmp_path / "w.cpa.md"
    src.write_text(text.replace(row, row + extra), encoding="utf-8")
    ws = read(str(src))
    assert ws.errors == []
    out = tmp_path / "w.xlsx"
    write_export(out, ws, results={"r": pd.DataFrame({"x": ["=2+2", "\tTAB", "\nLF"]})})
    with zipfile.ZipFile(out) as z:
        xml = b"".join(z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/sheet"))
    assert b"<f>" not in xml and b"<f " not in xml          # not a single formula in the file
    wb = openpyxl.load_workbook(out)
    cells = {c.value: c for row in wb[table_sheet_name("causes", "en")].iter_rows() for c in row}
    for s in nasty:
        assert cells[s].data_type == "s" and cells[s].quotePrefix, s
    results = {c.value: c for row in wb["r"].iter_rows() for c in row}
    for s in ["=2+2", "\tTAB", "\nLF"]:
        assert results[s].data_type == "s" and results[s].quotePrefix, repr(s)
    assert to_text(read(str(out))) == to_text(ws)


# ----------------------------------------------------------------------------------------------
# the commands


def test_import_command_writes_the_canonical_text(tmp_path, mini_xlsx):
    out = tmp_path / "mini.cpa.md"
    before = snapshot(mini_xlsx)
    r = run("import", mini_xlsx, out)
    assert r.exit_code == 0, r.output
    assert r.output == f"wrote {out}\n"
    assert out.read_text(encoding="utf-8") == to_text(read(MINI))
    assert snapshot(mini_xlsx) == before


def test_import_refuses_to_overwrite(tmp_path, mini_xlsx):
    out = tmp_path / "mini.cpa.md"
    out.write_text("mine", encoding="utf-8")
    r = run("import", mini_xlsx, out)
    assert r.exit_code == 1 and "use --force" in r.output
    assert out.read_text(encoding="utf-8") == "mine"
    r = run("import", mini_xlsx, out, "--force")
    assert r.exit_code == 0 and out.read_text(encoding="utf-8") == to_text(read(MINI))


def test_import_with_errors_reports_every_cell_and_writes_nothing(tmp_path):
    ws = read(MINI)
    ws.tables["flows"].loc[0, "unit"] = "furlongs"
    ws.tables["periods"].loc[1, "kind"] = None
    bad = tmp_path / "bad.xlsx"
    write_export(bad, ws, lang="vi")
    before = snapshot(bad)
    out = tmp_path / "out.cpa.md"
    r = run("import", bad, out)
    assert r.exit_code == 1
    assert f"{table_sheet_name('flows', 'vi')}!F2" in r.output
    assert f"{table_sheet_name('periods', 'vi')}!B3" in r.output
    assert "2 errors" in r.output and "nothing was written" in r.output
    assert not out.exists() and snapshot(bad) == before


def test_import_usage_errors(tmp_path, mini_xlsx):
    r = run("import", mini_xlsx, tmp_path / "out.txt")
    assert r.exit_code == 2 and "OUT must end in .cpa.md" in r.output
    r = run("import", MINI, tmp_path / "out.cpa.md")
    assert r.exit_code == 2 and "workbook" in r.output


def test_export_command_text_and_workbook_inputs(tmp_path):
    out = tmp_path / "mini.xlsx"
    before = snapshot(MINI)
    r = run("export", MINI, out, "--lang", "vi")
    assert r.exit_code == 0, r.output
    assert snapshot(MINI) == before
    assert to_text(read(str(out))) == to_text(read(MINI))
    again = tmp_path / "again.xlsx"
    r = run("export", out, again)                       # a workbook in, a workbook out
    assert r.exit_code == 0, r.output
    assert to_text(read(str(again))) == to_text(read(MINI))
    r = run("export", MINI, out)
    assert r.exit_code == 1 and "use --force" in r.output
    assert run("export", MINI, out, "--force").exit_code == 0


def test_export_command_adds_result_sheets(tmp_path):
    import openpyxl

    pytest.importorskip("cpa.results", reason="the results bundle is not there yet")
    out = tmp_path / "r.xlsx"
    r = run("export", os.path.join(HERE, "..", "examples", "01-textile.cpa.md"), out)
    assert r.exit_code == 0, r.output
    assert "balances" in openpyxl.load_workbook(out, read_only=True).sheetnames
    raw = read_raw_xlsx(out)
    assert not [p for p in raw.problems if p.code == "unknown_sheet"]      # _cpa lists them as results
    assert to_text(build(raw)) == to_text(read(os.path.join(HERE, "..", "examples", "01-textile.cpa.md")))


def test_export_survives_a_failing_calculation(tmp_path, monkeypatch):
    import cpa.commands_xlsx as cx

    results = pytest.importorskip("cpa.results", reason="the results bundle is not there yet")
    monkeypatch.setattr(results, "facility_results", lambda ws: {}["boom"])
    out = tmp_path / "w.xlsx"
    r = run("export", MINI, out)
    assert r.exit_code == 0 and "results not exported" in r.output and "KeyError" in r.output
    assert to_text(read(str(out))) == to_text(read(MINI))
    assert cx.RESULT_SHEETS


def test_export_of_an_invalid_worksheet_writes_nothing(tmp_path):
    bad = tmp_path / "bad.cpa.md"
    bad.write_text(open(MINI, encoding="utf-8").read().replace("| 102 | t |", "| 102 | furlongs |"),
                   encoding="utf-8")
    out = tmp_path / "bad.xlsx"
    r = run("export", bad, out)
    assert r.exit_code == 1 and "furlongs" in r.output and not out.exists()


@pytest.mark.parametrize("command", ["import", "export", "template"])
def test_commands_have_help(command):
    r = run(command, "-h")
    assert r.exit_code == 0 and "Usage" in r.output


# ----------------------------------------------------------------------------------------------
# LibreOffice: a workbook opened and saved by a real spreadsheet still reads back

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
needs_soffice = pytest.mark.skipif(
    SOFFICE is None, reason="LibreOffice (soffice) is not installed: the check that a workbook re-saved "
                            "by a real spreadsheet reads back is skipped (apt-get install libreoffice-calc-nogui)")


def _resave(src, outdir):
    os.makedirs(outdir, exist_ok=True)
    profile = f"file://{os.path.abspath(outdir)}/profile"
    subprocess.run([SOFFICE, f"-env:UserInstallation={profile}", "--headless", "--convert-to",
                    "xlsx:Calc MS Excel 2007 XML", "--outdir", str(outdir), str(src)],
                   check=True, capture_output=True, timeout=180)
    return os.path.join(outdir, os.path.basename(src))


@needs_soffice
def test_libreoffice_resaved_export_reads_back(tmp_path, mini_xlsx):
    resaved = _resave(mini_xlsx, tmp_path / "lo")
    back = read(resaved)
    assert back.errors == [], [str(p) for p in back.errors]
    assert to_text(back) == to_text(read(MINI))


@needs_soffice
def test_libreoffice_calculates_a_formula_cpa_refused(tmp_path):
    path, _, _ = hostile_formula_without_value(tmp_path)
    assert any(p.code == "formula" for p in read_raw_xlsx(path).problems)
    resaved = _resave(path, tmp_path / "lo")
    raw = read_raw_xlsx(resaved)
    assert not [p for p in raw.problems if p.code == "formula"]
    assert raw.tables["steps"].rows == [["prep", "X"]]
