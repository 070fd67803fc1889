"""Charts of one facility and of a programme, for the case-study booklets (issue 7).

Every chart is a *pure* function of results: it reads a :class:`cpa.results.FacilityResults`
bundle (or a programme table) and returns a :class:`matplotlib.figure.Figure`, or ``None`` when
the chart does not apply (no options yet, no waste costs...). Charts never compute balances,
indicators, costs or savings: they only select, sort, scale and label what the bundle holds
(a test holds this).

Style: one quiet palette, DejaVu Sans (ships with matplotlib), numbers in the booklet's
language through :func:`cpa.numbers.format_number` (``vi``: ``1.234,5``; ``en``: ``1,234.5``),
user text printed literally (no mathtext) and wrapped to the space it has. Every chart takes
``width_cm`` (default 17 cm, the full width of an A4 page) and is laid out for it in
centimetres from measured text widths, so its text sizes are the printed sizes when it is
placed at that width (tick labels 6.5 pt, other text ≥ 7 pt); below :data:`COMPACT_W` a chart
uses its compact layout (a half-page column). No tight-layout loops.

The charts are drawn on a canvas in centimetres (:class:`_Canvas`, no Axes) that a
:class:`_CanvasFigure` keeps as a list of shapes and texts: written to SVG directly
(:func:`_svg_direct`), or turned into matplotlib artists when matplotlib draws the figure.

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

from cpa.frames import memo, records  # noqa: E402
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
# Text sizes [pt] as printed: every chart is drawn at the width the booklet places it (no
# scaling), so these are the sizes on paper. Tick labels ≥ 6.5 pt, every other text ≥ 7 pt.
SIZE = 7.5        # names (bold), body text
SMALL = 7.0       # value labels, legends, axis labels, notes
TICK = 6.5        # tick labels only
TITLE = 9.0
#: Below this width [cm] a chart uses its compact layout (a half-page column of the booklet).
COMPACT_W = 12.0

STYLE = {
    "font.family": FONT, "font.size": SIZE, "axes.titlesize": SIZE, "axes.labelsize": SIZE,
    "xtick.labelsize": TICK, "ytick.labelsize": TICK, "legend.fontsize": SMALL,
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
        "before_after_specific_short": "Per unit of product: before and after CP",
        "before_after_absolute_short": "Annual totals: before and after CP",
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
        "flow_sub_compact": "Steps in process order; the inputs and outputs of each step are in the balance tables.",
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
        "before_after_specific_short": "Trên một đơn vị sản phẩm: trước và sau SXSH",
        "before_after_absolute_short": "Tổng hằng năm: trước và sau SXSH",
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
        "flow_sub_compact": "Các công đoạn theo thứ tự quy trình; đầu vào và đầu ra của từng công đoạn: xem các bảng cân bằng.",
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


def _sector_label(sector: str, lang: str) -> str:
    """A sector's name in ``lang`` (the worksheet schema's labels, else :data:`SECTORS_VI`)."""
    try:
        from cpa.schema import choices

        for c in choices("sector"):
            if c.id == sector:
                text = c.vi if lang == "vi" else c.en
                return text[:1].upper() + text[1:]
    except Exception:  # noqa: BLE001 - a label is never worth a crash
        pass
    return SECTORS_VI.get(sector, sector) if lang == "vi" else str(sector)


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


#: The characters of Vietnamese and English text, digits and signs: :func:`warm` measures them.
ALPHABET = ("abcdefghijklmnopqrstuvwxyzđàáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụ"
            "ưừứửữựỳýỷỹỵ")
ALPHABET = ALPHABET + ALPHABET.upper() + "0123456789 .,;:!?%()[]{}/-–—+×=<>≤≥·…'\"&³²₂°→"


def warm() -> None:
    """Measure the common characters once (a process that forks workers calls it first, so that
    every worker starts with the measurements)."""
    for bold in (False, True):
        text_width(ALPHABET, bold=bold)


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


class _CanvasFigure(Figure):
    """A figure whose canvas drawing (:class:`_Canvas`) is kept as a list of operations until
    matplotlib draws it: a figure with nothing else is written to SVG directly
    (:func:`_svg_direct`, no artists built and drawn); otherwise, or for Agg, the operations
    become ordinary matplotlib artists first."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._cpa_ops: list = []

    def _cpa_materialize(self):
        ops, self._cpa_ops = self._cpa_ops, []
        for op in ops:
            if op[0] == "text":
                _k, x, y, text, kw, trans = op
                if kw.get("rotation"):
                    kw = {"rotation_mode": "anchor", **kw}
                Figure.text(self, x, y, text, transform=trans, **kw)
            else:
                self.add_artist(op[1])

    def draw(self, renderer):
        if self._cpa_ops:
            self._cpa_materialize()
        return super().draw(renderer)

    def _cpa_pure(self) -> bool:
        """Only canvas operations: no Axes, no other artists."""
        return bool(self._cpa_ops) and not (self.axes or self.texts or self.patches or self.lines
                                            or self.artists or self.images or self.legends)


def _figure(width_cm: float, height_cm: float) -> Figure:
    fig = _CanvasFigure(figsize=(width_cm * CM, height_cm * CM), dpi=100)
    fig.patch.set_facecolor("white")
    return fig


def _axes_cm(fig, left, bottom, right, top):
    """Axes placed by its margins in cm from the figure edges."""
    w, h = fig.get_size_inches() / CM
    return fig.add_axes([left / w, bottom / h, (w - left - right) / w, (h - bottom - top) / h])


def _head_lines(width: float, title: str, subtitle: str = ""):
    t = wrap(title, (width - 0.3) / PT_CM, TITLE, 2, bold=True)
    s = wrap(subtitle, (width - 0.3) / PT_CM, SMALL, 3) if subtitle else ""
    return t, s


def head_height(width: float, title: str, subtitle: str = "", top_cm: float = 0.2) -> float:
    """Height [cm] taken by :func:`_title` for this title and subtitle at this width."""
    t, s = _head_lines(width, title, subtitle)
    used = top_cm + _lines(t) * line_height(TITLE) * PT_CM
    if s:
        used += 0.08 + _lines(s) * line_height(SMALL) * PT_CM
    return used + 0.15


def _title(fig, title: str, subtitle: str = "", top_cm: float = 0.2) -> float:
    """Title (and subtitle) at the top left; returns the height used [cm]."""
    w, h = fig.get_size_inches() / CM
    t, s = _head_lines(w, title, subtitle)
    cv = _Canvas(fig)
    y = h - top_cm
    cv.text(0.12, y, t, ha="left", va="top", fontsize=TITLE, weight="bold", color=INK)
    used = top_cm + _lines(t) * line_height(TITLE) * PT_CM
    if s:
        cv.text(0.12, h - used - 0.08, s, ha="left", va="top", fontsize=SMALL, color=MUTED)
        used += 0.08 + _lines(s) * line_height(SMALL) * PT_CM
    return used + 0.15


class _Canvas:
    """Draws on a figure in centimetres (origin at the bottom left) with no Axes: an Axes costs
    ~30 ms to build (ticks, spines) and more to draw, a figure-level artist almost nothing.
    On a :class:`_CanvasFigure` the drawing is recorded (see there); on another figure the
    artists are added at once."""

    def __init__(self, fig):
        from matplotlib.transforms import Affine2D

        self.fig = fig
        self.transData = Affine2D().scale(CM) + fig.dpi_scale_trans
        self._ops = getattr(fig, "_cpa_ops", None)

    def text(self, x, y, s, **kw):
        if self._ops is not None and "transform" not in kw:
            self._ops.append(("text", x, y, s, kw, self.transData))
            return None
        return self.fig.text(x, y, s, **{"transform": self.transData, **kw})

    def _add(self, artist):
        if self._ops is not None:
            self._ops.append(("artist", artist))
        else:
            self.fig.add_artist(artist)
        return artist

    def add_patch(self, patch):
        patch.set_transform(self.transData)
        return self._add(patch)

    def plot(self, xs, ys, **kw):
        from matplotlib.lines import Line2D

        return self._add(Line2D(xs, ys, transform=self.transData, **kw))

    def arrow(self, xa, ya, xb, yb, colour=INK, lw=0.8, dashed=False, zorder=2):
        from matplotlib.patches import FancyArrowPatch

        p = FancyArrowPatch((xa, ya), (xb, yb), arrowstyle="-|>,head_length=0.35,head_width=0.18",
                            color=colour, lw=lw, shrinkA=0, shrinkB=0, mutation_scale=SIZE,
                            linestyle=(0, (3, 2)) if dashed else "-", zorder=zorder)
        p._cpa_arrow = (xa, ya, xb, yb, colour, lw, dashed)
        self.add_patch(p)

    def circle(self, x, y, r_cm, **kw):
        return self.add_patch(matplotlib.patches.Circle((x, y), r_cm, **kw))


# -- direct SVG for figures drawn on a canvas only ----------------------------------------------

_HATCH = ('<defs><pattern id="hatch" patternUnits="userSpaceOnUse" width="4" height="4">'
          '<path d="M-1,1 l2,-2 M0,4 l4,-4 M3,5 l2,-2" stroke="#8a8a8a" stroke-width="0.5"/></pattern></defs>')


def _esc(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _n(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v == v else "0"


def _paint(rgba, prefix: str) -> str:
    from matplotlib.colors import to_hex

    if rgba is None or rgba[3] == 0:
        return f' {prefix}="none"'
    out = f' {prefix}="{to_hex(rgba)}"'
    if rgba[3] < 1:
        out += f' {prefix}-opacity="{_n(rgba[3])}"'
    return out


def _dashes(artist) -> str:
    pat = getattr(artist, "_dash_pattern", (0, None))
    if not pat or pat[1] is None:
        return ""
    return f' stroke-dasharray="{",".join(_n(v) for v in pat[1])}"'


def _svg_path(path, H: float) -> str:
    """A matplotlib path in cm (y up) as SVG path data in pt (y down)."""
    from matplotlib.path import Path

    k = 1 / PT_CM
    d = []
    for verts, code in path.iter_segments(simplify=False, curves=True):
        pts = " ".join(f"{_n(verts[i] * k)},{_n(H - verts[i + 1] * k)}" for i in range(0, len(verts), 2))
        d.append({Path.MOVETO: "M", Path.LINETO: "L", Path.CURVE3: "Q", Path.CURVE4: "C"}.get(code, "Z") +
                 ("" if code == Path.CLOSEPOLY else pts))
    return "".join(d)


def _svg_patch(p, H: float) -> str:
    from matplotlib.colors import to_rgba

    arrow = getattr(p, "_cpa_arrow", None)
    k = 1 / PT_CM
    if arrow is not None:  # "-|>" arrow: a line to the base of a filled triangle
        xa, ya, xb, yb, colour, lw, dashed = arrow
        col = to_rgba(colour)
        x0, y0, x1, y1 = xa * k, H - ya * k, xb * k, H - yb * k
        length = math.hypot(x1 - x0, y1 - y0) or 1e-9
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        hl, hw = 0.35 * SIZE, 0.18 * SIZE
        bx, by = x1 - ux * hl, y1 - uy * hl
        dash = f' stroke-dasharray="{_n(3 * lw)},{_n(2 * lw)}"' if dashed else ""
        return (f'<path d="M{_n(x0)},{_n(y0)}L{_n(bx)},{_n(by)}" fill="none"{_paint(col, "stroke")}'
                f' stroke-width="{_n(lw)}"{dash}/>'
                f'<path d="M{_n(x1)},{_n(y1)}L{_n(bx - uy * hw)},{_n(by + ux * hw)}L{_n(bx + uy * hw)},'
                f'{_n(by - ux * hw)}Z"{_paint(col, "fill")}{_paint(col, "stroke")} stroke-width="{_n(lw)}"/>')
    path = p.get_patch_transform().transform_path(p.get_path())
    d = _svg_path(path, H)
    fill = p.get_facecolor() if p.get_fill() else None
    lw = p.get_linewidth()
    stroke = p.get_edgecolor() if lw > 0 else None
    out = f'<path d="{d}"{_paint(fill, "fill")}{_paint(stroke, "stroke")}'
    if stroke is not None and stroke[3] > 0:
        cap = {"butt": "butt", "round": "round", "projecting": "square"}.get(str(p.get_capstyle()), "butt")
        out += f' stroke-width="{_n(lw)}" stroke-linecap="{cap}"{_dashes(p)}'
    out += "/>"
    if p.get_hatch():
        out += f'<path d="{d}" fill="url(#hatch)" stroke="none"/>'
    return out


def _svg_line(line, H: float) -> str:
    from matplotlib.colors import to_rgba

    k = 1 / PT_CM
    xs, ys = line.get_xdata(), line.get_ydata()
    d = "M" + "L".join(f"{_n(x * k)},{_n(H - y * k)}" for x, y in zip(xs, ys, strict=True))
    col = to_rgba(line.get_color(), line.get_alpha())
    cap = {"butt": "butt", "round": "round", "projecting": "square"}.get(str(line.get_solid_capstyle()), "butt")
    return (f'<path d="{d}" fill="none"{_paint(col, "stroke")} stroke-width="{_n(line.get_linewidth())}"'
            f' stroke-linecap="{cap}"{_dashes(line)}/>')


def _svg_text(x, y, text, kw, H: float) -> str:
    """A (multi-line) text laid out as matplotlib 3.11 does: each line ``linespacing × size``
    high (DejaVu Sans' typographic ascent + descent = 1 em), its baseline where the line's
    ink is centred; aligned by its whole block (for a rotated text, in its own frame:
    ``rotation_mode="anchor"``)."""
    from matplotlib.colors import to_rgba

    if not text:
        return ""
    size = float(kw.get("fontsize", SIZE))
    ls = float(kw.get("linespacing", 1.2))
    ha, va = kw.get("ha", "left"), kw.get("va", "baseline")
    rot = float(kw.get("rotation", 0) or 0)
    lines = str(text).split("\n")
    lh = ls * size
    total = lh * len(lines)
    k = 1 / PT_CM
    px, py = x * k, H - y * k
    # the block's top relative to the anchor, in the text's own frame (y down)
    top = {"top": 0.0, "bottom": -total, "center": -total / 2}.get(va)
    first = (lh + 0.62 * size) / 2  # baseline below the top of a line (cap height 0.73 em, descent 0.11 em)
    if top is None:  # baseline
        top = -first
    anchor = {"left": "start", "center": "middle", "right": "end"}.get(ha, "start")
    weight = kw.get("weight", kw.get("fontweight", "normal"))
    style_ = kw.get("style", kw.get("fontstyle", "normal"))
    col = to_rgba(kw.get("color", INK))
    attrs = f' font-size="{_n(size)}" font-family="DejaVu Sans"'
    if weight not in ("normal", 400):
        attrs += ' font-weight="bold"'
    if style_ == "italic":
        attrs += ' font-style="italic"'
    out = ""
    bbox = kw.get("bbox")
    if bbox:
        w = max(text_width(line, size, weight == "bold") for line in lines) / 1.07
        pad = float(bbox.get("pad", 4))
        x0 = -(w / 2 if ha == "center" else w if ha == "right" else 0) - pad
        fc = to_rgba(bbox.get("facecolor", "white"), bbox.get("alpha"))
        out += (f'<rect x="{_n(x0)}" y="{_n(top - pad)}" width="{_n(w + 2 * pad)}" height="{_n(total + 2 * pad)}"'
                f'{_paint(fc, "fill")} stroke="none"/>')
    spans = "".join(f'<tspan x="0" y="{_n(top + i * lh + first)}">{_esc(line)}</tspan>'
                    for i, line in enumerate(lines))
    out += f'<text text-anchor="{anchor}"{attrs}{_paint(col, "fill")}>{spans}</text>'
    turn = f" rotate({_n(-rot)})" if rot else ""
    gid = f' id="{_esc(kw["gid"])}"' if kw.get("gid") else ""
    return f'<g{gid} transform="translate({_n(px)},{_n(py)}){turn}">{out}</g>'


def _svg_direct(fig) -> bytes:
    """The SVG of a figure drawn on a canvas only: what matplotlib's SVG backend writes for it
    (the same shapes, text as text in DejaVu Sans), an order of magnitude faster."""
    from matplotlib.lines import Line2D

    W, H = (float(v) * 72 for v in fig.get_size_inches())
    items = []
    for i, op in enumerate(fig._cpa_ops):
        if op[0] == "text":
            z = op[4].get("zorder", 3)
            items.append((z, i, lambda op=op: _svg_text(op[1], op[2], op[3], op[4], H)))
        else:
            a = op[1]
            if not a.get_visible():
                continue
            if isinstance(a, Line2D):
                items.append((a.get_zorder(), i, lambda a=a: _svg_line(a, H)))
            else:
                items.append((a.get_zorder(), i, lambda a=a: _svg_patch(a, H)))
    items.sort(key=lambda t: (t[0], t[1]))
    body = "".join(f() for _z, _i, f in items)
    head = (f'<?xml version="1.0" encoding="utf-8" standalone="no"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(W)}pt" height="{_n(H)}pt" '
            f'viewBox="0 0 {_n(W)} {_n(H)}" version="1.1" xml:space="preserve">\n'
            f'{_HATCH if "url(#hatch)" in body else ""}'
            f'<rect width="{_n(W)}" height="{_n(H)}" fill="#ffffff"/>\n')
    return (head + body + "\n</svg>\n").encode("utf-8")


def _legend(cv, items, x0: float, x1: float, y: float, size: float = SMALL) -> float:
    """Legend entries flowing left to right, wrapping to new rows within [x0, x1] [cm].

    ``items``: (symbol width [cm], draw(x, y_centre), text, text colour). Starts with the centre
    of the first row at ``y``; returns the centre of the last row.
    """
    x = x0
    row_h = max(0.4, line_height(size) * PT_CM + 0.1)
    for sym_w, draw, text, colour in items:
        w = sym_w + 0.12 + text_width(text, size) * PT_CM
        if x > x0 and x + w > x1:
            x, y = x0, y - row_h
        draw(x, y)
        cv.text(x + sym_w + 0.12, y, text, va="center", ha="left", fontsize=size, color=colour)
        x += w + 0.45
    return y


def _legend_height(items, x0: float, x1: float, size: float = SMALL) -> float:
    """Rows × row height of :func:`_legend` for these items [cm]."""
    x, rows = x0, 1
    for sym_w, _d, text, _c in items:
        w = sym_w + 0.12 + text_width(text, size) * PT_CM
        if x > x0 and x + w > x1:
            x, rows = x0, rows + 1
        x += w + 0.45
    return rows * max(0.4, line_height(size) * PT_CM + 0.1)


def _swatch(cv, colour, w=0.3, h=0.22, **kw):
    def draw(x, y):
        cv.add_patch(matplotlib.patches.Rectangle((x, y - h / 2), w, h, facecolor=colour,
                                                  edgecolor=kw.get("edgecolor", "none"), hatch=kw.get("hatch"),
                                                  linewidth=kw.get("linewidth", 0)))
    return (w, draw)


TICK_LEN = 2.5 * PT_CM  # [cm] major tick marks (xtick.major.size)


def _tick_values(lo: float, hi: float, length_cm: float, per_cm: float = 1.3) -> list[float]:
    """Round tick values in [lo, hi], at most one per ``per_cm`` centimetres."""
    loc = matplotlib.ticker.MaxNLocator(nbins=max(2, int(length_cm / per_cm)), steps=[1, 2, 2.5, 5, 10])
    eps = (hi - lo) * 1e-9
    return [float(t) for t in loc.tick_values(lo, hi) if lo - eps <= t <= hi + eps]


def _x_axis(cv, X, ticks, labels, x0, x1, y0, y1, grid=GRID, grid_lw=0.5):
    """A value axis along the bottom of the plot area [x0, x1] × [y0, y1] (cm): grid lines,
    the axis line, tick marks and tick labels (drawn on the canvas, no Axes)."""
    for i, (t, lab) in enumerate(zip(ticks, labels, strict=True)):
        x = X(t)
        if grid:
            cv.plot([x, x], [y0, y1], color=grid, lw=grid_lw, zorder=0.5)
        cv.plot([x, x], [y0, y0 - TICK_LEN], color=MUTED, lw=0.5, zorder=2)
        cv.text(x, y0 - TICK_LEN - 0.07, lab, ha="center", va="top", fontsize=TICK, color=MUTED,
                gid=f"xtick_{i + 1}")
    cv.plot([x0, x1], [y0, y0], color=LIGHT, lw=0.6, zorder=2.5, solid_capstyle="butt")


def _ticks(ax, axis: str, length_cm: float, per_cm: float = 1.3):
    """At most one major tick per ``per_cm`` centimetres on ``axis`` (labels never collide)."""
    loc = matplotlib.ticker.MaxNLocator(nbins=max(2, int(length_cm / per_cm)), steps=[1, 2, 2.5, 5, 10])
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(loc)


def _name(row: dict, lang: str, base: str = "name") -> str:
    vi, en = row.get(f"{base}_vi"), row.get(f"{base}_en")
    ok = lambda v: v is not None and v == v and str(v).strip() != ""  # noqa: E731
    if lang == "vi":
        return str(vi) if ok(vi) else str(en) if ok(en) else str(row.get("id", ""))
    return str(en) if ok(en) else str(vi) if ok(vi) else str(row.get("id", ""))


def _records(df) -> list[dict]:
    return records(df) if df is not None and len(df) else []


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


def before_after(res, lang: str = "en", specific: bool = True, width_cm: float = FULL_W):
    """Baseline against each monitoring period, per resource, with the % change.

    One panel (or, below :data:`COMPACT_W`, one row) per indicator of ``res.indicators``:
    energy [GJ], electricity [kWh], fresh water [m³], each main material, wastewater, solid and
    hazardous waste and CO₂e; per unit of the reference product when ``specific`` (the official
    yardstick), else annualised totals (value × the period's annual factor). With no monitoring
    period the baseline is shown alone and the chart says that results are expected. Drawn
    ``width_cm`` wide. Returns None when there are no indicators.
    """
    with style():
        panels, periods = _before_after_rows(res, lang, specific)
        if not panels:
            return None
        only_base = len(periods) == 1
        prod = ""
        if specific:
            ref = res.ws.facility.get("reference_product") or ""
            sr = _streams(res).get(ref, {"id": ref})
            prod = _name(sr, lang)
        key = "before_after_specific" if specific else "before_after_absolute"
        title = _t(lang, key + ("_short" if width_cm < COMPACT_W else ""))
        sub = _t(lang, "annualised") if not specific else (
            ("Sản phẩm chuẩn: " if lang == "vi" else "Reference product: ") + prod)
        if only_base:
            sub += "  " + _t(lang, "expected")
        colours = [BASE] + [AFTER[i % len(AFTER)] for i in range(len(periods) - 1)]
        legend = [(_t(lang, "baseline_p") + ": " + _period_label(res, periods[0], lang), BASE)]
        for i, p in enumerate(periods[1:]):
            legend.append((_t(lang, "monitoring_p") + ": " + _period_label(res, p, lang), AFTER[i % len(AFTER)]))
        if width_cm < COMPACT_W:
            return _before_after_rows_chart(panels, periods, colours, legend, title, sub, only_base, lang, width_cm)
        return _before_after_panels(panels, periods, colours, legend, title, sub, only_base, lang, width_cm)


def _legend_items(cv, legend, max_w):
    return [(*_swatch(cv, colour), wrap(text, max_w / PT_CM, SMALL, 1), INK) for text, colour in legend]


def _before_after_panels(panels, periods, colours, legend, title, sub, only_base, lang, width):
    """Small multiples: one panel of bars per indicator (full width)."""
    from matplotlib.patches import Rectangle

    n = len(panels)
    ncol = max(1, min(n if n <= 4 else 4 if n <= 8 else 5, int(width / 3.0)))
    nrow = math.ceil(n / ncol)
    panel_h = 3.6
    head = head_height(width, title, sub)
    fig = _figure(width, 1.0)
    cv = _Canvas(fig)
    items = _legend_items(cv, legend, width / 2)
    legend_h = _legend_height(items, 0.2, width - 0.2) + 0.1
    height = head + legend_h + nrow * panel_h + 0.15
    fig.set_size_inches(width * CM, height * CM)
    _title(fig, title, sub)
    _legend(cv, items, 0.2, width - 0.2, height - head - 0.2)
    col_w = (width - 0.3) / ncol
    top0 = height - head - legend_h
    nper = len(periods)
    lh_s = line_height(SMALL) * PT_CM
    for k, (label, unit, vals) in enumerate(panels):
        r, c = divmod(k, ncol)
        left = 0.25 + c * col_w + 0.1
        pw = col_w - 0.45
        top = top0 - r * panel_h
        name = wrap(label, pw / PT_CM, SIZE, 2, bold=True)
        name_h = _lines(name) * line_height(SIZE) * PT_CM
        cv.text(left, top - 0.1, name, ha="left", va="top", fontsize=SIZE, weight="bold")
        cv.text(left, top - 0.1 - name_h, unit, ha="left", va="top", fontsize=SMALL, color=MUTED)
        y0 = top - panel_h + 0.3  # bar base line
        y1 = top - 0.1 - name_h - lh_s - 0.15 - 2 * lh_s  # room for the two labels above
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


def _before_after_rows_chart(panels, periods, colours, legend, title, sub, only_base, lang, width):
    """Compact layout for a half-page column: one row per indicator — its name and unit, one
    thin bar per period (scaled to the row's largest value), the values ("33,8 → 30,6") and
    the % change of the latest period against the baseline at the right."""
    from matplotlib.patches import Rectangle

    nper = len(periods)
    lh = line_height(SMALL) * PT_CM
    nb = nper if not only_base else 2
    bar_h = 0.15 if nb <= 2 else 0.11
    arrow = " → "
    values = [arrow.join(_fmt(v, lang) for v in vals) for _, _, vals in panels]
    change_w = 0 if only_base else max(text_width(_pct(-88.8, lang), SMALL, bold=True) * PT_CM + 0.15, 1.0)
    value_w = max(text_width(t, SMALL) * PT_CM for t in values) + 0.2
    label_w = min(max(2.6, 0.42 * width), 4.5)
    bar_w = width - 0.15 - label_w - value_w - change_w - 0.1
    if bar_w < 1.0:
        label_w -= 1.0 - bar_w
        bar_w = 1.0
    labels = [wrap(f"{label} ({unit})" if unit else label, (label_w - 0.2) / PT_CM, SMALL, 3)
              for label, unit, _ in panels]
    rows_h = [max(_lines(lb) * lh, nb * bar_h + 0.05) + 0.1 for lb in labels]
    head = head_height(width, title, sub)
    fig = _figure(width, 1.0)
    cv = _Canvas(fig)
    items = _legend_items(cv, legend, width - 0.8)
    legend_h = _legend_height(items, 0.15, width - 0.15) + 0.1
    height = head + legend_h + sum(rows_h) + 0.15
    fig.set_size_inches(width * CM, height * CM)
    _title(fig, title, sub)
    _legend(cv, items, 0.15, width - 0.15, height - head - 0.2)
    x_bar = 0.15 + label_w
    x_val = x_bar + bar_w + 0.1
    x_change = width - 0.1
    y = height - head - legend_h
    y_first_row = y
    for k, ((_label, _unit, vals), lab, val, rh) in enumerate(zip(panels, labels, values, rows_h, strict=True)):
        if k % 2 == 0:
            cv.add_patch(Rectangle((0.05, y - rh), width - 0.1, rh, facecolor="#f4f7fa", edgecolor="none", zorder=0))
        cy = y - rh / 2
        cv.text(0.15, cy, lab, ha="left", va="center", fontsize=SMALL, color=INK, linespacing=1.1)
        finite = [abs(v) for v in vals if v == v]
        vmax = max(finite + [1e-12])
        y_top_bar = cy + (nb - 1) * bar_h / 2
        for i, v in enumerate(vals):
            if v != v:
                continue
            bw = max(v, 0.0) / vmax * bar_w
            yc = y_top_bar - i * bar_h
            cv.add_patch(Rectangle((x_bar, yc - bar_h * 0.42), bw, bar_h * 0.84, facecolor=colours[i],
                                   edgecolor="none"))
        if only_base:
            yc = y_top_bar - bar_h
            cv.add_patch(Rectangle((x_bar, yc - bar_h * 0.42), bar_w * 0.5, bar_h * 0.84, facecolor="none",
                                   edgecolor=LIGHT, lw=0.6, linestyle=(0, (2, 2))))
            val += arrow + "?"
        cv.text(x_val, cy, val, ha="left", va="center", fontsize=SMALL, color=INK)
        if not only_base:
            base_v, last = vals[0], vals[-1]
            if base_v == base_v and base_v != 0 and last == last:
                ch = 100.0 * (last - base_v) / abs(base_v)
                colour = GOOD if ch < 0 else BAD if ch > 0 else MUTED
                cv.text(x_change, cy, _pct(ch, lang), ha="right", va="center", fontsize=SMALL, color=colour,
                        weight="bold")
        y -= rh
    cv.plot([x_bar, x_bar], [y, y_first_row], color=LIGHT, lw=0.6)
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


def savings_by_option(res, lang: str = "en", width_cm: float = FULL_W):
    """Net annual savings of each option [million VND/yr], sorted, as horizontal bars.

    Bars are the stand-alone net savings (savings − added operating cost) of
    ``res.options``, coloured by screening (implement now / study further / rejected); the note
    under the chart gives the combined total of the options not rejected, without double
    counting (``combined_net_saving_vnd_per_yr``). Drawn ``width_cm`` wide. Returns None when
    there are no options.
    """
    opts = res.options
    if _is_empty(opts) or "net_saving_vnd_per_yr" not in opts.columns:
        return None
    with style():
        rows = _records(opts)
        rows.sort(key=lambda r: (-(r["net_saving_vnd_per_yr"] if r["net_saving_vnd_per_yr"] == r["net_saving_vnd_per_yr"]
                                   else -math.inf)))
        width = width_cm
        label_w = min(7.2, max(3.3, (0.5 if width < COMPACT_W else 0.42) * width))
        right = 1.0 if width < COMPACT_W else 1.4
        # at half width one line per option (its id and the start of its title: the options
        # table above gives the whole title)
        lines = 1 if width < COMPACT_W else 2
        labels = [wrap(_option_title(r, lang), (label_w - 0.3) / PT_CM, SMALL, lines) for r in rows]
        row_h = [max(0.46, _lines(lb) * line_height(SMALL) * PT_CM + 0.14) for lb in labels]
        title = _t(lang, "savings_title")
        inc = [r for r in rows if r.get("included", True)]
        comb = sum(r.get("combined_net_saving_vnd_per_yr", 0.0) or 0.0 for r in inc
                   if r.get("combined_net_saving_vnd_per_yr") == r.get("combined_net_saving_vnd_per_yr"))
        sub = _t(lang, "combined", v=_fmt(comb / 1e6, lang, 0))
        head = head_height(width, title, sub)
        fig = _figure(width, 1.0)
        cv = _Canvas(fig)
        present = [s for s in ("implement_now", "study_further", "reject") if any(r.get("screening") == s for r in rows)]
        items = [(*_swatch(cv, SCREENING_COLOURS[s_], edgecolor="#8a8a8a" if s_ == "reject" else "none",
                           hatch="////" if s_ == "reject" else None), _screening_label(s_, lang), INK)
                 for s_ in present]
        x_leg = 0.15 if width < COMPACT_W else label_w
        legend_h = _legend_height(items, x_leg, width - 0.15) + 0.1
        xlabel = wrap(_t(lang, "savings_axis"), (width - label_w - right) / PT_CM, SMALL, 2)
        bottom = 0.55 + _lines(xlabel) * line_height(SMALL) * PT_CM
        height = head + legend_h + sum(row_h) + bottom
        fig.set_size_inches(width * CM, height * CM)
        _title(fig, title, sub)
        _legend(cv, items, x_leg, width - 0.15, height - head - 0.2)
        # the plot area [cm]: one row per option, 1 cm of height per cm of row
        x0, x1, y0, y1 = label_w, width - right, bottom, height - head - legend_h
        ys, y = [], 0.0
        for h in row_h:
            ys.append(y1 - (y + h / 2))
            y += h
        vals = [r["net_saving_vnd_per_yr"] / 1e6 if r["net_saving_vnd_per_yr"] == r["net_saving_vnd_per_yr"]
                else math.nan for r in rows]
        colours = [SCREENING_COLOURS.get(r.get("screening"), BASE) for r in rows]
        finite = [v for v in vals if v == v]
        vmax = max([abs(v) for v in finite] + [1.0])
        vmin = min(finite + [0.0])
        # room for the value label after the longest bar
        lab_w = max([text_width(_fmt(v, lang, 0 if abs(v) >= 10 else 1), SMALL) * PT_CM for v in finite] + [0.5])
        ax_w = x1 - x0
        hi = vmax / max(1.0 - (lab_w + 0.15 - right) / ax_w, 0.6) if lab_w + 0.15 > right else vmax * 1.05
        lo = min(0.0, vmin * 1.15)

        def X(v):
            return x0 + (v - lo) / (hi - lo) * ax_w

        ticks = _tick_values(lo, hi, ax_w)
        fmt = number_formatter(lang)
        fmt.set_locs(ticks)
        _x_axis(cv, X, ticks, [fmt(t) for t in ticks], x0, x1, y0, y1)
        from matplotlib.patches import Rectangle

        for yc, v, r, c, h, lab in zip(ys, vals, rows, colours, row_h, labels, strict=True):
            bh = min(0.62 * h, 0.36)
            cv.text(x0 - 0.12, yc, lab, ha="right", va="center", fontsize=SMALL, color=MUTED)
            if v == v:
                reject = r.get("screening") == "reject"
                cv.add_patch(Rectangle((min(X(v), X(0.0)), yc - bh / 2), abs(X(v) - X(0.0)), bh, facecolor=c,
                                       edgecolor="#8a8a8a" if reject else "none", hatch="////" if reject else None,
                                       linewidth=0, zorder=2))
                # after the bar; a negative bar's label right of zero (left of it are the names)
                cv.text(X(max(v, 0.0)) + 0.08, yc, _fmt(v, lang, 0 if abs(v) >= 10 else 1).replace("-", "−"),
                        ha="left", va="center", fontsize=SMALL, color=BAD if v < 0 else INK)
            else:
                cv.text(X(0.0) + 0.08, yc, _t(lang, "not_valued"), ha="left", va="center", fontsize=SMALL,
                        color=MUTED, style="italic")
        cv.text((x0 + x1) / 2, y0 - TICK_LEN - 0.07 - line_height(TICK) * PT_CM - 0.05, xlabel, ha="center",
                va="top", fontsize=SMALL, color=MUTED)
        return fig


def _place_labels(points_pt, texts, radii_pt, area_pt, size=SMALL):
    """Place one short label per point beside its marker so that no label overlaps another
    label or a marker, inside ``area_pt`` = (x0, y0, x1, y1); points and area in pt. Returns
    the chosen (dx, dy) offsets [pt] in the order of points."""
    from types import SimpleNamespace

    ppp = 1.0
    xy = list(points_pt)
    boxes = []
    circles = [(px, py, r * ppp) for (px, py), r in zip(xy, radii_pt, strict=True)]
    bbox_ax = SimpleNamespace(x0=area_pt[0], y0=area_pt[1], x1=area_pt[2], y1=area_pt[3])
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

    order = sorted(range(len(xy)), key=lambda i: -radii_pt[i])
    chosen = [None] * len(xy)
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


def payback_vs_investment(res, lang: str = "en", buckets=(1, 2, 3), width_cm: float = FULL_W):
    """Simple payback [yr] against investment net of grants [million VND, log scale]; bubble
    area = net annual savings; payback buckets < 1, 1–2, 2–3, > 3 years shaded.

    Options whose savings are not valued are listed under the chart; a payback beyond the axis
    (or "never") is drawn at the top edge with its value. Drawn ``width_cm`` wide. Returns None
    without options.
    """
    opts = res.options
    if _is_empty(opts) or "payback_yr" not in opts.columns:
        return None
    with style():
        rows = _records(opts)
        shown = [r for r in rows if r.get("payback_yr") == r.get("payback_yr")]
        hidden = [str(r["id"]) for r in rows if r not in shown]
        width = width_cm
        compact = width < COMPACT_W
        sub = _t(lang, "bubble") + ("  ·  " + _t(lang, "omitted", ids=", ".join(hidden)) if hidden else "")
        title = _t(lang, "payback_title")
        head = head_height(width, title, sub)
        bub_max, bub_min = (420.0, 20.0) if compact else (900.0, 30.0)  # bubble areas [pt²]
        sav = [max(float(r.get("net_saving_vnd_per_yr") or 0.0), 0.0) for r in shown]
        smax = max(sav + [1.0])
        fig = _figure(width, 1.0)
        cv = _Canvas(fig)
        present = [s_ for s_ in ("implement_now", "study_further", "reject") if any(r.get("screening") == s_ for r in shown)]
        items = []
        for s_ in present:
            def dot(x, y, c=SCREENING_COLOURS[s_]):
                cv.circle(x + 0.1, y, 0.1, facecolor=c, edgecolor="white", lw=0.5)
            items.append((0.2, dot, _screening_label(s_, lang), INK))
        unit = " tr.đ/năm" if lang == "vi" else " M VND/yr"
        for frac in (0.5, 0.1):
            r_cm = math.sqrt(bub_min + bub_max * frac) / 2 * PT_CM  # scatter: s = diameter² [pt²]

            def ring(x, y, r_cm=r_cm):
                cv.circle(x + r_cm, y, r_cm, facecolor="none", edgecolor=LIGHT, lw=0.6)
            items.append((2 * r_cm, ring, _fmt(smax * frac / 1e6, lang, 0) + unit, MUTED))
        left = 1.45
        right = max(text_width(_t(lang, "gt", a="3"), SMALL) * PT_CM + 0.3, 1.2)
        legend_h = _legend_height(items, 0.15 if compact else left, width - 0.15) + 0.15
        xlabel = wrap(_t(lang, "investment_axis"), (width - left - right) / PT_CM, SMALL, 2)
        bottom = 0.6 + _lines(xlabel) * line_height(SMALL) * PT_CM
        plot_h = 3.9 if compact else 6.8
        height = head + legend_h + plot_h + bottom + 0.2
        fig.set_size_inches(width * CM, height * CM)
        _title(fig, title, sub)
        _legend(cv, items, 0.15 if compact else left, width - 0.15, height - head - 0.2)
        x0, x1, y0, y1 = left, width - right, bottom, height - head - legend_h - 0.2  # plot area [cm]
        if not shown:
            cv.text((x0 + x1) / 2, (y0 + y1) / 2, _t(lang, "no_options"), ha="center", va="center",
                    fontsize=SIZE, color=MUTED)
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
        area = [bub_min + bub_max * s_ / smax for s_ in sav]  # pt² (as matplotlib's scatter: diameter²)
        lx0, lx1 = math.log10(lo / 1.6), math.log10(hi * 1.6)
        ylo, yhi = -top * 0.03, top * 1.04

        def X(v):
            return x0 + (math.log10(v) - lx0) / (lx1 - lx0) * (x1 - x0)

        def Y(v):
            return y0 + (v - ylo) / (yhi - ylo) * (y1 - y0)

        from matplotlib.patches import Rectangle

        edges = [0, *buckets, yhi]
        for i in range(len(edges) - 1):
            cv.add_patch(Rectangle((x0, Y(edges[i])), x1 - x0, Y(min(edges[i + 1], yhi)) - Y(edges[i]),
                                   facecolor=BUCKET_COLOURS[min(i, len(BUCKET_COLOURS) - 1)], edgecolor="none",
                                   zorder=0))
            if i == 0:
                lab = _t(lang, "lt", a=_fmt(buckets[0], lang, 0))
            elif i == len(edges) - 2:
                lab = _t(lang, "gt", a=_fmt(buckets[-1], lang, 0))
            else:
                lab = _t(lang, "years", a=_fmt(edges[i], lang, 0), b=_fmt(edges[i + 1], lang, 0))
            cv.text(x1 + 0.01 * (x1 - x0), Y((edges[i] + min(edges[i + 1], yhi)) / 2), lab, ha="left",
                    va="center", fontsize=SMALL, color=MUTED)
        # x: decades (log scale) with minor ticks at 2 and 5; y: round values; white grid lines
        xfmt = number_formatter(lang, decimals=0)
        decades = [10.0 ** k for k in range(math.ceil(lx0 - 1e-9), math.floor(lx1 + 1e-9) + 1)]
        _x_axis(cv, X, decades, [xfmt(t) for t in decades], x0, x1, y0, y1, grid="white", grid_lw=0.8)
        for k in range(math.floor(lx0), math.floor(lx1) + 1):
            for m in (2.0, 5.0):
                v = m * 10.0 ** k
                if lx0 <= math.log10(v) <= lx1:
                    cv.plot([X(v), X(v)], [y0, y0 - TICK_LEN * 0.6], color=MUTED, lw=0.4, zorder=2)
        yticks = _tick_values(ylo, yhi, y1 - y0, 0.7)
        yfmt = number_formatter(lang)
        yfmt.set_locs(yticks)
        ylabels = [yfmt(t) for t in yticks]
        for i, (t, lab) in enumerate(zip(yticks, ylabels, strict=True)):
            cv.plot([x0, x1], [Y(t), Y(t)], color="white", lw=0.8, zorder=1)
            cv.plot([x0 - TICK_LEN, x0], [Y(t), Y(t)], color=MUTED, lw=0.5, zorder=2)
            cv.text(x0 - TICK_LEN - 0.07, Y(t), lab, ha="right", va="center", fontsize=TICK, color=MUTED,
                    gid=f"ytick_{i + 1}")
        cv.plot([x0, x0], [y0, y1], color=LIGHT, lw=0.6, zorder=2.5, solid_capstyle="butt")
        cv.text((x0 + x1) / 2, y0 - TICK_LEN - 0.07 - line_height(TICK) * PT_CM - 0.05, xlabel, ha="center",
                va="top", fontsize=SMALL, color=MUTED)
        ytw = max(text_width(lab, TICK) for lab in ylabels) * PT_CM
        cv.text(x0 - TICK_LEN - 0.07 - ytw - 0.12, (y0 + y1) / 2,
                wrap(_t(lang, "payback_axis"), (y1 - y0 - 0.2) / PT_CM, SMALL, 2), rotation=90, ha="center",
                va="bottom", fontsize=SMALL, color=MUTED)
        colours = [SCREENING_COLOURS.get(r.get("screening"), BASE) for r in shown]
        order = sorted(range(len(shown)), key=lambda i: -area[i])  # large bubbles below small ones
        for i in order:
            cv.circle(X(xs[i]), Y(ys[i]), math.sqrt(area[i]) / 2 * PT_CM, facecolor=colours[i], alpha=0.92,
                      edgecolor="white", lw=0.6, zorder=3)
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
        pts = [(X(x) / PT_CM, Y(y) / PT_CM) for x, y in zip(xs, ys, strict=True)]
        offs = _place_labels(pts, texts, radii, (x0 / PT_CM, y0 / PT_CM, x1 / PT_CM, y1 / PT_CM))
        for (px, py), t, (dx, dy) in zip(pts, texts, offs, strict=True):
            cv.text((px + dx) * PT_CM, (py + dy) * PT_CM, t, ha="center", va="center", fontsize=SMALL, color=INK,
                    zorder=5)
        return fig


# ----------------------------------------------------------------------------------------------
# 3. cost of waste streams (Pareto)


def waste_pareto(res, lang: str = "en", period=None, max_bars: int = 10, width_cm: float = FULL_W):
    """Pareto of the annual cost of waste streams [million VND/yr] with the cumulative share.

    From ``res.waste_costs`` for ``period`` (default: the baseline). A stream whose cost is a
    lower bound (a price missing) is hatched and its value marked ``≥``; streams beyond
    ``max_bars`` are grouped as "other". Drawn ``width_cm`` wide: columns with the cumulative
    line at full width; below :data:`COMPACT_W`, one row per stream with the cumulative share at
    the right and a dashed rule where it passes 80 %. Returns None when there are no waste costs.
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
        incomplete = any(not bool(r["complete"]) for r in rows)
        sub = _t(lang, "lower_bound") if incomplete else ""
        title = _t(lang, "pareto_title", period=_period_label(res, period, lang))
        labels = []
        for v, r in zip(vals, rows, strict=True):
            t = _fmt(v, lang, 0 if v >= 10 else 1)
            labels.append(t if bool(r["complete"]) else "≥ " + t)
        if width_cm < COMPACT_W:
            return _pareto_rows(res, lang, rows, vals, cum, labels, title, sub, width_cm)
        n = len(rows)
        width = width_cm
        left, right = 1.7, 1.75
        slot = (width - left - right) / n
        names = [wrap(_name(r, lang), (slot - 0.12) / PT_CM, TICK, 4) for r in rows]
        lab_h = max(_lines(s_) for s_ in names) * line_height(TICK) * PT_CM + 0.25
        head = head_height(width, title, sub)
        height = head + 6.6 + lab_h
        fig = _figure(width, height)
        _title(fig, title, sub)
        ax = _axes_cm(fig, left, lab_h + 0.25, right, head + 0.35)
        xs = list(range(n))
        bars = ax.bar(xs, vals, width=0.68, color=AFTER[0], edgecolor="none", zorder=2)
        for b_, r in zip(bars, rows, strict=True):
            if not bool(r["complete"]):
                b_.set_facecolor(AFTER[2])
                b_.set_hatch("////")
        vmax = max(vals + [1e-9])
        ax.set_ylim(0, vmax * 1.15)
        ax.set_xlim(-0.55, n - 0.45)
        ax.set_xticks(xs)
        ax.set_xticklabels(names, fontsize=TICK, linespacing=1.05)
        ax.tick_params(axis="x", length=0, pad=3)
        _ticks(ax, "y", height - head - lab_h - 0.6, 0.9)
        ax.yaxis.set_major_formatter(number_formatter(lang))
        ax.set_ylabel(_t(lang, "pareto_axis"), fontsize=SMALL, color=MUTED)
        ax.grid(axis="y", zorder=0)
        ax.set_axisbelow(True)
        for x, v, t in zip(xs, vals, labels, strict=True):
            ax.text(x, v + vmax * 0.012, t, ha="center", va="bottom", fontsize=SMALL, color=INK, zorder=4)
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


def _pareto_rows(res, lang, rows, vals, cum, labels, title, sub, width):
    """The Pareto for a half-page column: one row per stream, largest first — name, bar, cost,
    cumulative share — with a dashed rule where the cumulative share passes 80 %."""
    from matplotlib.patches import Rectangle

    lh = line_height(SMALL) * PT_CM
    cum_txt = [_pct(c, lang, 0, sign=False) for c in cum]
    cum_head = _t(lang, "cumulative")
    cum_w = max([text_width(t, SMALL) * PT_CM for t in cum_txt] + [text_width(cum_head, SMALL) * PT_CM * 0.6]) + 0.2
    val_w = max(text_width(t, SMALL) * PT_CM for t in labels) + 0.15
    label_w = min(max(2.6, 0.36 * width), 4.5)
    bar_w = width - 0.15 - label_w - val_w - cum_w - 0.1
    names = [wrap(_name(r, lang), (label_w - 0.2) / PT_CM, SMALL, 2) for r in rows]
    rows_h = [max(_lines(nm) * lh, 0.34) + 0.14 for nm in names]
    head = head_height(width, title, sub)
    axis_lab = wrap(_t(lang, "pareto_axis"), (bar_w + val_w) / PT_CM, SMALL, 2)
    col_head = wrap(cum_head, cum_w / PT_CM + 20, SMALL, 2)
    top_h = max(_lines(col_head), _lines(axis_lab)) * lh + 0.15
    height = head + top_h + sum(rows_h) + 0.15
    fig = _figure(width, height)
    _title(fig, title, sub)
    cv = _Canvas(fig)
    y = height - head
    x_bar = 0.15 + label_w
    cv.text(x_bar, y, axis_lab, ha="left", va="top",
            fontsize=SMALL, color=MUTED)
    cv.text(width - 0.1, y, col_head, ha="right", va="top", fontsize=SMALL, color=ACCENT, multialignment="right")
    y -= top_h
    vmax = max(vals + [1e-9])
    crossed = False
    for k, (nm, v, t, c, rh, r) in enumerate(zip(names, vals, labels, cum_txt, rows_h, rows, strict=True)):
        if k % 2 == 0:
            cv.add_patch(Rectangle((0.05, y - rh), width - 0.1, rh, facecolor="#f4f7fa", edgecolor="none", zorder=0))
        cy = y - rh / 2
        cv.text(0.15, cy, nm, ha="left", va="center", fontsize=SMALL, color=INK, linespacing=1.1)
        bw = v / vmax * bar_w
        complete = bool(r["complete"])
        cv.add_patch(Rectangle((x_bar, cy - 0.12), bw, 0.24, facecolor=AFTER[0] if complete else AFTER[2],
                               edgecolor="none", hatch=None if complete else "////", zorder=2))
        cv.text(x_bar + bw + 0.07, cy, t, ha="left", va="center", fontsize=SMALL, color=INK)
        cv.text(width - 0.1, cy, c, ha="right", va="center", fontsize=SMALL, color=ACCENT)
        y -= rh
        if not crossed and cum[k] == cum[k] and cum[k] >= 80.0 and k < len(rows) - 1:
            crossed = True
            cv.plot([0.05, width - 0.05], [y, y], color=ACCENT, lw=0.7, ls=(0, (3, 2)), zorder=3)
    cv.plot([x_bar, x_bar], [y, height - head - top_h], color=LIGHT, lw=0.6)
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


def sankey(res, lang: str = "en", layer: str = "water", period=None, threshold: float = 0.015,
           width_cm: float = FULL_W):
    """Sankey diagram of one layer (``mass`` [t], ``water`` [m³], ``energy`` [GJ]) in one period.

    Columns: inputs from outside (one node per stream) on the left, process steps in process
    order, outputs (products, wastes, losses per stream) on the right. Band widths are
    proportional to the quantity in the period. A step whose balance (``res.balances``) shows an
    unaccounted gap sends it to an "unaccounted" node. Inputs and outputs below ``threshold`` of
    the layer's total are grouped as "other". Drawn ``width_cm`` wide. Returns None when the
    layer has no flows.
    """
    period = period or res.baseline
    flows = _layer_flows(res, layer, period)
    if not flows:
        return None
    with style():
        return _sankey(res, lang, layer, period, flows, threshold, width_cm)


def _sankey(res, lang, layer, period, flows, threshold, width=FULL_W):
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
    lsize = SMALL
    srcs = [n for n in node_val if n[0] == "in"]
    sinks = [n for n in node_val if n[0] == "out"]
    side_w = min(3.3, 0.2 * width)
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
    ssize = lsize
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
    height = max(8.0, 12.0 * width / FULL_W)
    fig = _figure(width, height)
    head = _title(fig, title, sub)
    ax = _Canvas(fig)
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


def flow_chart(res, lang: str = "en", period=None, width_cm: float = FULL_W):
    """Process flow chart: steps as boxes in process order (top to bottom), arrows for the
    links; utilities (steps that carry no material of the product, e.g. a boiler) in a column
    at the left; at full width each step's inputs and outputs from outside (in ``period``,
    default the baseline) are listed beside it. Below :data:`COMPACT_W` (a half-page column)
    the chart shows the steps and links with their short labels only, and leaves the inputs and
    outputs to the balance tables. Returns None when the worksheet has no steps."""
    steps = res.ws.tables["steps"]
    if _is_empty(steps):
        return None
    with style():
        return _flow_chart(res, lang, period or res.baseline, width_cm)


def _flow_chart(res, lang, period, width=FULL_W):
    from matplotlib.patches import FancyBboxPatch

    order, w, _ = _step_graph(res)
    tab = {r["id"]: r for r in _records(res.ws.tables["steps"])}
    utils = [s for s in order if _is_utility(res, s)]
    main = [s for s in order if s not in utils]
    if not main:
        main, utils = order, []
    compact = width < COMPACT_W
    has_u = bool(utils)
    n_right = sum(1 for (a, b) in w if a in main and b in main and abs(main.index(a) - main.index(b)) != 1)
    right_lanes = 0.25 + 0.14 * n_right if n_right else 0.0
    size = SMALL
    lh = line_height(size) * PT_CM
    if compact:
        ux0 = 0.1
        ux1 = ux0 + (min(2.6, 0.28 * width) if has_u else 0.0)
        mx0 = ux1 + 0.3 + 0.3 * len(utils) + 0.15 if has_u else 0.3
        mx1 = width - 0.15 - right_lanes
        io_x, io_w = width, 0.0
        name_lines = 3
    else:
        ux0, ux1 = 0.2, 3.7
        mx0 = 5.0 if has_u else 0.6
        mx1 = mx0 + 3.9
        io_x = mx1 + (0.2 + right_lanes if n_right else 0.45)
        io_w = width - io_x - 0.15
        name_lines = 2
    lane_r = mx1 + 0.25
    names = {s: wrap(_name(tab[s], lang), (mx1 - mx0 - 0.3) / PT_CM, SIZE, name_lines, bold=True) for s in main}
    unames = {s: wrap(_name(tab[s], lang), (ux1 - ux0 - 0.25) / PT_CM, SIZE, name_lines, bold=True) for s in utils}
    ios = {}
    for s in main + utils:
        if compact:
            ios[s] = ""
            continue
        wdt = io_w if s in main else (ux1 - ux0)
        ins = _io_text(res, s, lang, period, "in")
        outs = _io_text(res, s, lang, period, "out")
        parts = []
        if ins:
            parts.append(wrap(_t(lang, "in") + " " + ins, wdt / PT_CM, size, 6))
        if outs:
            parts.append(wrap(_t(lang, "out") + " " + outs, wdt / PT_CM, size, 6))
        ios[s] = "\n".join(parts)
    box_h = {s: max(0.75, _lines(names[s]) * line_height(SIZE) * PT_CM + 0.3) for s in main}
    row_h = {s: max(box_h[s], _lines(ios[s]) * lh + 0.1) for s in main}
    ubox_h = {s: max(0.75, _lines(unames[s]) * line_height(SIZE) * PT_CM + 0.3) for s in utils}
    gap = 0.5 if compact else 0.65
    title = _t(lang, "flow_title")
    sub = _t(lang, "flow_sub_compact") if compact else _t(lang, "flow_sub", period=_period_label(res, period, lang))
    head = head_height(width, title, sub)
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
    height = head + body_h + 0.25
    fig = _figure(width, height)
    _title(fig, title, sub)
    ax = _Canvas(fig)
    y0 = height - head - 0.05

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

    def line(xs, ys, colour=INK, dashed=False):
        ax.plot(xs, ys, color=colour, lw=0.8, zorder=2, ls=(0, (3, 2)) if dashed else "-",
                solid_capstyle="butt")

    mi = {s: i for i, s in enumerate(main)}
    lanes_r = 0
    lanes_l = {}
    link_names = {}
    for r in _records(res.ws.tables.get("links")):  # the label in the chart's language, else any
        name = r.get(f"material_{lang}") or r.get("material") or r.get("material_vi") or r.get("material_en")
        if name:
            link_names.setdefault((r["from"], r["to"]), str(name))
    in_slots: dict = {}
    for (a, b) in sorted(w, key=lambda e: (e[0] in utils, mi.get(e[0], 99), mi.get(e[1], 99))):
        if a not in pos or b not in pos:
            continue
        if a in mi and b in mi:
            if mi[b] == mi[a] + 1:
                xm = (mx0 + mx1) / 2
                ax.arrow(xm, pos[a][3], xm, pos[b][2])
                lab = link_names.get((a, b))
                if lab:
                    ax.text(xm + 0.12, (pos[a][3] + pos[b][2]) / 2, wrap(lab, (mx1 - xm - 0.1) / PT_CM, SMALL, 1),
                            ha="left", va="center", fontsize=SMALL, color=MUTED, style="italic")
            else:
                lx = lane_r + 0.14 * lanes_r
                lanes_r += 1
                ya = (pos[a][2] + pos[a][3]) / 2 - 0.12
                n_in = in_slots.get(("r", b), 0)
                in_slots[("r", b)] = n_in + 1
                yb = (pos[b][2] + pos[b][3]) / 2 + 0.2 - 0.13 * n_in
                dashed = mi[b] < mi[a]
                line([mx1, lx, lx], [ya, ya, yb], dashed=dashed)
                ax.arrow(lx, yb, mx1, yb, dashed=dashed)
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
                ax.arrow(lx, yb, x_to, yb, colour)
            else:
                ya = (pos[a][2] + pos[a][3]) / 2 - 0.25
                yb = (pos[b][2] + pos[b][3]) / 2 - 0.15
                line([pos[a][0], lx, lx], [ya, ya, yb], colour, dashed=True)
                ax.arrow(lx, yb, pos[b][1], yb, colour, dashed=True)
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


def _span_with_labels(vals, widths, ax_w: float, lo: float = 0.0, hi: float = 0.0, pad: float = 0.08):
    """The value range [lo, hi] of a bar axis ``ax_w`` cm long that shows every bar of ``vals``
    from zero and, beyond its end, its label ``widths`` [cm] wide (left of a negative bar)."""
    lo = min([lo, 0.0] + list(vals))
    hi = max([hi, 0.0] + list(vals))
    if hi - lo <= 0:
        hi = lo + 1.0
    d_lo, d_hi = lo, hi
    for _ in range(6):  # the scale depends on the range: a few rounds settle it
        per_cm = (hi - lo) / ax_w
        need_hi = max([d_hi] + [v + (pad + w) * per_cm for v, w in zip(vals, widths, strict=True) if v >= 0])
        need_lo = min([d_lo] + [v - (pad + w) * per_cm for v, w in zip(vals, widths, strict=True) if v < 0])
        if need_hi <= hi + 1e-9 and need_lo >= lo - 1e-9:
            break
        lo, hi = min(lo, need_lo), max(hi, need_hi)
    if (d_hi - d_lo) < 0.3 * (hi - lo):  # labels too wide for the axis: the bars keep 30 % of it
        grow = (d_hi - d_lo) / 0.3 - (d_hi - d_lo)
        share = (hi - d_hi) / ((hi - d_hi) + (d_lo - lo))
        lo, hi = d_lo - grow * (1 - share), d_hi + grow * share
    return lo, hi


def _axis_label(cv, text: str, xc: float, x_min: float, x_max: float, y0: float) -> None:
    """An axis title under the tick labels of an axis at ``y0``, centred at ``xc`` and kept
    within [x_min, x_max] [cm] (already wrapped)."""
    w = max(text_width(line, SMALL) for line in text.split("\n")) * PT_CM
    xc = min(max(xc, x_min + w / 2), x_max - w / 2)
    cv.text(xc, y0 - TICK_LEN - 0.07 - line_height(TICK) * PT_CM - 0.05, text, ha="center", va="top",
            fontsize=SMALL, color=MUTED)


def _axis_label_lines(text: str, xc: float, x_min: float, x_max: float) -> str:
    """``text`` wrapped to fit centred at ``xc`` within [x_min, x_max] (or shifted into it)."""
    return wrap(text, max(2 * min(xc - x_min, x_max - xc), min(x_max - x_min, 4.0)) / PT_CM, SMALL, 2)


def programme_change(table, lang: str = "en", band=(8, 13), width_cm: float = FULL_W):
    """% change in consumption per unit of product of each facility against the target band.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per facility: ``facility_id``, ``facility_name`` (``facility_name_en``
        optional) and any of :data:`CHANGE_COLUMNS` (``energy_change_pct``,
        ``water_change_pct``, ...) [%] = 100 × (after − before) / before of the specific
        consumption; negative is a reduction. NaN: not measured ("—").
    band : (float, float)
        Target reduction band [%], e.g. (8, 13) for Dong Nai; shaded.

    The chart plots the *reduction* (−change) so that reaching the target is to the right.
    Drawn on the canvas (no Axes). Returns None when the table has no rows or no change column.
    """
    if _is_empty(table):
        return None
    cols = [c for c in CHANGE_COLUMNS if c in table.columns and table[c].notna().any()]
    cols += [c for c in table.columns if c.endswith("_change_pct") and c not in cols and table[c].notna().any()]
    if not cols:
        return None
    from matplotlib.patches import Rectangle

    with style():
        rows = _records(table)
        width = width_cm
        compact = width < COMPACT_W
        lh = line_height(SMALL) * PT_CM
        label_w = min(5.0, max(2.6, 0.3 * width))
        right = 0.35
        labels = [wrap(_facility_label(r, lang), (label_w - 0.3) / PT_CM, SMALL, 2) for r in rows]
        nb = len(cols)
        bar_h = 0.26
        group_h = [max(nb * bar_h + 0.3, _lines(lb) * lh + 0.2) for lb in labels]
        title = _t(lang, "prog_change_title")
        head = head_height(width, title)
        fig = _figure(width, 1.0)
        cv = _Canvas(fig)
        items = []
        for j, c in enumerate(cols):
            key = CHANGE_COLUMNS.get(c, (None,))[0]
            t = _t(lang, key) if key else c.replace("_change_pct", "").replace("_", " ")
            items.append((*_swatch(cv, CHANGE_COLOURS[j % len(CHANGE_COLOURS)]), t, INK))
        x_leg = 0.15 if compact else label_w
        legend_h = _legend_height(items, x_leg, width - 0.15) + 0.1
        band_h = lh + 0.12  # the target band's label, above the plot area
        x0, x1 = label_w, width - right
        ax_w = x1 - x0
        xlabel = _axis_label_lines(_t(lang, "prog_change_axis"), (x0 + x1) / 2, 0.1, width - 0.1)
        bottom = 0.55 + _lines(xlabel) * lh
        height = head + legend_h + band_h + sum(group_h) + bottom
        fig.set_size_inches(width * CM, height * CM)
        _title(fig, title)
        _legend(cv, items, x_leg, width - 0.15, height - head - 0.2)
        y0, y1 = bottom, height - head - legend_h - band_h

        # the reductions (−change) and their labels; NaN: not measured
        bars = []  # (y centre, reduction or None, colour)
        yc = y1
        centres = []
        for r, gh in zip(rows, group_h, strict=True):
            c0 = yc - gh / 2
            centres.append(c0)
            for j, c in enumerate(cols):
                v = r.get(c)
                yy = c0 + (nb - 1) * bar_h / 2 - j * bar_h
                red = None if v is None or v != v else -float(v)
                bars.append((yy, red, CHANGE_COLOURS[j % len(CHANGE_COLOURS)]))
            yc -= gh
        reds = [b[1] for b in bars if b[1] is not None]
        texts = [_fmt(v, lang, 1).replace("-", "−") for v in reds]
        lo, hi = _span_with_labels(reds, [text_width(t, SMALL) * PT_CM for t in texts], ax_w,
                                   min(0.0, float(band[0])), float(band[1]))

        def X(v):
            return x0 + (v - lo) / (hi - lo) * ax_w

        ticks = _tick_values(lo, hi, ax_w)
        fmt = number_formatter(lang)
        fmt.set_locs(ticks)
        _x_axis(cv, X, ticks, [fmt(t).replace("-", "−") for t in ticks], x0, x1, y0, y1)
        # the target band, shaded over the whole plot area and labelled above it
        b0, b1 = max(X(float(band[0])), x0), min(X(float(band[1])), x1)
        cv.add_patch(Rectangle((b0, y0), max(b1 - b0, 0.0), y1 - y0, facecolor="#e6f2ea", edgecolor="none",
                               linewidth=0, zorder=0))
        target = _t(lang, "target", a=_fmt(band[0], lang, 0), b=_fmt(band[1], lang, 0))
        tw = text_width(target, SMALL) * PT_CM
        xt = min(max((b0 + b1) / 2, x0 + tw / 2), width - 0.1 - tw / 2)
        cv.text(xt, y1 + 0.06, target, ha="center", va="bottom", fontsize=SMALL, color=GOOD)
        cv.plot([X(0.0), X(0.0)], [y0, y1], color=LIGHT, lw=0.6, zorder=1)
        for c0, lab in zip(centres, labels, strict=True):
            cv.text(x0 - 0.12, c0, lab, ha="right", va="center", fontsize=SMALL, color=MUTED)
        it = iter(texts)
        for yy, red, colour in bars:
            if red is None:
                cv.text(X(0.0) + 0.12, yy, "—", ha="left", va="center", fontsize=SMALL, color=LIGHT)
                continue
            cv.add_patch(Rectangle((min(X(red), X(0.0)), yy - bar_h * 0.85 / 2), abs(X(red) - X(0.0)),
                                   bar_h * 0.85, facecolor=colour, edgecolor="none", linewidth=0, zorder=2))
            t = next(it)
            if red >= 0:
                cv.text(X(red) + 0.08, yy, t, ha="left", va="center", fontsize=SMALL, color=INK, zorder=4)
            else:
                cv.text(X(red) - 0.08, yy, t, ha="right", va="center", fontsize=SMALL, color=INK, zorder=4)
        _axis_label(cv, xlabel, (x0 + x1) / 2, 0.1, width - 0.1, y0)
        return fig


def _bar_panel(cv, lang, names, vals, texts, colours, rows_h, x0, x1, y0, y1, axis_label, lab_x0, lab_x1,
               per_cm=1.3):
    """Rows of horizontal bars from zero on the canvas, from ``y1`` down (top row first), over
    the value axis at ``y0``: names right-aligned left of ``x0``, each value label after its bar (left of a
    negative one), the axis titled ``axis_label`` (kept within [lab_x0, lab_x1]) [cm]."""
    from matplotlib.patches import Rectangle

    ax_w = x1 - x0
    lo, hi = _span_with_labels(vals, [max(text_width(s, SMALL) for s in t.split("\n")) * PT_CM for t in texts], ax_w)

    def X(v):
        return x0 + (v - lo) / (hi - lo) * ax_w

    ticks = _tick_values(lo, hi, ax_w, per_cm)
    fmt = number_formatter(lang)
    fmt.set_locs(ticks)
    _x_axis(cv, X, ticks, [fmt(t).replace("-", "−") for t in ticks], x0, x1, y0, y1)
    if lo < 0:
        cv.plot([X(0.0), X(0.0)], [y0, y1], color=LIGHT, lw=0.6, zorder=1)
    y = y1
    for v, h, nm, t, c in zip(vals, rows_h, names, texts, colours, strict=True):
        yc = y - h / 2
        cv.text(x0 - 0.12, yc, nm, ha="right", va="center", fontsize=SMALL, color=MUTED)
        cv.add_patch(Rectangle((min(X(v), X(0.0)), yc - 0.2), abs(X(v) - X(0.0)), 0.4, facecolor=c,
                               edgecolor="none", linewidth=0, zorder=2))
        cv.text(X(v) + (0.08 if v >= 0 else -0.08), yc, t, ha="left" if v >= 0 else "right", va="center",
                fontsize=SMALL, color=BAD if v < 0 else INK, multialignment="left" if v >= 0 else "right")
        y -= h
    _axis_label(cv, axis_label, (x0 + x1) / 2, lab_x0, lab_x1, y0)


def programme_totals(table, lang: str = "en", width_cm: float = FULL_W):
    """Annual savings of a programme [million VND/yr]: by facility (sorted bars, investment as
    a label) and, when the table has ``sector``, by sector (beside it; below it in the compact
    layout).

    Parameters
    ----------
    table : pandas.DataFrame
        ``facility_id``, ``facility_name``, ``saving_vnd_per_yr`` [VND/yr]; optional
        ``investment_vnd`` [VND] and ``sector``.

    Drawn on the canvas (no Axes). Returns None when no facility has a saving.
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
        width = width_cm
        compact = width < COMPACT_W
        lh = line_height(SMALL) * PT_CM
        label_w = min(4.4, max(2.6, 0.26 * width))
        labels = [wrap(_facility_label(r, lang), (label_w - 0.3) / PT_CM, SMALL, 2) for r in rows]
        tot_s = sum(float(r["saving_vnd_per_yr"]) for r in rows)
        tot_i = sum(float(r.get("investment_vnd") or 0.0) for r in rows
                    if r.get("investment_vnd") == r.get("investment_vnd"))
        title = _t(lang, "prog_totals_title")
        sub = _t(lang, "prog_totals_sub", s=_fmt(tot_s / 1e6, lang, 0), i=_fmt(tot_i / 1e6, lang, 0))
        head = head_height(width, title, sub)
        sector_names = sorted(sectors, key=lambda s: -sectors[s])
        palette = ["#1f5f8b", "#4f8fbf", "#86b6d9", "#c27c2c", "#7d9a55", "#8c6d9e", "#a8756b", "#9c9c9c"]
        scol = {s: palette[i % len(palette)] for i, s in enumerate(sector_names)}
        vals = [float(r["saving_vnd_per_yr"]) / 1e6 for r in rows]
        texts = []
        for v, r in zip(vals, rows, strict=True):
            t = _fmt(v, lang, 0).replace("-", "−")
            inv = r.get("investment_vnd")
            if inv is not None and inv == inv:  # the investment after the saving (below it, compact)
                t += ("\n" if compact else " ") + f"({_t(lang, 'investment')} {_fmt(float(inv) / 1e6, lang, 0)})"
            texts.append(t)
        row_h = [max(0.55, max(_lines(lb), _lines(t)) * lh + 0.2) for lb, t in zip(labels, texts, strict=True)]
        colours = [scol.get(r.get("sector") or "—", AFTER[0]) for r in rows]
        two = len(sectors) > 1
        right = 0.3
        if two:  # the panel by sector: at the right (below, compact)
            sv = [sectors[s] / 1e6 for s in sector_names]
            sv_txt = [_fmt(v, lang, 0).replace("-", "−") for v in sv]
            names = [_sector_label(s_, lang) for s_ in sector_names]
            name_w = label_w if compact else min(max(text_width(n, SMALL) * PT_CM for n in names) + 0.25,
                                                 max(1.8, 0.18 * width))
            snames = [wrap(n, (name_w - 0.2) / PT_CM, SMALL, 2) for n in names]
            srow_h = [max(0.55, _lines(n) * lh + 0.2) for n in snames]
            if compact:
                sx0, sx1, split = label_w, width - right, width
            else:
                sx1 = width - right
                sx0 = sx1 - max(2.0, 0.16 * width)
                split = sx0 - name_w - 0.5  # the facility panel ends here
        else:
            split = width
        x0, x1 = label_w, split - (right if split == width else 0.0)
        xlabel = _axis_label_lines(_t(lang, "by_facility"), (x0 + x1) / 2, 0.1, split - 0.1)
        slabel = _axis_label_lines(_t(lang, "by_sector"), (sx0 + sx1) / 2, 0.1 if compact else split + 0.3,
                                   width - 0.1) if two else ""
        bottom = 0.55 + _lines(xlabel) * lh
        sbottom = 0.55 + _lines(slabel) * lh
        if not two:
            plot_h, height = sum(row_h), head + 0.15 + sum(row_h) + bottom
        elif compact:
            height = head + 0.15 + sum(row_h) + bottom + 0.3 + sum(srow_h) + sbottom
        else:
            plot_h = max(sum(row_h), sum(srow_h))
            bottom = max(bottom, sbottom)
            height = head + 0.15 + plot_h + bottom
        fig = _figure(width, height)
        _title(fig, title, sub)
        cv = _Canvas(fig)
        if two and compact:
            y0 = height - head - 0.15 - sum(row_h)
            _bar_panel(cv, lang, labels, vals, texts, colours, row_h, x0, x1, y0, y0 + sum(row_h), xlabel,
                       0.1, width - 0.1)
            _bar_panel(cv, lang, snames, sv, sv_txt, [scol[s] for s in sector_names], srow_h, sx0, sx1,
                       sbottom, sbottom + sum(srow_h), slabel, 0.1, width - 0.1)
            return fig
        # side by side, top-aligned over one plot height
        y1 = bottom + plot_h
        _bar_panel(cv, lang, labels, vals, texts, colours, row_h, x0, x1, bottom, y1, xlabel, 0.1, split - 0.1)
        if two:
            _bar_panel(cv, lang, snames, sv, sv_txt, [scol[s] for s in sector_names], srow_h, sx0, sx1, bottom, y1,
                       slabel, split + 0.3, width - 0.1, per_cm=1.2)
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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _deflate():
    """The fastest deflate at hand: ISA-L (``isal``, 3–4 times zlib's speed at level 1), else
    zlib level 1. Charts are flat colours: a faster, slightly larger stream is the better trade."""
    try:
        from isal import isal_zlib

        return lambda raw: isal_zlib.compress(raw, 1)
    except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
        import zlib

        return lambda raw: zlib.compress(raw, 1)


def png_rgb(pixels, dpi: int = 300) -> bytes:
    """Encode an ``(height, width, 3)`` uint8 RGB array as PNG, stating its resolution (pHYs).

    Each row is written with PNG's "Up" filter (the difference from the row above, computed by
    numpy): the rows of a chart repeat, so the filtered rows are mostly zeros and deflate fast."""
    import struct

    import numpy as np

    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w, _ = a.shape
    flat = a.reshape(h, w * 3)
    raw = np.empty((h, w * 3 + 1), np.uint8)
    raw[:, 0] = 2  # filter "Up"
    raw[0, 0] = 0  # the first row has no row above: filter "None"
    raw[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=raw[1:, 1:])  # modulo 256, as PNG defines it
    ppm = round(dpi / 0.0254)
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1))
            + _png_chunk(b"IDAT", _deflate()(raw))  # the array itself, not a copy
            + _png_chunk(b"IEND", b""))


def _svg_size_pt(svg: bytes):
    m = re.search(rb'<svg[^>]*?width="([0-9.]+)pt"[^>]*?height="([0-9.]+)pt"', svg[:2000])
    return tuple(float(x) for x in m.groups()) if m else None


def charts_pdf(items) -> bytes | None:
    """The charts' own SVGs as ONE PDF, a page per chart at the chart's own size, typeset by
    typst (the booklet engine, fonts from matplotlib): vector, text kept as text. The booklets
    embed its pages (converting an SVG once, not once per booklet) and the PNGs are drawn from
    it. ``items``: (path of the SVG file, its bytes). None when typst is missing or fails."""
    if not items:
        return None
    try:
        from cpa.booklet import typst_compiler

        compiler = typst_compiler()
    except ImportError:
        return None
    paths = [os.path.abspath(p) for p, _ in items]
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    pages = []
    for path, (_p, svg) in zip(paths, items, strict=True):
        size = _svg_size_pt(svg)
        if size is None:
            return None
        w, h = size
        rel = "/" + os.path.relpath(path, root).replace(os.sep, "/")
        rel = rel.replace("\\", "\\\\").replace('"', '\\"')
        pages.append(f'#page(width: {w}pt, height: {h}pt, margin: 0pt, fill: white)'
                     f'[#image("{rel}", width: {w}pt, height: {h}pt)]')
    try:
        return compiler.compile(input="\n".join(pages).encode(), root=root, format="pdf")
    except Exception:  # noqa: BLE001 - the caller falls back; never fail a chart for speed
        return None


def _pngs_from_pdf(pdf: bytes, n: int, dpi: int = 300):
    """Each of the ``n`` pages of ``pdf`` drawn at ``dpi`` by PDFium (``pypdfium2``, the PDF
    renderer of Chrome) and encoded by :func:`png_rgb`; None when PDFium is missing or fails."""
    try:
        import pypdfium2
    except ImportError:
        return None
    try:
        doc = pypdfium2.PdfDocument(pdf)
        try:
            if len(doc) != n:
                return None
            out = []
            for i in range(n):
                page = doc[i]
                bitmap = page.render(scale=dpi / 72, rev_byteorder=True)  # RGB, white ground
                out.append(png_rgb(bitmap.to_numpy(), dpi))
                bitmap.close()
                page.close()
            return out
        finally:
            doc.close()
    except Exception:  # noqa: BLE001 - fall back to Agg, never fail a chart for speed
        return None


def _pngs_from_svgs(items, dpi: int = 300):
    """Rasterise the charts' own SVGs: :func:`charts_pdf` makes one PDF of them in a few
    milliseconds; PDFium draws each page at ``dpi``; :func:`png_rgb` encodes it. The same
    pictures as the SVGs and the booklets, about twice as fast as typst's own PNG export (which
    draws each SVG into an image and then the image onto the page) and four times as fast as
    drawing the figures again with Agg.

    ``items``: (path of the SVG file, its bytes). Returns a list of PNG bytes, or None when
    typst or PDFium is missing or fails (the caller then draws with Agg)."""
    if not items:
        return []
    pdf = charts_pdf(items)
    return _pngs_from_pdf(pdf, len(items), dpi) if pdf is not None else None


_METRICS: dict = {}


@contextmanager
def _shared_text_metrics():
    """While saving SVG, share text metrics across figures and renderers.

    matplotlib measures every string with FreeType (~1 ms each) and caches the result per
    renderer, i.e. per saved file; the SVG renderer's metrics depend only on the string and the
    font (not on a dpi), so one cache for the process gives the same numbers without measuring
    the same tick label, name or unit again in every chart."""
    from matplotlib.backends.backend_svg import RendererSVG

    orig = RendererSVG.get_text_width_height_descent

    def cached(self, s, prop, ismath):
        key = (s, hash(prop), str(ismath))
        v = _METRICS.get(key)
        if v is None:
            if len(_METRICS) > 50000:
                _METRICS.clear()
            v = _METRICS[key] = orig(self, s, prop, ismath)
        return v

    RendererSVG.get_text_width_height_descent = cached
    try:
        yield
    finally:
        RendererSVG.get_text_width_height_descent = orig


def _svg_bytes(fig) -> bytes:
    if isinstance(fig, _CanvasFigure) and fig._cpa_pure():
        return _svg_direct(fig)
    buf = io.BytesIO()
    with style(), _shared_text_metrics():
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, facecolor="white")
    return buf.getvalue()


def _write_all(figs, formats=("png", "svg"), engine: str = "auto", dpi: int = 300) -> list[dict]:
    """Write each (figure, base path) as SVG and PNG; the PNGs of all of them from one PDF of
    their SVGs (:func:`charts_pdf`). With ``"pdf"`` in ``formats``, that PDF is also written, as
    ``charts.pdf`` beside the first chart (with the SVGs it is made from), and each chart's dict
    says its ``pdf`` and ``page``.
    Returns one ``{"png": path, "svg": path, ...}`` per figure."""
    from cpa.io import atomic_write

    outs, svgs = [], []
    for fig, base in figs:
        base = os.fspath(base)
        svg = _svg_bytes(fig)
        out = {}
        if "svg" in formats or "pdf" in formats:
            out["svg"] = f"{base}.svg"
            atomic_write(out["svg"], svg, force=True)
        outs.append(out)
        svgs.append(svg)
    pdf = None
    if ("pdf" in formats or ("png" in formats and engine == "auto")) and figs:
        pdf = charts_pdf([(o["svg"], svg) for o, svg in zip(outs, svgs, strict=True)])
    if "pdf" in formats and pdf is not None:
        path = os.path.join(os.path.dirname(os.fspath(figs[0][1])), "charts.pdf")
        atomic_write(path, pdf, force=True)
        for i, out in enumerate(outs):
            out["pdf"], out["page"] = path, i + 1
    if "png" in formats:
        pngs = _pngs_from_pdf(pdf, len(figs), dpi) if pdf is not None else None
        for i, ((fig, base), out) in enumerate(zip(figs, outs, strict=True)):
            png = pngs[i] if pngs else None
            if png is None:
                with style():
                    png = _png_bytes(fig, dpi)
            out["png"] = f"{os.fspath(base)}.png"
            atomic_write(out["png"], png, force=True)
    return outs


def save_figure(fig, base_path, engine: str = "auto", formats=("png", "svg")) -> dict:
    """Write ``base_path.svg`` and ``base_path.png`` (300 dpi) atomically.

    Returns ``{"png": path, "svg": path}``. The SVG keeps text as text (``svg.fonttype
    none``, font DejaVu Sans), so the booklet's PDF stays searchable and exact. The PNG is the
    SVG rasterised by typst when it is installed (``engine="auto"``), else drawn by matplotlib's
    Agg (``engine="agg"``): both use the same DejaVu Sans fonts. ``formats=("svg",)`` writes
    the SVG only (what a typst booklet embeds; half the time). The figure is drawn at its own
    size: a chart made ``width_cm`` wide prints its text at the sizes it was given.
    """
    return _write_all([(fig, base_path)], formats=formats, engine=engine)[0]


def default_sankey_layer(res) -> str:
    """The layer shown by :func:`render_facility_charts`: the facility's ``sankey_layer`` field,
    else water, energy, mass — the first that has flows in the baseline."""
    want = res.ws.facility.get("sankey_layer") if hasattr(res.ws, "facility") else None
    layers = ([want] if want in ("mass", "water", "energy") else []) + ["water", "energy", "mass"]
    for layer in layers:
        if _layer_flows(res, layer, res.baseline):
            return layer
    return "water"


def _width(widths, key: str) -> float:
    if widths is None:
        return FULL_W
    if isinstance(widths, (int, float)):
        return float(widths)
    return float(widths.get(key, FULL_W))


def render_facility_charts(res, lang: str, outdir, layer: str | None = None, formats=("png", "svg"),
                           widths=None) -> dict:
    """Render every chart of one facility into ``outdir``: ``{key: {"png": ..., "svg": ...}}``.

    Keys: ``before_after_specific``, ``before_after_absolute``, ``savings_by_option``,
    ``payback``, ``waste_pareto``, ``sankey_before``, ``sankey_after`` (latest monitoring
    period), ``flow_chart``; a key is omitted when its chart does not apply. ``layer`` is the
    Sankey's layer (default :func:`default_sankey_layer`); ``formats`` as in :func:`save_figure`.
    ``widths`` [cm]: one width for all charts, or ``{key: width}`` (default 17 cm, the full
    text width): each chart is drawn at the width it will be printed, so that its text prints
    at its nominal size (the booklet passes :data:`cpa.booklet.CHART_WIDTHS`). The PNGs of all
    the charts are rasterised in one typst compile.
    """
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    makers = _facility_makers(res, lang, layer, widths)
    figs = []
    with memo():  # the charts of one facility read the same tables many times
        for key, make in makers.items():
            fig = make()
            if fig is not None:
                figs.append((key, fig))
    outs = _write_all([(fig, os.path.join(outdir, key)) for key, fig in figs], formats=formats)
    return {key: out for (key, _), out in zip(figs, outs, strict=True)}


def _facility_makers(res, lang: str, layer: str | None, widths) -> dict:
    """``{key: function making that chart's figure (or None)}``, in the booklet's order."""
    layer = layer or default_sankey_layer(res)
    W = lambda k: _width(widths, k)  # noqa: E731
    return {
        "before_after_specific": lambda: before_after(res, lang, specific=True, width_cm=W("before_after_specific")),
        "before_after_absolute": lambda: before_after(res, lang, specific=False, width_cm=W("before_after_absolute")),
        "savings_by_option": lambda: savings_by_option(res, lang, width_cm=W("savings_by_option")),
        "payback": lambda: payback_vs_investment(res, lang, width_cm=W("payback")),
        "waste_pareto": lambda: waste_pareto(res, lang, width_cm=W("waste_pareto")),
        "sankey_before": lambda: sankey(res, lang, layer=layer, period=res.baseline, width_cm=W("sankey_before")),
        "sankey_after": lambda: (sankey(res, lang, layer=layer, period=res.monitoring[-1], width_cm=W("sankey_after"))
                                 if res.monitoring else None),
        "flow_chart": lambda: flow_chart(res, lang, width_cm=W("flow_chart")),
    }


def facility_chart(res, lang: str, key: str, layer: str | None = None, widths=None):
    """One chart of :func:`render_facility_charts` by its key (a figure, or None)."""
    return _facility_makers(res, lang, layer, widths)[key]()


def render_pngs(charts: dict, make=None, dpi: int = 300) -> dict:
    """Add the PNG of every chart of ``charts`` (``{key: {"svg": path, ...}}``, as written by
    :func:`render_facility_charts` with ``formats=("svg", "pdf")`` or ``("svg",)``): each
    ``key.png`` beside its SVG, drawn by PDFium from the pages of ``charts.pdf`` when there is
    one, else from the SVGs (see :func:`_pngs_from_svgs`). Where that is not possible (no typst
    or PDFium), ``make(key)`` must return the chart's figure, which Agg then draws.
    Returns ``charts`` with the ``png`` paths added. ``cpa report`` runs this as a task of its
    own, after the booklets, so that it fills the cores while the programme booklets are typeset."""
    from cpa.io import atomic_write

    keys = [k for k, v in charts.items() if v and v.get("svg")]
    pdfs = {charts[k].get("pdf") for k in keys}
    pngs = None
    if len(pdfs) == 1 and None not in pdfs and os.path.exists(next(iter(pdfs))):
        # the facility's charts.pdf (formats=("svg", "pdf")): its pages, in the charts' order
        with open(next(iter(pdfs)), "rb") as f:
            pdf = f.read()
        order = [charts[k]["page"] for k in keys]
        drawn = _pngs_from_pdf(pdf, max(order), dpi) if order == sorted(order) else None
        pngs = [drawn[p - 1] for p in order] if drawn else None
    elif keys:
        items = []
        for k in keys:
            with open(charts[k]["svg"], "rb") as f:
                items.append((charts[k]["svg"], f.read()))
        pngs = _pngs_from_svgs(items, dpi)
    out = {k: dict(v) for k, v in charts.items()}
    for i, k in enumerate(keys):
        png = pngs[i] if pngs else None
        if png is None:
            if make is None:
                raise RuntimeError("cannot rasterise the charts (typst or pypdfium2 missing) and no figures given")
            with style():
                png = _png_bytes(make(k), dpi)
        base, _ext = os.path.splitext(charts[k]["svg"])
        out[k]["png"] = f"{base}.png"
        atomic_write(out[k]["png"], png, force=True)
    return out


def render_programme_charts(table, lang: str, outdir, band=(8, 13), formats=("png", "svg"), widths=None) -> dict:
    """Render the programme charts into ``outdir``: keys ``programme_change``,
    ``programme_totals`` (omitted when the table lacks their columns); ``widths`` as in
    :func:`render_facility_charts`."""
    outdir = os.fspath(outdir)
    os.makedirs(outdir, exist_ok=True)
    figs = []
    for key, make in (("programme_change", lambda: programme_change(table, lang, band=band,
                                                                     width_cm=_width(widths, "programme_change"))),
                      ("programme_totals", lambda: programme_totals(table, lang,
                                                                     width_cm=_width(widths, "programme_totals")))):
        fig = make()
        if fig is not None:
            figs.append((key, fig))
    outs = _write_all([(fig, os.path.join(outdir, key)) for key, fig in figs], formats=formats)
    return {key: out for (key, _), out in zip(figs, outs, strict=True)}


__all__ = [
    "before_after", "savings_by_option", "payback_vs_investment", "waste_pareto", "sankey", "flow_chart",
    "programme_change", "programme_totals", "save_figure", "render_facility_charts",
    "render_programme_charts", "number_formatter", "wrap", "style", "head_height",
]
