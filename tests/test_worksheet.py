"""The facility worksheet: reading, checking and every bad input of the foundation issue."""

import os
import unicodedata

import pytest
from click.testing import CliRunner

from cpa.cli import main
from cpa.worksheet import blank_text, read, to_text


def _check(path, *args):
    return CliRunner().invoke(main, ["check", path, *args])


def _codes(ws):
    return [(p.code, p.table, p.column) for p in ws.errors]


def test_mini_is_valid(mini_path):
    ws = read(mini_path)
    assert ws.errors == []
    assert ws.facility["reference_product"] == "fabric"
    assert len(ws.tables["flows"]) == 34
    flows = ws.tables["flows"]
    coal = flows[(flows["stream"] == "coal") & (flows["period"] == "base")]
    assert coal["quantity"].tolist() == [50.0] and coal["unit"].tolist() == ["t"]
    assert ws.tables["factors"]["value"].tolist() == [2.643]


def test_check_valid_exit_0(mini_path):
    r = _check(mini_path)
    assert r.exit_code == 0, r.output
    assert "valid (0 errors" in r.output


def _line_of(text, fragment):
    return next(i for i, line in enumerate(text.splitlines(), start=1) if fragment in line)


def _replace(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


def test_empty_file(write_ws):
    p = write_ws("")
    r = _check(p)
    assert r.exit_code == 1 and "the file is empty" in r.output and "Traceback" not in r.output


def test_binary_garbage(write_ws):
    p = write_ws(bytes(range(256)) * 4)
    r = _check(p)
    assert r.exit_code == 1 and "binary" in r.output


def test_wrong_encoding(write_ws, mini_text):
    # Vietnamese text saved in the Windows code page cp1258 instead of UTF-8
    data = mini_text.encode("utf-8").replace("Xưởng nhuộm Mẫu".encode(), "Xuong nhuom".encode("cp1258") + b"\xd2")
    p = write_ws(data)
    r = _check(p)
    assert r.exit_code == 1
    assert "not UTF-8" in r.output and ":8" in r.output  # line 8 holds the name


def test_unknown_unit(write_ws, mini_text):
    p = write_ws(_replace(mini_text, "| 102 | t |", "| 102 | tonnn |"))
    ws = read(p)
    assert ("unit", "flows", "unit") in _codes(ws)
    r = _check(p)
    assert "did you mean" in r.output and f":{_line_of(mini_text, '| 102 | t |')} [flows.unit]" in r.output


@pytest.mark.parametrize("old, new, found", [
    ("| base | water | | prep | 4000 | m3 |", "| base | water | | prep | 4000 | kWh |", "kWh for stream 'water'"),
    ("| base | elec | | dye | 40000 | kWh |", "| base | elec | | dye | 40000 | t |", "t for stream 'elec'"),
])
def test_unit_of_wrong_dimension(write_ws, mini_text, old, new, found):
    p = write_ws(_replace(mini_text, old, new))
    ws = read(p)
    assert [p.found for p in ws.errors] == [found]
    assert ws.errors[0].code == "dimension"


@pytest.mark.parametrize("value, message", [("-5", "negative"), ("nan", "not finite"), ("inf", "not finite")])
def test_negative_or_non_finite(write_ws, mini_text, value, message):
    p = write_ws(_replace(mini_text, "| base | coal | | boiler | 50 |", f"| base | coal | | boiler | {value} |"))
    ws = read(p)
    assert len(ws.errors) == 1 and message in ws.errors[0].message
    assert ws.errors[0].line == _line_of(mini_text, "| base | coal | | boiler | 50 |")


@pytest.mark.parametrize("value", ["1,5", "1.234"])
def test_ambiguous_numbers_without_locale(write_ws, mini_text, value):
    p = write_ws(_replace(mini_text, "| base | coal | | boiler | 50 |", f"| base | coal | | boiler | {value} |"))
    ws = read(p)
    assert ws.errors and "number_locale" in ws.errors[0].fix


def test_declared_vi_locale_reads_decimal_commas(write_ws, mini_text):
    text = _replace(mini_text, "| operating_days_per_year | 300 |", "| operating_days_per_year | 300 |\n| number_locale | vi |")
    text = _replace(text, "| base | coal | | boiler | 50 |", "| base | coal | | boiler | 1.234,5 |")
    text = _replace(text, "| 2.6430 | GJ/t |", "| 2,643 | GJ/t |")
    text = _replace(_replace(text, "| 0.8 | t |", "| 0,8 | t |"), "| 0.7 | t |", "| 0,7 | t |")
    ws = read(write_ws(text))
    assert ws.errors == []
    assert 1234.5 in ws.tables["flows"]["quantity"].tolist()


def test_unknown_step_and_period(write_ws, mini_text):
    text = _replace(mini_text, "| base | coal | | boiler |", "| base | coal | | boilr |")
    text = _replace(text, "| after | coal |", "| later | coal |")
    ws = read(write_ws(text))
    msgs = {(p.column, p.found) for p in ws.errors}
    assert ("to", "boilr") in msgs and ("period", "later") in msgs
    hint = [p for p in ws.errors if p.found == "boilr"][0]
    assert "did you mean 'boiler'" in hint.fix


def test_duplicate_ids(write_ws, mini_text):
    text = _replace(mini_text, "| wet | Vải sau", "| grey | Vải sau")
    ws = read(write_ws(text))
    assert any(p.code == "duplicate" and p.table == "streams" for p in ws.errors)


def test_duplicate_flow_rows(write_ws, mini_text):
    row = "| base | coal | | boiler | 50 | t | measured | |"
    ws = read(write_ws(_replace(mini_text, row, row + "\n" + row)))
    assert [p.code for p in ws.errors] == ["duplicate"]


def test_overlapping_and_reversed_periods(write_ws, mini_text):
    text = _replace(mini_text, "| after | monitoring | 2025-01-01 | 2025-03-31 |", "| after | monitoring | 2024-03-01 | 2024-05-31 |")
    ws = read(write_ws(text))
    assert any("overlap" in p.message for p in ws.errors)
    text = _replace(mini_text, "| after | monitoring | 2025-01-01 | 2025-03-31 |", "| after | monitoring | 2025-03-31 | 2025-01-01 |")
    ws = read(write_ws(text))
    assert any("ends before it starts" in p.message for p in ws.errors)


def test_missing_required_field(write_ws, mini_text):
    ws = read(write_ws(_replace(mini_text, "| sector | textile |\n", "")))
    assert [(p.table, p.column, p.code) for p in ws.errors] == [("facility", "sector", "missing")]
    ws = read(write_ws(_replace(mini_text, "| base | grey | | prep | 102 | t | measured |", "| base | grey | | prep | 102 | t | |")))
    line = _line_of(mini_text, "| base | grey | | prep | 102 | t | measured |")
    assert [(p.column, p.code, p.line) for p in ws.errors] == [("basis", "missing", line)]


def test_decomposed_unicode_matches_composed(write_ws, mini_text):
    # Vietnamese typed in decomposed form (NFD) must match its composed twin (NFC):
    # 'có' for yes, and a Vietnamese choice label 'đo đạc' for measured.
    text = _replace(mini_text, "| Nguyễn Văn A | Giám đốc | team leader | yes |", "| Nguyễn Văn A | Giám đốc | team leader | có |")
    text = _replace(text, "| base | grey | | prep | 102 | t | measured |", "| base | grey | | prep | 102 | tấn | đo đạc |")
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    ws = read(write_ws(nfd))
    assert ws.errors == []
    assert ws.tables["team"]["leader"].tolist()[0] is True
    assert ws.facility["name"] == "Xưởng nhuộm Mẫu"


def test_huge_valid_worksheet_is_accepted(write_ws, mini_text):
    # 30,000 extra streams, each with a flow: valid and read completely
    # (its speed is measured in benchmarks/bench_check.py, not here)
    n = 30_000
    streams = "\n".join(f"| s{i} | Dòng {i} | | raw_material | | | |" for i in range(n))
    flows = "\n".join(f"| base | s{i} | | prep | {i % 97 + 1} | kg | measured | |" for i in range(n))
    text = _replace(mini_text, "| grey | Vải mộc |", streams + "\n| grey | Vải mộc |")
    text = _replace(text, "| base | grey | | prep |", flows + "\n| base | grey | | prep |")
    ws = read(write_ws(text))
    assert ws.errors == []
    assert len(ws.tables["flows"]) == 34 + n


def test_no_file_is_written_on_check(tmp_path, mini_text):
    p = tmp_path / "ws.cpa.md"
    p.write_text(mini_text.replace("| 102 | t |", "| 102 | tonnn |"), encoding="utf-8")
    before = {q.name: q.stat().st_mtime_ns for q in tmp_path.iterdir()}
    r = CliRunner().invoke(main, ["check", str(p)])
    assert r.exit_code == 1
    assert {q.name: q.stat().st_mtime_ns for q in tmp_path.iterdir()} == before


def test_canonical_text_round_trip(write_ws, mini_path):
    ws = read(mini_path)
    text = to_text(ws)
    again = read(write_ws(text))
    assert again.errors == []
    assert to_text(again) == text
    assert again.facility == ws.facility


def test_blank_worksheets_are_current():
    root = os.path.dirname(os.path.dirname(__file__))
    for lang in ("vi", "en"):
        path = os.path.join(root, "worksheets", f"blank-{lang}.cpa.md")
        with open(path, encoding="utf-8") as f:
            assert f.read() == blank_text(lang), f"{path} is stale: run `cpa template --force --lang {lang} {path}`"


def test_blank_worksheet_reads_with_vietnamese_headers(write_ws):
    ws = read(write_ws(blank_text("vi")))
    # blank: required values are missing, but every heading and column header is understood
    assert not [p for p in ws.errors if p.code in ("unknown_column", "unknown_field")]
    assert "unknown table heading" not in {p.message for p in ws.errors}


def test_cli_help_loads_no_heavy_library():
    # `cpa --help` must answer at once: the CLI imports pandas, pint, numpy, matplotlib and
    # typst only inside the commands that need them (speed is measured in benchmarks/, this
    # test only holds the import rule).
    import subprocess
    import sys

    code = ("import sys, cpa.cli; heavy = ('pandas', 'pint', 'numpy', 'matplotlib', 'typst', "
            "'openpyxl', 'python_calamine'); print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    r = subprocess.run([sys.executable, "-m", "cpa.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "report" in r.stdout and "check" in r.stdout
