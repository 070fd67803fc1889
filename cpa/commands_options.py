"""``cpa options`` and ``cpa compare``: thin click shells over :mod:`cpa.options` and
:mod:`cpa.compare`.

Register them on the main group with ``main.add_command(options_cmd)`` and
``main.add_command(compare_cmd)``. Heavy libraries are imported inside the commands. A
:class:`cpa.errors.CPAError` is left to propagate: the main group prints it and exits 1.

JSON output (``--json``) is stable; every number carries its unit in its name or in the
``units`` map. Infinite or unknown values are ``null`` (``payback_yr: null`` with
``payback_bucket: "never"`` means never).
"""

from __future__ import annotations

import json
import math

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Fields of each option in ``cpa options --json``, in order.
OPTION_FIELDS = [
    "rank", "id", "title_vi", "title_en", "category", "code", "screening", "screening_reason",
    "status", "effort", "included", "investment_vnd", "grant_vnd", "net_investment_vnd",
    "saving_vnd_per_yr", "operating_cost_change_vnd_per_yr", "net_saving_vnd_per_yr",
    "combined_net_saving_vnd_per_yr", "saving_gj_per_yr", "toe_vn_per_yr", "co2e_t_per_yr",
    "co2_biogenic_t_per_yr", "water_m3_per_yr", "wastewater_m3_per_yr", "waste_t_per_yr",
    "complete", "unknown", "lifetime_yr", "discount_rate", "escalation", "payback_yr",
    "payback_bucket", "discounted_payback_yr", "npv_vnd", "irr", "irr_note", "economics_note",
    "co2e_t_per_yr_per_million_vnd", "score",
]

TOTAL_FIELDS = [
    "options", "investment_vnd", "grant_vnd", "saving_vnd_per_yr",
    "operating_cost_change_vnd_per_yr", "net_saving_vnd_per_yr", "saving_gj_per_yr",
    "toe_vn_per_yr", "co2e_t_per_yr", "co2_biogenic_t_per_yr", "water_m3_per_yr",
    "wastewater_m3_per_yr", "waste_t_per_yr", "complete", "unknown",
]

COMPARE_FIELDS = [
    "period", "indicator", "stream", "unit", "specific_unit", "baseline_production", "production",
    "production_unit", "baseline_total", "total", "baseline_specific", "specific", "change_pct",
    "adjusted_baseline", "normalised_saving", "normalised_saving_per_yr", "unit_cost_vnd",
    "saving_vnd_per_yr", "note",
]

_L = {
    "en": {"rank": "#", "id": "id", "title": "option", "screening": "screening", "saving": "saving VND/yr",
           "net": "net VND/yr", "inv": "investment VND", "payback": "payback yr", "npv": "NPV VND",
           "irr": "IRR", "co2": "tCO2e/yr", "score": "score", "never": "never", "total": "Combined (not rejected, no double counting)",
           "rejected": "rejected", "indicator": "indicator", "stream": "stream", "spec_b": "baseline /unit",
           "spec_m": "monitoring /unit", "change": "change", "norm": "saving /yr", "vnd": "VND/yr",
           "period": "Monitoring period", "realised": "Realised vs estimated", "option": "option",
           "real": "realised /yr", "period_col": "period", "est": "estimated /yr", "ratio": "realised %", "options_title": "Options",
           "illustrative": "ILLUSTRATIVE EXAMPLE (fictional facility)"},
    "vi": {"rank": "#", "id": "mã", "title": "giải pháp", "screening": "sàng lọc", "saving": "tiết kiệm đ/năm",
           "net": "ròng đ/năm", "inv": "đầu tư đ", "payback": "hoàn vốn (năm)", "npv": "NPV đ",
           "irr": "IRR", "co2": "tCO2e/năm", "score": "điểm", "never": "không hoàn vốn", "total": "Tổng hợp (trừ giải pháp loại bỏ, không tính trùng)",
           "rejected": "loại bỏ", "indicator": "chỉ số", "stream": "dòng", "spec_b": "cơ sở /đv",
           "spec_m": "giám sát /đv", "change": "thay đổi", "norm": "tiết kiệm /năm", "vnd": "đ/năm",
           "period": "Giai đoạn giám sát", "realised": "Thực tế so với ước tính", "option": "giải pháp",
           "real": "thực tế /năm", "period_col": "giai đoạn", "est": "ước tính /năm", "ratio": "đạt %", "options_title": "Giải pháp",
           "illustrative": "VÍ DỤ MINH HỌA (cơ sở giả định)"},
}


def _clean(v):
    """JSON-safe scalar: NaN/inf → None, numpy → Python."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _records(frame, fields):
    return [{f: _clean(r.get(f)) for f in fields} for r in frame.to_dict("records")]


def _render(table) -> str:
    from rich.console import Console

    console = Console(width=160, color_system=None, force_terminal=False, highlight=False)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


@click.command("options", context_settings=CONTEXT)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the options, totals and units as JSON.")
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True,
              help="Language of the labels and of the number format.")
@click.option("--sort", "sort_by", type=click.Choice(["payback", "npv", "savings", "co2", "score"]),
              default="payback", show_default=True, help="Rank options by this criterion.")
@click.option("--weights", metavar="T,E,V", default=None,
              help="Weights of the technical, economic and environmental sub-scores of `score` "
                   "(numbers ≥ 0, not all 0; default 1,1,1 with --sort score). Adds a score column.")
def options_cmd(path, as_json, lang, sort_by, weights):
    """Options of a worksheet with their savings and economics, ranked.

    Savings are per year at the baseline's tariffs; each option alone (its economics), and all
    options that are not rejected combined without double counting (the total). Payback,
    NPV (investment at year 0) and IRR as in docs/options.md.
    """
    from cpa.options import OPTION_UNITS, Context, combined_totals, option_table, savings_table
    from cpa.worksheet import load

    w = _weights(weights if weights is not None else ("1,1,1" if sort_by == "score" else None))
    ws = load(path)
    ctx = Context(ws)
    sav = savings_table(ws, ctx)
    table = option_table(ws, ctx, sav, sort_by=sort_by, weights=w)
    totals = combined_totals(ws, sav, ctx)
    if as_json:
        units = dict(OPTION_UNITS)
        units["rank"] = "1 = best by " + sort_by
        out = {"facility": ws.id, "illustrative": ws.illustrative, "sorted_by": sort_by, "weights": w,
               "baseline_period": ctx.baseline, "units": units,
               "options": _records(table, OPTION_FIELDS) if len(table) else [],
               "combined": {f: _clean(totals.get(f)) for f in TOTAL_FIELDS}}
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    click.echo(_options_text(ws, table, totals, lang, score=w is not None))


def _weights(text: str | None) -> dict | None:
    """``"T,E,V"`` → ``{"technical": T, "economic": E, "environmental": V}`` (None: no score)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) != 3 or min(vals) < 0 or sum(vals) <= 0 or any(v != v for v in vals):
        raise click.BadParameter(
            f"found {text!r}; expected three numbers ≥ 0, not all 0, separated by commas: the weights "
            "of the technical, economic and environmental scores, e.g. --weights 1,2,1",
            param_hint="--weights")
    return dict(zip(("technical", "economic", "environmental"), vals, strict=True))


_TOTAL_LABELS = {
    "net_saving_vnd_per_yr": {"en": "net saving", "vi": "tiết kiệm ròng", "unit": "VND/yr"},
    "saving_gj_per_yr": {"en": "energy", "vi": "năng lượng", "unit": "GJ/yr"},
    "toe_vn_per_yr": {"en": "regulatory TOE", "vi": "TOE quy đổi", "unit": "TOE/yr"},
    "co2e_t_per_yr": {"en": "greenhouse gases", "vi": "khí nhà kính", "unit": "tCO2e/yr"},
    "co2_biogenic_t_per_yr": {"en": "biogenic CO2 (apart)", "vi": "CO2 sinh học (tính riêng)", "unit": "tCO2e/yr"},
    "water_m3_per_yr": {"en": "water", "vi": "nước", "unit": "m3/yr"},
    "wastewater_m3_per_yr": {"en": "wastewater", "vi": "nước thải", "unit": "m3/yr"},
    "waste_t_per_yr": {"en": "solid and hazardous waste", "vi": "chất thải rắn và nguy hại", "unit": "t/yr"},
}


def _choice_label(name, cid, lang):
    from cpa.schema import choices

    for c in choices(name):
        if c.id == cid:
            return c.vi if lang == "vi" else c.en
    return cid or ""


def _options_text(ws, table, totals, lang, score: bool = False):
    from rich.table import Table

    from cpa.numbers import format_number, format_percent

    L = _L[lang]
    n = lambda v, d=0: format_number(_clean(v), lang, d)  # noqa: E731
    t = Table(title=f"{L['options_title']} — {ws.facility.get('name') or ws.id}")
    keys = ("rank", "id", "title", "screening", "saving", "net", "inv", "payback", "npv", "irr", "co2")
    for key in keys + (("score",) if score else ()):
        t.add_column(L[key], justify="right" if key not in ("id", "title", "screening") else "left")
    for r in table.to_dict("records"):
        title = (r["title_en"] or r["title_vi"]) if lang == "en" else r["title_vi"]
        pb = r["payback_yr"]
        if isinstance(pb, float) and math.isinf(pb):
            pb_text = L["never"]
        else:
            pb_text = n(pb, 1)
        irr = _clean(r["irr"])
        irr_text = format_percent(irr, lang) if irr is not None else (r["irr_note"] or "—")
        screening = L["rejected"] if not r["included"] else _choice_label("screening", r["screening"], lang)
        rank = "" if r["rank"] is None else str(r["rank"])
        cells = [rank, r["id"], title, screening, n(r["saving_vnd_per_yr"]), n(r["net_saving_vnd_per_yr"]),
                 n(r["investment_vnd"]), pb_text, n(r["npv_vnd"]), irr_text, n(r["co2e_t_per_yr"], 1)]
        if score:
            cells.append(n(r["score"], 2))
        t.add_row(*cells)
    lines = []
    if ws.illustrative:
        lines.append(L["illustrative"])
    lines.append(_render(t).rstrip())
    lines.append(L["total"] + ":")
    for f in ("net_saving_vnd_per_yr", "saving_gj_per_yr", "toe_vn_per_yr", "co2e_t_per_yr",
              "co2_biogenic_t_per_yr", "water_m3_per_yr", "wastewater_m3_per_yr", "waste_t_per_yr"):
        label, unit = _TOTAL_LABELS[f][lang], _TOTAL_LABELS[f]["unit"]
        lines.append(f"  {label}: {n(totals[f], 1)} {unit}")
    if not totals["complete"]:
        lines.append(f"  unknown: {totals['unknown']}")
    for r in table.to_dict("records"):
        if not r["included"]:
            lines.append(f"  {L['rejected']}: {r['id']} — {r['screening_reason'] or '—'}")
    return "\n".join(lines)


@click.command("compare", context_settings=CONTEXT)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True,
              help="Language of the labels and of the number format.")
def compare_cmd(path, as_json, lang):
    """Before and after: every monitoring period against the baseline, per unit of product.

    % change in specific consumption, production-normalised savings (baseline specific
    consumption × monitoring production − actual) per period and per year, valued at the
    monitoring period's prices; and metered savings of options against their estimates.
    """
    from cpa.compare import REALISED_COLUMNS, compare, realised_savings
    from cpa.options import Context
    from cpa.worksheet import load

    ws = load(path)
    ctx = Context(ws)
    comp = compare(ws, ctx)
    real = realised_savings(ws, ctx)
    if as_json:
        units = {"change_pct": "%", "baseline_total": "unit (per period)", "total": "unit (per period)",
                 "baseline_specific": "specific_unit", "specific": "specific_unit",
                 "adjusted_baseline": "unit (per period)", "normalised_saving": "unit (per period)",
                 "normalised_saving_per_yr": "unit/yr", "unit_cost_vnd": "VND per unit",
                 "saving_vnd_per_yr": "VND/yr", "realised_per_yr": "unit/yr", "estimated_per_yr": "unit/yr",
                 "realisation": "fraction", "realised_vnd_per_yr": "VND/yr"}
        out = {"facility": ws.id, "illustrative": ws.illustrative, "baseline_period": ctx.baseline,
               "units": units, "comparison": _records(comp, COMPARE_FIELDS),
               "realised": _records(real, REALISED_COLUMNS)}
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    click.echo(_compare_text(ws, comp, real, lang))


def _compare_text(ws, comp, real, lang):
    from rich.table import Table

    from cpa.numbers import format_number, format_percent

    L = _L[lang]
    n = lambda v, d=1: format_number(_clean(v), lang, d)  # noqa: E731
    lines = [L["illustrative"]] if ws.illustrative else []
    for period, g in comp.groupby("period", sort=False):
        t = Table(title=f"{L['period']} {period}")
        for key in ("indicator", "stream", "spec_b", "spec_m", "change", "norm", "vnd"):
            t.add_column(L[key], justify="left" if key in ("indicator", "stream") else "right")
        for r in g.to_dict("records"):
            if r["indicator"] == "total_vnd":
                t.add_row("total", "", "", "", "", "", n(r["saving_vnd_per_yr"], 0))
                continue
            ch = _clean(r["change_pct"])
            t.add_row(r["indicator"], r["stream"] or "",
                      f"{n(r['baseline_specific'], 3)} {r['specific_unit']}", f"{n(r['specific'], 3)}",
                      format_percent(ch / 100.0, lang) if ch is not None else "—",
                      f"{n(r['normalised_saving_per_yr'])} {r['unit']}", n(r["saving_vnd_per_yr"], 0))
        lines.append(_render(t).rstrip())
    if len(real):
        t = Table(title=L["realised"])
        for key in ("option", "period_col", "stream", "real", "est", "ratio", "vnd"):
            t.add_column(L[key])
        for r in real.to_dict("records"):
            ratio = _clean(r["realisation"])
            t.add_row(r["option"], r["period"], r["stream"], f"{n(r['realised_per_yr'])} {r['unit']}",
                      f"{n(r['estimated_per_yr'])} {r['unit']}",
                      format_percent(ratio, lang) if ratio is not None else "—", n(r["realised_vnd_per_yr"], 0))
        lines.append(_render(t).rstrip())
    return "\n".join(lines)
