"""Case-study booklets (PDF) of a facility and of the programme, typeset with typst.

The booklet follows the Vietnamese case-study format of the MOIT cleaner-production component
(``/work/shared/domain/method.md``): company profile → environmental problem before CP → CP
team → assessment (flow chart, balances, cost of waste, causes) → options (phase 1 no/low cost,
phase 2 investment) with savings and economics → results as a table of technical | economic |
environmental benefits with before/after charts → data basis (periods, prices with sources,
factors with sources). Every page of an illustrative facility says so (footer banner).

How it is built
---------------
Python turns a :class:`cpa.results.FacilityResults` bundle into a JSON document of **strings**
(every number already formatted with :mod:`cpa.numbers` for the reader's language); the typst
templates in ``cpa/templates`` (``booklet.typ``, ``programme.typ``, shared ``style.typ``) read
that file with ``json(...)`` and lay it out. Text from worksheets is data, never markup, so a
facility called ``*$#_@<`` prints literally. Labels live in ``cpa/templates/i18n.json``.
Fonts are only DejaVu Sans from matplotlib's folder (``ignore_system_fonts``); nothing is
fetched from the network. Charts (from :mod:`cpa.charts`, when present) are embedded as pages
of the facility's ``charts.pdf`` (vector, text as text), or as SVG.

This module only *reads* results: the little arithmetic it does is presentation (a ratio of two
indicator values when :mod:`cpa.compare` is absent, sums of the option table for totals).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from functools import lru_cache

from cpa.frames import memo, records
from cpa.io import atomic_write

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
TEMPLATE_FILES = ("style.typ", "facility.typ", "body.typ", "booklet.typ", "programme.typ")

#: Options without an ``effort`` are phase 1 (no/low cost) up to this net investment. [VND]
LOW_COST_LIMIT_VND = 50e6

#: Words longer than this many characters get break opportunities so that they wrap.
LONG_WORD = 24

#: Indicators shown in the baseline table and the before/after table, in this order.
INDICATOR_ORDER = ("energy", "electricity", "fuel_energy", "toe_vn", "water", "wastewater",
                   "material", "solid_waste", "hazardous_waste", "co2_total", "co2_biogenic")

#: The waste-cost table shows this many streams; the rest are summed in one row.
TOP_WASTE = 7

#: Half of the 17.8 cm text width of an A4 page (1.6 cm margins), less the gutter [cm].
HALF_W = 8.6
#: The width [cm] at which the booklet places each chart, and so at which ``cpa report`` asks
#: :func:`cpa.charts.render_facility_charts` to draw it: a chart is never scaled, so its text
#: prints at the size it was drawn with (tick labels ≥ 6.5 pt, other text ≥ 7 pt). The
#: Sankey diagrams are not in the booklet; they are drawn at the full text width.
CHART_WIDTHS = {"flow_chart": HALF_W, "waste_pareto": HALF_W, "savings_by_option": HALF_W, "payback": HALF_W,
                "before_after_specific": HALF_W, "before_after_absolute": HALF_W,
                "sankey_before": 17.0, "sankey_after": 17.0}
#: The programme charts, full width.
PROGRAMME_CHART_WIDTHS = {"programme_change": 17.0, "programme_totals": 17.0}


# ----------------------------------------------------------------------------------------------
# labels and formatting


@lru_cache(maxsize=1)
def _i18n() -> dict:
    with open(os.path.join(TEMPLATES, "i18n.json"), encoding="utf-8") as f:
        return json.load(f)


def labels(lang: str) -> dict:
    """The booklet's labels in ``lang`` (``vi`` or ``en``)."""
    return _i18n()["vi" if lang == "vi" else "en"]


@lru_cache(maxsize=32)
def _choices(name: str, lang: str) -> dict:
    from cpa.schema import choices

    return {c.id: (c.vi if lang == "vi" else c.en) for c in choices(name)}


def _isnum(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _text(x) -> str:
    """Worksheet text as a string ('' for empty/NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x)


def _wrap(s) -> str:
    """Break opportunities (zero-width spaces) inside very long words, so that they wrap."""
    s = _text(s)
    if len(s) <= LONG_WORD:
        return s
    out = []
    for word in s.split(" "):
        if len(word) > LONG_WORD:
            word = "\u200b".join(word[i:i + 8] for i in range(0, len(word), 8))
        out.append(word)
    return " ".join(out)


_UNITS = {"m3": "m³", "TOE_VN": "TOE", "tCO2e": "t CO2e", "kgCO2e": "kg CO2e", "Nm3": "Nm³", "dimensionless": ""}


def unit_text(unit) -> str:
    """A unit as printed: m3 → m³, TOE_VN → TOE (the regulatory TOE), tCO2e → t CO2e."""
    u = _text(unit)
    if "/" in u:
        return "/".join(unit_text(p) for p in u.split("/"))
    return _UNITS.get(u, u)


def _short(s, n: int = 70) -> str:
    s = " ".join(_text(s).split())
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


def _unsigned_zero(text: str) -> str:
    """``-0.0`` (a small negative number rounded to zero) printed as ``0.0``."""
    if text.startswith("-") and not any(c in "123456789" for c in text):
        return text[1:]
    return text


class Fmt:
    """Number formatting for one language (thin layer over :mod:`cpa.numbers`)."""

    def __init__(self, lang: str):
        self.lang = "vi" if lang == "vi" else "en"

    def num(self, x, decimals: int | None = None) -> str:
        """A quantity; decimals by magnitude when not given (3 significant digits at least)."""
        from cpa.numbers import format_number

        if not _isnum(x):
            return "—"
        x = float(x)
        if decimals is None:
            a = abs(x)
            decimals = 0 if a >= 100 or a == 0 else 1 if a >= 10 else 2 if a >= 1 else 3
        return _unsigned_zero(format_number(x, self.lang, decimals))

    def sig(self, x, digits: int = 4) -> str:
        """A factor: ``digits`` significant digits, trailing zeros dropped."""
        if not _isnum(x):
            return "—"
        x = float(x)
        decimals = 0 if x == 0 else max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
        s = self.num(x, decimals)
        sep = "," if self.lang == "vi" else "."
        if sep in s:
            s = s.rstrip("0").rstrip(sep)
        return s

    def mvnd(self, x, decimals: int = 1) -> str:
        """VND as million VND."""
        return self.num(x / 1e6, decimals) if _isnum(x) else "—"

    def pct(self, fraction, decimals: int = 1, sign: bool = False) -> str:
        from cpa.numbers import format_percent

        if not _isnum(fraction):
            return "—"
        s = _unsigned_zero(format_percent(float(fraction), self.lang, decimals))
        if sign and fraction > 0:
            s = "+" + s
        return s.replace("-", "−")

    def years(self, x) -> str:
        if x is None or (isinstance(x, float) and math.isinf(x)):
            return "—"
        return self.num(x, 1)


# ----------------------------------------------------------------------------------------------
# facility data


def _records(df) -> list[dict]:
    return records(df)


def _name(ws, lang) -> str:
    f = ws.facility
    if lang == "vi":
        return _text(f.get("name")) or ws.id
    return _text(f.get("name_en")) or _text(f.get("name")) or ws.id


def _other_name(ws, lang) -> str:
    f = ws.facility
    other = _text(f.get("name_en")) if lang == "vi" else _text(f.get("name"))
    return "" if other == _name(ws, lang) else other


def _stream_names(ws, lang) -> dict:
    st = ws.tables["streams"]
    out = {}
    for r in _records(st):
        out[r["id"]] = _text(r.get(f"name_{lang}")) or _text(r.get("name_vi")) or r["id"]
    return out


def _step_names(ws, lang) -> dict:
    out = {}
    for r in _records(ws.tables["steps"]):
        out[r["id"]] = _text(r.get(f"name_{lang}")) or _text(r.get("name_vi")) or r["id"]
    return out


def _period_label(res, pid, lang) -> str:
    p = res.periods
    row = p[p["id"] == pid]
    if not len(row):
        return _text(pid)
    r = row.iloc[0]
    return _text(r.get(f"label_{lang}")) or _text(r.get("label_vi")) or _text(pid)


def _in_lang(row: dict, field: str, lang: str) -> str:
    """A text in the booklet's language: ``field`` holds the Vietnamese text, ``field_en`` the
    English one (used in English when given)."""
    return (_text(row.get(f"{field}_en")) if lang == "en" else "") or _text(row.get(field))


def _profile(ws, lang, L, fmt) -> list[list[str]]:
    f = ws.facility
    sector = _choices("sector", lang).get(f.get("sector"), _text(f.get("sector")))
    products = _text(f.get(f"products_{lang}")) or _text(f.get("products_vi"))
    ref = _stream_names(ws, lang).get(f.get("reference_product"), _text(f.get("reference_product")))

    rows = [
        ("p_sector", sector), ("p_location", _text(f.get("location"))),
        ("p_address", _text(f.get("address"))),
        ("p_established", _text(f.get("established"))),
        ("p_employees", fmt.num(f["employees"], 0) if _isnum(f.get("employees")) else ""),
        ("p_capacity", _in_lang(f, "capacity", lang)), ("p_products", products),
        ("p_reference", ref), ("p_focus", _in_lang(f, "audit_focus", lang)),
        ("p_consultant", _in_lang(f, "consultant", lang)), ("p_contact", _text(f.get("contact"))),
    ]
    return [[L[k], _wrap(v)] for k, v in rows if v]


def _team(ws, L, lang: str = "vi") -> list[list[str]]:
    rows = []
    for r in _records(ws.tables["team"]):
        name = _text(r.get("name"))
        rows.append({"name": _wrap(name), "leader": bool(r.get("leader")),
                     "role": _wrap(_in_lang(r, "role", lang)), "department": _wrap(_in_lang(r, "department", lang)),
                     "responsibility": _wrap(_in_lang(r, "responsibility", lang))})
    rows.sort(key=lambda r: not r["leader"])
    return rows


def _balances(res, lang, L, fmt) -> list[dict]:
    b = res.balances
    if b is None or not len(b):
        return []
    periods = [res.baseline] + res.monitoring[-1:]
    out = []
    for r in _records(b):
        if r["period"] not in periods:
            continue
        if r["node"] != "facility" and r["status"] == "closes":
            continue
        layer = L.get("layer_" + r["layer"], r["layer"])
        if r["node"] != "facility":
            layer = f"{layer}: {_text(r.get(f'node_name_{lang}'))}"
        out.append({
            "period": L["col_before"] if r["period"] == res.baseline else L["col_after"],
            "layer": _wrap(layer), "facility": r["node"] == "facility",
            "inputs": f"{fmt.num(r['inputs'])} {unit_text(r['unit'])}",
            "outputs": f"{fmt.num(r['outputs'])} {unit_text(r['unit'])}",
            "gap": fmt.pct(r["gap_pct"] / 100.0 if _isnum(r["gap_pct"]) else None),
            "estimated": fmt.pct(r["estimated_share"], 0),
            "status": L.get("st_" + _text(r["status"]), _text(r["status"])),
            "ok": r["status"] == "closes",
        })
    return out


def _indicator_label(r, L, streams) -> str:
    name = L.get("ind_" + r["indicator"], r["indicator"])
    if r["indicator"] in ("material", "energy") and r.get("stream"):
        return f"{name}: {streams.get(r['stream'], r['stream'])}"
    return name


def _indicator_rows(res, period) -> list[dict]:
    ind = res.indicators
    if ind is None or not len(ind):
        return []
    rows = [r for r in _records(ind[ind["period"] == period])]
    order = {k: i for i, k in enumerate(INDICATOR_ORDER)}
    rows = [r for r in rows if r["indicator"] in order
            and not (r["indicator"] == "energy" and r.get("stream"))]
    # water listed as a "material" too: keep it once, as water
    st = res.ws.tables["streams"]
    water = set(st.loc[st["kind"] == "water", "id"])
    rows = [r for r in rows if not (r["indicator"] == "material" and r.get("stream") in water)]
    rows.sort(key=lambda r: (order[r["indicator"]], _text(r.get("stream"))))
    return rows


def _indicators(res, lang, L, fmt, streams) -> list[dict]:
    out = []
    for r in _indicator_rows(res, res.baseline):
        if not _isnum(r["value"]) or (r["value"] == 0 and r["indicator"] in ("hazardous_waste", "co2_biogenic")):
            continue
        out.append({"label": _wrap(_indicator_label(r, L, streams)),
                    "total": f"{fmt.num(r['value'])} {unit_text(r['unit'])}",
                    "specific": f"{fmt.num(r['specific'])} {unit_text(r['specific_unit'])}" if _isnum(r["specific"]) else "—"})
    return out


def _production(res, period):
    ind = res.indicators
    if ind is None:
        return None
    row = ind[(ind["period"] == period) & (ind["indicator"] == "production")]
    return row.iloc[0] if len(row) else None


def _waste_costs(res, lang, L, fmt) -> dict:
    wc = res.waste_costs
    if wc is None or not len(wc):
        return {"rows": [], "total": "—"}
    rows = [r for r in _records(wc[wc["period"] == res.baseline])]
    rows.sort(key=lambda r: r["rank"])
    total = sum(r["annual_total_vnd"] for r in rows if _isnum(r["annual_total_vnd"]))
    out = []
    for r in rows[:TOP_WASTE]:
        name = _text(r.get(f"name_{lang}")) or r["stream"]
        out.append({"name": _wrap(name), "quantity": f"{fmt.num(r['quantity'])} {unit_text(r['unit'])}",
                    "cost": fmt.mvnd(r["annual_total_vnd"]) + ("" if r["complete"] else " ≥"),
                    "share": fmt.pct(r["cumulative_share"], 0)})
    rest = rows[TOP_WASTE:]
    if rest:
        out.append({"name": f"{L['others']} ({len(rest)})", "quantity": "",
                    "cost": fmt.mvnd(sum(r["annual_total_vnd"] for r in rest if _isnum(r["annual_total_vnd"]))),
                    "share": fmt.pct(1.0, 0)})
    return {"rows": out, "total": fmt.mvnd(total)}


def _causes(ws, lang, streams, steps) -> list[dict]:
    cats = _choices("cause_category", lang)
    out = []
    for r in _records(ws.tables["causes"]):
        out.append({"stream": _wrap(streams.get(r.get("stream"), _text(r.get("stream")))),
                    "step": _wrap(steps.get(r.get("step"), _text(r.get("step")))),
                    "category": cats.get(r.get("category"), _text(r.get("category"))),
                    "text": _wrap(_text(r.get(f"description_{lang}")) or _text(r.get("description_vi")))})
    return out


def _phase(r) -> int:
    eff = _text(r.get("effort"))
    if eff == "low":
        return 1
    if eff in ("medium", "high"):
        return 2
    inv = r.get("net_investment_vnd")
    return 1 if not _isnum(inv) or inv <= LOW_COST_LIMIT_VND else 2


def _options(res, lang, L, fmt) -> dict:
    ws = res.ws
    raw = {r["id"]: r for r in _records(ws.tables["options"])}
    table = res.options
    if table is None or not len(table):
        # options module absent: list the register, without economics
        table_rows = [dict(r, net_investment_vnd=float("nan")) for r in raw.values()]
    else:
        table_rows = _records(table.sort_values("position") if "position" in table.columns else table)
    cats = _choices("option_category", lang)
    scr = _choices("screening", lang)
    sts = _choices("option_status", lang)
    phases = {1: [], 2: []}
    rejected = []
    for r in table_rows:
        src = raw.get(r["id"], {})
        title = (_text(src.get(f"title_{lang}")) or _text(src.get("title_vi")) or _text(r.get("title_vi")))
        desc = _text(src.get(f"description_{lang}")) or _text(src.get("description_vi"))
        if r.get("screening") == "reject":
            rejected.append({"id": _wrap(r["id"]), "title": _wrap(title),
                             "reason": _wrap(src.get("screening_reason") or r.get("screening_reason"))})
            continue
        saving = r.get("net_saving_vnd_per_yr", r.get("saving_vnd_per_yr"))
        has_econ = _isnum(saving) and (saving != 0 or _isnum(r.get("payback_yr")))
        code = _text(r.get("code"))
        row = {
            "id": _wrap(r["id"]), "code": code, "title": _wrap(title), "description": _wrap(desc),
            "category": cats.get(r.get("category"), _text(r.get("category"))),
            "screening": scr.get(r.get("screening"), _text(r.get("screening"))),
            "status": sts.get(r.get("status"), _text(r.get("status"))),
            "investment": fmt.mvnd(r.get("investment_vnd")) if _isnum(r.get("investment_vnd")) else "—",
            "saving": fmt.mvnd(saving) if has_econ else "—",
            "payback": fmt.years(r.get("payback_yr")) if has_econ else "—",
            "npv": fmt.mvnd(r.get("npv_vnd"), 0) if has_econ and _isnum(r.get("npv_vnd")) else "—",
            "irr": fmt.pct(r.get("irr"), 0) if has_econ and _isnum(r.get("irr")) else "—",
            "note": "" if has_econ else L["no_economics"],
            "incomplete": bool(r.get("complete") is False),
        }
        phases[_phase(r)].append((row, r))

    def group(items):
        inv = sum(r.get("investment_vnd") for _, r in items if _isnum(r.get("investment_vnd")))
        sav = sum(r.get("net_saving_vnd_per_yr") for _, r in items if _isnum(r.get("net_saving_vnd_per_yr")))
        return {"rows": [row for row, _ in items], "investment": fmt.mvnd(inv), "saving": fmt.mvnd(sav),
                "n": len(items)}

    return {"phase1": group(phases[1]), "phase2": group(phases[2]), "rejected": rejected,
            "any": bool(table_rows),
            "phase_note": L["phase_note"].replace("{limit}", fmt.num(LOW_COST_LIMIT_VND / 1e6, 0))}


def _option_totals(res) -> dict:
    """Sums over the included options (combined savings, with the overlap removed)."""
    t = res.options
    if t is None or not len(t):
        return {}
    inc = t[t["included"]] if "included" in t.columns else t
    done = inc[inc["status"].isin(["implemented", "verified"])] if "status" in inc.columns else inc.iloc[0:0]

    def s(df, col):
        return float(df[col].sum()) if col in df.columns else float("nan")

    comb = "combined_net_saving_vnd_per_yr"
    out = {"investment": s(inc, "investment_vnd"),
           "saving": s(inc, comb) if comb in inc.columns else s(inc, "net_saving_vnd_per_yr"),
           "n_done": len(done), "n": len(inc),
           "done_ids": done["id"].tolist(), "done_investment": s(done, "investment_vnd"),
           "done_saving": s(done, comb) if comb in done.columns else s(done, "net_saving_vnd_per_yr")}
    c = res.combined
    if c is not None and len(c):
        for key, col in (("gj", "energy_gj_per_yr"), ("toe", "toe_vn_per_yr"), ("co2", "co2e_t_per_yr")):
            out[key] = float(c[col].sum()) if col in c.columns else float("nan")
        kinds = dict(zip(c["stream"], c["kind"], strict=False))
        units = dict(zip(c["stream"], c["unit"], strict=False))
        water = [s_ for s_, k in kinds.items() if k == "water" and units[s_] == "m3"]
        ww = [s_ for s_, k in kinds.items() if k == "wastewater" and units[s_] == "m3"]
        sw = [s_ for s_, k in kinds.items() if k in ("solid_waste", "hazardous_waste") and units[s_] == "t"]
        cp = c.set_index("stream")["combined_per_yr"]
        out["water"] = float(cp[water].sum()) if water else 0.0
        out["wastewater"] = float(cp[ww].sum()) if ww else 0.0
        out["waste"] = float(cp[sw].sum()) if sw else 0.0
    else:
        for key, col in (("gj", "saving_gj_per_yr"), ("toe", "toe_vn_per_yr"), ("co2", "co2e_t_per_yr"),
                         ("water", "water_m3_per_yr"), ("wastewater", "wastewater_m3_per_yr"),
                         ("waste", "waste_t_per_yr")):
            out[key] = s(inc, col)
    return out


def before_after(res) -> list[dict]:
    """Specific consumption in the baseline and the latest monitoring period (raw numbers).

    Reads :attr:`FacilityResults.indicators`; ``change`` is after / before − 1.
    """
    if not res.monitoring:
        return []
    latest = res.monitoring[-1]
    before = {(r["indicator"], _text(r.get("stream"))): r for r in _indicator_rows(res, res.baseline)}
    out = []
    for r in _indicator_rows(res, latest):
        key = (r["indicator"], _text(r.get("stream")))
        b = before.get(key)
        if b is None or not _isnum(b["specific"]) or not _isnum(r["specific"]) or b["specific"] == 0:
            continue
        out.append({"indicator": r["indicator"], "stream": key[1], "unit": r["specific_unit"],
                    "before": float(b["specific"]), "after": float(r["specific"]),
                    "change": float(r["specific"]) / float(b["specific"]) - 1.0, "row": r})
    return out


def _change_line(x, L, fmt, streams) -> str:
    return (f"{_indicator_label(x['row'], L, streams)}: {fmt.num(x['before'])} → {fmt.num(x['after'])} "
            f"{unit_text(x['unit'])} ({fmt.pct(x['change'], 1, sign=True)}, {L['measured']})")


def _results(res, lang, L, fmt, streams, settings) -> dict:
    tot = _option_totals(res)
    measured = bool(res.monitoring)
    ba = before_after(res)
    rows = [{"label": _wrap(_indicator_label(x["row"], L, streams)), "unit": unit_text(x["unit"]),
             "before": fmt.num(x["before"]), "after": fmt.num(x["after"]),
             "change": fmt.pct(x["change"], 1, sign=True),
             "trend": "same" if abs(x["change"]) < 5e-4 else "better" if x["change"] < 0 else "worse"} for x in ba]
    tag = L["expected"]
    technical, economic, environmental = [], [], []
    spec = {x["indicator"] + (":" + x["stream"] if x["stream"] else ""): x for x in ba}
    for k, x in spec.items():
        if k in ("energy", "electricity", "water") or k.startswith("material:"):
            technical.append(_change_line(x, L, fmt, streams))
    if tot.get("done_ids"):
        technical.append(f"{L['b_options_done']}: {len(tot['done_ids'])} ({', '.join(sorted(tot['done_ids']))})")
    if tot:
        economic.append(f"{L['b_invest']}: {fmt.mvnd(tot['investment'])} {L['unit_mvnd']}")
        economic.append(f"{L['b_saving']} ({tag}): {fmt.mvnd(tot['saving'])} {L['unit_mvnd_yr']}")
        if _isnum(tot["saving"]) and tot["saving"] > 0 and _isnum(tot["investment"]):
            economic.append(f"{L['b_payback']}: {fmt.num(tot['investment'] / tot['saving'], 1)} {L['unit_yr']}")
        if tot.get("done_ids") and tot["n_done"] < tot["n"]:
            economic.append(f"{L['b_done']} ({', '.join(sorted(tot['done_ids']))}): "
                            f"{L['b_inv_short']} {fmt.mvnd(tot['done_investment'])} {L['unit_mvnd']}, "
                            f"{L['b_sav_short']} {fmt.mvnd(tot['done_saving'])} {L['unit_mvnd_yr']}")
        for key, lab, unit in (("water", "b_water", "m³"), ("wastewater", "b_wastewater", "m³"),
                               ("gj", "b_energy", "GJ"), ("toe", "b_toe", "TOE"),
                               ("co2", "b_co2", "t CO2e"), ("waste", "b_waste", "t")):
            v = tot.get(key)
            if _isnum(v) and v > 0:
                environmental.append(f"{L[lab]}: {fmt.num(v)} {unit}{L['per_year']} ({tag})")
    for k in ("wastewater", "co2_total"):
        if spec.get(k):
            environmental.append(_change_line(spec[k], L, fmt, streams))
    none = [L["none"]]
    base_label = _period_label(res, res.baseline, lang)
    intro = (L["results_measured"].replace("{base}", base_label)
             .replace("{mon}", _period_label(res, res.monitoring[-1], lang)) if measured else L["results_expected"])
    low, high = (settings or {}).get("target", (8, 13))
    return {
        "measured": measured, "intro": intro, "rows": rows,
        "technical": [_wrap(t) for t in technical] or none,
        "economic": [_wrap(t) for t in economic] or none,
        "environmental": [_wrap(t) for t in environmental] or none,
        "target_note": L["target_note"].replace("{low}", fmt.num(low, 0)).replace("{high}", fmt.num(high, 0)),
    }


def _sources(res, lang, L, fmt, streams) -> dict:
    """Periods, prices and factors, with their sources numbered once."""
    ws = res.ws
    sources: list[str] = []

    def ref(text) -> str:
        t = " ".join(_text(text).split())
        if not t:
            return ""
        if t not in sources:
            sources.append(t)
        return f"[{sources.index(t) + 1}]"

    kinds = _choices("period_kind", lang)
    periods = []
    for r in _records(res.periods):
        prod = _production(res, r["id"])
        periods.append({
            "label": _wrap(_period_label(res, r["id"], lang)),
            "kind": kinds.get(r["kind"], r["kind"]),
            "start": _text(r["start"]), "end": _text(r["end"]),
            "days": fmt.num(r["operating_days"], 0),
            "production": f"{fmt.num(prod['value'])} {prod['unit']}" if prod is not None else "—",
            "note": _wrap(r.get("note")),
        })
    comp = _choices("price_component", lang) if _has_choice("price_component") else {}
    tou = _choices("time_of_use", lang) if _has_choice("time_of_use") else {}
    prices = []
    for r in _records(ws.tables["prices"]):
        c = comp.get(r.get("component"), _text(r.get("component")))
        t = _text(r.get("time_of_use"))
        if t and t != "flat":
            c = f"{c} ({tou.get(t, t)})"
        valid = _text(r.get("valid_from")) + ("–" + _text(r.get("valid_to")) if _text(r.get("valid_to")) else "–")
        prices.append({"stream": _wrap(streams.get(r.get("stream"), _text(r.get("stream")))), "component": c,
                       "valid": valid, "price": f"{fmt.num(r.get('price'))} {unit_text(r.get('unit'))}",
                       "source": ref(r.get("source"))})
    fnames = _choices("factor_name", lang) if _has_choice("factor_name") else {}
    fuels = _choices("fuel", lang)
    factors = []
    f = res.factors
    for r in _records(f):
        src = _text(r.get("source")) or _text(r.get("document"))
        key = fuels.get(r["key"]) or streams.get(r["key"]) or _text(r["key"])
        factors.append({"factor": fnames.get(r["factor"], r["factor"]), "key": _wrap(key),
                        "value": f"{fmt.sig(r['value'])} {unit_text(r['unit'])}",
                        "status": L.get("fs_" + _text(r.get("status")), _text(r.get("status"))), "source": ref(src)})
    return {"periods": periods, "prices": prices, "factors": factors,
            "sources": [_wrap(s) for s in sources]}


def _has_choice(name) -> bool:
    from cpa.schema import CHOICES

    return name in CHOICES


def _flow_steps(ws, lang) -> list[str]:
    """Process steps in the order of the links (a fallback flow chart)."""
    names = _step_names(ws, lang)
    return [_wrap(names[s]) for s in ws.tables["steps"]["id"]]


def facility_data(res, lang: str, charts: dict | None = None, settings: dict | None = None,
                  chart_dir: str = "charts") -> dict:
    """The booklet's data: a JSON-ready dict of strings (numbers formatted for ``lang``).

    ``charts`` maps chart keys to ``{"svg": path, ...}``; the dict refers to each SVG as
    ``{chart_dir}/{key}.svg`` (where :func:`build_facility_booklet` copies it).
    """
    with memo():  # the same tables are read many times
        return _facility_data(res, lang, charts, settings, chart_dir)


def _facility_data(res, lang, charts, settings, chart_dir) -> dict:
    lang = "vi" if lang == "vi" else "en"
    L = labels(lang)
    fmt = Fmt(lang)
    ws = res.ws
    streams = _stream_names(ws, lang)
    steps = _step_names(ws, lang)
    f = ws.facility
    name = _name(ws, lang)
    problem = _text(f.get(f"problem_{lang}")) or _text(f.get("problem_vi"))
    chart_paths = _chart_refs(charts, chart_dir)
    ind = res.indicators
    key_user = False
    toe_year = None
    if ind is not None and len(ind):
        b = ind[ind["period"] == res.baseline]
        k = b[b["indicator"] == "key_energy_user"]
        key_user = bool(len(k) and k.iloc[0]["value"] > 0)
        t = b[b["indicator"] == "toe_vn_per_year"]
        toe_year = float(t.iloc[0]["value"]) if len(t) else None
    return {
        "lang": lang, "L": L, "id": _wrap(ws.id), "name": _wrap(name), "other_name": _wrap(_other_name(ws, lang)),
        "short_name": _short(name, 60),
        "illustrative": ws.illustrative,
        "profile": _profile(ws, lang, L, fmt),
        "problem": _wrap(problem) or L["no_problem"],
        "energy_line": (f"{L['ind_toe_vn']}: {fmt.num(toe_year)} TOE{L['per_year']}"
                        + (f" — {L['key_energy_user']}" if key_user else "")) if toe_year is not None else "",
        "team": _team(ws, L, lang),
        "flow_steps": _flow_steps(ws, lang),
        "balances": _balances(res, lang, L, fmt),
        "indicators": _indicators(res, lang, L, fmt, streams),
        "waste": _waste_costs(res, lang, L, fmt),
        "causes": _causes(ws, lang, streams, steps),
        "options": _options(res, lang, L, fmt),
        "results": _results(res, lang, L, fmt, streams, settings),
        "data": _sources(res, lang, L, fmt, streams),
        "charts": chart_paths,
        "charts_available": charts is not None,
    }


def svg_width_pt(path: str) -> float | None:
    """The width [pt] an SVG declares (matplotlib writes ``width="…pt"``)."""
    import re

    try:
        with open(path, "rb") as f:
            head = f.read(2000)
    except OSError:
        return None
    m = re.search(rb'<svg[^>]*?width="([0-9.]+)(pt)?"', head)
    return float(m.group(1)) if m else None


def _chart_refs(charts: dict | None, chart_dir: str) -> dict:
    """``{key: {"path": "{chart_dir}/{key}.svg", "width": pt}}`` for the charts that exist: the
    templates place each chart at its own width. A chart that is a page of the facility's
    ``charts.pdf`` (``render_facility_charts(..., formats=("svg", "pdf"))``) is referred to as
    ``{"path": "{chart_dir}/charts.pdf", "page": n, ...}``: embedding a PDF page costs typst a
    fifth of converting the SVG again."""
    out = {}
    for k, v in (charts or {}).items():
        if v and v.get("svg") and os.path.exists(v["svg"]):
            w = v.get("width_pt") or svg_width_pt(v["svg"])
            if w:
                if v.get("pdf") and v.get("page") and os.path.exists(v["pdf"]):
                    out[k] = {"path": f"{chart_dir}/{os.path.basename(v['pdf'])}", "page": int(v["page"]),
                              "width": round(float(w), 3)}
                else:
                    out[k] = {"path": f"{chart_dir}/{k}.svg", "width": round(float(w), 3)}
    return out


# ----------------------------------------------------------------------------------------------
# typst


@lru_cache(maxsize=1)
def font_dir() -> str:
    """matplotlib's DejaVu fonts: the only fonts the booklets use."""
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")


#: The fonts the booklets and charts use: DejaVu Sans (matplotlib's default font).
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf")


@lru_cache(maxsize=1)
def typst_font_dir() -> str:
    """A folder holding only :data:`FONT_FILES` (links to matplotlib's files; copies where links
    are not allowed), removed when the process that made it exits. typst reads every font of
    the folders it is given when a compiler is made: matplotlib's folder has 40 fonts (STIX,
    Computer Modern, DejaVu Serif and Mono...) and took 0.5 s of CPU in every worker; these
    four take 5 ms."""
    import atexit

    src = font_dir()
    folder = tempfile.mkdtemp(prefix="cpa-fonts-")
    for name in FONT_FILES:
        target = os.path.join(folder, name)
        try:
            os.symlink(os.path.join(src, name), target)
        except OSError:  # pragma: no cover - file systems without links
            shutil.copyfile(os.path.join(src, name), target)
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
    return folder


@lru_cache(maxsize=1)
def typst_compiler():
    """One typst compiler per process (booklets and charts), its fonts (DejaVu Sans) loaded once."""
    import typst

    return typst.Compiler(font_paths=[typst_font_dir()], ignore_system_fonts=True)


def _prepare(workdir: str) -> None:
    for name in TEMPLATE_FILES + ("i18n.json",):
        shutil.copyfile(os.path.join(TEMPLATES, name), os.path.join(workdir, name))


def _copy_charts(charts: dict | None, dest: str) -> None:
    if not charts:
        return
    os.makedirs(dest, exist_ok=True)
    for key, v in charts.items():
        if v and v.get("pdf") and v.get("page") and os.path.exists(v["pdf"]):
            target = os.path.join(dest, os.path.basename(v["pdf"]))
            if not os.path.exists(target):
                shutil.copyfile(v["pdf"], target)
        elif v and v.get("svg") and os.path.exists(v["svg"]):
            shutil.copyfile(v["svg"], os.path.join(dest, f"{key}.svg"))


def _compile(workdir: str, template: str, data: dict | None, **inputs) -> bytes:
    """Typeset ``template`` in ``workdir`` with ``data`` (written to data.json; None: the
    data.json already there) and any other ``sys.inputs`` (strings)."""
    if data is not None:
        with open(os.path.join(workdir, "data.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
    return typst_compiler().compile(input=os.path.join(workdir, template), root=workdir,
                                    sys_inputs={"data": "data.json", **inputs}, format="pdf")


def _page_count(pdf: bytes) -> int | None:
    try:
        import pypdfium2
    except ImportError:  # pragma: no cover - a dependency; without it, one pass
        return None
    doc = pypdfium2.PdfDocument(pdf)
    try:
        return len(doc)
    finally:
        doc.close()


def build_facility_booklet(res, lang: str, out_pdf: str, charts: dict | None = None,
                           settings: dict | None = None, workdir: str | None = None,
                           data: dict | None = None) -> str:
    """Write the case-study booklet of one facility to ``out_pdf`` (atomically); returns the path.

    Parameters
    ----------
    res : cpa.results.FacilityResults
    lang : {"vi", "en"}
    out_pdf : str
        The PDF to write; replaced if it exists.
    charts : dict, optional
        ``render_facility_charts`` output (``{key: {"svg": path, "png": path}}``); None when
        the charts module is absent (the booklet says so).
    settings : dict, optional
        Programme settings (``target`` band in %).
    workdir : str, optional
        A folder to build in (a temporary one by default).
    data : dict, optional
        ``facility_data(res, lang, charts, settings)`` when the caller has it already.

    The facility is laid out once, without header and footer (``body.typ``), and its pages
    are placed under the booklet's header and footer; when ``data`` is given and ``workdir``
    is kept, ``data["body"]`` then records that body (``{"pdf": path, "pages": n}``) for the
    programme booklet, which places the same pages again instead of laying them out twice.
    """
    tmp = None
    if workdir is None:
        tmp = workdir = tempfile.mkdtemp(prefix="cpa-booklet-")
    try:
        _prepare(workdir)
        _copy_charts(charts, os.path.join(workdir, "charts"))
        if data is None:
            data = facility_data(res, lang, charts, settings)
        body = _compile(workdir, "body.typ", data)
        pages = _page_count(body)
        if pages:
            with open(os.path.join(workdir, "body.pdf"), "wb") as f:
                f.write(body)
            pdf = _compile(workdir, "booklet.typ", None, body="body.pdf", pages=str(pages))
            if tmp is None:
                data["body"] = {"pdf": os.path.join(workdir, "body.pdf"), "pages": pages}
        else:  # pragma: no cover - without PDFium to count the pages
            pdf = _compile(workdir, "booklet.typ", None)
        atomic_write(out_pdf, pdf, force=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_pdf


# ----------------------------------------------------------------------------------------------
# programme


def _col(row: dict, *names):
    for n in names:
        if n in row and row[n] is not None:
            return row[n]
    return None


def fallback_programme_table(results_list):
    """A minimal roll-up (one row per facility) used when :mod:`cpa.programme` is absent."""
    import pandas as pd

    rows = []
    for res in results_list:
        ws = res.ws
        row = {"facility_id": ws.id, "facility_name": _name(ws, "vi"), "sector": ws.facility.get("sector")}
        for x in before_after(res):
            key = {"energy": "energy", "water": "water"}.get(x["indicator"]) if not x["stream"] else None
            if key:
                row[f"{key}_change_pct"] = 100.0 * x["change"]
        tot = _option_totals(res)
        row.update({"options_implemented": tot.get("n_done", 0), "options_verified": 0,
                    "investment_vnd": tot.get("investment", float("nan")),
                    "saving_vnd_per_yr": tot.get("saving", float("nan")),
                    "saving_gj_per_yr": tot.get("gj", float("nan")),
                    "toe_vn_per_yr": tot.get("toe", float("nan")),
                    "co2e_t_per_yr": tot.get("co2", float("nan")),
                    "water_m3_per_yr": tot.get("water", float("nan"))})
        inv, sav = row["investment_vnd"], row["saving_vnd_per_yr"]
        row["payback_yr"] = inv / sav if _isnum(inv) and _isnum(sav) and sav > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _summary_totals(table) -> dict:
    out = {}
    for col in ("investment_vnd", "saving_vnd_per_yr", "saving_gj_per_yr", "toe_vn_per_yr",
                "co2e_t_per_yr", "water_m3_per_yr", "waste_t_per_yr", "options_implemented",
                "options_verified"):
        if col in table.columns:
            out[col] = float(pd_sum(table[col]))
    return out


def pd_sum(series) -> float:
    vals = [float(v) for v in series.tolist() if _isnum(v)]
    return sum(vals)


def programme_data(results_list, lang: str, table, summary: dict | None, settings: dict,
                   facility_charts: dict, programme_charts: dict | None, available: bool,
                   facility_datas: dict | None = None, workdir: str | None = None) -> dict:
    """The programme booklet's data (strings); ``facility_charts`` maps facility id → charts;
    ``facility_datas`` (optional) facility id → ``facility_data(...)`` already computed for the
    facility booklets (its charts then re-based to the chapter's folder; the facility's laid-out
    pages, ``body``, copied into ``workdir`` to be placed again)."""
    lang = "vi" if lang == "vi" else "en"
    L = labels(lang)
    fmt = Fmt(lang)
    sectors = _choices("sector", lang)
    by_id = {res.ws.id: res for res in results_list}
    rows = []
    for r in _records(table):
        res = by_id.get(r.get("facility_id"))
        name = _name(res.ws, lang) if res is not None else _text(r.get("facility_name"))
        target = _col(r, "energy_target", "meets_target")
        if isinstance(target, bool):
            target = "meets" if target else "below"

        def chg(prefix, r=r):
            v = _col(r, f"{prefix}_change_pct", f"{prefix}_specific_change_pct")
            return fmt.pct(v / 100.0, 1, sign=True) if _isnum(v) else "—"

        rows.append({
            "name": _wrap(name), "sector": sectors.get(r.get("sector"), _text(r.get("sector"))),
            "energy": chg("energy"), "water": chg("water"), "material": chg("material"),
            "investment": fmt.mvnd(r.get("investment_vnd"), 0),
            "saving": fmt.mvnd(_col(r, "net_saving_vnd_per_yr", "saving_vnd_per_yr"), 0),
            "payback": fmt.years(r.get("payback_yr")) if _isnum(r.get("payback_yr")) else "—",
            "co2": fmt.num(r.get("co2e_t_per_yr")),
            "meets": L.get("tg_" + _text(target), "—") if target else "—",
            "illustrative": bool(res.ws.illustrative) if res is not None else False,
        })
    totals = dict(_summary_totals(table))
    if summary:
        flat = summary.get("totals", summary) if isinstance(summary, dict) else {}
        for k, v in flat.items():
            if _isnum(v):
                totals[k] = float(v)
        if "net_saving_vnd_per_yr" in totals:
            totals["saving_vnd_per_yr"] = totals["net_saving_vnd_per_yr"]

    if "options_implemented" in totals or "options_verified" in totals:
        totals["options_done"] = totals.get("options_implemented", 0.0) + totals.get("options_verified", 0.0)
    tot_rows = []
    for key, lab, f_ in (("investment_vnd", "b_invest", lambda v: f"{fmt.mvnd(v, 0)} {L['unit_mvnd']}"),
                         ("saving_vnd_per_yr", "b_saving", lambda v: f"{fmt.mvnd(v, 0)} {L['unit_mvnd_yr']}"),
                         ("saving_gj_per_yr", "b_energy", lambda v: f"{fmt.num(v)} GJ{L['per_year']}"),
                         ("toe_vn_per_yr", "b_toe", lambda v: f"{fmt.num(v)} TOE{L['per_year']}"),
                         ("co2e_t_per_yr", "b_co2", lambda v: f"{fmt.num(v)} t CO2e{L['per_year']}"),
                         ("water_m3_per_yr", "b_water", lambda v: f"{fmt.num(v)} m³{L['per_year']}"),
                         ("waste_t_per_yr", "b_waste", lambda v: f"{fmt.num(v)} t{L['per_year']}"),
                         ("options_done", "b_options_done", lambda v: fmt.num(v, 0))):
        if key in totals:
            tot_rows.append([L[lab], f_(totals[key])])
    inv, sav = totals.get("investment_vnd"), totals.get("saving_vnd_per_yr")
    if _isnum(inv) and _isnum(sav) and sav > 0:
        tot_rows.append([L["b_payback"], f"{fmt.num(inv / sav, 1)} {L['unit_yr']}"])
    low, high = settings.get("target", (8, 13))
    name = _text(settings.get("name_vi" if lang == "vi" else "name_en")) or L["programme_kind"]
    facilities = []
    for res in results_list:
        folder = f"charts/{_chart_folder(res.ws.id)}"
        known = (facility_datas or {}).get(res.ws.id)
        if known is not None:
            d = dict(known, charts={k: dict(v, path=f"{folder}/{os.path.basename(v['path'])}")
                                    for k, v in known["charts"].items()})
            body = known.get("body")
            if body and workdir and os.path.exists(body["pdf"]):
                rel = f"bodies/{_chart_folder(res.ws.id)}.pdf"
                os.makedirs(os.path.join(workdir, "bodies"), exist_ok=True)
                shutil.copyfile(body["pdf"], os.path.join(workdir, rel))
                d["body"] = {"path": rel, "pages": int(body["pages"])}
            else:
                d.pop("body", None)
        else:
            d = facility_data(res, lang, facility_charts.get(res.ws.id), settings, chart_dir=folder)
        facilities.append(d)
    prog_charts = _chart_refs(programme_charts, "charts/_programme")
    return {
        "lang": lang, "L": L, "name": _wrap(name), "year": _text(settings.get("year")),
        "province": _wrap(settings.get("province")), "kind": L["programme_kind"],
        "any_illustrative": any(r.ws.illustrative for r in results_list),
        "rows": rows, "totals": tot_rows, "available": available,
        "target": L["target_note"].replace("{low}", fmt.num(low, 0)).replace("{high}", fmt.num(high, 0)),
        "charts": prog_charts, "facilities": facilities,
    }


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _chart_folder(fid: str) -> str:
    from cpa.io import safe_name

    return safe_name(fid)


def build_programme_booklet(results_list, lang: str, out_pdf: str, table=None, summary=None,
                            settings: dict | None = None, facility_charts: dict | None = None,
                            programme_charts: dict | None = None, workdir: str | None = None,
                            facility_datas: dict | None = None) -> str:
    """Write the programme booklet: cover, programme summary, one chapter per facility.

    ``table``/``summary`` come from :func:`cpa.programme.programme_table` /
    ``programme_summary``; when None the booklet uses :func:`fallback_programme_table` and says
    so. ``facility_charts`` maps facility id → ``render_facility_charts`` output;
    ``facility_datas`` (optional) facility id → the facility booklet's ``facility_data``.
    """
    settings = dict(settings or {})
    available = table is not None
    if table is None:
        table = fallback_programme_table(results_list)
    facility_charts = facility_charts or {}
    tmp = None
    if workdir is None:
        tmp = workdir = tempfile.mkdtemp(prefix="cpa-programme-")
    try:
        _prepare(workdir)
        for res in results_list:
            _copy_charts(facility_charts.get(res.ws.id), os.path.join(workdir, "charts", _chart_folder(res.ws.id)))
        _copy_charts(programme_charts, os.path.join(workdir, "charts", "_programme"))
        data = programme_data(results_list, lang, table, summary, settings, facility_charts,
                              programme_charts, available, facility_datas, workdir=workdir)
        pdf = _compile(workdir, "programme.typ", data)
        atomic_write(out_pdf, pdf, force=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_pdf
