"""The cost of waste streams (DESIRE task 6): what each waste and loss really costs.

For each waste or loss stream and period:

.. math::

    C = \\underbrace{q \\cdot p_{\\text{lost material}}}_{\\text{material or energy value}}
        + q \\cdot (p_{\\text{treatment}} + p_{\\text{disposal}} + p_{\\text{fee}})
        - q \\cdot p_{\\text{sale}}

where *q* is the quantity leaving the facility in the period, the lost material is the
purchased input named in the stream's ``lost_material`` (valued at its purchase price; an
energy loss given in GJ is turned into the fuel's own unit by its calorific value), and the
prices are those in force for the period (:mod:`cpa.prices`). Annualised cost = C × the period's
annual factor. Streams are ranked by annual cost (a Pareto table with the cumulative share) to
choose the audit focus (DESIRE task 3).

A component whose price is missing is *unknown*: the total is then a lower bound, shown as such,
never as if the missing part were zero.

References
----------
.. [1] UNEP/UNIDO, *Cleaner Production Assessment in Industries*, step 2, task 6 "assign costs
   to waste streams".
.. [2] ISO 14051:2011, Material flow cost accounting — material and waste-management costs of
   material losses.
"""

from __future__ import annotations

import math

from cpa.prices import PriceBook
from cpa.quantities import WASTE_KINDS, Converter, period_table, resolve_flows

COLUMNS = ["period", "stream", "name_vi", "name_en", "kind", "quantity", "unit", "lost_material",
           "material_value_vnd", "energy_value_vnd", "treatment_vnd", "disposal_vnd", "fee_vnd",
           "revenue_vnd", "total_vnd", "annual_total_vnd", "complete", "unknown", "rank",
           "cumulative_share"]


def waste_costs(ws, flows=None, conv: Converter | None = None):
    """Cost of each waste and loss stream per period, ranked by annual cost within each period.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; money in VND per period, ``annual_total_vnd`` in VND/yr;
        ``complete`` is False and ``unknown`` names the missing prices where a component could
        not be valued (the total is then a lower bound).
    """
    import pandas as pd

    conv = conv or Converter(ws)
    flows = resolve_flows(ws, conv) if flows is None else flows
    book = PriceBook(ws)
    periods = period_table(ws)
    annual = dict(zip(periods["id"], periods["annual_factor"], strict=True))
    streams = {r: s for r, s in zip(ws.tables["streams"]["id"], ws.tables["streams"].to_dict("records"), strict=True)}
    leaving = flows[flows["to"].isna() & flows["kind"].isin(WASTE_KINDS)]
    rows = []
    for (period, stream, unit), g in leaving.groupby(["period", "stream", "unit"], sort=False):
        q = float(g["quantity"].sum())
        s = streams[stream]
        kind = s["kind"]
        unknown = []
        lost = s.get("lost_material") or None
        mat = en = math.nan
        if lost:
            value = _lost_value(book, conv, lost, stream, period, q, unit, g)
            lost_kind = conv.kind(lost)
            if lost_kind in ("fuel", "electricity", "steam"):
                en, mat = value, 0.0
            else:
                mat, en = value, 0.0
            if value != value:
                unknown.append(f"purchase price of {lost}")
        else:
            mat = en = 0.0
            if kind == "loss":
                unknown.append(f"value of the loss (no lost_material declared for {stream})")
        comps = {}
        for comp in ("treatment", "disposal", "fee", "sale"):
            if book.has(stream, comp):
                v = book.value(stream, comp, period, q, unit)
                if v != v:
                    unknown.append(f"{comp} price of {stream} for {period}")
                comps[comp] = v
            else:
                comps[comp] = 0.0
        if kind in ("solid_waste", "hazardous_waste", "wastewater") and not any(
                book.has(stream, c) for c in ("treatment", "disposal", "fee", "sale")):
            unknown.append(f"treatment or disposal cost of {stream}")
        parts = [mat, en, comps["treatment"], comps["disposal"], comps["fee"]]
        total = sum(x for x in parts if x == x) - (comps["sale"] if comps["sale"] == comps["sale"] else 0.0)
        rows.append({
            "period": period, "stream": stream, "name_vi": s.get("name_vi"), "name_en": s.get("name_en") or s.get("name_vi"),
            "kind": kind, "quantity": q, "unit": unit, "lost_material": lost or "",
            "material_value_vnd": mat, "energy_value_vnd": en, "treatment_vnd": comps["treatment"],
            "disposal_vnd": comps["disposal"], "fee_vnd": comps["fee"], "revenue_vnd": comps["sale"],
            "total_vnd": total, "annual_total_vnd": total * annual.get(period, math.nan),
            "complete": not unknown, "unknown": "; ".join(unknown),
        })
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("rank", "cumulative_share")])
    if not len(out):
        return pd.DataFrame(columns=COLUMNS)
    out = out.sort_values(["period", "annual_total_vnd"], ascending=[True, False], kind="stable")
    porder = {p: i for i, p in enumerate(periods["id"])}
    out = out.assign(_p=out["period"].map(porder)).sort_values(["_p", "annual_total_vnd"], ascending=[True, False],
                                                               kind="stable").drop(columns="_p")
    out["rank"] = out.groupby("period").cumcount() + 1
    pos = out["annual_total_vnd"].clip(lower=0)
    out["cumulative_share"] = pos.groupby(out["period"]).cumsum() / pos.groupby(out["period"]).transform("sum")
    return out.reset_index(drop=True)[COLUMNS]


def _lost_value(book, conv, lost, stream, period, q, unit, g):
    """Value of the input lost with a waste: q converted into the input's price unit."""
    from cpa.errors import UnitError
    from cpa.units import conversion_factor, dimension_of

    price = book.get(lost, "purchase", period)
    if price is None:
        return math.nan
    try:
        return q * conversion_factor(unit, price.per_unit) * price.value_vnd
    except UnitError:
        pass
    # different dimensions: an energy loss valued as fuel (GJ → t of fuel by its NCV), or a
    # mass of water valued per m3 (1 t/m3)
    year = int(g["year"].iloc[0]) if "year" in g and g["year"].iloc[0] == g["year"].iloc[0] else None
    if dimension_of(unit) == "energy":
        per = conv.convert(lost, price.per_unit, year).energy_gj
        if per == per and per > 0:
            return q * conversion_factor(unit, "GJ") / per * price.value_vnd
    if {dimension_of(unit), dimension_of(price.per_unit)} == {"mass", "volume"} and conv.kind(lost) == "water":
        to_m3 = conv.convert(stream, unit, year).water_m3
        if to_m3 == to_m3:
            return q * to_m3 / conversion_factor(price.per_unit, "m**3") * price.value_vnd
    return math.nan
