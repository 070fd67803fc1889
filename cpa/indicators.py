"""Indicators per period: specific consumption per unit of the reference product, energy in GJ,
regulatory TOE and physical toe kept apart, the key-energy-user flag, and CO2.

Formulas
--------
specific consumption of resource R in period p (ISO 50006 energy performance indicator of the
"ratio" kind; DESIRE's consumption per unit of product):

.. math:: SC_{R,p} = \\frac{\\sum_{\\text{flows of } R \\text{ entering the facility}} q}{P_p}

where :math:`P_p` is the production of the reference product in the period. With
:math:`P_p = 0` the specific consumption is undefined: it is reported as unknown with a note,
never as a number.

energy [GJ] = Σ fuels q·NCV + electricity kWh × 0.0036 + purchased steam q·h;
regulatory TOE = Σ q × MOIT factor (biomass: NCV/41.868, labelled derived);
physical toe = GJ / 41.868; annual TOE = TOE × annual factor of the period; key energy user when
annual TOE ≥ 1,000 (Decree 21/2011/NĐ-CP).

CO2 [tCO2e]: fossil fuels q·NCV·EF_CO2 + (CH4, N2O) × GWP; electricity MWh × grid EF of the
period's year; biomass CO2 reported apart as biogenic and not added to the total.

References
----------
.. [1] ISO 50006:2014, Energy management systems — Measuring energy performance using energy
   baselines and energy performance indicators, clause 4.4 (EnPI as a ratio).
.. [2] IPCC 2006 Guidelines, vol. 2, ch. 1–2 (fuel combustion).
.. [3] MOIT letter 3505/BCT-KHCN (2011): TOE conversion factors; Decree 21/2011/NĐ-CP art. 9.
"""

from __future__ import annotations

import math

from cpa.quantities import PHYSICAL_TOE_GJ, Converter, period_table, resolve_flows

KEY_ENERGY_USER_TOE = 1000.0

COLUMNS = ["period", "indicator", "stream", "value", "unit", "specific", "specific_unit",
           "factors", "note"]


def production(ws):
    """Production of the reference product per period: {period: (quantity, unit)}."""
    ref = ws.facility.get("reference_product")
    p = ws.tables["production"]
    out = {}
    for period, product, q, unit in zip(p["period"], p["product"], p["quantity"], p["unit"], strict=True):
        if product == ref:
            if period in out:
                from cpa.units import conversion_factor

                q0, u0 = out[period]
                out[period] = (q0 + q * conversion_factor(unit, u0), u0)
            else:
                out[period] = (q, unit)
    return out


def indicators(ws, flows=None, conv: Converter | None = None):
    """Indicators of every period as a tidy table (columns :data:`COLUMNS`).

    ``value`` is the period total in ``unit``; ``specific`` is per unit of the reference product
    in ``specific_unit`` (NaN, with a note, when production is zero or missing); ``factors``
    lists the ids of the factors used (``*`` marks a worksheet override).
    """
    import pandas as pd

    conv = conv or Converter(ws)
    flows = resolve_flows(ws, conv) if flows is None else flows
    prod = production(ws)
    periods = period_table(ws)
    streams = ws.tables["streams"]
    is_main = streams["main_material"].fillna(False).astype(bool) & ~streams["kind"].isin(["water", "wastewater"])
    main = set(streams.loc[is_main, "id"])
    rows = []
    entering = flows[flows["from"].isna()]
    leaving = flows[flows["to"].isna()]
    for per in periods.to_dict("records"):
        pid = per["id"]
        q, punit = prod.get(pid, (math.nan, ""))
        note_p = ""
        if not (q == q) or q <= 0:
            note_p = f"production of the reference product in {pid} is zero or missing: specific consumption undefined"

        def add(ind, value, unit, stream="", factors="", note="", specific=True,
                q=q, punit=punit, pid=pid, note_p=note_p):
            if specific and q == q and q > 0:
                spec, sunit = value / q, f"{unit}/{punit}"
            else:
                spec, sunit = math.nan, (f"{unit}/{punit}" if specific and punit else "")
            rows.append({"period": pid, "indicator": ind, "stream": stream, "value": value, "unit": unit,
                         "specific": spec, "specific_unit": sunit, "factors": factors,
                         "note": "; ".join(x for x in (note, note_p if specific else "") if x)})

        e = entering[entering["period"] == pid]
        lv = leaving[leaving["period"] == pid]
        add("production", q, punit, ws.facility.get("reference_product") or "", specific=False,
            note=note_p)
        carriers = e[e["kind"].isin(["fuel", "electricity", "steam"])]
        fac = lambda df: ";".join(dict.fromkeys(x for s in df["factors"] for x in s.split(";") if x))  # noqa: E731
        add("energy", carriers["energy_gj"].sum(min_count=1) if len(carriers) else 0.0, "GJ", factors=fac(carriers),
            note="; ".join(dict.fromkeys(n for n in carriers["notes"] if n)))
        for stream, g in carriers.groupby("stream", sort=False):
            add("energy", g["energy_gj"].sum(min_count=1), "GJ", stream, fac(g))
        elec = e[e["kind"] == "electricity"]
        kwh = elec["energy_gj"].sum() / 0.0036 if len(elec) else 0.0
        add("electricity", kwh, "kWh", factors=fac(elec))
        fuels = e[e["kind"] == "fuel"]
        add("fuel_energy", fuels["energy_gj"].sum() if len(fuels) else 0.0, "GJ", factors=fac(fuels))
        toe = carriers["toe_vn"].sum() if len(carriers) else 0.0
        add("toe_vn", toe, "TOE_VN", factors=fac(carriers))
        add("toe_vn_per_year", toe * per["annual_factor"], "TOE_VN/yr", specific=False,
            note=f"annualised × {per['annual_factor']:.4g}")
        add("key_energy_user", 1.0 if toe * per["annual_factor"] >= KEY_ENERGY_USER_TOE else 0.0, "flag",
            specific=False, note=f"≥ {KEY_ENERGY_USER_TOE:,.0f} TOE/yr (Decree 21/2011/NĐ-CP)")
        add("toe_physical", (carriers["energy_gj"].sum() if len(carriers) else 0.0) / PHYSICAL_TOE_GJ, "toe",
            note="physical toe = GJ / 41.868; not the regulatory TOE")
        water = e[e["kind"] == "water"]
        add("water", water["water_m3"].sum() if len(water) else 0.0, "m3")
        ww = lv[lv["kind"] == "wastewater"]
        add("wastewater", ww["water_m3"].sum() if len(ww) else 0.0, "m3")
        for stream in sorted(main):
            g = e[e["stream"] == stream]
            if len(g):
                add("material", g["mass_t"].sum(min_count=1), "t", stream, fac(g))
        for kind in ("solid_waste", "hazardous_waste"):
            g = lv[lv["kind"] == kind]
            add(kind, g["mass_t"].sum() if len(g) else 0.0, "t")
        co2_f = fuels["co2_fossil_t"].sum() if len(fuels) else 0.0
        co2_e = elec["co2_fossil_t"].sum() if len(elec) else 0.0
        other = fuels["co2e_other_t"].sum() if len(fuels) else 0.0
        bio = fuels["co2_biogenic_t"].sum() if len(fuels) else 0.0
        add("co2_fuels", co2_f, "tCO2e", factors=fac(fuels))
        add("co2_electricity", co2_e, "tCO2e", factors=";".join(x for x in fac(elec).split(";") if x.startswith("grid")),
            note="; ".join(dict.fromkeys(n for n in elec["notes"] if n)))
        add("ch4_n2o", other, "tCO2e", factors=fac(fuels))
        add("co2_total", co2_f + co2_e + other, "tCO2e", note="biogenic CO2 not included")
        add("co2_biogenic", bio, "tCO2e", note="reported apart, not in the total")
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out


def factors_used(ws, conv: Converter):
    """The factors a computation used, with their sources (answers "which factor, from where")."""
    import pandas as pd

    return pd.DataFrame([f.as_dict() for f in conv.used.values()])
