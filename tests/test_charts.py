"""Charts of issue 7: they exist for every example in both languages, they only read the
results bundle, they print numbers in the booklet's language and user text literally."""

import glob
import math
import os
import re
import struct
import subprocess
import sys

import pandas as pd
import pytest

from cpa.errors import CPAError
from cpa.results import facility_results
from cpa.worksheet import load

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.cpa.md")))
FACILITY_KEYS = {"before_after_specific", "before_after_absolute", "savings_by_option", "payback",
                 "waste_pareto", "sankey_before", "sankey_after", "flow_chart"}

charts = pytest.importorskip("cpa.charts")

_BUNDLES: dict = {}


def bundle(path):
    """The results of a worksheet, computed once per test session (skip when the bundle itself
    cannot be computed: that is the calculation modules' business, not the charts')."""
    if path not in _BUNDLES:
        try:
            _BUNDLES[path] = facility_results(load(path))
        except CPAError as exc:
            _BUNDLES[path] = exc
    res = _BUNDLES[path]
    if isinstance(res, Exception):
        pytest.skip(f"results of {os.path.basename(path)} cannot be computed: {res}")
    return res


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def svg_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def programme_table():
    return pd.DataFrame({
        "facility_id": ["a", "b", "c", "d"],
        "facility_name": ["Công ty TNHH Dệt nhuộm Minh Họa An Phú", "Cơ sở chế biến tinh bột sắn Hòa Bình",
                          "Công ty Cổ phần Cao su $ Thống Nhất với một cái tên rất dài để kiểm tra việc xuống dòng",
                          "Xưởng gỗ Tân Uyên"],
        "sector": ["textile", "cassava", "rubber", "wood"],
        "energy_change_pct": [-9.5, -12.0, -3.2, float("nan")],
        "water_change_pct": [-19.0, -7.5, 2.5, -14.0],
        "saving_vnd_per_yr": [1.59e9, 8.2e8, 3.1e8, 1.234e9],
        "investment_vnd": [6.6e8, 1.2e9, 4.0e8, 9.0e8],
    })


# ----------------------------------------------------------------------------------------------
# every example, both languages


@pytest.mark.parametrize("lang", ["vi", "en"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p).split(".")[0] for p in EXAMPLES])
def test_every_example_renders(path, lang, tmp_path):
    res = bundle(path)
    out = charts.render_facility_charts(res, lang, tmp_path)
    assert set(out) <= FACILITY_KEYS
    for key in ("before_after_specific", "before_after_absolute", "waste_pareto", "sankey_before",
                "flow_chart"):
        assert key in out, key
    if res.monitoring:
        assert "sankey_after" in out
    if res.options is not None and len(res.options):
        assert {"savings_by_option", "payback"} <= set(out)
    for key, paths in out.items():
        assert set(paths) == {"png", "svg"}
        assert os.path.basename(paths["png"]) == key + ".png"
        for p in paths.values():
            assert os.path.getsize(p) > 2000, p
        w, h = png_size(paths["png"])
        # 17 cm at 300 dpi = 2008 px; heights between 5 and 27 cm
        assert 1900 <= w <= 2100, (key, w)
        assert 590 <= h <= 3200, (key, h)
        assert "<text" in svg_text(paths["svg"])  # text kept as text
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".cpa-")]  # no temporary left


def svg_font_sizes(path):
    """(size [pt], inside a tick label?) of every text of a chart's SVG (matplotlib's or the
    direct writer's; both in pt units)."""
    import xml.etree.ElementTree as ET

    out = []

    def walk(el, tick):
        ident = el.get("id", "")
        tick = tick or ident.startswith(("xtick_", "ytick_"))
        if el.tag.endswith("text"):
            size = el.get("font-size")
            if size is None:
                m = re.search(r"font-size:\s*([0-9.]+)px", el.get("style", ""))
                size = m.group(1) if m else None
            assert size is not None, ET.tostring(el)[:200]
            out.append((float(size), tick))
        for child in el:
            walk(child, tick)

    walk(ET.parse(path).getroot(), False)
    return out


@pytest.mark.parametrize("lang", ["vi", "en"])
@pytest.mark.parametrize("path", [EXAMPLES[0], EXAMPLES[-1]], ids=["first", "last"])
def test_charts_at_booklet_widths_are_legible(path, lang, tmp_path):
    """Drawn at the width the booklet places them: the SVG is that wide, tick labels are
    ≥ 6.5 pt and every other text ≥ 7 pt (so they print at those sizes)."""
    from cpa.booklet import CHART_WIDTHS

    res = bundle(path)
    out = charts.render_facility_charts(res, lang, tmp_path, widths=CHART_WIDTHS)
    assert out
    for key, paths in out.items():
        text = svg_text(paths["svg"])
        w = float(re.search(r'<svg[^>]*?width="([0-9.]+)pt"', text).group(1))
        assert abs(w - CHART_WIDTHS[key] / 2.54 * 72) < 0.5, (key, w)
        sizes = svg_font_sizes(paths["svg"])
        assert sizes, key
        for size, tick in sizes:
            assert size >= (6.5 if tick else 7.0), (key, size, tick)
        px, _ = png_size(paths["png"])
        assert abs(px - CHART_WIDTHS[key] / 2.54 * 300) < 3, (key, px)  # 300 dpi at its width


def test_canvas_chart_through_matplotlib(tmp_path):
    """A chart drawn on the canvas (written to SVG directly) draws the same with Agg."""
    res = bundle(EXAMPLES[0])
    fig = charts.flow_chart(res, "vi", width_cm=8.6)
    paths = charts.save_figure(fig, tmp_path / "flow", engine="agg")
    w, _h = png_size(paths["png"])
    assert abs(w - 8.6 / 2.54 * 300) < 3
    assert "Giặt xả sau nhuộm" in svg_text(paths["svg"])


def test_examples_exist():
    assert EXAMPLES


# ----------------------------------------------------------------------------------------------
# charts only read the bundle


def test_charts_only_read_results(monkeypatch, tmp_path):
    res = bundle(EXAMPLES[0])
    import cpa.balance
    import cpa.costs
    import cpa.indicators
    import cpa.quantities

    def forbidden(*a, **k):
        raise AssertionError("a chart computed instead of reading the results bundle")

    targets = [(cpa.balance, "balances"), (cpa.balance, "closure_warnings"), (cpa.indicators, "indicators"),
               (cpa.indicators, "production"), (cpa.costs, "waste_costs"), (cpa.quantities, "resolve_flows"),
               (cpa.quantities, "period_table"), (cpa.quantities.Converter, "convert")]
    try:
        import cpa.options as opt

        targets += [(opt, n) for n in ("option_table", "savings_table", "combined_savings",
                                        "combined_totals", "option_register", "economics")
                    if hasattr(opt, n)]
        targets.append((opt.Context, "__init__"))
    except ImportError:
        pass
    try:
        import cpa.compare as cmp

        targets += [(cmp, n) for n in dir(cmp) if n == "compare"]
    except ImportError:
        pass
    for mod, name in targets:
        monkeypatch.setattr(mod, name, forbidden)
    for lang in ("vi", "en"):
        out = charts.render_facility_charts(res, lang, tmp_path / lang)
        assert len(out) >= 6
    for layer in ("mass", "water", "energy"):
        charts.sankey(res, "en", layer=layer)


# ----------------------------------------------------------------------------------------------
# language, numbers and literal text


def test_vietnamese_tick_formatter():
    f = charts.number_formatter("vi")
    f.set_locs([0, 20000, 40000, 60000])
    assert f(40000) == "40.000"
    f.set_locs([0, 0.5, 1.0, 1.5])
    assert f(1.5) == "1,5"
    g = charts.number_formatter("en")
    g.set_locs([0, 0.5, 1.0, 1.5])
    assert g(1.5) == "1.5"
    g.set_locs([0, 20000, 40000])
    assert g(40000) == "40,000"


def test_vietnamese_numbers_in_svg(tmp_path):
    res = bundle(EXAMPLES[0])
    out = charts.render_facility_charts(res, "vi", tmp_path)
    text = svg_text(out["before_after_specific"]["svg"]) + svg_text(out["waste_pareto"]["svg"])
    # a grouped thousand (1.234) and a decimal comma (33,8) — never an English decimal point
    assert re.search(r">\s*\d{1,3}(\.\d{3})+\s*<", text), "no Vietnamese thousands label"
    assert re.search(r">[−+-]?\d+,\d+( %)?\s*<", text), "no Vietnamese decimal comma"
    en = charts.render_facility_charts(res, "en", tmp_path / "en")
    text_en = svg_text(en["before_after_specific"]["svg"])
    assert re.search(r">[−+-]?\d+\.\d+%?\s*<", text_en)
    assert "Năng lượng" in text and "Energy" in text_en


def test_dollar_and_long_names_are_literal(tmp_path):
    res = bundle(EXAMPLES[0])
    steps = res.ws.tables["steps"]
    first = steps["id"].iloc[0]
    long_name = "Bước $x^2$ rất dài " + " ".join(["rửa-sạch-và-kiểm-tra"] * 12)
    steps.loc[steps["id"] == first, ["name_vi", "name_en"]] = [long_name, "Cost $100 step"]
    try:
        fig = charts.flow_chart(res, "vi")
        paths = charts.save_figure(fig, tmp_path / "flow")
        text = svg_text(paths["svg"])
        assert "$x^2$" in text  # not typeset as mathtext
        fig = charts.flow_chart(res, "en")
        text = svg_text(charts.save_figure(fig, tmp_path / "flow_en")["svg"])
        assert "Cost $100 step" in text
        fig = charts.sankey(res, "vi", layer="water")
        text = svg_text(charts.save_figure(fig, tmp_path / "sankey")["svg"])
        assert "$x^2$" in text
    finally:
        _BUNDLES.pop(EXAMPLES[0], None)  # the bundle was edited


def test_wrap_never_exceeds_width():
    text = "Tạp chất, hóa chất, thuốc nhuộm vào nước thải " + "x" * 80
    out = charts.wrap(text, 100, 7, max_lines=3)
    lines = out.split("\n")
    assert len(lines) <= 3 and lines[-1].endswith("…")
    assert all(charts.text_width(line, 7) <= 100 + 1e-9 for line in lines)


# ----------------------------------------------------------------------------------------------
# a facility without monitoring, without options


def test_baseline_only(tmp_path):
    res = facility_results(load(EXAMPLES[0]))
    base = res.baseline
    res.periods = res.periods[res.periods["id"] == base].reset_index(drop=True)
    res.indicators = res.indicators[res.indicators["period"] == base]
    res.flows = res.flows[res.flows["period"] == base]
    res.balances = res.balances[res.balances["period"] == base]
    res.waste_costs = res.waste_costs[res.waste_costs["period"] == base]
    res.options = res.savings = res.combined = res.compare = None
    out = charts.render_facility_charts(res, "en", tmp_path)
    assert "sankey_after" not in out and "savings_by_option" not in out and "payback" not in out
    text = svg_text(out["before_after_specific"]["svg"])
    assert "results are expected" in text
    out_vi = charts.render_facility_charts(res, "vi", tmp_path / "vi")
    assert "kết quả sẽ có" in svg_text(out_vi["before_after_specific"]["svg"])
    assert charts.savings_by_option(res, "en") is None
    assert charts.payback_vs_investment(res, "en") is None


def test_empty_results_give_none():
    res = bundle(EXAMPLES[0])
    empty = type(res)(ws=res.ws, periods=res.periods, flows=res.flows.iloc[0:0], balances=res.balances.iloc[0:0],
                      indicators=res.indicators.iloc[0:0], waste_costs=res.waste_costs.iloc[0:0], factors=None)
    assert charts.before_after(empty, "en") is None
    assert charts.waste_pareto(empty, "en") is None
    assert charts.sankey(empty, "en") is None


# ----------------------------------------------------------------------------------------------
# programme


def test_programme_charts(tmp_path):
    table = programme_table()
    for lang in ("vi", "en"):
        out = charts.render_programme_charts(table, lang, tmp_path / lang, band=(8, 13))
        assert set(out) == {"programme_change", "programme_totals"}
        for paths in out.values():
            w, h = png_size(paths["png"])
            assert 1900 <= w <= 2100 and h > 500
        text = svg_text(out["programme_change"]["svg"])
        assert ("Mục tiêu 8–13 %" if lang == "vi" else "Target band 8–13 %") in text
        assert "$" in text  # a facility name with a dollar, printed literally
    totals = svg_text(out["programme_totals"]["svg"])
    assert "3,954" in totals  # total savings 3,954 million VND/yr (sum of the table)


@pytest.mark.parametrize("width", [17.0, 8.2])
def test_programme_charts_drawn_on_the_canvas(width):
    """Both programme charts are drawn on the canvas (no Axes) and written to SVG directly, with
    the table's values in the chart's language."""
    table = programme_table()
    for lang in ("vi", "en"):
        change = charts.programme_change(table, lang, band=(8, 13), width_cm=width)
        totals = charts.programme_totals(table, lang, width_cm=width)
        for fig in (change, totals):
            assert fig._cpa_pure() and not fig.axes
        c_svg = charts._svg_bytes(change).decode("utf-8")
        t_svg = charts._svg_bytes(totals).decode("utf-8")
        assert abs(float(re.search(r'<svg[^>]*?width="([0-9.]+)pt"', c_svg).group(1)) - width / 2.54 * 72) < 0.5
        # facility b: energy −12.0 % → a reduction of 12.0; facility c: water +2.5 % → −2.5
        if lang == "vi":
            assert ">12,0<" in c_svg and ">−2,5<" in c_svg and ">9,5<" in c_svg and "Mục tiêu 8–13 %" in c_svg
            # facility a: 1.59e9 VND/yr, investment 6.6e8 VND; the total 3,954 million VND/yr
            assert "1.590" in t_svg and "(đầu tư 660)" in t_svg and "3.954 triệu đồng/năm" in t_svg
        else:
            assert ">12.0<" in c_svg and ">−2.5<" in c_svg and ">9.5<" in c_svg and "Target band 8–13 %" in c_svg
            assert "1,590" in t_svg and "(investment 660)" in t_svg and "3,954 million VND/yr" in t_svg
        assert ">—<" in c_svg  # facility d's energy: not measured
        assert "Cao su $" in c_svg and "Cao su $" in t_svg  # a dollar printed literally


def test_programme_without_columns():
    assert charts.programme_change(pd.DataFrame({"facility_id": ["a"]}), "en") is None
    assert charts.programme_totals(pd.DataFrame(), "en") is None


# ----------------------------------------------------------------------------------------------
# saving and imports


def test_save_figure_atomic_and_agg_fallback(tmp_path):
    res = bundle(EXAMPLES[0])
    fig = charts.waste_pareto(res, "en")
    paths = charts.save_figure(fig, tmp_path / "pareto", engine="agg")
    w, h = png_size(paths["png"])
    assert 1900 <= w <= 2100
    assert sorted(os.listdir(tmp_path)) == ["pareto.png", "pareto.svg"]


def test_sankey_order_puts_a_boiler_before_the_steps_it_feeds():
    # 01-textile lists the boiler last; its steam feeds scouring, dyeing and rinsing
    res = bundle(EXAMPLES[0])
    order, _, col = charts._step_graph(res, "water")
    if "boiler" in order and "prep" in order:
        assert order.index("boiler") < order.index("prep")
        assert col["prep"] > col["boiler"]


def test_calculations_do_not_import_matplotlib():
    code = "import sys, cpa.balance, cpa.indicators, cpa.costs, cpa.results; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_percent_labels():
    assert charts._pct(-19.0, "vi") == "−19,0 %"
    assert charts._pct(4.25, "en") == "+4.3%" or charts._pct(4.25, "en") == "+4.2%"
    assert charts._pct(math.nan, "en") == "—"


# ----------------------------------------------------------------------------------------------
# the PNG encoder and the PDFium rasteriser


def test_png_rgb_decodes_to_the_same_pixels():
    """cpa's own PNG writer ("Up" filter, deflate), read back by Pillow's independent decoder:
    every pixel as written, the size, and the 300 dpi resolution (pHYs: 11,811 px/m)."""
    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    import io

    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    a[10:20] = a[9]  # repeated rows: the "Up" filter's zeros
    png = charts.png_rgb(a, 300)
    img = Image.open(io.BytesIO(png))
    img.load()
    assert img.mode == "RGB" and img.size == (53, 37)
    assert (np.asarray(img) == a).all()
    assert png[: 8] == b"\x89PNG\r\n\x1a\n"
    i = png.index(b"pHYs")
    assert struct.unpack(">IIB", png[i + 4: i + 13]) == (11811, 11811, 1)  # round(300 / 0.0254)


def test_png_is_the_picture_matplotlib_draws(tmp_path):
    """The default PNG (the SVG through typst and PDFium) and the Agg drawing of the same figure
    show the same picture: compared at 1/8 size (anti-aliasing and hinting differ by a pixel),
    the mean difference is under 1.5 % of full scale and the ink covers the same area."""
    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("pypdfium2")
    pytest.importorskip("typst")
    res = bundle(EXAMPLES[0])
    fig = charts.sankey(res, "vi", layer="water", period=res.baseline)
    fast = charts.save_figure(fig, tmp_path / "fast")
    agg = charts.save_figure(fig, tmp_path / "agg", engine="agg")

    def small(path):
        img = Image.open(path).convert("L")
        w, h = img.size
        return np.asarray(img.resize((w // 8, h // 8), Image.Resampling.BOX), dtype=float), (w, h)

    a, size_a = small(fast["png"])
    b, size_b = small(agg["png"])
    assert abs(size_a[0] - size_b[0]) <= 1 and abs(size_a[1] - size_b[1]) <= 1
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    a, b = a[:h, :w], b[:h, :w]
    assert np.abs(a - b).mean() < 0.015 * 255  # 1.1 % here; the "after" Sankey differs by 2.8 %
    ink_a, ink_b = (a < 250).mean(), (b < 250).mean()
    assert ink_a > 0.05 and abs(ink_a - ink_b) < 0.02
    with Image.open(fast["png"]) as img:
        assert round(img.info["dpi"][0]) == 300


def test_pngs_made_after_the_svgs(tmp_path, monkeypatch):
    """`cpa report` writes the SVGs first (the booklet embeds them) and the PNGs in a later task:
    the PNGs are the 300 dpi pictures of those SVGs; without a rasteriser (typst or PDFium
    missing), the figures are drawn again by Agg."""
    res = bundle(EXAMPLES[0])
    svgs = charts.render_facility_charts(res, "en", tmp_path / "a", formats=("svg",))
    assert all(set(v) == {"svg"} for v in svgs.values())
    assert not [f for f in os.listdir(tmp_path / "a") if f.endswith(".png")]
    out = charts.render_pngs(svgs)
    assert set(out) == set(svgs)
    for key, paths in out.items():
        assert paths["png"] == os.path.splitext(paths["svg"])[0] + ".png"
        w, _h = png_size(paths["png"])
        assert 1900 <= w <= 2100, key  # 17 cm at 300 dpi
    monkeypatch.setattr(charts, "_pngs_from_svgs", lambda items, dpi=300: None)  # no rasteriser
    made = []

    def make(key):
        made.append(key)
        return charts.facility_chart(res, "en", key)

    again = charts.render_pngs(charts.render_facility_charts(res, "en", tmp_path / "b", formats=("svg",)),
                               make=make)
    assert sorted(made) == sorted(svgs)
    assert all(1900 <= png_size(p["png"])[0] <= 2100 for p in again.values())


def test_flow_chart_link_labels_in_the_chart_language(tmp_path):
    """A link's `material_vi` / `material_en` label the flow chart in its language (01-textile:
    dye → rinse carries "vải đã nhuộm" / "dyed fabric"), at the booklet's half width."""
    res = bundle(EXAMPLES[0])
    vi = charts.save_figure(charts.flow_chart(res, "vi", width_cm=8.6), tmp_path / "vi", formats=("svg",))
    en = charts.save_figure(charts.flow_chart(res, "en", width_cm=8.6), tmp_path / "en", formats=("svg",))
    vi_text, en_text = svg_text(vi["svg"]), svg_text(en["svg"])
    assert "vải đã nhuộm" in vi_text and "dyed fabric" not in vi_text
    assert "dyed fabric" in en_text and "vải đã nhuộm" not in en_text
