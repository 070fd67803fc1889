"""Before and after: monitoring periods against the baseline, normalised for production.

DESIRE step 5, task 16 (monitor and evaluate results). The yardstick of the Vietnamese CP
programme is the % change in consumption *per unit of product* (Decision 1419/QĐ-TTg: 5–8 %).

Formulas
--------
For an indicator *R* (energy, electricity, water, a main material, a waste...) with baseline
period *b* and monitoring period *m*, production *P* of the reference product and total *R*:

.. math::

    SC_b = R_b / P_b, \\qquad SC_m = R_m / P_m, \\qquad
    \\Delta\\% = 100 \\, (SC_m / SC_b - 1)

    \\text{adjusted baseline} = SC_b \\cdot P_m, \\qquad
    \\text{normalised saving} = SC_b \\cdot P_m - R_m

the *adjusted baseline* of IPMVP in its simplest form (consumption proportional to production,
no fixed part, no regression; Option C-like, on whole-facility meters). Annualised:
× the monitoring period's annual factor. Per stream, the saving is valued at the monitoring
period's prices (a saving is valued at the tariff of its period).

Realised vs estimated: a metered saving of an option in a monitoring period (table
``monitoring``) × the period's annual factor, against the option's stand-alone estimate.

References
----------
.. [1] EVO, *International Performance Measurement and Verification Protocol* (IPMVP), core
   concepts: adjusted baseline, routine adjustments for production; Option C (whole facility).
.. [2] ISO 50006:2014, clause 4.4: energy performance indicators as ratios.
"""

from __future__ import annotations

import math

from cpa.errors import CalculationError, UnitError
from cpa.options import OUT_KINDS, Context, _fail, _where, savings_table

COLUMNS = ["period", "indicator", "stream", "unit", "specific_unit", "baseline_production",
           "production", "production_unit", "baseline_total", "total", "baseline_specific",
           "specific", "change_pct", "adjusted_baseline", "normalised_saving",
           "normalised_saving_per_yr", "unit_cost_vnd", "saving_vnd_per_yr", "note"]

#: Indicators of :func:`cpa.indicators.indicators` that are compared (totals per period).
INDICATORS = ("energy", "electricity", "fuel_energy", "toe_vn", "water", "wastewater", "material",
              "solid_waste", "hazardous_waste", "co2_total", "co2_biogenic")

REALISED_COLUMNS = ["option", "period", "stream", "saving", "unit", "annual_factor",
                    "realised_per_yr", "estimated_per_yr", "realisation", "unit_cost_vnd",
                    "realised_vnd_per_yr", "basis"]


def _production_checked(ctx, period, loc_table="production"):
    q, unit = ctx.production.get(period, (math.nan, ""))
    if not (q == q and q > 0):
        rows = ctx.ws.tables["periods"]
        loc = next((lc for pid, lc in zip(rows["id"], rows["_loc"], strict=True) if pid == period), None)
        kind = ctx.kind_of_period.get(period)
        _fail(ctx.ws, loc, "periods", "id",
              f"the {kind} period '{period}' has no production of the reference product "
              f"'{ctx.ws.facility.get('reference_product')}': consumption per unit of product, "
              "and so the before/after comparison, is undefined (add its production, or remove the period)")
    return q, unit


def compare(ws, ctx: Context | None = None, indicators_table=None):
    """Every monitoring period against the baseline, per unit of product.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, one row per monitoring period × indicator (× stream). The
        facility indicators of :data:`INDICATORS` come first (no money); then one row per stream
        crossing the boundary in the baseline or the monitoring period (``indicator = "stream"``,
        products left out) in the stream's baseline unit, valued at the monitoring period's
        prices; then ``indicator = "total_vnd"``, the sum of the stream rows [VND/yr] (a lower
        bound, said in ``note``, when a price is missing). ``change_pct`` [%] is the change in
        specific consumption (negative: less per unit of product); ``normalised_saving`` is
        baseline specific × monitoring production − actual, in ``unit`` for the period;
        ``normalised_saving_per_yr`` [unit/yr]; ``saving_vnd_per_yr`` [VND/yr].

    ``ctx`` and ``indicators_table`` (:func:`cpa.indicators.indicators` of ``ws``), when the
    caller has them, are used instead of being computed again.

    Raises
    ------
    CalculationError
        The baseline or a monitoring period without production of the reference product.
    """
    import pandas as pd

    from cpa.indicators import indicators

    ctx = ctx or Context(ws)
    b = ctx.baseline
    monitoring = [p for p, k in ctx.kind_of_period.items() if k == "monitoring"]
    if not monitoring:
        return pd.DataFrame(columns=COLUMNS)
    pb, punit = _production_checked(ctx, b)
    ind = indicators(ws, conv=ctx.conv) if indicators_table is None else indicators_table
    ind = ind[ind["indicator"].isin(INDICATORS)]
    key = ["indicator", "stream"]
    base = ind[ind["period"] == b].set_index(key)
    rows = []
    for m in monitoring:
        pm_raw, pm_unit = _production_checked(ctx, m)
        try:
            pm = pm_raw * ctx.cf(pm_unit, punit)
        except UnitError:
            _fail(ws, None, "production", "unit",
                  f"production of '{m}' is in {pm_unit} and of the baseline '{b}' in {punit}: "
                  "use units of one dimension")
        af = ctx.annual[m]
        cur = ind[ind["period"] == m].set_index(key)
        for (name, stream), br in base.iterrows():
            if (name, stream) not in cur.index:
                continue
            r_b, r_m = float(br["value"]), float(cur.loc[(name, stream), "value"])
            rows.append(_row(m, name, stream, br["unit"], punit, pb, pm, r_b, r_m, af))
        # per stream crossing the boundary in the baseline or in this period, with money
        stream_rows = []
        names = dict.fromkeys(st for (p, st) in ctx._flows if p in (b, m))
        for stream in names:
            kind = ctx.conv.kind(stream)
            if kind == "product":
                continue
            sb, cm = ctx.flow(b, stream), ctx.flow(m, stream)
            unit = sb.unit if sb is not None else cm.unit
            r_b = sb.quantity if sb is not None else 0.0
            r_m = 0.0
            if cm is not None:
                try:
                    r_m = cm.quantity * ctx.cf(cm.unit, unit)
                except UnitError:
                    r_m = math.nan
            row = _row(m, "stream", stream, unit, punit, pb, pm, r_b, r_m, af)
            cost, note = ctx.unit_cost(stream, unit, m)
            row["unit_cost_vnd"] = cost
            row["saving_vnd_per_yr"] = row["normalised_saving_per_yr"] * cost
            extra = "leaving the facility" if kind in OUT_KINDS else ""
            if sb is None:
                extra = "; ".join(x for x in (extra, "not used in the baseline") if x)
            row["note"] = "; ".join(x for x in (note, extra) if x)
            stream_rows.append(row)
        rows += stream_rows
        money = [r["saving_vnd_per_yr"] for r in stream_rows]
        missing = [r["stream"] for r in stream_rows if r["saving_vnd_per_yr"] != r["saving_vnd_per_yr"]]
        total = {c: math.nan for c in COLUMNS}
        total.update(period=m, indicator="total_vnd", stream="", unit="VND", specific_unit="",
                     production=pm, baseline_production=pb, production_unit=punit,
                     saving_vnd_per_yr=sum(x for x in money if x == x),
                     note=("lower bound: not valued: " + ", ".join(missing)) if missing else "")
        rows.append(total)
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(m, name, stream, unit, punit, pb, pm, r_b, r_m, af):
    sc_b, sc_m = r_b / pb, r_m / pm
    adjusted = sc_b * pm
    return {
        "period": m, "indicator": name, "stream": stream, "unit": unit, "specific_unit": f"{unit}/{punit}",
        "baseline_production": pb, "production": pm, "production_unit": punit,
        "baseline_total": r_b, "total": r_m, "baseline_specific": sc_b, "specific": sc_m,
        "change_pct": (sc_m / sc_b - 1.0) * 100.0 if sc_b else math.nan,
        "adjusted_baseline": adjusted, "normalised_saving": adjusted - r_m,
        "normalised_saving_per_yr": (adjusted - r_m) * af,
        "unit_cost_vnd": math.nan, "saving_vnd_per_yr": math.nan, "note": "",
    }


def realised_savings(ws, ctx: Context | None = None, savings=None):
    """Metered savings of options (table ``monitoring``) against their estimates.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REALISED_COLUMNS`: ``saving`` in the period [unit];
        ``realised_per_yr`` = saving × the period's ``annual_factor`` [unit/yr];
        ``estimated_per_yr`` the option's stand-alone estimate for that stream in the same unit
        [unit/yr] (NaN if the option has no effect on it); ``realisation`` = realised /
        estimated [fraction]; ``realised_vnd_per_yr`` at the monitoring period's prices.
    """
    import pandas as pd

    ctx = ctx or Context(ws)
    mon = ws.tables["monitoring"]
    if not len(mon):
        return pd.DataFrame(columns=REALISED_COLUMNS)
    s = savings_table(ws, ctx) if savings is None else savings
    alone = s[s["basis"] == "standalone"]
    rows = []
    for r in mon.to_dict("records"):
        opt, period, stream, unit = r["option"], r["period"], r["stream"], r["unit"]
        if ctx.kind_of_period.get(period) != "monitoring":
            raise CalculationError(f"{_where(ws, r['_loc'], 'monitoring', 'period')}: period '{period}' "
                                   "is not a monitoring period")
        af = ctx.annual[period]
        realised = float(r["saving"]) * af
        est_rows = alone[(alone["option"] == opt) & (alone["stream"] == stream)]
        est = math.nan
        if len(est_rows):
            est = 0.0
            for q, u in zip(est_rows["quantity_per_yr"], est_rows["unit"], strict=True):
                try:
                    est += ctx.to_unit(stream, q, u, stream, unit)
                except UnitError:
                    _fail(ws, r["_loc"], "monitoring", "unit",
                          f"option '{opt}': the metered saving of '{stream}' in {unit} cannot be compared "
                          f"with its estimate in {u}")
        cost, _ = ctx.unit_cost(stream, unit, period)
        rows.append({"option": opt, "period": period, "stream": stream, "saving": float(r["saving"]),
                     "unit": unit, "annual_factor": af, "realised_per_yr": realised,
                     "estimated_per_yr": est, "realisation": realised / est if est else math.nan,
                     "unit_cost_vnd": cost, "realised_vnd_per_yr": realised * cost, "basis": r["basis"]})
    return pd.DataFrame(rows, columns=REALISED_COLUMNS)
