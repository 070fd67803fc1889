"""Cross-row checks of a worksheet: references, duplicates, periods, units by stream kind.

Called by :func:`cpa.worksheet.build` after every cell has been converted. Each check adds
problems to the builder; nothing stops at the first one.
"""

from __future__ import annotations

from cpa import schema
from cpa.errors import UnitError
from cpa.frames import memo, records


def validate(ws, b) -> None:
    t = ws.tables
    if not ws.facility and not t:
        return
    with memo():
        _validate(ws, b)


def _validate(ws, b) -> None:
    _duplicates(ws, b)
    _references(ws, b)
    _periods(ws, b)
    _streams(ws, b)
    _flow_units(ws, b)
    _flows(ws, b)
    _production(ws, b)
    _prices(ws, b)
    _factors(ws, b)
    _options(ws, b)
    _estimated_share(ws, b)


def _duplicates(ws, b):
    for spec in schema.TABLES:
        if spec.keyvalue or not spec.key:
            continue
        frame = ws.tables[spec.name]
        seen: dict = {}
        for rec in records(frame):
            key = tuple(_norm(rec.get(k)) for k in spec.key)
            if all(k is None for k in key):
                continue
            if key in seen:
                first = seen[key]
                where = f"line {first.line}" if first.line else first.cell
                b.problem(f"duplicate {' + '.join(spec.key)} in {spec.name}", rec["_loc"], spec.name,
                          spec.key[0], found=" / ".join("" if k is None else str(k) for k in key),
                          expected=f"unique {' + '.join(spec.key)} (first at {where})",
                          fix="delete the repeated row or give it another id", code="duplicate")
            else:
                seen[key] = rec["_loc"]


def _norm(value):
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def _ids(ws, table):
    frame = ws.tables.get(table)
    if frame is None or "id" not in frame:
        return set()
    return {v for v in frame["id"].tolist() if isinstance(v, str)}


def _references(ws, b):
    ids = {name: _ids(ws, name) for name in ("periods", "steps", "streams", "options", "causes")}
    fac = ws.facility
    ref = fac.get("reference_product")
    if ref and ref not in ids["streams"]:
        b.problem("the reference product is not a declared stream", ws.facility_locs.get("reference_product"),
                  "facility", "reference_product", found=ref,
                  expected="one of the stream ids: " + ", ".join(sorted(ids["streams"])[:12]),
                  fix="declare it in the streams table, or correct the id", code="reference")
    for spec in schema.TABLES:
        if spec.keyvalue:
            continue
        frame = ws.tables[spec.name]
        for col in spec.columns:
            if col.type != "ref":
                continue
            known = ids.get(col.ref, set())
            values = frame[col.name].tolist()
            for value, loc in zip(values, frame["_loc"].tolist(), strict=True):
                if isinstance(value, str) and value not in known:
                    import difflib

                    close = difflib.get_close_matches(value, sorted(known), n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    b.problem(f"unknown {col.ref[:-1] if col.ref.endswith('s') else col.ref} '{value}'",
                              loc, spec.name, col.name, found=value,
                              expected=f"an id of the {col.ref} table" + (
                                  ": " + ", ".join(sorted(known)[:10]) if known else " (which is empty)"),
                              fix=hint + f"declare it in {col.ref} or correct the id", code="reference")


def _periods(ws, b):
    frame = ws.tables["periods"]
    recs = [r for r in records(frame) if r["start"] is not None and r["end"] is not None]
    baseline = [r for r in records(frame) if r["kind"] == "baseline"]
    if len(frame) and not baseline:
        b.problem("no baseline period", frame["_loc"].iloc[0], "periods", "kind", found="no period of kind baseline",
                  expected="exactly one baseline period", fix="mark the period before CP as baseline", code="baseline")
    for extra in baseline[1:]:
        b.problem("more than one baseline period", extra["_loc"], "periods", "kind", found=extra["id"],
                  expected="exactly one baseline period",
                  fix="make the others monitoring periods", code="baseline")
    for r in recs:
        if r["end"] < r["start"]:
            b.problem("the period ends before it starts", r["_loc"], "periods", "end",
                      found=f"{r['start']} → {r['end']}", expected="end on or after start",
                      fix="swap or correct the dates", code="period")
            continue
        days = (r["end"] - r["start"]).days + 1
        od = r["operating_days"]
        if od is not None and od == od:
            if od <= 0:
                b.problem("operating days must be positive", r["_loc"], "periods", "operating_days",
                          found=od, expected="a number of days > 0", fix="count the days the plant ran",
                          code="period")
            elif od > days:
                b.problem("more operating days than days in the period", r["_loc"], "periods", "operating_days",
                          found=f"{od:g} days", expected=f"at most {days} (from {r['start']} to {r['end']})",
                          fix="correct the days or the dates", code="period")
        oh = r.get("operating_hours")
        if oh is not None and oh == oh and oh > days * 24:
            b.problem("more operating hours than hours in the period", r["_loc"], "periods", "operating_hours",
                      found=f"{oh:g} h", expected=f"at most {days * 24} h", fix="correct the hours", code="period")
    good = sorted((r for r in recs if r["end"] >= r["start"]), key=lambda r: r["start"])
    for i, a in enumerate(good):
        for c in good[i + 1:]:
            if c["start"] <= a["end"]:
                b.problem("periods overlap", c["_loc"], "periods", "start",
                          found=f"{c['id']} ({c['start']} → {c['end']}) overlaps {a['id']} ({a['start']} → {a['end']})",
                          expected="periods that do not overlap", fix="correct the dates", code="period")
    for r in baseline[:1]:
        for m in good:
            if m["kind"] == "monitoring" and r["start"] is not None and m["start"] < r["start"]:
                b.problem("a monitoring period before the baseline", m["_loc"], "periods", "start",
                          found=f"{m['id']} starts {m['start']}, baseline {r['start']}",
                          expected="monitoring after the baseline", fix="check the period kinds and dates",
                          severity="warning", code="period")


def _streams(ws, b):
    for r in records(ws.tables["streams"]):
        if r["kind"] == "fuel" and not r["fuel"]:
            b.problem("a fuel stream needs its fuel type", r["_loc"], "streams", "fuel", found="(empty)",
                      expected="a fuel id: " + ", ".join(c.id for c in schema.choices("fuel")),
                      fix="name the fuel so that its calorific value and CO2 factor can be found",
                      code="fuel")
    ref = ws.facility.get("reference_product")
    kinds = dict(zip(ws.tables["streams"]["id"].tolist(), ws.tables["streams"]["kind"].tolist(), strict=True))
    if ref and ref in kinds and kinds[ref] not in ("product", "by_product"):
        b.problem("the reference product is not a product stream", ws.facility_locs.get("reference_product"),
                  "facility", "reference_product", found=f"{ref} ({kinds[ref]})", expected="a stream of kind product",
                  fix="pick the main product", code="reference")


def _stream_kinds(ws) -> dict:
    s = ws.tables["streams"]
    return dict(zip(s["id"].tolist(), s["kind"].tolist(), strict=True))


def _flow_units(ws, b):
    """Each flow's unit must fit its stream's kind (water in m3, electricity in kWh...)."""
    from cpa.units import dimension_of

    kinds = _stream_kinds(ws)
    for table, _qcol in (("flows", "quantity"), ("stocks", "change"), ("monitoring", "saving")):
        frame = ws.tables[table]
        if not len(frame):
            continue
        checked: dict = {}
        for stream, unit, loc in zip(frame["stream"].tolist(), frame["unit"].tolist(), frame["_loc"].tolist(), strict=True):
            kind = kinds.get(stream)
            if not isinstance(unit, str) or kind is None:
                continue
            key = (kind, unit)
            if key not in checked:
                try:
                    checked[key] = dimension_of(unit)
                except UnitError:
                    checked[key] = None
            dim = checked[key]
            allowed = schema.KIND_DIMS.get(kind, ())
            if dim is not None and dim not in allowed:
                b.problem(f"stream '{stream}' ({kind.replace('_', ' ')}) recorded in a unit of {dim}", loc, table, "unit",
                          found=f"{unit} for stream '{stream}'",
                          expected=f"a unit of {' or '.join(allowed)}",
                          fix={"electricity": "record electricity in kWh or MWh",
                               "water": "record water in m3 (or L)",
                               "wastewater": "record wastewater in m3"}.get(kind, "use a unit of the listed dimensions"),
                          code="dimension")


def _flows(ws, b):
    frame = ws.tables["flows"]
    for r in records(frame):
        q = r["quantity"]
        if q is not None and q == q and q < 0:
            b.problem("a negative quantity", r["_loc"], "flows", "quantity", found=f"{q:g}",
                      expected="a quantity ≥ 0 (the direction is given by from/to)",
                      fix="write the amount as positive and set from/to for its direction", code="negative")
        if not r["from"] and not r["to"] and r["stream"]:
            b.problem("a flow with neither 'from' nor 'to'", r["_loc"], "flows", "from",
                      found="both empty", expected="a step in 'from', 'to' or both",
                      fix="name the step the flow enters (to) or leaves (from)", code="direction")
        elif r["from"] and r["from"] == r["to"]:
            b.problem("a flow from a step to itself", r["_loc"], "flows", "to", found=r["to"],
                      expected="two different steps", fix="internal loops do not enter the balance: remove it",
                      severity="warning", code="direction")
    for table, col in (("production", "quantity"), ("prices", "price")):
        for r in records(ws.tables[table]):
            q = r[col]
            if q is not None and q == q and q < 0:
                b.problem("a negative value", r["_loc"], table, col, found=f"{q:g}", expected="a value ≥ 0",
                          fix="write it as positive", code="negative")


def _production(ws, b):
    ref = ws.facility.get("reference_product")
    prod = ws.tables["production"]
    periods = ws.tables["periods"]
    if not ref or not len(periods):
        return
    have = {(p, s) for p, s in zip(prod["period"].tolist(), prod["product"].tolist(), strict=True)}
    units = {u for s, u in zip(prod["product"].tolist(), prod["unit"].tolist(), strict=True) if s == ref and isinstance(u, str)}
    for pid, loc in zip(periods["id"].tolist(), periods["_loc"].tolist(), strict=True):
        if isinstance(pid, str) and (pid, ref) not in have:
            b.problem("no production of the reference product in a period", loc, "production", "product",
                      found=f"period {pid}", expected=f"a production row for {ref} in {pid}",
                      fix="record the production of the period (specific consumption needs it)", code="production")
    if len(units) > 1:
        from cpa.units import dimension_of

        if len({dimension_of(u) for u in units}) > 1:
            b.problem("the reference product is recorded in units of different dimensions", None, "production", "unit",
                      found=", ".join(sorted(units)), expected="one dimension in every period",
                      fix="record it in the same kind of unit (e.g. t) in every period", code="dimension")


def _prices(ws, b):
    from cpa.units import dimension_of, parse_unit

    kinds = _stream_kinds(ws)
    for r in records(ws.tables["prices"]):
        unit = r["unit"]
        if not isinstance(unit, str):
            continue
        try:
            parse_unit(unit)
        except UnitError:
            continue
        text = unit.split("/", 1)
        ok = len(text) == 2 and dimension_of(text[0]) == "money"
        if ok:
            denom = dimension_of(text[1])
            kind = kinds.get(r["stream"])
            allowed = schema.KIND_DIMS.get(kind, ()) if kind else ()
            if kind and denom not in allowed:
                b.problem("a price per a unit that does not fit the stream", r["_loc"], "prices", "unit",
                          found=f"{unit} for {r['stream']} ({kind})",
                          expected="money per " + " or ".join(allowed), fix="write e.g. VND/t, VND/m3, VND/kWh",
                          code="dimension")
        else:
            b.problem("a price must be money per unit of the stream", r["_loc"], "prices", "unit", found=unit,
                      expected="e.g. VND/kWh, VND/t, VND/m3", fix="write the price per unit", code="dimension")
        if r["valid_to"] is not None and r["valid_from"] is not None and r["valid_to"] < r["valid_from"]:
            b.problem("the price ends before it starts", r["_loc"], "prices", "valid_to",
                      found=f"{r['valid_from']} → {r['valid_to']}", expected="valid_to on or after valid_from",
                      fix="correct the dates", code="period")


_FACTOR_UNITS = {
    "ncv": ("energy", ("mass", "volume", "normal_volume")),
    "co2": ("emission", ("energy",)),
    "ch4": ("mass", ("energy",)),
    "n2o": ("mass", ("energy",)),
    "toe": ("regulatory_energy", ("mass", "volume", "normal_volume", "energy")),
    "grid_ef": ("emission", ("energy",)),
    "density": ("mass", ("volume", "normal_volume")),
    "energy_content": ("energy", ("mass", "volume")),
    "mass_per_unit": ("mass", ("count", "area", "volume")),
}


def _factors(ws, b):
    from cpa.factors import fuels
    from cpa.units import dimension_of

    streams = _ids(ws, "streams")
    for r in records(ws.tables["factors"]):
        key, name, unit = r["applies_to"], r["factor"], r["unit"]
        if name == "grid_ef":
            if not (isinstance(key, str) and key.isdigit() and len(key) == 4):
                b.problem("a grid factor applies to a year", r["_loc"], "factors", "applies_to", found=key,
                          expected="a year, e.g. 2024", fix="write the year the factor is for", code="factor")
        elif isinstance(key, str) and key not in streams and key not in fuels():
            b.problem("a factor for an unknown stream or fuel", r["_loc"], "factors", "applies_to", found=key,
                      expected="a stream id or a fuel id", fix="correct the id", code="reference")
        if name in _FACTOR_UNITS and isinstance(unit, str):
            num, dens = _FACTOR_UNITS[name]
            parts = unit.split("/", 1)
            try:
                good = len(parts) == 2 and dimension_of(parts[0]) == num and dimension_of(parts[1]) in dens
            except UnitError:
                good = False
            if not good:
                b.problem(f"a {name} factor in a unit of the wrong dimension", r["_loc"], "factors", "unit",
                          found=unit, expected=f"{num} per {' or '.join(dens)}",
                          fix={"ncv": "e.g. GJ/t or MJ/Nm3", "co2": "e.g. kgCO2e/TJ", "grid_ef": "tCO2e/MWh",
                               "density": "kg/m3", "energy_content": "GJ/t", "toe": "TOE_VN/t"}.get(name, "see docs"),
                          code="dimension")
        v = r["value"]
        if v is not None and v == v and v <= 0:
            b.problem("a factor must be positive", r["_loc"], "factors", "value", found=f"{v:g}",
                      expected="a value > 0", fix="correct the value", code="negative")


def _options(ws, b):
    for r in records(ws.tables["options"]):
        for col in ("investment_equipment", "investment_installation", "investment_engineering",
                    "investment_other", "grant"):
            v = r[col]
            if v is not None and v == v and v < 0:
                b.problem("a negative investment", r["_loc"], "options", col, found=f"{v:g}",
                          expected="an amount ≥ 0", fix="write it as positive", code="negative")
        life = r["lifetime"]
        if life is not None and life == life and life <= 0:
            b.problem("the lifetime must be positive", r["_loc"], "options", "lifetime", found=f"{life:g}",
                      expected="years > 0", fix="write the economic lifetime in years", code="negative")
        rate = r["discount_rate"]
        if rate is not None and rate == rate and rate < 0:
            b.problem("a negative discount rate", r["_loc"], "options", "discount_rate", found=f"{rate:g} %",
                      expected="a rate ≥ 0 %", fix="write the discount rate in % per year", code="negative")
        if r["screening"] == "reject" and not r["screening_reason"]:
            b.problem("a rejected option without its reason", r["_loc"], "options", "screening_reason",
                      found="(empty)", expected="why it was rejected", fix="write the reason",
                      severity="warning", code="reason")
        inv = sum((r[c] or 0) for c in ("investment_equipment", "investment_installation",
                                         "investment_engineering", "investment_other") if r[c] == r[c])
        g = r["grant"]
        if g is not None and g == g and g > inv:
            b.problem("the grant is larger than the investment", r["_loc"], "options", "grant",
                      found=f"{g:g} > {inv:g}", expected="a grant ≤ the investment", fix="correct the grant",
                      code="grant")


def _estimated_share(ws, b):
    """Warn where a few figures are estimated among mostly measured ones in a period."""
    flows = ws.tables["flows"]
    if not len(flows):
        return
    for period, group in flows.groupby("period", sort=False):
        basis = group["basis"].tolist()
        n = len(basis)
        est = basis.count("estimated")
        if n >= 4 and 0 < est and (n - est) / n >= 0.75:
            rows = group[group["basis"] == "estimated"]
            names = ", ".join(rows["stream"].astype(str).tolist()[:6])
            b.problem(f"{est} of {n} flows in period {period} are estimated, the rest measured",
                      rows["_loc"].iloc[0], "flows", "basis", found=names,
                      expected="measured figures where the rest are measured",
                      fix="measure these flows if they matter to the balance (DESIRE task 5)",
                      severity="warning", code="estimated")
