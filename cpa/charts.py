"""Charts of one facility and of a programme, for the case-study booklets (issue 7).

Every chart is a *pure* function of results: it reads a :class:`cpa.results.FacilityResults`
bundle (or a programme table) and returns a :class:`matplotlib.figure.Figure`, or ``None`` when
the chart does not apply (no options yet, no waste costs...). Charts never compute balances,
indicators, costs or savings: they only select, sort, scale and label what the bundle holds
(a test holds this).

Style: one quiet palette, DejaVu Sans (ships with matplotlib), sizes for an A4 booklet (full
width 17 cm), numbers in the booklet's language through :func:`cpa.numbers.format_number`
(``vi``: ``1.234,5``; ``en``: ``1,234.5``), user text printed literally (no mathtext) and wrapped
to the space it has. Layouts are fixed in centimetres and computed from measured text widths,
so a chart is drawn once when saved (no tight-layout loops).

Use :func:`save_figure` to write a chart: it writes PNG (300 dpi) and SVG (text kept as text)
atomically, inside the chart style.

This module is the only one that imports matplotlib; calculations never import it.
"""

from __future__ import annotations

import io
import math
import os
import re
from contextlib import contextmanager
from functools import lru_cache

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.patches  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cpa.numbers import format_number  # noqa: E402

CM = 1 / 2.54
FULL_W = 17.0   # cm: full text width of an A4 booklet page
HALF_W = 8.2    # cm: half width
PT_CM = 2.54 / 72  # one typographic point in cm

# -- palette: few, quiet colours -------------------------------------------------------------
INK = "#222222"
MUTED = "#6b6b6b"
LIGHT = "#9a9a9a"
GRID = "#e4e4e4"
BASE = "#a3adb8"                               # baseline bars
AFTER = ("#1f5f8b", "#4f8fbf", "#86b6d9", "#b7d3e9")  # monitoring periods
GOOD = "#2e7d4f"                               # a reduction
BAD = "#b5473a"                                # an increase
ACCENT = "#c27c2c"
SCREENING_COLOURS = {"implement_now": "#1f5f8b", "study_further": "#86b6d9", "reject": "#c9c9c9"}
KIND_COLOURS = {
    "water": "#4f8fbf", "wastewater": "#8aa4b8", "steam": "#d9a066", "fuel": "#c27c2c",
    "electricity": "#e0b530", "raw_material": "#7d9a55", "auxiliary": "#a8b77a",
    "intermediate": "#9c9c9c", "product": "#3d6b57", "by_product": "#6f9a86",
    "solid_waste": "#a8756b", "hazardous_waste": "#8c4a42", "air_emission": "#b0a3a0",
    "loss": "#c98d84", "unaccounted": "#d0d0d0",
}
BUCKET_COLOURS = ("#e3f0e6", "#eef4e2", "#faf3e0", "#f9ece8")

FONT = "DejaVu Sans"
SIZE = 7.5        # body text of charts [pt]
SMALL = 6.5
TITLE = 9.0

STYLE = {
    "font.family": FONT, "font.size": SIZE, "axes.titlesize": SIZE, "axes.labelsize": SIZE,
    "xtick.labelsize": SMALL, "ytick.labelsize": SMALL, "legend.fontsize": SMALL,
    "text.color": INK, "axes.labelcolor": INK, "axes.edgecolor": LIGHT, "axes.linewidth": 0.6,
    "xtick.color": MUTED, "ytick.color": MUTED, "xtick.major.width": 0.5, "ytick.major.width": 0.5,
    "xtick.major.size": 2.5, "ytick.major.size": 2.5, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": False, "grid.color": GRID, "grid.linewidth": 0.5,
    "legend.frameon": False, "text.parse_math": False, "svg.fonttype": "none",
    "svg.hashsalt": "cpa-charts", "figure.dpi": 100, "savefig.dpi": 300, "hatch.linewidth": 0.5,
    "hatch.color": "#8a8a8a", "path.simplify": True, "axes.unicode_minus": True,
    "text.hinting": "no_hinting",
}

T = {
    "en": {
        "before_after_specific": "Consumption per unit of product: before and after cleaner production",
        "before_after_absolute": "Annual consumption and wastes: before and after cleaner production",
        "annualised": "Period totals annualised to one year of operation.",
        "per_unit": "per {unit} of {product}",
        "expected": "No monitoring period yet: the results are expected after the options are implemented.",
        "baseline": "Baseline", "after": "After", "baseline_p": "Baseline", "monitoring_p": "Monitoring",
        "energy": "Energy", "electricity": "Electricity", "water": "Fresh water",
        "wastewater": "Wastewater", "solid_waste": "Solid waste", "hazardous_waste": "Hazardous waste",
        "co2_total": "CO₂e emissions", "fuel_energy": "Fuel energy",
        "savings_title": "Annual savings of each option (stand-alone)",
        "savings_axis": "Net savings [million VND/yr]",
        "combined": "All options not rejected, combined without double counting: {v} million VND/yr",
        "not_valued": "not valued",
        "payback_title": "Payback versus investment",
        "payback_axis": "Simple payback [years]",
        "investment_axis": "Investment, net of grants [million VND, log scale]",
        "bubble": "Bubble area: net savings", "never": "never",
        "years": "{a}–{b} yr", "lt": "< {a} yr", "gt": "> {a} yr",
        "no_options": "No options with valued savings yet.",
        "omitted": "Not shown (savings not valued): {ids}",
        "zero_inv": "no investment",
        "pareto_title": "Cost of waste streams — {period}",
        "pareto_axis": "Annual cost [million VND/yr]", "cumulative": "Cumulative share",
        "lower_bound": "≥ : lower bound, a price is missing",
        "other_n": "Other ({n})",
        "sankey_title": "{layer} flows — {period}",
        "sankey_sub": "Band widths proportional to {unit} in the period; flows below {thr} of the total grouped as \"other\".",
        "mass": "Material", "water_layer": "Water", "energy_layer": "Energy",
        "other_in": "Other inputs", "other_out": "Other outputs", "unaccounted": "Unaccounted",
        "flow_title": "Process flow chart",
        "flow_sub": "Inputs and outputs from outside, baseline period: {period}.",
        "in": "In:", "out": "Out:", "utilities": "Utilities",
        "prog_change_title": "Change in consumption per unit of product, by facility",
        "prog_change_axis": "Reduction per unit of product [%]  (negative: an increase)",
        "target": "Target band {a}–{b} %",
        "prog_totals_title": "Annual savings of the programme",
        "prog_totals_sub": "Total: {s} million VND/yr for an investment of {i} million VND.",
        "by_facility": "By facility [million VND/yr]", "by_sector": "By sector [million VND/yr]",
        "investment": "investment",
        "material_change": "Materials", "fuel_change": "Fuel", "waste_change": "Waste",
        "co2_change": "CO₂e",
        "per_yr": "/yr",
    },
    "vi": {
        "before_after_specific": "Tiêu thụ trên một đơn vị sản phẩm: trước và sau sản xuất sạch hơn",
        "before_after_absolute": "Tiêu thụ và chất thải hằng năm: trước và sau sản xuất sạch hơn",
        "annualised": "Số liệu của mỗi giai đoạn được quy đổi ra một năm hoạt động.",
        "per_unit": "trên một {unit} {product}",
        "expected": "Chưa có giai đoạn giám sát: kết quả sẽ có sau khi thực hiện các giải pháp.",
        "baseline": "Trước SXSH", "after": "Sau SXSH", "baseline_p": "Cơ sở", "monitoring_p": "Giám sát",
        "energy": "Năng lượng", "electricity": "Điện", "water": "Nước cấp",
        "wastewater": "Nước thải", "solid_waste": "Chất thải rắn", "hazardous_waste": "Chất thải nguy hại",
        "co2_total": "Phát thải CO₂e", "fuel_energy": "Năng lượng nhiên liệu",
        "savings_title": "Lợi ích hằng năm của từng giải pháp (tính riêng)",
        "savings_axis": "Lợi ích ròng [triệu đồng/năm]",
        "combined": "Các giải pháp không bị loại, cộng dồn không tính trùng: {v} triệu đồng/năm",
        "not_valued": "chưa định giá",
        "payback_title": "Thời gian hoàn vốn và vốn đầu tư",
        "payback_axis": "Thời gian hoàn vốn giản đơn [năm]",
        "investment_axis": "Vốn đầu tư, trừ tài trợ [triệu đồng, thang log]",
        "bubble": "Diện tích bong bóng: lợi ích ròng", "never": "không hoàn vốn",
        "years": "{a}–{b} năm", "lt": "< {a} năm", "gt": "> {a} năm",
        "no_options": "Chưa có giải pháp nào được định giá lợi ích.",
        "omitted": "Không thể hiện (chưa định giá lợi ích): {ids}",
        "zero_inv": "không đầu tư",
        "pareto_title": "Chi phí của các dòng thải — {period}",
        "pareto_axis": "Chi phí hằng năm [triệu đồng/năm]", "cumulative": "Tỷ lệ cộng dồn",
        "lower_bound": "≥ : giá trị tối thiểu, còn thiếu đơn giá",
        "other_n": "Khác ({n})",
        "sankey_title": "Dòng {layer} — {period}",
        "sankey_sub": "Độ rộng dải tỷ lệ với {unit} trong giai đoạn; các dòng dưới {thr} tổng được gộp vào \"khác\".",
        "mass": "vật liệu", "water_layer": "nước", "energy_layer": "năng lượng",
        "other_in": "Đầu vào khác", "other_out": "Đầu ra khác", "unaccounted": "Không xác định",
        "flow_title": "Sơ đồ quy trình sản xuất",
        "flow_sub": "Đầu vào và đầu ra (từ bên ngoài) trong giai đoạn cơ sở: {period}.",
        "in": "Vào:", "out": "Ra:", "utilities": "Phụ trợ",
        "prog_change_title": "Thay đổi mức tiêu thụ trên một đơn vị sản phẩm của từng cơ sở",
        "prog_change_axis": "Mức giảm trên một đơn vị sản phẩm [%]  (âm: tăng)",
        "target": "Mục tiêu {a}–{b} %",
        "prog_totals_title": "Lợi ích hằng năm của chương trình",
        "prog_totals_sub": "Tổng: {s} triệu đồng/năm với vốn đầu tư {i} triệu đồng.",
        "by_facility": "Theo cơ sở [triệu đồng/năm]", "by_sector": "Theo ngành [triệu đồng/năm]",
        "investment": "đầu tư",
        "material_change": "Nguyên liệu", "fuel_change": "Nhiên liệu", "waste_change": "Chất thải",
        "co2_change": "CO₂e",
        "per_yr": "/năm",
    },
}

SECTORS_VI = {"textile": "Dệt nhuộm", "food": "Thực phẩm", "paper": "Giấy", "metal": "Kim loại",
              "chemical": "Hóa chất", "ceramics": "Gốm sứ", "rubber": "Cao su", "seafood": "Thủy sản",
              "brick": "Gạch", "cassava": "Tinh bột sắn", "plastics": "Nhựa"}


def _t(lang: str, key: str, **kw) -> str:
    text = T["vi" if lang == "vi" else "en"][key]
    return text.format(**kw) if kw else text


# ----------------------------------------------------------------------------------------------
# style, text measurement and wrapping


@contextmanager
def style():
    """The chart style as a matplotlib rc context (also used when saving)."""
    with matplotlib.rc_context(STYLE):
        yield


@lru_cache(maxsize=2)
def _font(bold: bool):
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    f = FT2Font(findfont(FontProperties(family=FONT, weight="bold" if bold else "normal")))
    f.set_size(100, 72)  # 100 pt at 72 dpi: one pixel = one point
    return f


@lru_cache(maxsize=4096)
def _advance(ch: str, bold: bool) -> float:
    """Advance width of one character at 100 pt [pt]."""
    from matplotlib.ft2font import LoadFlags

    try:
        g = _font(bold).load_char(ord(ch), flags=LoadFlags.NO_HINTING)
        return g.linearHoriAdvance / 65536.0
    except Exception:  # noqa: BLE001 - a character the font lacks: assume a wide one
        return 60.0


@lru_cache(maxsize=8192)
def text_width(text: str, size: float = SIZE, bold: bool = False) -> float:
    """Width of one line of text [pt] in the chart font (sum of advances, +7 % for safety;
    measured per character, since laying out whole strings costs a millisecond each)."""
    if not text:
        return 0.0
    return 1.07 * size / 100.0 * sum(_advance(ch, bold) for ch in text)


def line_height(size: float = SIZE) -> float:
    """Height of one line of text [pt] (matplotlib's default line spacing 1.2)."""
    return 1.2 * size * 1.17


def wrap(text, width_pt: float, size: float = SIZE, max_lines: int = 3, bold: bool = False) -> str:
    """Wrap ``text`` to lines no wider than ``width_pt``; cut with an ellipsis after ``max_lines``."""
    # collapse ordinary white space only: a no-break space (U+00A0) keeps a value with its unit
    text = " ".join(w for w in re.split(r"[ \t\r\n]+", str(text if text is not None else "")) if w)
    if not text:
        return ""
    lines: list[str] = []
    cur = ""
    for word in text.split(" "):
        while text_width(word, size, bold) > width_pt and len(word) > 1:  # a very long word: cut it
            if cur:
                lines.append(cur)
                cur = ""
            k = len(word)
            while k > 1 and text_width(word[:k] + "-", size, bold) > width_pt:
                k -= 1
            lines.append(word[:k] + "-")
            word = word[k:]
        cand = f"{cur} {word}" if cur else word
        if text_width(cand, size, bold) <= width_pt:
            cur = cand
        else:
            lines.append(cur)
            cur = word
    if cur:
        lines.append(cur)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and text_width(last + "…", size, bold) > width_pt:
            last = last[:-1].rstrip()
        lines[-1] = last + "…"
    return "\n".join(lines)


def _lines(text: str) -> int:
    return text.count("\n") + 1 if text else 0


def _fmt(x, lang: str, decimals: int | None = None) -> str:
    """A number for a label, with decimals chosen by its size unless given."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if decimals is None:
        ax = abs(x)
        decimals = 0 if ax >= 100 else 1 if ax >= 10 else 2 if ax >= 0.1 or ax == 0 else 3
    return format_number(float(x), lang, decimals)


def _pct(x, lang: str, decimals: int = 1, sign: bool = True) -> str:
    if x is None or x != x:
        return "—"
    s = format_number(abs(float(x)), lang, decimals)
    if sign and round(x, decimals) != 0:
        s = ("+" if x > 0 else "−") + s
    return f"{s} %" if lang == "vi" else f"{s}%"


def number_formatter(lang: str, scale: float = 1.0, decimals: int | None = None, suffix: str = ""):
    """A matplotlib tick formatter printing ``x * scale`` with :func:`cpa.numbers.format_number`.

    ``decimals=None`` chooses them from the tick spacing.
    """
    from matplotlib.ticker import Formatter

    class _F(Formatter):
        ticks: list = []

        def set_locs(self, locs):
            self.ticks = [float(v) for v in locs]

        def __call__(self, x, pos=None):
            d = decimals
            if d is None:
                locs = [v * scale for v in self.ticks]
                steps = [abs(b - a) for a, b in zip(locs, locs[1:], strict=False) if b != a]
                step = min(steps) if steps else abs(x * scale) or 1.0
                d = 0 if step >= 1 else min(3, int(math.ceil(-math.log10(step) - 1e-9)))
            v = x * scale
            if abs(v) < 1e-12:
                v = 0.0
            return format_number(v, lang, d) + suffix

    return _F()


def percent_formatter(lang: str):
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, pos=None: _pct(x, lang, 0, sign=False))


def _figure(width_cm: float, height_cm: float) -> Figure:
    fig = Figure(figsize=(width_cm * CM, height_cm * CM), dpi=100)
    fig.patch.set_facecolor("white")
    return fig


def _axes_cm(fig, left, bottom, right, top):
    """Axes placed by its margins in cm from the figure edges."""
    w, h = fig.get_size_inches() / CM
    return fig.add_axes([left / w, bottom / h, (w - left - right) / w, (h - bottom - top) / h])


def _title(fig, title: str, subtitle: str = "", top_cm: float = 0.25) -> float:
    """Title (and subtitle) at the top left; returns the height used [cm]."""
    w, h = fig.get_size_inches() / CM
    t = wrap(title, (w - 0.4) / PT_CM, TITLE, 2, bold=True)
    y = h - top_cm
    fig.text(0.15 / w, y / h, t, ha="left", va="top", fontsize=TITLE, weight="bold", color=INK)
    used = top_cm + _lines(t) * line_height(TITLE) * PT_CM
    if subtitle:
        s = wrap(subtitle, (w - 0.4) / PT_CM, SMALL, 3)
        fig.text(0.15 / w, (h - used - 0.08) / h, s, ha="left", va="top", fontsize=SMALL, color=MUTED)
        used += 0.08 + _lines(s) * line_height(SMALL) * PT_CM
    return used + 0.15


def _name(row: dict, lang: str, base: str = "name") -> str:
    vi, en = row.get(f"{base}_vi"), row.get(f"{base}_en")
    ok = lambda v: v is not None and v == v and str(v).strip() != ""  # noqa: E731
    if lang == "vi":
        return str(vi) if ok(vi) else str(en) if ok(en) else str(row.get("id", ""))
    return str(en) if ok(en) else str(vi) if ok(vi) else str(row.get("id", ""))


def _records(df) -> list[dict]:
    if df is None or not len(df):
        return []
    return df.to_dict("records")


def _streams(res) -> dict:
    return {r["id"]: r for r in _records(res.ws.tables["streams"])}


def _period_label(res, pid, lang) -> str:
    for r in _records(res.periods):
        if r["id"] == pid:
            return _name(r, lang, "label") if (r.get("label_vi") or r.get("label_en")) else str(pid)
    return str(pid)


def _unit(u: str, lang: str) -> str:
    """A unit for display: m3 → m³, tCO2e → t CO₂e, /yr → /năm in Vietnamese."""
    u = str(u or "")
    u = u.replace("m3", "m³").replace("tCO2e", "t CO₂e").replace("CO2", "CO₂")
    if lang == "vi":
        u = u.replace("/yr", "/năm")
    return u


def _is_empty(df) -> bool:
    return df is None or not hasattr(df, "columns") or not len(df)


# ----------------------------------------------------------------------------------------------
# 1. before / after per resource


def _before_after_rows(res, lang: str, specific: bool):
    """Panels: (label, unit, [value per period], note) from res.indicators."""
    ind = res.indicators
    if _is_empty(ind):
        return [], []
    periods = [res.baseline] + list(res.monitoring)
    annual = {r["id"]: r.get("annual_factor", 1.0) for r in _records(res.periods)}
    streams = _streams(res)
    recs = _records(ind)
    by = {}
    for r in recs:
        by.setdefault((r["indicator"], r["stream"] or ""), {})[r["period"]] = r
    keys = [("energy", ""), ("electricity", ""), ("water", "")]
    mats = sorted({s for (i, s) in by if i == "material" and s}, key=lambda s: list(streams).index(s)
                  if s in streams else 999)
    have_water = ("water", "") in by
    for s in mats:
        if have_water and streams.get(s, {}).get("kind") in ("water",):
            continue
        keys.append(("material", s))
    keys += [("wastewater", ""), ("solid_waste", ""), ("hazardous_waste", ""), ("co2_total", "")]
    panels = []
    for key in keys:
        rows = by.get(key)
        if not rows:
            continue
        vals, unit = [], ""
        for p in periods:
            r = rows.get(p)
            if r is None:
                vals.append(math.nan)
                continue
            if specific:
                vals.append(float(r["specific"]) if r["specific"] == r["specific"] else math.nan)
                unit = unit or r["specific_unit"]
            else:
                vals.append(float(r["value"]) * float(annual.get(p, 1.0)))
                unit = unit or (r["unit"] + "/yr")
        finite = [v for v in vals if v == v]
        if not finite or all(v == 0 for v in finite):
            continue
        # readable units: kg instead of t for small quantities, MWh for large kWh
        if unit.startswith("t/") and max(abs(v) for v in finite) < 0.5:
            vals, unit = [v * 1000 for v in vals], "kg/" + unit[2:]
        elif unit.startswith("kWh") and not specific and max(abs(v) for v in finite) >= 1e5:
            vals, unit = [v / 1000 for v in vals], "MWh" + unit[3:]
        ind_name, stream = key
        if ind_name == "material":
            label = _name(streams.get(stream, {"id": stream}), lang)
        else:
            label = _t(lang, ind_name) if ind_name in T["en"] else ind_name
        panels.append((label, _unit(unit, lang), vals))
    return panels, periods


def before_after(res, lang: str = "en", specific: bool = True):
    """Baseline against each monitoring period, per resource: small multiples with % change.

    One panel per indicator of ``res.indicators``: energy [GJ], electricity [kWh], fresh water
    [m³], each main material, wastewater, solid and hazardous waste and CO₂e; per unit of the
    reference product when ``specific`` (the official yardstick), else annualised totals
    (value × the period's annual factor). With no monitoring period the baseline is shown alone
    and the chart says that results are expected. Returns None when there are no indicators.
    """
    with style():
        panels, periods = _before_after_rows(res, lang, specific)
        if not panels:
            return None
        n = len(panels)
        ncol = n if n <= 4 else 4 if n <= 8 else 5
        nrow = math.ceil(n / ncol)
        width = FULL_W
        only_base = len(periods) == 1
        prod = ""
        if specific:
            ref = res.ws.facility.get("reference_product") or ""
            sr = _streams(res).get(ref, {"id": ref})
            prod = _name(sr, lang)
        title = _t(lang, "before_after_specific" if specific else "before_after_absolute")
        sub = _t(lang, "annualised") if not specific else (
            ("Sản phẩm chuẩn: " if lang == "vi" else "Reference product: ") + prod)
        if only_base:
            sub += "  " + _t(lang, "expected")
        panel_h = 4.0
        legend_h = 0.55
        fig = _figure(width, 1.0)  # height set below
        head = 0.25 + line_height(TITLE) * PT_CM * _lines(wrap(title, (width - 0.4) / PT_CM, TITLE, 2, True)) \
            + 0.1 + line_height(SMALL) * PT_CM * _lines(wrap(sub, (width - 0.4) / PT_CM, SMALL, 3)) + 0.25
        height = head + legend_h + nrow * panel_h + 0.2
        fig.set_size_inches(width * CM, height * CM)
        _title(fig, title, sub)
        # legend: one patch per period
        labels = [(_t(lang, "baseline_p") + ": " + _period_label(res, periods[0], lang), BASE)]
        for i, p in enumerate(periods[1:]):
            labels.append((_t(lang, "monitoring_p") + ": " + _period_label(res, p, lang), AFTER[i % len(AFTER)]))
        x = 0.2
        y = height - head - 0.3
        for text, colour in labels:
            text = wrap(text, 7.5 / PT_CM, SMALL, 1)
            fig.patches.append(matplotlib.patches.Rectangle(
                (x / width, (y - 0.12) / height), 0.3 / width, 0.25 / height, transform=fig.transFigure,
                facecolor=colour, edgecolor="none"))
            fig.text((x + 0.4) / width, y / height, text, va="center", ha="left", fontsize=SMALL, color=INK)
            x += 0.4 + text_width(text, SMALL) * PT_CM + 0.6
        col_w = (width - 0.3) / ncol
        top0 = height - head - legend_h
        nper = len(periods)
        # one canvas in cm for all panels: one axes is far cheaper than one per panel
        cv = fig.add_axes([0, 0, 1, 1])
        cv.set_xlim(0, width)
        cv.set_ylim(0, height)
        cv.set_axis_off()
        from matplotlib.patches import Rectangle

        colours = [BASE] + [AFTER[i % len(AFTER)] for i in range(nper - 1)]
        lh_s = line_height(SMALL) * PT_CM
        for k, (label, unit, vals) in enumerate(panels):
            r, c = divmod(k, ncol)
            left = 0.25 + c * col_w + 0.1
            pw = col_w - 0.45
            top = top0 - r * panel_h
            name = wrap(label, pw / PT_CM, SIZE, 2, bold=True)
            name_h = _lines(name) * line_height(SIZE) * PT_CM
            cv.text(left, top - 0.15, name, ha="left", va="top", fontsize=SIZE, weight="bold")
            cv.text(left, top - 0.15 - name_h, unit, ha="left", va="top", fontsize=SMALL, color=MUTED)
            y0 = top - panel_h + 0.3  # bar base line
            y1 = top - 0.15 - name_h - lh_s - 0.15 - 2 * lh_s  # room for the two labels above
            heights = [v if v == v else 0.0 for v in vals]
            vmax = max([abs(v) for v in heights] + [1e-12])
            slot = pw / max(nper, 2)
            bw = slot * 0.62
            x_first = left + (pw - slot * nper) / 2
            cv.plot([left, left + pw], [y0, y0], color=LIGHT, lw=0.6, solid_capstyle="butt")
            base_v = vals[0]
            for i, v in enumerate(vals):
                xc = x_first + slot * (i + 0.5)
                if v != v:
                    cv.text(xc, y0 + 0.05, "—", ha="center", va="bottom", fontsize=SMALL, color=MUTED)
                    continue
                h = max(v, 0.0) / vmax * (y1 - y0)
                cv.add_patch(Rectangle((xc - bw / 2, y0), bw, h, facecolor=colours[i], edgecolor="none"))
                ty = y0 + h + 0.06
                cv.text(xc, ty, _fmt(v, lang), ha="center", va="bottom", fontsize=SMALL, color=INK)
                if i > 0 and base_v == base_v and base_v != 0:
                    ch = 100.0 * (v - base_v) / abs(base_v)
                    colour = GOOD if ch < 0 else BAD if ch > 0 else MUTED
                    cv.text(xc, ty + lh_s, _pct(ch, lang), ha="center", va="bottom", fontsize=SMALL,
                            color=colour, weight="bold")
            if only_base:
                xc = x_first + slot * 1.5
                cv.add_patch(Rectangle((xc - bw / 2, y0), bw, (y1 - y0) * 0.5, facecolor="none",
                                       edgecolor=LIGHT, lw=0.6, linestyle=(0, (2, 2))))
                cv.text(xc, y0 + (y1 - y0) * 0.25, "?", ha="center", va="center", fontsize=SIZE, color=LIGHT)
        return fig


# ----------------------------------------------------------------------------------------------
# 2. options: savings and payback


def _option_title(r: dict, lang: str) -> str:
    title = _name(r, lang, "title")
    return f"{r['id']}  {title}" if title and title != r["id"] else str(r["id"])


def _screening_label(s: str, lang: str) -> str:
    try:
        from cpa.schema import choices

        for c in choices("screening"):
            if c.id == s:
                text = c.vi if lang == "vi" else c.en
                return text[:1].upper() + text[1:]
    except Exception:  # noqa: BLE001 - a label is never worth a crash
        pass
    return str(s)


def savings_by_option(res, lang: str = "en"):
    """Net annual savings of each option [million VND/yr], sorted, as horizontal bars.

    Bars are the stand-alone net savings (savings − added operating cost) of
    ``res.options``, coloured by screening (implement now / study further / rejected); the note
    under the chart gives the combined total of the options not rejected, without double
    counting (``combined_net_saving_vnd_per_yr``). Returns None when there are no options.
    """
    opts = res.options
    if _is_empty(opts) or "net_saving_vnd_per_yr" not in opts.columns:
        return None
    with style():
        rows = _records(opts)
        rows.sort(key=lambda r: (-(r["net_saving_vnd_per_yr"] if r["net_saving_vnd_per_yr"] == r["net_saving_vnd_per_yr"]
                                   else -math.inf)))
        width = FULL_W
        label_w = 7.2
        labels = [wrap(_option_title(r, lang), (label_w - 0.3) / PT_CM, SMALL, 2) for r in rows]
        row_h = [max(0.62, _lines(lb) * line_height(SMALL) * PT_CM + 0.22) for lb in labels]
        title = _t(lang, "savings_title")
        inc = [r for r in rows if r.get("included", True)]
        comb = sum(r.get("combined_net_saving_vnd_per_yr", 0.0) or 0.0 for r in inc
                   if r.get("combined_net_saving_vnd_per_yr") == r.get("combined_net_saving_vnd_per_yr"))
        sub = _t(lang, "combined", v=_fmt(comb / 1e6, lang, 0))
        head = 1.35
        legend_h = 0.5
        bottom = 0.95
        height = head + legend_h + sum(row_h) + bottom
        fig = _figure(width, height)
        _title(fig, title, sub)
        ax = _axes_cm(fig, label_w, bottom, 1.4, head + legend_h)
        ys, y = [], 0.0
        for h in row_h:
            ys.append(y + h / 2)
            y += h
        total_h = y
        vals = [r["net_saving_vnd_per_yr"] / 1e6 if r["net_saving_vnd_per_yr"] == r["net_saving_vnd_per_yr"]
                else math.nan for r in rows]
        colours = [SCREENING_COLOURS.get(r.get("screening"), BASE) for r in rows]
        finite = [v for v in vals if v == v]
        vmax = max([abs(v) for v in finite] + [1.0])
        vmin = min(finite + [0.0])
        bars = ax.barh(ys, [v if v == v else 0.0 for v in vals], height=[0.62 * h if h < 0.8 else 0.45
                                                                          for h in row_h],
                       color=colours, edgecolor="none", zorder=2)
        for b, r in zip(bars, rows, strict=True):
            if r.get("screening") == "reject":
                b.set_hatch("////")
                b.set_edgecolor("#8a8a8a")
                b.set_linewidth(0)
        ax.set_ylim(total_h, 0)
        ax.set_xlim(min(0.0, vmin * 1.15), vmax * 1.16)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=SMALL)
        ax.tick_params(axis="y", length=0, pad=4)
        ax.spines["left"].set_visible(False)
        ax.xaxis.set_major_formatter(number_formatter(lang))
        ax.grid(axis="x", zorder=0)
        ax.set_axisbelow(True)
        ax.set_xlabel(_t(lang, "savings_axis"), fontsize=SMALL, color=MUTED)
        for yv, v in zip(ys, vals, strict=True):
            if v == v:
                ax.text(v + vmax * 0.012 if v >= 0 else v - vmax * 0.012, yv, _fmt(v, lang, 0 if abs(v) >= 10 else 1),
                        ha="left" if v >= 0 else "right", va="center", fontsize=SMALL, color=INK)
            else:
                ax.text(vmax * 0.012, yv, _t(lang, "not_valued"), ha="left", va="center", fontsize=SMALL,
                        color=MUTED, style="italic")
        # legend of screening
        present = [s for s in ("implement_now", "study_further", "reject") if any(r.get("screening") == s for r in rows)]
        x = label_w
        for s in present:
            fig.patches.append(matplotlib.patches.Rectangle(
                (x / width, (height - head - 0.4) / height), 0.3 / width, 0.22 / height,
                transform=fig.transFigure, facecolor=SCREENING_COLOURS[s], edgecolor="#8a8a8a" if s == "reject" else "none",
                hatch="////" if s == "reject" else None, linewidth=0))
            t = _screening_label(s, lang)
            fig.text((x + 0.4) / width, (height - head - 0.29) / height, t, va="center", fontsize=SMALL)
            x += 0.4 + text_width(t, SMALL) * PT_CM + 0.6
        return fig


def _place_labels(ax, points, texts, radii_pt, size=SMALL):
    """Place one short label per point beside its marker so that no label overlaps another
    label or a marker; returns the chosen (dx, dy) offsets [pt] in the order of points."""
    fig = ax.figure
    ppp = fig.dpi / 72.0  # pixels per point
    xy = ax.transData.transform(points)
    boxes = []
    circles = [(px, py, r * ppp) for (px, py), r in zip(xy, radii_pt, strict=True)]
    bbox_ax = ax.get_window_extent()
    out = []

    def overlaps(b):
        x0, y0, x1, y1 = b
        if x0 < bbox_ax.x0 or x1 > bbox_ax.x1 or y0 < bbox_ax.y0 or y1 > bbox_ax.y1:
            return 10.0
        s = 0.0
        for (a0, b0, a1, b1) in boxes:
            w = min(x1, a1) - max(x0, a0)
            h = min(y1, b1) - max(y0, b0)
            if w > 0 and h > 0:
                s += w * h
        for cx, cy, cr in circles:
            nx, ny = min(max(cx, x0), x1), min(max(cy, y0), y1)
            if (nx - cx) ** 2 + (ny - cy) ** 2 < cr ** 2:
                s += 1.0 + cr
        return s

    order = sorted(range(len(points)), key=lambda i: -radii_pt[i])
    chosen = [None] * len(points)
    for i in order:
        px, py = xy[i]
        r = radii_pt[i] * ppp + 2 * ppp
        w = text_width(texts[i], size) * ppp
        h = size * 1.2 * ppp
        cands = []
        for ang in (0, 180, 90, 270, 45, 135, 315, 225):
            a = math.radians(ang)
            cx, cy = px + math.cos(a) * r, py + math.sin(a) * r
            # anchor the box on the side facing the marker
            x0 = cx if math.cos(a) > 0.3 else cx - w if math.cos(a) < -0.3 else cx - w / 2
            y0 = cy if math.sin(a) > 0.3 else cy - h if math.sin(a) < -0.3 else cy - h / 2
            cands.append((x0, y0, x0 + w, y0 + h))
        for far in (1.8, 2.8):
            for ang in (0, 180, 90, 270):
                a = math.radians(ang)
                cx, cy = px + math.cos(a) * r * far + math.cos(a) * 6 * ppp, py + math.sin(a) * r * far
                x0 = cx if math.cos(a) > 0.3 else cx - w if math.cos(a) < -0.3 else cx - w / 2
                y0 = cy if math.sin(a) > 0.3 else cy - h if math.sin(a) < -0.3 else cy - h / 2
                cands.append((x0, y0, x0 + w, y0 + h))
        best = min(cands, key=lambda b: (overlaps(b) > 0, overlaps(b), cands.index(b)))
        boxes.append(best)
        chosen[i] = best
    for (px, py), b in zip(xy, chosen, strict=True):
        out.append((((b[0] + b[2]) / 2 - px) / ppp, ((b[1] + b[3]) / 2 - py) / ppp))
    return out


def payback_vs_investment(res, lang: str = "en", buckets=(1, 2, 3)):
    """Simple payback [yr] against investment net of grants [million VND, log scale]; bubble
    area = net annual savings; payback buckets < 1, 1–2, 2–3, > 3 years shaded.

    Options whose savings are not valued are listed under the chart; a payback beyond the axis
    (or "never") is drawn at the top edge with its value. Returns None without options.
    """
    opts = res.options
    if _is_empty(opts) or "payback_yr" not in opts.columns:
        return None
    with style():
        rows = _records(opts)
        shown = [r for r in rows if r.get("payback_yr") == r.get("payback_yr")]
        hidden = [str(r["id"]) for r in rows if r not in shown]
        width, height = FULL_W, 10.5
        fig = _figure(width, height)
        sub = _t(lang, "bubble") + ("  ·  " + _t(lang, "omitted", ids=", ".join(hidden)) if hidden else "")
        head = _title(fig, _t(lang, "payback_title"), sub)
        ax = _axes_cm(fig, 1.5, 1.15, 1.6, head + 0.95)
        if not shown:
            ax.set_axis_off()
            ax.text(0.5, 0.5, _t(lang, "no_options"), transform=ax.transAxes, ha="center", va="center",
                    color=MUTED)
            return fig
        inv = [max(float(r.get("net_investment_vnd", r.get("investment_vnd", 0.0)) or 0.0), 0.0) / 1e6 for r in shown]
        pos = [v for v in inv if v > 0]
        lo = 10 ** math.floor(math.log10(min(pos))) if pos else 1.0
        hi = 10 ** math.ceil(math.log10(max(pos))) if pos else 10.0
        if hi <= lo:
            hi = lo * 10
        xs = [v if v > 0 else lo * 1.0 for v in inv]
        pb = [float(r["payback_yr"]) for r in shown]
        finite = [p for p in pb if math.isfinite(p)]
        top = max(buckets[-1] + 1.0, min(max(finite + [0.0]) * 1.15, buckets[-1] * 2.5 + 0.5))
        top = math.ceil(top)
        ys = [p if math.isfinite(p) and p <= top else top for p in pb]
        sav = [max(float(r.get("net_saving_vnd_per_yr") or 0.0), 0.0) for r in shown]
        smax = max(sav + [1.0])
        area = [30 + 900 * s / smax for s in sav]  # pt²
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.6, hi * 1.6)
        ax.set_ylim(-top * 0.03, top * 1.04)
        edges = [0, *buckets, top * 1.04]
        for i in range(len(edges) - 1):
            ax.axhspan(edges[i], edges[i + 1], color=BUCKET_COLOURS[min(i, len(BUCKET_COLOURS) - 1)], zorder=0, lw=0)
            if i == 0:
                lab = _t(lang, "lt", a=_fmt(buckets[0], lang, 0))
            elif i == len(edges) - 2:
                lab = _t(lang, "gt", a=_fmt(buckets[-1], lang, 0))
            else:
                lab = _t(lang, "years", a=_fmt(edges[i], lang, 0), b=_fmt(edges[i + 1], lang, 0))
            ax.text(1.01, (edges[i] + min(edges[i + 1], top * 1.04)) / 2, lab, transform=ax.get_yaxis_transform(),
                    ha="left", va="center", fontsize=SMALL, color=MUTED)
        colours = [SCREENING_COLOURS.get(r.get("screening"), BASE) for r in shown]
        ax.scatter(xs, ys, s=area, c=colours, edgecolors="white", linewidths=0.6, zorder=3, alpha=0.92,
                   clip_on=False)
        ax.xaxis.set_major_formatter(number_formatter(lang, decimals=0))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_major_formatter(number_formatter(lang))
        ax.set_xlabel(_t(lang, "investment_axis"), fontsize=SMALL, color=MUTED)
        ax.set_ylabel(_t(lang, "payback_axis"), fontsize=SMALL, color=MUTED)
        ax.grid(axis="both", which="major", zorder=1, color="white", lw=0.8)
        texts = []
        for r, p, x in zip(shown, pb, inv, strict=True):
            t = str(r["id"])
            if not math.isfinite(p):
                t += " (" + _t(lang, "never") + ")"
            elif p > top:
                t += " (" + _fmt(p, lang, 1) + (" năm)" if lang == "vi" else " yr)")
            if x <= 0:
                t += " (" + _t(lang, "zero_inv") + ")"
            texts.append(t)
        radii = [math.sqrt(a / math.pi) for a in area]
        offs = _place_labels(ax, list(zip(xs, ys, strict=True)), texts, radii)
        for (x, y), t, (dx, dy) in zip(zip(xs, ys, strict=True), texts, offs, strict=True):
            ax.annotate(t, (x, y), xytext=(dx, dy), textcoords="offset points", ha="center", va="center",
                        fontsize=SMALL, color=INK, zorder=5)
        # legend in one row under the title: screening colours, then two reference bubbles
        present = [s for s in ("implement_now", "study_further", "reject") if any(r.get("screening") == s for r in shown)]
        cv = fig.add_axes([0, 0, 1, 1], zorder=-1)
        cv.set_xlim(0, width)
        cv.set_ylim(0, height)
        cv.set_axis_off()
        x, yl = 1.5, height - head - 0.4
        for s_ in present:
            cv.scatter([x + 0.12], [yl], s=40, color=SCREENING_COLOURS[s_], edgecolors="white", linewidths=0.5)
            t = _screening_label(s_, lang)
            cv.text(x + 0.35, yl, t, va="center", fontsize=SMALL)
            x += 0.35 + text_width(t, SMALL) * PT_CM + 0.5
        unit = " tr.đ/năm" if lang == "vi" else " M VND/yr"
        for frac in (0.5, 0.1):
            a_ = 30 + 900 * frac
            r_cm = math.sqrt(a_ / math.pi) * PT_CM
            cv.scatter([x + r_cm], [yl], s=a_, facecolors="none", edgecolors=LIGHT, linewidths=0.6, clip_on=False)
            t = _fmt(smax * frac / 1e6, lang, 0) + unit
            cv.text(x + 2 * r_cm + 0.15, yl, t, va="center", fontsize=SMALL, color=MUTED)
            x += 2 * r_cm + 0.15 + text_width(t, SMALL) * PT_CM + 0.5
        return fig


# ----------------------------------------------------------------------------------------------
# 3. cost of waste streams (Pareto)


def waste_pareto(res, lang: str = "en", period=None, max_bars: int = 10):
    """Pareto of the annual cost of waste streams [million VND/yr] with the cumulative share.

    From ``res.waste_costs`` for ``period`` (default: the baseline). A stream whose cost is a
    lower bound (a price missing) is hatched and its value marked ``≥``; streams beyond
    ``max_bars`` are grouped as "other". Returns None when there are no waste costs.
    """
    wc = res.waste_costs
    if _is_empty(wc):
        return None
    period = period or res.baseline
    rows = [r for r in _records(wc) if r["period"] == period]
    if not rows:
        return None
    with style():
        rows.sort(key=lambda r: -(r["annual_total_vnd"] if r["annual_total_vnd"] == r["annual_total_vnd"] else -1))
        if len(rows) > max_bars:
            rest = rows[max_bars - 1:]
            other = {"name_vi": _t("vi", "other_n", n=len(rest)), "name_en": _t("en", "other_n", n=len(rest)),
                     "annual_total_vnd": sum(max(r["annual_total_vnd"], 0) for r in rest if r["annual_total_vnd"] == r["annual_total_vnd"]),
                     "complete": all(bool(r["complete"]) for r in rest), "stream": "other"}
            rows = rows[:max_bars - 1] + [other]
        vals = [max(r["annual_total_vnd"], 0.0) / 1e6 if r["annual_total_vnd"] == r["annual_total_vnd"] else 0.0 for r in rows]
        total = sum(vals)
        cum, acc = [], 0.0
        for v in vals:
            acc += v
            cum.append(100.0 * acc / total if total > 0 else math.nan)
        n = len(rows)
        width = FULL_W
        left, right = 1.7, 1.75
        slot = (width - left - right) / n
        size = SMALL if slot >= 1.35 else 6.0
        names = [wrap(_name(r, lang), (slot - 0.12) / PT_CM, size, 4) for r in rows]
        lab_h = max(_lines(s) for s in names) * line_height(size) * PT_CM + 0.25
        incomplete = any(not bool(r["complete"]) for r in rows)
        sub = _t(lang, "lower_bound") if incomplete else ""
        title = _t(lang, "pareto_title", period=_period_label(res, period, lang))
        height = 9.0 + lab_h
        fig = _figure(width, height)
        head = _title(fig, title, sub)
        ax = _axes_cm(fig, left, lab_h + 0.25, right, head + 0.35)
        xs = list(range(n))
        bars = ax.bar(xs, vals, width=0.68, color=AFTER[0], edgecolor="none", zorder=2)
        for b, r in zip(bars, rows, strict=True):
            if not bool(r["complete"]):
                b.set_facecolor(AFTER[2])
                b.set_hatch("////")
        vmax = max(vals + [1e-9])
        ax.set_ylim(0, vmax * 1.15)
        ax.set_xlim(-0.55, n - 0.45)
        ax.set_xticks(xs)
        ax.set_xticklabels(names, fontsize=size, linespacing=1.05)
        ax.tick_params(axis="x", length=0, pad=3)
        ax.yaxis.set_major_formatter(number_formatter(lang))
        ax.set_ylabel(_t(lang, "pareto_axis"), fontsize=SMALL, color=MUTED)
        ax.grid(axis="y", zorder=0)
        ax.set_axisbelow(True)
        for x, v, r in zip(xs, vals, rows, strict=True):
            t = _fmt(v, lang, 0 if v >= 10 else 1)
            if not bool(r["complete"]):
                t = "≥ " + t
            ax.text(x, v + vmax * 0.012, t, ha="center", va="bottom", fontsize=size, color=INK, zorder=4)
        ax2 = ax.twinx()
        ax2.set_position(ax.get_position())
        ax2.plot(xs, cum, color=ACCENT, lw=1.2, marker="o", markersize=3, zorder=5)
        ax2.axhline(80, color=ACCENT, lw=0.6, ls=(0, (3, 3)), zorder=1)
        ax2.set_ylim(0, 115)
        ax2.set_yticks([0, 20, 40, 60, 80, 100])
        ax2.yaxis.set_major_formatter(percent_formatter(lang))
        ax2.spines["right"].set_visible(True)
        ax2.spines["top"].set_visible(False)
        ax2.spines["left"].set_visible(False)
        ax2.spines["bottom"].set_visible(False)
        ax2.set_ylabel(_t(lang, "cumulative"), fontsize=SMALL, color=ACCENT)
        ax2.tick_params(axis="y", colors=ACCENT)
        return fig


# ----------------------------------------------------------------------------------------------
# process order (shared by the Sankey and the flow chart)


def _best_order(steps: list, w: dict) -> list:
    """The order of ``steps`` with the least weight of edges running backwards (an exact
    dynamic programme over subsets for up to 14 steps, else moves of single steps); ties go to
    the order of the steps table."""
    n = len(steps)
    pos0 = {s: i for i, s in enumerate(steps)}
    if n <= 1:
        return list(steps)
    if n <= 14:
        idx = {s: i for i, s in enumerate(steps)}
        into = [[0.0] * n for _ in range(n)]  # into[v][u]: weight of u -> v
        for (a, b), v in w.items():
            into[idx[b]][idx[a]] += v
        full = (1 << n) - 1
        cost = {0: (0.0, [])}
        for mask in range(full + 1):
            if mask not in cost:
                continue
            c, seq = cost[mask]
            p = len(seq)
            for v in range(n):
                if mask & (1 << v):
                    continue
                nm = mask | (1 << v)
                # edges from steps placed later (not in nm) into v run backwards
                back = sum(into[v][u] for u in range(n) if not nm & (1 << u))
                nc = c + back + 1e-6 * abs(p - v)
                if nm not in cost or nc < cost[nm][0] - 1e-12:
                    cost[nm] = (nc, seq + [v])
        return [steps[i] for i in cost[full][1]]
    order = list(steps)

    def backward(o):
        pos = {s: i for i, s in enumerate(o)}
        return sum(v for (a, b), v in w.items() if pos[a] > pos[b])

    for _ in range(3):
        changed = False
        for s in list(order):
            best, best_o = backward(order), None
            rest = [x for x in order if x != s]
            for i in range(len(rest) + 1):
                o = rest[:i] + [s] + rest[i:]
                c = backward(o)
                if c < best - 1e-12:
                    best, best_o = c, o
            if best_o is not None:
                order, changed = best_o, True
        if not changed:
            break
    return sorted(order, key=lambda s: order.index(s)) if order else [s for s in steps if s in pos0]


def _step_graph(res, layer: str | None = None):
    """Steps in process order, edge weights between steps and each step's column.

    Weights: 10 per link of the links table and 1 per stream flowing between two steps; for a
    Sankey of ``layer``, the layer's flows between steps instead (up to 100, by quantity over
    all periods, so that the before and after diagrams share one layout) with 1 per link to
    break ties. The order is the one with the least
    weight running backwards (a boiler listed last moves in front of the steps it feeds);
    columns are the longest path along forward edges, so parallel steps share a column.
    """
    steps = [str(s) for s in res.ws.tables["steps"]["id"].tolist()]
    idx = set(steps)
    w: dict = {}
    for r in _records(res.ws.tables.get("links")):
        a, b = r.get("from"), r.get("to")
        if a in idx and b in idx and a != b:
            w[(a, b)] = w.get((a, b), 0.0) + (1.0 if layer else 10.0)
    f = res.flows
    if not _is_empty(f) and not layer:
        seen = set()
        for a, b, s in zip(f["from"], f["to"], f["stream"], strict=True):
            if a in idx and b in idx and a != b and (a, b, s) not in seen:
                seen.add((a, b, s))
                w[(a, b)] = w.get((a, b), 0.0) + 1.0
    if layer:
        tot: dict = {}
        for p in res.periods["id"].tolist():
            for _, _, a, b, v in _layer_flows(res, layer, p):
                if a in idx and b in idx and a != b:
                    tot[(a, b)] = tot.get((a, b), 0.0) + v
        top = max(list(tot.values()) + [0.0])
        for key, v in tot.items():
            w[key] = w.get(key, 0.0) + 100.0 * v / top
    order = _best_order(steps, w)
    pos = {s: i for i, s in enumerate(order)}
    col = {}
    for s in order:
        preds = [col[a] for (a, b) in w if b == s and pos[a] < pos[s]]
        col[s] = max(preds) + 1 if preds else 0
    return order, w, col


def _layer_flows(res, layer: str, period):
    """Flows of one layer and period: (stream, kind, from, to, value) rows, value > 0."""
    from cpa.quantities import ENERGY_KINDS, MASS_KINDS, WATER_KINDS

    f = res.flows
    col = {"mass": "mass_t", "water": "water_m3", "energy": "energy_gj"}[layer]
    water_in_mass = bool(res.ws.facility.get("water_in_mass_balance"))
    out = []
    for r in _records(f):
        if r["period"] != period:
            continue
        v = r.get(col)
        if v is None or v != v or v <= 0:
            continue
        k = r["kind"]
        if layer == "mass" and k not in MASS_KINDS + (WATER_KINDS if water_in_mass else ()):
            continue
        if layer == "energy" and k not in ENERGY_KINDS + ("loss",):
            continue
        out.append((r["stream"], k, r["from"] or None, r["to"] or None, float(v)))
    return out


# ----------------------------------------------------------------------------------------------
# 4. Sankey


def _bezier_band(ax, x0, y0a, y0b, x1, y1a, y1b, colour, alpha=0.5):
    """A band from the right edge [y0b, y0a] at x0 to the left edge [y1b, y1a] at x1 (a > b)."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    mx = (x0 + x1) / 2
    verts = [(x0, y0a), (mx, y0a), (mx, y1a), (x1, y1a), (x1, y1b), (mx, y1b), (mx, y0b), (x0, y0b), (x0, y0a)]
    codes = [Path.MOVETO, Path.CURVE4, Path.CURVE4, Path.CURVE4, Path.LINETO, Path.CURVE4, Path.CURVE4,
             Path.CURVE4, Path.CLOSEPOLY]
    ax.add_patch(PathPatch(Path(verts, codes), facecolor=colour, edgecolor="none", alpha=alpha, zorder=1))


def sankey(res, lang: str = "en", layer: str = "water", period=None, threshold: float = 0.015):
    """Sankey diagram of one layer (``mass`` [t], ``water`` [m³], ``energy`` [GJ]) in one period.

    Columns: inputs from outside (one node per stream) on the left, process steps in process
    order, outputs (products, wastes, losses per stream) on the right. Band widths are
    proportional to the quantity in the period. A step whose balance (``res.balances``) shows an
    unaccounted gap sends it to an "unaccounted" node. Inputs and outputs below ``threshold`` of
    the layer's total are grouped as "other". Returns None when the layer has no flows.
    """
    period = period or res.baseline
    flows = _layer_flows(res, layer, period)
    if not flows:
        return None
    with style():
        return _sankey(res, lang, layer, period, flows, threshold)


def _sankey(res, lang, layer, period, flows, threshold):
    streams = _streams(res)
    order, _, col = _step_graph(res, layer)
    steps_tab = {r["id"]: r for r in _records(res.ws.tables["steps"])}
    unit = {"mass": "t", "water": "m³", "energy": "GJ"}[layer]
    # -- totals per boundary stream; small ones grouped
    src_tot, sink_tot = {}, {}
    for s, _k, a, b, v in flows:
        if a is None and b is not None:
            src_tot[s] = src_tot.get(s, 0.0) + v
        if b is None and a is not None:
            sink_tot[s] = sink_tot.get(s, 0.0) + v
    # unaccounted gaps of steps, read from the balances
    gaps = {}
    bal = res.balances
    if not _is_empty(bal):
        for r in _records(bal):
            if r["period"] == period and r["layer"] == layer and r["node"] in steps_tab:
                g = r.get("unknown_loss")
                if g is not None and g == g and g > 0:
                    gaps[r["node"]] = float(g)
    total_in = sum(src_tot.values()) or 1.0
    total_out = sum(sink_tot.values()) + sum(gaps.values())
    scale_tot = max(total_in, total_out, 1e-12)

    def group(tot, max_n=9):
        keep = sorted(tot, key=lambda s: -tot[s])
        small = [s for s in keep if tot[s] < threshold * scale_tot]
        while len(keep) - len(small) > max_n:
            small.append([s for s in keep if s not in small][-1])
        if len(small) < 2:
            small = []
        return {s: ("__other__" if s in small else s) for s in tot}

    src_map, sink_map = group(src_tot), group(sink_tot)
    used_steps = {a for _, _, a, _, _ in flows if a in steps_tab} | {b for _, _, _, b, _ in flows if b in steps_tab}
    ordered = [s for s in order if s in used_steps]
    if not ordered:
        return None
    # compact step columns
    cols_used = sorted({col[s] for s in ordered})
    cidx = {c: i for i, c in enumerate(cols_used)}
    ncol = len(cols_used)
    # -- edges: (src_node, dst_node, value, kind, back)
    edges = []
    kind_of = {}
    for s, k, a, b, v in flows:
        src = ("in", src_map[s]) if a is None else ("step", a)
        dst = ("out", sink_map[s]) if b is None else ("step", b)
        if src[0] == "in":
            kind_of.setdefault(src, k if src[1] != "__other__" else "intermediate")
        if dst[0] == "out":
            kind_of.setdefault(dst, k if dst[1] != "__other__" else "intermediate")
        edges.append([src, dst, v, k])
    for s, g in gaps.items():
        edges.append([("step", s), ("out", "__unaccounted__"), g, "unaccounted"])
        kind_of[("out", "__unaccounted__")] = "unaccounted"
    # merge parallel edges of the same kind between the same nodes
    merged = {}
    for src, dst, v, k in edges:
        key = (src, dst, k)
        merged[key] = merged.get(key, 0.0) + v
    edges = [(src, dst, v, k) for (src, dst, k), v in merged.items()]
    nodes_in = {}
    nodes_out = {}
    for src, dst, v, _ in edges:
        nodes_out[src] = nodes_out.get(src, 0.0) + v
        nodes_in[dst] = nodes_in.get(dst, 0.0) + v
    node_val = {n: max(nodes_in.get(n, 0.0), nodes_out.get(n, 0.0)) for n in set(nodes_in) | set(nodes_out)}

    def label_of(node):
        kind, key = node
        if kind == "step":
            return _name(steps_tab.get(key, {"id": key}), lang)
        if key == "__other__":
            return _t(lang, "other_in" if kind == "in" else "other_out")
        if key == "__unaccounted__":
            return _t(lang, "unaccounted")
        return _name(streams.get(key, {"id": key}), lang)

    # -- geometry [cm]
    width = FULL_W
    lsize = SMALL
    srcs = [n for n in node_val if n[0] == "in"]
    sinks = [n for n in node_val if n[0] == "out"]
    side_w = 3.3
    src_labels = {n: wrap(label_of(n), (side_w - 0.2) / PT_CM, lsize, 2) + "\n" + _fmt(node_val[n], lang) + " " + unit
                  for n in srcs}
    sink_labels = {n: wrap(label_of(n), (side_w - 0.2) / PT_CM, lsize, 2) + "\n" + _fmt(node_val[n], lang) + " " + unit
                   for n in sinks}
    left_w = min(side_w, max([max(text_width(x, lsize) for x in t.split("\n")) * PT_CM for t in src_labels.values()] + [1.0]) + 0.25)
    right_w = min(side_w, max([max(text_width(x, lsize) for x in t.split("\n")) * PT_CM for t in sink_labels.values()] + [1.0]) + 0.25)
    bar = 0.16
    x_src = left_w
    x_sink = width - right_w - bar
    total_cols = ncol + 2
    spacing = (x_sink - x_src) / (total_cols - 1)
    step_x = {s: x_src + spacing * (cidx[col[s]] + 1) for s in ordered}
    ssize = lsize if spacing >= 2.3 else 6.0
    step_labels = {s: wrap(label_of(("step", s)), (spacing - 0.12) / PT_CM, ssize, 3, bold=True) for s in ordered}
    lh = line_height(lsize) * PT_CM
    title = _t(lang, "sankey_title", layer=_t(lang, {"mass": "mass", "water": "water_layer",
                                                      "energy": "energy_layer"}[layer]).capitalize() if lang == "en"
               else _t(lang, {"mass": "mass", "water": "water_layer", "energy": "energy_layer"}[layer]),
               period=_period_label(res, period, lang))
    if lang == "en":
        title = title[:1].upper() + title[1:]
    thr = _pct(threshold * 100, lang, 1, sign=False)
    sub = _t(lang, "sankey_sub", unit=unit, thr=thr)
    height = 12.0
    fig = _figure(width, height)
    head = _title(fig, title, sub)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    y_top = height - head - 0.1
    n_back = sum(1 for _, _, a, b, _ in flows if a in col and b in col and a != b and col[b] <= col[a])
    y_bot = 0.25 + (0.2 + 0.12 * min(n_back, 4) if n_back else 0.0)
    avail = y_top - y_bot
    gap = 0.22
    # column contents
    columns = [srcs] + [[("step", s) for s in ordered if cidx[col[s]] == i] for i in range(ncol)] + [sinks]

    def slot(n, k):
        h = node_val[n] * k
        if n[0] == "step":
            return h + _lines(step_labels[n[1]]) * lh + 0.06
        lab = src_labels.get(n) or sink_labels.get(n)
        return max(h, _lines(lab) * lh)

    def need(k, cols):
        return max(sum(slot(n, k) for n in c) + gap * max(len(c) - 1, 0) for c in cols if c)

    def solve(cols):
        lo_k, hi_k = 0.0, avail / max(node_val.values())
        for _ in range(40):
            mid = (lo_k + hi_k) / 2
            if need(mid, cols) <= avail:
                lo_k = mid
            else:
                hi_k = mid
        return max(lo_k, 1e-9)

    k = solve(columns)
    # A staircase (steps stacked top to bottom in process order, each in its column) lets
    # inputs pass under the earlier steps and outputs over the later ones without crossing a
    # node: used when most of the layer passes through one step only (flows that fan out from
    # one supply, like water), or when it costs little scale; a chain of steps (mass) is laid
    # out in a row, its nodes relaxed toward their neighbours.
    all_steps = [("step", s) for s in ordered]
    k_stair = solve(columns + [all_steps])
    internal = sum(v for s_, d, v, _ in edges if s_[0] == "step" and d[0] == "step")
    staircase = len(ordered) > 1 and (internal < 0.6 * total_in or k_stair >= 0.6 * k)
    if staircase:
        k = k_stair
    # -- vertical layout: stack each column, then relax every node toward the weighted centre of
    # the nodes it exchanges flows with (as d3-sankey does) and resolve collisions per column
    slots = {n: slot(n, k) for c in columns for n in c}
    lab_h = {n: (_lines(step_labels[n[1]]) * lh + 0.06 if n[0] == "step" else (slots[n] - node_val[n] * k) / 2)
             for n in slots}
    top = {}

    def bar_centre(n):
        return top[n] - lab_h[n] - node_val[n] * k / 2

    def set_centre(n, c):
        top[n] = c + lab_h[n] + node_val[n] * k / 2

    def resolve(column):
        c = sorted(column, key=lambda n: -top[n])
        y = y_top
        for n in c:  # push down
            top[n] = min(top[n], y)
            y = top[n] - slots[n] - gap
        y = y_bot
        for n in reversed(c):  # push up from the bottom
            if top[n] - slots[n] < y:
                top[n] = y + slots[n]
            y = top[n] + gap

    rank_src = {n: i for i, n in enumerate(sorted(srcs, key=lambda n: (n[1] == "__other__", -node_val[n])))}
    first_order = {s: i for i, s in enumerate(ordered)}

    def src_key(n):
        ts = [first_order[d[1]] for s_, d, v, _ in edges if s_ == n and d[0] == "step"]
        return (n[1] == "__other__", min(ts) if ts else 99, rank_src[n])

    def sink_key(n):
        ss = [first_order[s_[1]] for s_, d, v, _ in edges if d == n and s_[0] == "step"]
        return (n[1] in ("__other__", "__unaccounted__"), min(ss) if ss else 99, -node_val[n])

    columns[0] = sorted(srcs, key=src_key)
    columns[-1] = sorted(sinks, key=sink_key)
    for c in ([columns[0], all_steps, columns[-1]] if staircase else columns):
        tot = sum(slots[n] for n in c) + gap * max(len(c) - 1, 0)
        y = y_top - (avail - tot) / 2
        for n in c:
            top[n] = y
            y -= slots[n] + gap
    nbr_in: dict = {}
    nbr_out: dict = {}
    for s_, d, v, _ in edges:
        if s_ != d:
            nbr_out.setdefault(s_, []).append((d, v))
            nbr_in.setdefault(d, []).append((s_, v))
    for it in range(12):
        alpha = 0.9 ** it
        if staircase:  # steps stay on their stairs; inputs and outputs follow them
            seq = [columns[-1]] if it % 2 == 0 else [columns[0]]
        else:
            seq = columns[1:] if it % 2 == 0 else list(reversed(columns[:-1]))
        for c in seq:
            for n in c:
                nb = (nbr_in if it % 2 == 0 else nbr_out).get(n, []) + \
                    [(m, v * 0.5) for m, v in (nbr_out if it % 2 == 0 else nbr_in).get(n, [])]
                tot = sum(v for _, v in nb)
                if tot > 0:
                    target = sum(bar_centre(m) * v for m, v in nb) / tot
                    set_centre(n, bar_centre(n) + (target - bar_centre(n)) * alpha)
            resolve(c)
    ypos = {n: (top[n] - lab_h[n], top[n] - lab_h[n] - node_val[n] * k) for n in slots}
    xnode = {}
    for n in srcs:
        xnode[n] = x_src
    for n in sinks:
        xnode[n] = x_sink
    for s in ordered:
        xnode[("step", s)] = step_x[s]
    # -- bands: stack at each node's right (out) and left (in) side, ordered by the other end
    def centre(n):
        return (ypos[n][0] + ypos[n][1]) / 2

    fwd = [e for e in edges if xnode[e[1]] > xnode[e[0]]]
    back = [e for e in edges if xnode[e[1]] <= xnode[e[0]]]
    out_cursor = {n: ypos[n][0] for n in ypos}
    in_cursor = {n: ypos[n][0] for n in ypos}
    out_slots = {}
    for e in sorted(fwd, key=lambda e: (-centre(e[1]), e[3])):
        src, dst, v, kd = e
        a0 = out_cursor[src]
        out_cursor[src] -= v * k
        out_slots[id(e)] = a0
    for e in sorted(fwd, key=lambda e: (-centre(e[0]), e[3])):
        src, dst, v, kd = e
        b0 = in_cursor[dst]
        in_cursor[dst] -= v * k
        a0 = out_slots[id(e)]
        colour = KIND_COLOURS.get(kd, "#9c9c9c")
        _bezier_band(ax, xnode[src] + bar, a0, a0 - v * k, xnode[dst], b0, b0 - v * k, colour,
                     alpha=0.35 if kd == "unaccounted" else 0.5)
    # return flows (against the process order): a stroke under everything, along the bottom
    from matplotlib.patches import PathPatch as _PP
    from matplotlib.path import Path as _P

    for i, e in enumerate(sorted(back, key=lambda e: -e[2])):
        src, dst, v, kd = e
        lw = min(max(v * k / PT_CM, 0.8), 6.0)  # [pt]
        ys, yd = ypos[src][1] + v * k / 2, ypos[dst][1] + v * k / 2
        lane = 0.12 + i * 0.12
        xs0, xd0 = xnode[src] + bar, xnode[dst]
        verts = [(xs0, ys), (xs0 + 0.5, ys), (xs0 + 0.5, lane), (xs0, lane), (xd0, lane), (xd0 - 0.5, lane),
                 (xd0 - 0.5, yd), (xd0, yd)]
        codes = [_P.MOVETO, _P.CURVE4, _P.CURVE4, _P.CURVE4, _P.LINETO, _P.CURVE4, _P.CURVE4, _P.CURVE4]
        ax.add_patch(_PP(_P(verts, codes), facecolor="none", edgecolor=KIND_COLOURS.get(kd, "#9c9c9c"),
                         lw=lw, alpha=0.55, capstyle="butt", zorder=1))
    # -- nodes and labels
    from matplotlib.patches import Rectangle

    for n, (t, b) in ypos.items():
        colour = "#555555" if n[0] == "step" else KIND_COLOURS.get(kind_of.get(n, ""), "#777777")
        ax.add_patch(Rectangle((xnode[n], b), bar, max(t - b, 0.015), facecolor=colour, edgecolor="none", zorder=3))
        if n[0] == "in":
            ax.text(xnode[n] - 0.08, (t + b) / 2, src_labels[n], ha="right", va="center", fontsize=lsize,
                    color=INK, linespacing=1.1)
        elif n[0] == "out":
            ax.text(xnode[n] + bar + 0.08, (t + b) / 2, sink_labels[n], ha="left", va="center", fontsize=lsize,
                    color=INK, linespacing=1.1)
        else:
            ax.text(xnode[n] + bar / 2, t + 0.05, step_labels[n[1]], ha="center", va="bottom", fontsize=ssize,
                    color=INK, weight="bold", linespacing=1.1, zorder=4,
                    bbox=dict(facecolor="white", alpha=0.7, edgecolor="none", pad=0.5))
    return fig


# ----------------------------------------------------------------------------------------------
# 5. process flow chart


def _is_utility(res, step) -> bool:
    f = res.flows
    if _is_empty(f):
        return False
    kinds = set(f.loc[(f["from"] == step) | (f["to"] == step), "kind"])
    return not kinds & {"raw_material", "intermediate", "product", "by_product", "auxiliary"}


def _io_text(res, step, lang, period, side):
    f = res.flows
    if _is_empty(f):
        return ""
    streams = _streams(res)
    sel = f[(f["period"] == period) & ((f["to"] == step) & f["from"].isna() if side == "in"
                                       else (f["from"] == step) & f["to"].isna())]
    parts = {}
    for s, q, u in zip(sel["stream"], sel["quantity"], sel["unit"], strict=True):
        key = (s, u)
        parts[key] = parts.get(key, 0.0) + float(q)
    # "name (value unit)", the value and its unit never split across lines
    return "; ".join(f"{_name(streams.get(s, {'id': s}), lang)} ({_fmt(q, lang)}\u00a0{_unit(u, lang)})"
                     for (s, u), q in parts.items())


def flow_chart(res, lang: str = "en", period=None):
    """Process flow chart: steps as boxes in process order (top to bottom), arrows for the
    links; utilities (steps that carry no material of the product, e.g. a boiler) in a column
    at the left; each step's inputs and outputs from outside (in ``period``, default the
    baseline) listed beside it. Returns None when the worksheet has no steps."""
    steps = res.ws.tables["steps"]
    if _is_empty(steps):
        return None
    with style():
        return _flow_chart(res, lang, period or res.baseline)


def _flow_chart(res, lang, period):
    from matplotlib.patches import FancyBboxPatch

    order, w, _ = _step_graph(res)
    tab = {r["id"]: r for r in _records(res.ws.tables["steps"])}
    utils = [s for s in order if _is_utility(res, s)]
    main = [s for s in order if s not in utils]
    if not main:
        main, utils = order, []
    width = FULL_W
    has_u = bool(utils)
    ux0, ux1 = 0.2, 3.7
    mx0 = 5.0 if has_u else 0.6
    mx1 = mx0 + 3.9
    lane_r = mx1 + 0.25
    n_right = sum(1 for (a, b) in w if a in main and b in main and abs(main.index(a) - main.index(b)) != 1)
    io_x = mx1 + (0.45 + 0.14 * n_right if n_right else 0.45)
    io_w = width - io_x - 0.15
    size = SMALL
    lh = line_height(size) * PT_CM
    names = {s: wrap(_name(tab[s], lang), (mx1 - mx0 - 0.3) / PT_CM, SIZE, 2, bold=True) for s in main}
    unames = {s: wrap(_name(tab[s], lang), (ux1 - ux0 - 0.3) / PT_CM, SIZE, 2, bold=True) for s in utils}
    ios = {}
    for s in main + utils:
        wdt = io_w if s in main else (ux1 - ux0)
        ins = _io_text(res, s, lang, period, "in")
        outs = _io_text(res, s, lang, period, "out")
        parts = []
        if ins:
            parts.append(wrap(_t(lang, "in") + " " + ins, wdt / PT_CM, size, 6))
        if outs:
            parts.append(wrap(_t(lang, "out") + " " + outs, wdt / PT_CM, size, 6))
        ios[s] = "\n".join(parts)
    box_h = {s: max(0.85, _lines(names[s]) * line_height(SIZE) * PT_CM + 0.35) for s in main}
    row_h = {s: max(box_h[s], _lines(ios[s]) * lh + 0.1) for s in main}
    ubox_h = {s: max(0.8, _lines(unames[s]) * line_height(SIZE) * PT_CM + 0.3) for s in utils}
    gap = 0.65
    title = _t(lang, "flow_title")
    sub = _t(lang, "flow_sub", period=_period_label(res, period, lang))
    head_guess = 1.3
    main_h = sum(row_h.values()) + gap * (len(main) - 1)
    # utilities: at the row of the first main step they link to, pushed down when they collide
    y = 0.0
    row_top = {}
    for s in main:
        row_top[s] = y
        y += row_h[s] + gap
    uslot = {}
    cursor = 0.0
    for u in utils:
        targets = [row_top[b] for (a, b) in w if a == u and b in row_top] + \
                  [row_top[a] for (a, b) in w if b == u and a in row_top]
        want = min(targets) if targets else cursor
        top = max(want, cursor)
        uio_h = _lines(ios[u]) * lh
        uslot[u] = top
        cursor = top + ubox_h[u] + (uio_h + 0.15 if uio_h else 0) + gap
    body_h = max(main_h, cursor - gap if utils else 0)
    height = head_guess + body_h + 0.5
    fig = _figure(width, height)
    head = _title(fig, title, sub)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    y0 = height - max(head, head_guess) - 0.1

    def box(x0, x1, top, h, text, fill, edge):
        ax.add_patch(FancyBboxPatch((x0, top - h), x1 - x0, h, boxstyle="round,pad=0,rounding_size=0.12",
                                    facecolor=fill, edgecolor=edge, lw=0.8, zorder=3))
        ax.text((x0 + x1) / 2, top - h / 2, text, ha="center", va="center", fontsize=SIZE, weight="bold",
                color=INK, zorder=4, linespacing=1.1)

    pos = {}
    for s in main:
        top = y0 - row_top[s]
        off = (row_h[s] - box_h[s]) / 2
        bt = top - off
        box(mx0, mx1, bt, box_h[s], names[s], "#eef3f8", AFTER[0])
        pos[s] = (mx0, mx1, bt, bt - box_h[s])
        if ios[s]:
            ax.text(io_x, top - row_h[s] / 2, ios[s], ha="left", va="center", fontsize=size, color=MUTED,
                    linespacing=1.15)
    for u in utils:
        top = y0 - uslot[u]
        box(ux0, ux1, top, ubox_h[u], unames[u], "#f7f1e8", ACCENT)
        pos[u] = (ux0, ux1, top, top - ubox_h[u])
        if ios[u]:
            ax.text(ux0, top - ubox_h[u] - 0.12, ios[u], ha="left", va="top", fontsize=size, color=MUTED,
                    linespacing=1.15)

    def arrow(xa, ya, xb, yb, colour=INK, dashed=False):
        ax.annotate("", xy=(xb, yb), xytext=(xa, ya), zorder=2,
                    arrowprops=dict(arrowstyle="-|>,head_length=0.35,head_width=0.18", color=colour, lw=0.8,
                                    shrinkA=0, shrinkB=0, linestyle=(0, (3, 2)) if dashed else "-"))

    def line(xs, ys, colour=INK, dashed=False):
        ax.plot(xs, ys, color=colour, lw=0.8, zorder=2, ls=(0, (3, 2)) if dashed else "-",
                solid_capstyle="butt")

    mi = {s: i for i, s in enumerate(main)}
    lanes_r = 0
    lanes_l = {}
    link_names = {}
    for r in _records(res.ws.tables.get("links")):
        if r.get("material"):
            link_names.setdefault((r["from"], r["to"]), str(r["material"]))
    in_slots: dict = {}
    for (a, b) in sorted(w, key=lambda e: (e[0] in utils, mi.get(e[0], 99), mi.get(e[1], 99))):
        if a not in pos or b not in pos:
            continue
        if a in mi and b in mi:
            if mi[b] == mi[a] + 1:
                xm = (mx0 + mx1) / 2
                arrow(xm, pos[a][3], xm, pos[b][2])
                lab = link_names.get((a, b))
                if lab:
                    ax.text(xm + 0.12, (pos[a][3] + pos[b][2]) / 2, wrap(lab, (mx1 - xm - 0.1) / PT_CM, SMALL - 0.5, 1),
                            ha="left", va="center", fontsize=SMALL - 0.5, color=MUTED, style="italic")
            else:
                lx = lane_r + 0.14 * lanes_r
                lanes_r += 1
                ya = (pos[a][2] + pos[a][3]) / 2 - 0.12
                n_in = in_slots.get(("r", b), 0)
                in_slots[("r", b)] = n_in + 1
                yb = (pos[b][2] + pos[b][3]) / 2 + 0.2 - 0.13 * n_in
                dashed = mi[b] < mi[a]
                line([mx1, lx, lx], [ya, ya, yb], dashed=dashed)
                arrow(lx, yb, mx1, yb, dashed=dashed)
        else:
            # utility links through lanes between the utility column and the main column
            u = a if a in utils else b
            k = lanes_l.setdefault(u, len(lanes_l))
            forward = a in utils
            lx = ux1 + 0.3 + 0.3 * k + (0.15 if not forward else 0.0)
            colour = ACCENT
            if forward:
                ya = (pos[a][2] + pos[a][3]) / 2 + 0.1
                n_in = in_slots.get(b, 0)
                in_slots[b] = n_in + 1
                yb = (pos[b][2] + pos[b][3]) / 2 + 0.2 - 0.2 * n_in
                x_to = pos[b][0]
                line([pos[a][1], lx, lx], [ya, ya, yb], colour)
                arrow(lx, yb, x_to, yb, colour)
            else:
                ya = (pos[a][2] + pos[a][3]) / 2 - 0.25
                yb = (pos[b][2] + pos[b][3]) / 2 - 0.15
                line([pos[a][0], lx, lx], [ya, ya, yb], colour, dashed=True)
                arrow(lx, yb, pos[b][1], yb, colour, dashed=True)
    return fig


# ----------------------------------------------------------------------------------------------
# 6. programme charts

#: Columns of a programme table read by :func:`programme_change`, in display order, with labels.
CHANGE_COLUMNS = {
    "energy_change_pct": ("energy", "energy"), "electricity_change_pct": ("electricity", "electricity"),
    "fuel_change_pct": ("fuel_change", "fuel_change"), "water_change_pct": ("water", "water"),
    "material_change_pct": ("material_change", "material_change"),
    "wastewater_change_pct": ("wastewater", "wastewater"), "waste_change_pct": ("waste_change", "waste_change"),
    "co2_change_pct": ("co2_change", "co2_change"),
}
CHANGE_COLOURS = ("#1f5f8b", "#4f8fbf", "#c27c2c", "#7d9a55", "#8c6d9e", "#8aa4b8", "#a8756b", "#9c9c9c")


def _facility_label(r: dict, lang: str) -> str:
    if lang == "en" and r.get("facility_name_en") and r.get("facility_name_en") == r.get("facility_name_en"):
        return str(r["facility_name_en"])
    name = r.get("facility_name")
    return str(name) if name is not None and name == name and str(name).strip() else str(r.get("facility_id", ""))


def programme_change(table, lang: str = "en", band=(8, 13)):
    """% change in consumption per unit of product of each facility against the target band.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per facility: ``facility_id``, ``facility_name`` (``facility_name_en``
        optional) and any of :data:`CHANGE_COLUMNS` (``energy_change_pct``,
        ``water_change_pct``, ...) [%] = 100 × (after − before) / before of the specific
        consumption; negative is a reduction. NaN: not measured.
    band : (float, float)
        Target reduction band [%], e.g. (8, 13) for Dong Nai; shaded.

    The chart plots the *reduction* (−change) so that reaching the target is to the right.
    Returns None when the table has no rows or no change column.
    """
    if _is_empty(table):
        return None
    cols = [c for c in CHANGE_COLUMNS if c in table.columns and table[c].notna().any()]
    cols += [c for c in table.columns if c.endswith("_change_pct") and c not in cols and table[c].notna().any()]
    if not cols:
        return None
    with style():
        rows = _records(table)
        width = FULL_W
        label_w = 5.0
        labels = [wrap(_facility_label(r, lang), (label_w - 0.3) / PT_CM, SMALL, 2) for r in rows]
        nb = len(cols)
        bar_h = 0.26
        group_h = [max(nb * bar_h + 0.3, _lines(lb) * line_height(SMALL) * PT_CM + 0.2) for lb in labels]
        head, legend_h, bottom = 1.35, 0.55, 1.0
        height = head + legend_h + sum(group_h) + bottom
        fig = _figure(width, height)
        _title(fig, _t(lang, "prog_change_title"))
        ax = _axes_cm(fig, label_w, bottom, 0.8, head + legend_h)
        y = 0.0
        centres = []
        vals_all = [0.0, float(band[1])]
        for r, gh in zip(rows, group_h, strict=True):
            c0 = y + gh / 2
            centres.append(c0)
            for j, c in enumerate(cols):
                v = r.get(c)
                yy = c0 - (nb - 1) * bar_h / 2 + j * bar_h
                if v is None or v != v:
                    ax.text(0.2, yy, "—", va="center", fontsize=SMALL - 0.5, color=LIGHT)
                    continue
                red = -float(v)
                vals_all.append(red)
                ax.barh(yy, red, height=bar_h * 0.85, color=CHANGE_COLOURS[j % len(CHANGE_COLOURS)],
                        edgecolor="none", zorder=2)
                ax.text(red + (0.3 if red >= 0 else -0.3), yy, _fmt(red, lang, 1), ha="left" if red >= 0 else "right",
                        va="center", fontsize=SMALL - 0.5, color=INK, zorder=4)
            y += gh
        lo, hi = min(vals_all), max(vals_all)
        span = hi - lo or 1.0
        ax.set_xlim(lo - 0.1 * span if lo < 0 else 0, hi + 0.14 * span)
        ax.set_ylim(y, 0)
        ax.axvspan(band[0], band[1], color="#e6f2ea", zorder=0, lw=0)
        ax.axvline(0, color=LIGHT, lw=0.6, zorder=1)
        ax.text((band[0] + band[1]) / 2, 1.0, _t(lang, "target", a=_fmt(band[0], lang, 0), b=_fmt(band[1], lang, 0)),
                transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=SMALL, color=GOOD)
        ax.set_yticks(centres)
        ax.set_yticklabels(labels, fontsize=SMALL)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.xaxis.set_major_formatter(number_formatter(lang))
        ax.grid(axis="x", zorder=0)
        ax.set_axisbelow(True)
        ax.set_xlabel(_t(lang, "prog_change_axis"), fontsize=SMALL, color=MUTED)
        x = label_w
        for j, c in enumerate(cols):
            key = CHANGE_COLUMNS.get(c, (None,))[0]
            t = _t(lang, key) if key else c.replace("_change_pct", "").replace("_", " ")
            fig.patches.append(matplotlib.patches.Rectangle(
                (x / width, (height - head - 0.35) / height), 0.3 / width, 0.22 / height,
                transform=fig.transFigure, facecolor=CHANGE_COLOURS[j % len(CHANGE_COLOURS)], edgecolor="none"))
            fig.text((x + 0.4) / width, (height - head - 0.24) / height, t, va="center", fontsize=SMALL)
            x += 0.4 + text_width(t, SMALL) * PT_CM + 0.6
        return fig


def programme_totals(table, lang: str = "en"):
    """Annual savings of a programme [million VND/yr]: by facility (sorted bars, investment as
    a label) and, when the table has ``sector``, by sector.

    Parameters
    ----------
    table : pandas.DataFrame
        ``facility_id``, ``facility_name``, ``saving_vnd_per_yr`` [VND/yr]; optional
        ``investment_vnd`` [VND] and ``sector``.
    """
    if _is_empty(table) or "saving_vnd_per_yr" not in table.columns:
        return None
    with style():
        rows = [r for r in _records(table) if r.get("saving_vnd_per_yr") == r.get("saving_vnd_per_yr")]
        if not rows:
            return None
        rows.sort(key=lambda r: -float(r["saving_vnd_per_yr"]))
        sectors = {}
        if "sector" in table.columns:
            for r in rows:
                s = r.get("sector") or "—"
                sectors[s] = sectors.get(s, 0.0) + float(r["saving_vnd_per_yr"])
        width = FULL_W
        label_w = 4.4
        split = 11.0 if len(sectors) > 1 else width
        labels = [wrap(_facility_label(r, lang), (label_w - 0.3) / PT_CM, SMALL, 2) for r in rows]
        row_h = [max(0.55, _lines(lb) * line_height(SMALL) * PT_CM + 0.2) for lb in labels]
        tot_s = sum(float(r["saving_vnd_per_yr"]) for r in rows)
        tot_i = sum(float(r.get("investment_vnd") or 0.0) for r in rows
                    if r.get("investment_vnd") == r.get("investment_vnd"))
        sub = _t(lang, "prog_totals_sub", s=_fmt(tot_s / 1e6, lang, 0), i=_fmt(tot_i / 1e6, lang, 0))
        head, bottom = 1.55, 0.95
        height = head + 0.4 + max(sum(row_h), 0.6 * len(sectors)) + bottom
        fig = _figure(width, height)
        _title(fig, _t(lang, "prog_totals_title"), sub)
        sector_names = sorted(sectors, key=lambda s: -sectors[s])
        palette = ["#1f5f8b", "#4f8fbf", "#86b6d9", "#c27c2c", "#7d9a55", "#8c6d9e", "#a8756b", "#9c9c9c"]
        scol = {s: palette[i % len(palette)] for i, s in enumerate(sector_names)}
        ax = _axes_cm(fig, label_w, bottom, width - split + 0.9, head + 0.4)
        ys, y = [], 0.0
        for h in row_h:
            ys.append(y + h / 2)
            y += h
        vals = [float(r["saving_vnd_per_yr"]) / 1e6 for r in rows]
        ax.barh(ys, vals, height=0.4, color=[scol.get(r.get("sector") or "—", AFTER[0]) for r in rows],
                edgecolor="none", zorder=2)
        vmax = max([abs(v) for v in vals] + [1.0])
        ax.set_xlim(min(0.0, min(vals) * 1.1), vmax * 1.35)
        ax.set_ylim(y, 0)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=SMALL)
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.xaxis.set_major_formatter(number_formatter(lang))
        ax.grid(axis="x", zorder=0)
        ax.set_axisbelow(True)
        ax.set_xlabel(_t(lang, "by_facility"), fontsize=SMALL, color=MUTED)
        for yy, v, r in zip(ys, vals, rows, strict=True):
            t = _fmt(v, lang, 0)
            inv = r.get("investment_vnd")
            if inv is not None and inv == inv:
                t += f"  ({_t(lang, 'investment')} {_fmt(float(inv) / 1e6, lang, 0)})"
            ax.text(v + vmax * 0.015, yy, t, va="center", ha="left", fontsize=SMALL - 0.5, color=INK)
        if len(sectors) > 1:
            ax2 = _axes_cm(fig, split + 1.9, bottom, 0.9, head + 0.4)
            names = [SECTORS_VI.get(s, s) if lang == "vi" else s for s in sector_names]
            ys2 = [i * 0.6 + 0.3 for i in range(len(sector_names))]
            sv = [sectors[s] / 1e6 for s in sector_names]
            ax2.barh(ys2, sv, height=0.4, color=[scol[s] for s in sector_names], edgecolor="none", zorder=2)
            ax2.set_ylim(max(y, ys2[-1] + 0.3), 0)
            ax2.set_yticks(ys2)
            ax2.set_yticklabels([wrap(n, 1.7 / PT_CM, SMALL, 2) for n in names], fontsize=SMALL)
            ax2.tick_params(axis="y", length=0)
            ax2.spines["left"].set_visible(False)
            ax2.xaxis.set_major_formatter(number_formatter(lang))
            ax2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(3))
            ax2.set_xlim(0, max(sv) * 1.3)
            ax2.grid(axis="x", zorder=0)
            ax2.set_axisbelow(True)
            ax2.set_xlabel(_t(lang, "by_sector"), fontsize=SMALL, color=MUTED)
            for yy, v in zip(ys2, sv, strict=True):
                ax2.text(v + max(sv) * 0.02, yy, _fmt(v, lang, 0), va="center", fontsize=SMALL - 0.5)
        return fig


# ----------------------------------------------------------------------------------------------
# saving and rendering


def _png_bytes(fig, dpi: int = 300) -> bytes:
    """The figure as PNG at ``dpi``, reduced to a 256-colour palette: charts are flat colours,
    and a palette PNG is half the size and written several times faster than RGBA."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="rgba", dpi=dpi, facecolor="white")
    w, h = (int(v) for v in fig.bbox.size * dpi / fig.dpi)
    data = buf.getvalue()
    if len(data) != w * h * 4:  # sizes rounded differently: let matplotlib write the PNG
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
        return buf.getvalue()
    img = Image.frombuffer("RGBA", (w, h), data, "raw", "RGBA", 0, 1).convert("RGB")
    img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    img.save(out, format="png", compress_level=3, dpi=(dpi, dpi))
    return out.getvalue()


def _with_dpi(png: bytes, dpi: int) -> bytes:
    """Insert a pHYs chunk (pixels per metre) after IHDR, so the PNG says its resolution."""
    import struct
    import zlib

    if png[12:16] != b"IHDR" or b"pHYs" in png[:200]:
        return png
    ppm = round(dpi / 0.0254)
    data = b"pHYs" + struct.pack(">IIB", ppm, ppm, 1)
    chunk = struct.pack(">I", 9) + data + struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF)
    end = 8 + 8 + 13 + 4
    return png[:end] + chunk + png[end:]


@lru_cache(maxsize=1)
def _typst_compiler():
    """One typst compiler for the process, its fonts (matplotlib's DejaVu) loaded once."""
    import typst

    fonts = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    return typst.Compiler(font_paths=[fonts], ignore_system_fonts=True)


def _png_from_svg(svg_path: str, svg: bytes, dpi: int = 300) -> bytes | None:
    """Rasterise the chart's own SVG with typst (the booklet engine, fonts from matplotlib):
    the same picture as the SVG, about seven times faster than drawing it again with Agg.
    None when typst is missing or fails (the caller then draws with Agg)."""

    try:
        _typst_compiler()
    except ImportError:
        return None
    m = re.search(rb'<svg[^>]*?width="([0-9.]+)pt"[^>]*?height="([0-9.]+)pt"', svg[:2000])
    if not m:
        return None
    w, h = (float(x) for x in m.groups())
    name = os.path.basename(svg_path).replace("\\", "\\\\").replace('"', '\\"')
    doc = (f"#set page(width: {w}pt, height: {h}pt, margin: 0pt, fill: white)\n"
           f'#image("{name}", width: {w}pt, height: {h}pt)\n').encode()
    try:
        png = _typst_compiler().compile(input=doc, root=os.path.dirname(os.path.abspath(svg_path)),
                                        format="png", ppi=dpi)
    except Exception:  # noqa: BLE001 - fall back to Agg, never fail a chart for speed
        return None
    if isinstance(png, list):
        png = png[0] if png else None
    return _with_dpi(png, dpi) if png else None


def save_figure(fig, base_path, engine: str = "auto", formats=("png", "svg")) -> dict:
    """Write ``base_path.svg`` and ``base_path.png`` (300 dpi) atomically and close the figure.

    Returns ``{"png": path, "svg": path}``. The SVG keeps text as text (``svg.fonttype
    none``, font DejaVu Sans), so the booklet's PDF stays searchable and exact. The PNG is the
    SVG rasterised by typst when it is installed (``engine="auto"``), else drawn by matplotlib's
    Agg (``engine="agg"``): both use the same DejaVu Sans fonts. ``formats=("svg",)`` writes
    the SVG only (what a typst booklet embeds; half the time).
    """
    from cpa.io import atomic_write

    base = os.fspath(base_path)
    out = {}
    with style():
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, facecolor="white")
        svg = buf.getvalue()
        if "svg" in formats:
            out["svg"] = f"{base}.svg"
            atomic_write(out["svg"], svg, force=True)
        if "png" in formats:
            png = _png_from_svg(out["svg"], svg) if engine == "auto" and "svg" in out else None
            if png is None:
                png = _png_bytes(fig)
            out["png"] = f"{base}.png"
            atomic_write(out["png"], png, force=True)
    fig.clear()
    return out


def default_sankey_layer(res) -> str:
    """The layer shown by :func:`render_facility_charts`: the facility's ``sankey_layer`` field,
    else water, energy, mass — the first that has flows in the baseline."""
    want = res.ws.facility.get("sankey_layer") if hasattr(res.ws, "facility") else None
    layers = ([want] if want in ("mass", "water", "energy") else []) + ["water", "energy", "mass"]
    for layer in layers:
        if _layer_flows(res, layer, res.baseline):
            return layer
    return "water"


def render_facility_charts(res, lang: str, outdir, layer: str | None = None, formats=("png", "svg")) -> dict:
    """Render every chart of one facility into ``outdir``: ``{key: {"png": ..., "svg": ...}}``.

    Keys: ``before_after_specific``, ``before_after_absolute``, ``savings_by_option``,
    ``payback``, ``waste_pareto``, ``sankey_before``, ``sankey_after`` (latest monitoring
    period), ``flow_chart``; a key is omitted when its chart does not apply. ``layer`` is the
    Sankey's layer (default :func:`default_sankey_layer`); ``formats`` as in :func:`save_figure`.
    """
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    layer = layer or default_sankey_layer(res)
    jobs = [
        ("before_after_specific", lambda: before_after(res, lang, specific=True)),
        ("before_after_absolute", lambda: before_after(res, lang, specific=False)),
        ("savings_by_option", lambda: savings_by_option(res, lang)),
        ("payback", lambda: payback_vs_investment(res, lang)),
        ("waste_pareto", lambda: waste_pareto(res, lang)),
        ("sankey_before", lambda: sankey(res, lang, layer=layer, period=res.baseline)),
        ("sankey_after", lambda: sankey(res, lang, layer=layer, period=res.monitoring[-1])
         if res.monitoring else None),
        ("flow_chart", lambda: flow_chart(res, lang)),
    ]
    out = {}
    for key, make in jobs:
        fig = make()
        if fig is not None:
            out[key] = save_figure(fig, os.path.join(outdir, key), formats=formats)
    return out


def render_programme_charts(table, lang: str, outdir, band=(8, 13), formats=("png", "svg")) -> dict:
    """Render the programme charts into ``outdir``: keys ``programme_change``,
    ``programme_totals`` (omitted when the table lacks their columns)."""
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    out = {}
    for key, make in (("programme_change", lambda: programme_change(table, lang, band=band)),
                      ("programme_totals", lambda: programme_totals(table, lang))):
        fig = make()
        if fig is not None:
            out[key] = save_figure(fig, os.path.join(outdir, key), formats=formats)
    return out


__all__ = [
    "before_after", "savings_by_option", "payback_vs_investment", "waste_pareto", "sankey", "flow_chart",
    "programme_change", "programme_totals", "save_figure", "render_facility_charts",
    "render_programme_charts", "number_formatter", "wrap", "style",
]
