"""`cpa report` and the case-study booklets: read the PDFs back and check what a reader sees."""

import os
import re
import shutil

import pytest
from click.testing import CliRunner

pypdf = pytest.importorskip("pypdf")

from cpa.commands_report import output_names, report_cmd  # noqa: E402

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
TEXTILE = os.path.join(ROOT, "examples", "01-textile.cpa.md")


def pdf_text(path) -> str:
    reader = pypdf.PdfReader(path)
    return "\n".join(p.extract_text() for p in reader.pages)


def flat(text) -> str:
    """Text with zero-width spaces removed and all whitespace collapsed (for wrapped lines)."""
    return re.sub(r"\s+", " ", text.replace("\u200b", "")).strip()


def pages(path) -> int:
    return len(pypdf.PdfReader(path).pages)


def run(args):
    return CliRunner().invoke(report_cmd, args, catch_exceptions=False)


def digest(folder):
    out = {}
    for dirpath, _d, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = fh.read()
    return out


@pytest.fixture(scope="module")
def textile_vi(tmp_path_factory):
    """The textile booklet in Vietnamese (one run, shared by the tests that read it)."""
    from cpa.booklet import build_facility_booklet
    from cpa.results import facility_results
    from cpa.worksheet import load

    res = facility_results(load(TEXTILE))
    out = tmp_path_factory.mktemp("booklet")
    charts = None
    try:
        from cpa.booklet import CHART_WIDTHS
        from cpa.charts import render_facility_charts

        # each chart drawn at the width the booklet places it (as `cpa report` does)
        charts = render_facility_charts(res, "vi", out / "charts", widths=CHART_WIDTHS)
    except ImportError:
        pass
    pdf = str(out / "textile.vi.pdf")
    build_facility_booklet(res, "vi", pdf, charts)
    return res, pdf


def test_facility_booklet_vietnamese_text(textile_vi):
    res, pdf = textile_vi
    text = flat(pdf_text(pdf))
    for phrase in ("Sản xuất sạch hơn", "Công ty TNHH Dệt nhuộm Minh Họa An Phú", "Giới thiệu doanh nghiệp",
                   "Vấn đề môi trường trước khi áp dụng SXSH", "Đội sản xuất sạch hơn",
                   "Đánh giá sản xuất sạch hơn", "Các giải pháp sản xuất sạch hơn",
                   "Giai đoạn 1: giải pháp không/ít chi phí", "Giai đoạn 2: giải pháp cần đầu tư",
                   "LỢI ÍCH KỸ THUẬT", "LỢI ÍCH KINH TẾ", "LỢI ÍCH MÔI TRƯỜNG", "Cơ sở số liệu",
                   "Nguyễn Minh Khoa"):
        assert phrase in text, phrase
    # 1,080,000 kWh... the baseline electricity 1,350,000 kWh and water 108,000 m3 in vi format
    assert "1.350.000 kWh" in text
    assert "108.000 m³" in text
    # option T6: 3,600 million VND investment, written 3.600,0 (dot groups, comma decimal)
    assert "3.600,0" in text
    # specific energy 33.8395 GJ/t → 33,8
    assert "33,8" in text


def test_every_page_says_illustrative(textile_vi):
    _res, pdf = textile_vi
    reader = pypdf.PdfReader(pdf)
    assert 2 <= len(reader.pages) <= 4
    for page in reader.pages:
        assert "MINH HỌA" in page.extract_text()


def printed_sizes(path) -> list[tuple[float, str]]:
    """(size as printed [pt], text) of every piece of text in a PDF: the font size times the
    scale of the text and current matrices — charts embedded as SVG included."""
    import math

    out = []
    for page in pypdf.PdfReader(path).pages:
        def visit(text, cm, tm, _font, size):
            if text.strip():
                a, b = tm[0] * cm[0] + tm[1] * cm[2], tm[0] * cm[1] + tm[1] * cm[3]
                c, d = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
                out.append((size * math.sqrt(abs(a * d - b * c)), text.strip()))

        page.extract_text(visitor_text=visit)
    return out


def test_every_text_prints_at_least_6_5_pt(textile_vi):
    """Charts are drawn at the width the booklet places them: nothing is scaled down, so every
    text — tables, notes and the charts' labels and ticks — prints at 6.5 pt or more."""
    _res, pdf = textile_vi
    sizes = printed_sizes(pdf)
    assert len(sizes) > 500
    small = [(round(v, 2), t) for v, t in sizes if v < 6.45]
    assert not small, small[:10]
    # the charts' text is there (the flow chart's step names, the Pareto's shares)
    text = flat(pdf_text(pdf))
    assert "Giặt xả sau nhuộm" in text and "Tỷ lệ cộng dồn" in text


def test_programme_table_from_the_results_rows():
    """The programme table assembled from the rows computed beside each facility's results is
    programme_table's."""
    prog = pytest.importorskip("cpa.programme")
    import glob

    import pandas as pd

    from cpa.commands_report import _programme_table, _results_task
    from cpa.worksheet import load

    settings = prog.load_settings(os.path.join(ROOT, "examples", "programme.toml"))
    wss = [load(p) for p in sorted(glob.glob(os.path.join(ROOT, "examples", "*.cpa.md")))[:3]]
    rows = [_results_task((ws, settings))[1] for ws in wss]
    table, summary = _programme_table(wss, rows, settings)
    pd.testing.assert_frame_equal(table, prog.programme_table(wss, settings))
    assert summary == prog.programme_summary(prog.programme_table(wss, settings), settings)


def test_booklet_english(tmp_path):
    from cpa.booklet import build_facility_booklet
    from cpa.results import facility_results
    from cpa.worksheet import load

    res = facility_results(load(TEXTILE))
    pdf = str(tmp_path / "en.pdf")
    build_facility_booklet(res, "en", pdf, None)
    text = flat(pdf_text(pdf))
    for phrase in ("An Phu Illustrative Dyeing Co., Ltd.", "Company profile", "TECHNICAL BENEFITS",
                   "ECONOMIC BENEFITS", "ENVIRONMENTAL BENEFITS", "ILLUSTRATIVE", "1,350,000 kWh"):
        assert phrase in text, phrase
    assert 2 <= pages(pdf) <= 4
    # the profile and the team in English (capacity_en, audit_focus_en, consultant_en, role_en,
    # department_en, responsibility_en), not the Vietnamese texts
    for phrase in ("3.2 t fabric per day", "Pretreatment, dyeing and rinsing", "Technical deputy director",
                   "Head of the colour laboratory", "Wastewater, solid waste, treatment costs"):
        assert phrase in text, phrase
    for phrase in ("vải/ngày", "Phó giám đốc kỹ thuật", "Trưởng phòng thí nghiệm màu"):
        assert phrase not in text, phrase


def test_booklet_vietnamese_profile_and_team_in_vietnamese(textile_vi):
    _res, pdf = textile_vi
    text = flat(pdf_text(pdf))
    for phrase in ("3,2 t vải/ngày", "Phó giám đốc kỹ thuật", "Ví dụ minh họa cho chương trình SXSH Đồng Nai"):
        assert phrase in text, phrase
    for phrase in ("fabric per day", "Technical deputy director", "Illustrative worked example"):
        assert phrase not in text, phrase


def test_facility_without_monitoring_says_results_expected(tmp_path):
    from cpa.booklet import build_facility_booklet
    from cpa.results import facility_results
    from cpa.worksheet import load

    with open(TEXTILE, encoding="utf-8") as f:
        text = f.read()
    # drop the monitoring period and everything measured in it
    lines = [ln for ln in text.splitlines() if not re.match(r"^\| (mon) \|", ln)
             and not re.match(r"^\| T\d \| mon \|", ln)]
    src = tmp_path / "nomon.cpa.md"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = facility_results(load(str(src)))
    assert not res.monitoring
    pdf = str(tmp_path / "nomon.pdf")
    build_facility_booklet(res, "vi", pdf, None)
    t = flat(pdf_text(pdf))
    assert "Chưa có số liệu giám sát" in t
    assert "kết quả dự kiến" in t
    assert 2 <= pages(pdf) <= 4


def hostile_copy(folder):
    """The textile worksheet with a hostile facility id and name."""
    with open(TEXTILE, encoding="utf-8") as f:
        text = f.read()
    long_name = "Công ty " + " ".join(["Rất Dài"] * 45)
    long_name = long_name[:300]
    name = "Cty $x$ #set *đậm* _nghiêng_ @nhan <a> ../x " + long_name
    text = text.replace("| id | textile-anphu |", "| id | x..y..z |")
    text = text.replace("| name | Công ty TNHH Dệt nhuộm Minh Họa An Phú |", f"| name | {name} |")
    p = os.path.join(folder, "hostile.cpa.md")
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
    return p, name, long_name


def test_hostile_names_stay_inside_out_and_print_literally(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    path, name, long_name = hostile_copy(str(src))
    out = tmp_path / "out"
    r = run([path, "--out", str(out), "--lang", "vi", "-q", "-j", "1"])
    assert r.exit_code == 0, r.output
    out_real = os.path.realpath(out)
    for dirpath, _d, files in os.walk(tmp_path):
        for f in files:
            p = os.path.realpath(os.path.join(dirpath, f))
            assert p.startswith(out_real) or p.startswith(os.path.realpath(src)), p
    assert sorted(os.listdir(src)) == ["hostile.cpa.md"]
    pdfs = [f for f in os.listdir(out / "vi") if f.endswith(".pdf")]
    assert len(pdfs) == 2 and "programme.pdf" in pdfs
    booklet = next(f for f in pdfs if f != "programme.pdf")
    assert "/" not in booklet and ".." not in booklet
    text = flat(pdf_text(str(out / "vi" / booklet)))
    assert flat(name) in text
    assert "$x$ #set *đậm* _nghiêng_ @nhan <a>" in text
    assert 2 <= pages(str(out / "vi" / booklet)) <= 4


def test_output_names_are_safe_and_unique():
    class W:
        def __init__(self, id_):
            self.id = id_
            self.facility = {"name": "x"}

    names = output_names([W("../x"), W("../x"), W("a/b\x07c"), W("programme"), W("")])
    assert len(set(names)) == 5
    for n in names:
        assert "/" not in n and ".." not in n and "\x07" not in n and n.lower() != "programme"


def test_invalid_worksheet_exit_1_nothing_written(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(TEXTILE, src / "01.cpa.md")
    bad = (open(TEXTILE, encoding="utf-8").read()
           .replace("| base | grey |  | prep | 954 | t |", "| base | grey |  | prep | lots | t |")
           .replace("| id | textile-anphu |", "| id | bad |"))
    (src / "02-bad.cpa.md").write_text(bad, encoding="utf-8")
    out = tmp_path / "out"
    r = run([str(src), "--out", str(out), "-q", "-j", "1"])
    assert r.exit_code == 1
    assert "02-bad.cpa.md" in r.output and "INVALID" in r.output
    assert "nothing written" in r.output
    assert not out.exists()


def test_report_examples_both_languages_rerun(tmp_path, copy_examples):
    """The main job on every example: one PDF per facility + the programme booklet per language;
    a re-run replaces the outputs and leaves the inputs byte-identical."""
    before = digest(copy_examples)
    n = len([f for f in os.listdir(copy_examples) if f.endswith(".cpa.md")])
    out = tmp_path / "build"
    r = run([copy_examples, "--out", str(out), "--lang", "both", "-q"])
    assert r.exit_code == 0, r.output
    for lang in ("vi", "en"):
        pdfs = sorted(f for f in os.listdir(out / lang) if f.endswith(".pdf"))
        assert len(pdfs) == n + 1
        assert "programme.pdf" in pdfs
        for f in pdfs:
            if f != "programme.pdf":
                assert 2 <= pages(str(out / lang / f)) <= 4, f
    assert (out / "summary.xlsx").exists()
    prog = flat(pdf_text(str(out / "vi" / "programme.pdf")))
    assert "Tổng hợp kết quả chương trình" in prog and "Đồng Nai" in prog
    assert pages(str(out / "vi" / "programme.pdf")) >= n * 2 + 2
    first = {k: v for k, v in digest(out).items()}
    mtimes = {k: os.stat(out / k).st_ino for k in first}
    r = run([copy_examples, "--out", str(out), "--lang", "both", "-q"])
    assert r.exit_code == 0, r.output
    assert set(digest(out)) == set(first)  # same outputs, no temporary folders left
    assert any(os.stat(out / k).st_ino != mtimes[k] for k in first)  # replaced, not appended
    assert digest(copy_examples) == before


def test_report_in_a_fresh_process_forks_its_workers(tmp_path, examples_dir):
    """`cpa report` as the command line runs it (a fresh interpreter that has not run typst):
    its workers are forked, first to read and compute, then — after matplotlib and typst are
    imported — to draw and typeset. Two facilities, two workers: every booklet, every chart as
    SVG and PNG, and nothing else (the charts' PDF is a working file), no temporary folder left."""
    import subprocess
    import sys

    for name in ("01-textile.cpa.md", "04-cashew.cpa.md"):
        shutil.copy(os.path.join(examples_dir, name), tmp_path / name)
    out = tmp_path / "build"
    r = subprocess.run([sys.executable, "-m", "cpa.cli", "report", str(tmp_path / "01-textile.cpa.md"),
                        str(tmp_path / "04-cashew.cpa.md"), "--out", str(out), "--lang", "vi", "-q", "-j", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wrote 3 booklets" in r.stdout
    assert sorted(f for f in os.listdir(out / "vi") if f.endswith(".pdf")) == [
        "cashew-trangbom.pdf", "programme.pdf", "textile-anphu.pdf"]
    for fac in ("textile-anphu", "cashew-trangbom"):
        files = os.listdir(out / "vi" / "charts" / fac)
        svgs = {f[:-4] for f in files if f.endswith(".svg")}
        assert svgs and svgs == {f[:-4] for f in files if f.endswith(".png")}
        assert len(files) == 2 * len(svgs)
    assert not [d for d in os.listdir(out) if d.startswith(".cpa-")]


def test_no_negative_zero_in_booklets():
    """A gap of −0.004 % rounds to zero: the booklet prints 0,0 %, not −0,0 %."""
    from cpa.booklet import Fmt

    assert Fmt("vi").pct(-0.00004) == "0,0 %"
    assert Fmt("en").pct(-0.00004) == "0.0%"
    assert Fmt("en").num(-0.0004, 1) == "0.0"
    assert Fmt("vi").pct(-0.004) == "−0,4 %"  # a real decrease keeps its sign
