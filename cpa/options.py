"""Cleaner-production options: the register, their savings, economics and ranking.

DESIRE step 3–4 (generate options; technical, economic and environmental feasibility). Every
function here is pure: it takes a :class:`cpa.worksheet.Worksheet` and returns tidy pandas
DataFrames with the unit of each number in its column name. No I/O, no charts.

The option model
----------------
An option (table ``options``) acts through one or more *effects* (table ``effects``). Each
effect is turned into *changes of streams*: a reduction (positive) or an increase (negative)
of a stream's annual quantity, in the stream's baseline unit. Money is then

.. math:: S_{\\text{VND}} = \\sum_s \\Delta q_s \\cdot c_s

where :math:`c_s` is the cost to the facility of one unit of stream *s* at the tariffs of the
**baseline** period: the purchase price for an input; treatment + disposal + fee − sale for a
waste, a loss or a by-product (so more by-product sold is a negative reduction times a negative
cost: a saving). The value of the material lost *in* a waste is not added to the waste's cost:
that saving is counted once, on the input, when an effect reduces the input (``recover`` into an
input does it for you).

Effects (``value`` with ``unit``):

``reduce_share``
    ``value`` % of the baseline annual flow of ``stream``: :math:`\\Delta q = s \\, Q_0`.
``reduce_amount``
    ``value`` per year in a unit of the stream's dimension (``m3`` or ``m3/yr``).
``reduce_per_unit``
    ``value`` per unit of the reference product (``m3/t``): :math:`\\Delta q = v \\, P_{yr}`
    with :math:`P_{yr}` the baseline production × annual factor.
``substitute``
    ``value`` % of the *energy* of ``stream`` replaced by ``to_stream``: the quantity of
    ``stream`` saved is :math:`s\\,Q_0`; the quantity of ``to_stream`` added is
    :math:`s\\,Q_0\\,h_{from} / h_{to}` with *h* the energy per unit (net calorific value).
    Fossil CO2 saved and biogenic CO2 added are kept apart.
``recover``
    ``value`` % of a waste ``stream`` recovered: the waste falls by :math:`s\\,Q_0` (less
    treatment and disposal); when ``to_stream`` is an input its purchase falls by the same
    quantity (converted between units); when it is a by-product (or product) the quantity sold
    rises by it (revenue at its sale price).
``money``
    VND per year (``VND`` or ``VND/yr``, any money unit): + saving, − cost.

An option's ``operating_cost_change`` (+ more cost per year) is subtracted from its savings.

Baseline
--------
The baseline annual flow of a stream is the sum of its flows *entering* the facility (``from``
empty) in the baseline period — or *leaving* it (``to`` empty) for wastes, losses, emissions,
by-products and products — times the period's annual factor (:func:`cpa.quantities.period_table`).

Water and wastewater are independent streams: reducing fresh water does **not** reduce
wastewater by itself. A worksheet that expects less wastewater lists a second effect on the
wastewater stream (the saving on treatment is then explicit and checkable).

Double counting
---------------
Options acting on the same stream combine in the documented order (``options.order``, then the
option id): each applies to what the previous ones left. For shares this is multiplicative,
:math:`1 - \\prod_i (1 - s_i)`: 20 % then 10 % of 10,000 m³/yr save 2,000 + 800 = 2,800 m³/yr,
not 3,000. Only options whose screening is not ``reject`` enter the combined total. Stand-alone
savings (each option alone on the baseline) are what an option's economics are computed from.

References
----------
.. [1] UNEP/UNIDO, *Cleaner Production Assessment in Industries* (DESIRE), step 4: technical,
   economic and environmental feasibility of options.
.. [2] RETScreen Expert, financial analysis: NPV with the investment at year 0, IRR, simple and
   discounted payback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cpa.errors import CalculationError, Problem, UnitError
from cpa.quantities import ENERGY_KINDS, WASTE_KINDS, Converter, period_table

#: Stream kinds whose baseline is what *leaves* the facility (the rest: what enters it).
OUT_KINDS = (*WASTE_KINDS, "product")
#: Kinds valued at their purchase price.
INPUT_KINDS = ("raw_material", "auxiliary", "water", "fuel", "electricity", "steam", "intermediate")
WASTE_T_KINDS = ("solid_waste", "hazardous_waste")
INVESTMENT_COLUMNS = ("investment_equipment", "investment_installation", "investment_engineering",
                      "investment_other")
LAYERS = ("mass_t", "water_m3", "energy_gj", "toe_vn", "co2_fossil_t", "co2_biogenic_t", "co2e_other_t")

SAVINGS_COLUMNS = [
    "option", "basis", "included", "effect", "stream", "kind", "role", "quantity_per_yr", "unit",
    "baseline_per_yr", "mass_t_per_yr", "water_m3_per_yr", "energy_gj_per_yr", "toe_vn_per_yr",
    "co2_fossil_t_per_yr", "co2_biogenic_t_per_yr", "co2e_other_t_per_yr", "unit_cost_vnd",
    "saving_vnd_per_yr", "note",
]

#: Fields of one option in the results (and in ``cpa options --json``), with their units.
OPTION_UNITS = {
    "investment_vnd": "VND", "grant_vnd": "VND", "net_investment_vnd": "VND",
    "saving_vnd_per_yr": "VND/yr", "operating_cost_change_vnd_per_yr": "VND/yr",
    "net_saving_vnd_per_yr": "VND/yr", "combined_net_saving_vnd_per_yr": "VND/yr",
    "saving_gj_per_yr": "GJ/yr", "toe_vn_per_yr": "TOE_VN/yr", "co2e_t_per_yr": "tCO2e/yr",
    "co2_biogenic_t_per_yr": "tCO2e/yr", "water_m3_per_yr": "m3/yr", "wastewater_m3_per_yr": "m3/yr",
    "waste_t_per_yr": "t/yr", "lifetime_yr": "yr", "discount_rate": "1/yr", "escalation": "1/yr",
    "payback_yr": "yr", "discounted_payback_yr": "yr", "npv_vnd": "VND", "irr": "1/yr",
    "co2e_t_per_yr_per_million_vnd": "tCO2e/yr per million VND invested", "score": "0-1",
}


# ----------------------------------------------------------------------------------------------
# where things are (for messages)


def _where(ws, loc, table: str, column: str = "") -> str:
    line = getattr(loc, "line", None)
    cell = getattr(loc, "cell", "") or ""
    return Problem(ws.path, "", table=table, column=column, line=line, cell=cell).location


def _fail(ws, loc, table, column, message):
    raise CalculationError(f"{_where(ws, loc, table, column)}: {message}")


def _num(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return math.nan
    return x


def _given(x) -> bool:
    return x is not None and x == x


def _fmt(x: float) -> str:
    return f"{x:,.6g}"


# ----------------------------------------------------------------------------------------------
# the context of one worksheet: periods, baseline flows, prices, conversions


@dataclass
class StreamPeriod:
    """A stream's flows across the boundary in one period, in one unit (the first one found)."""

    unit: str
    quantity: float                                   # in the period, in `unit`
    parts: list = field(default_factory=list)         # (quantity in `unit`, time_of_use)


class Context:
    """Everything an option or comparison calculation needs from one worksheet, resolved once.

    Parameters
    ----------
    ws : cpa.worksheet.Worksheet
    conv : cpa.quantities.Converter, optional
    """

    def __init__(self, ws, conv: Converter | None = None):
        from cpa.indicators import production
        from cpa.prices import PriceBook

        self.ws = ws
        self.conv = conv or Converter(ws)
        self.book = PriceBook(ws)
        self.periods = period_table(ws)
        self.annual = dict(zip(self.periods["id"], self.periods["annual_factor"], strict=True))
        self.year = dict(zip(self.periods["id"], self.periods["year"], strict=True))
        self.kind_of_period = dict(zip(self.periods["id"], self.periods["kind"], strict=True))
        base = [p for p, k in self.kind_of_period.items() if k == "baseline"]
        if not base:
            raise CalculationError(f"{ws.path} [periods]: no baseline period: options and comparisons "
                                   "are measured against it (add a period of kind 'baseline')")
        self.baseline = base[0]
        self.production = production(ws)
        self._cf: dict = {}
        self._flows: dict = {}
        self._cost: dict = {}
        self._index_flows()

    # -- units ------------------------------------------------------------------------------------
    def cf(self, a: str, b: str) -> float:
        key = (a, b)
        hit = self._cf.get(key)
        if hit is None:
            from cpa.units import conversion_factor

            hit = conversion_factor(a, b)
            self._cf[key] = hit
        return hit

    def to_unit(self, stream: str, qty: float, unit: str, to_stream: str, to_unit: str) -> float:
        """Convert a quantity of `stream` in `unit` into `to_unit` (of `to_stream`): directly
        when the dimensions agree, else through mass [t], water [m3] or energy [GJ]."""
        try:
            return qty * self.cf(unit, to_unit)
        except UnitError:
            pass
        year = self.year[self.baseline]
        a = self.conv.convert(stream, unit, year)
        b = self.conv.convert(to_stream, to_unit, year)
        for layer in ("mass_t", "water_m3", "energy_gj"):
            x, y = getattr(a, layer), getattr(b, layer)
            if x == x and y == y and y > 0:
                return qty * x / y
        raise UnitError(unit, f"cannot be converted to {to_unit} of {to_stream}",
                        "record both in units of one dimension, or add a density factor")

    # -- flows ------------------------------------------------------------------------------------
    def _index_flows(self):
        f = self.ws.tables["flows"]
        for period, stream, frm, to, q, unit, tou, loc in zip(
                f["period"], f["stream"], f["from"], f["to"], f["quantity"], f["unit"],
                f["time_of_use"], f["_loc"], strict=True):
            kind = self.conv.kind(stream)
            crosses = (to is None or to != to) if kind in OUT_KINDS else (frm is None or frm != frm)
            if not crosses:
                continue
            key = (period, stream)
            sp = self._flows.get(key)
            if sp is None:
                sp = self._flows[key] = StreamPeriod(unit, 0.0)
            try:
                x = float(q) * self.cf(unit, sp.unit)
            except UnitError:
                _fail(self.ws, loc, "flows", "unit",
                      f"stream '{stream}' is recorded in {sp.unit} and in {unit} in period {period}: "
                      "use units of one dimension for a stream within a period")
            sp.quantity += x
            sp.parts.append((x, tou if isinstance(tou, str) else None))

    def flow(self, period: str, stream: str) -> StreamPeriod | None:
        return self._flows.get((period, stream))

    def stream_unit(self, stream: str) -> str | None:
        """The unit a stream is counted in: its baseline unit, else any period's, else its
        purchase/sale price unit."""
        sp = self.flow(self.baseline, stream)
        if sp is not None:
            return sp.unit
        for (_p, s), sp in self._flows.items():
            if s == stream:
                return sp.unit
        for comp in ("purchase", "sale", "treatment", "disposal"):
            price = self.book.get(stream, comp, self.baseline)
            if price is not None:
                return price.per_unit
        return None

    def annual_baseline(self, stream: str) -> tuple[float, str | None]:
        sp = self.flow(self.baseline, stream)
        if sp is None:
            return 0.0, self.stream_unit(stream)
        return sp.quantity * self.annual[self.baseline], sp.unit

    def annual_production(self, period: str | None = None) -> tuple[float, str]:
        period = period or self.baseline
        q, unit = self.production.get(period, (math.nan, ""))
        return q * self.annual[period], unit

    # -- money ------------------------------------------------------------------------------------
    def unit_cost(self, stream: str, unit: str, period: str | None = None) -> tuple[float, str]:
        """Cost to the facility of one `unit` of `stream` at the prices of `period` [VND/unit],
        and a note (which price is missing). Electricity split by time of use is averaged over
        the period's registers, weighted by its flows."""
        period = period or self.baseline
        key = (stream, unit, period)
        hit = self._cost.get(key)
        if hit is not None:
            return hit
        hit = self._unit_cost(stream, unit, period)
        self._cost[key] = hit
        return hit

    def _unit_cost(self, stream, unit, period):
        kind = self.conv.kind(stream)
        if kind in INPUT_KINDS:
            comps = (("purchase", 1.0),)
        else:
            comps = (("treatment", 1.0), ("disposal", 1.0), ("fee", 1.0), ("sale", -1.0))
        present = [(c, s) for c, s in comps if self.book.has(stream, c)]
        if not present:
            if kind in INPUT_KINDS or kind in ("wastewater", "solid_waste", "hazardous_waste", "by_product"):
                what = "purchase price" if kind in INPUT_KINDS else "treatment, disposal or sale price"
                return math.nan, f"no {what} of {stream}"
            return 0.0, ""
        sp = self.flow(period, stream)
        parts = sp.parts if sp is not None and sp.quantity > 0 else [(1.0, None)]
        base_unit = sp.unit if sp is not None and sp.quantity > 0 else unit
        total_q = sum(q for q, _ in parts)
        cost = 0.0
        for comp, sign in present:
            v = sum(self.book.value(stream, comp, period, q, base_unit, tou) for q, tou in parts)
            if v != v:
                return math.nan, f"no {comp} price of {stream} in force for {period} in {base_unit}"
            cost += sign * v / total_q
        try:
            return cost / self.cf(unit, base_unit) if unit != base_unit else cost, ""
        except UnitError:
            return math.nan, f"price of {stream} per {base_unit} cannot value {unit}"


# ----------------------------------------------------------------------------------------------
# effects → changes of streams


@dataclass
class Change:
    option: str
    effect: str
    stream: str
    role: str               # "reduced", "added", "recovered", "money"
    quantity: float         # reduction per year in `unit` (negative: an increase)
    unit: str
    money: float = 0.0      # VND/yr, for money effects
    note: str = ""


def _options_in_order(ws):
    opts = ws.tables["options"]
    recs = opts.to_dict("records")

    def key(r):
        o = r.get("order")
        return (0 if _given(o) else 1, _num(o) if _given(o) else 0.0, str(r["id"]))

    return sorted(recs, key=key)


def _effects_by_option(ws):
    out: dict = {}
    for r in ws.tables["effects"].to_dict("records"):
        out.setdefault(r["option"], []).append(r)
    return out


def _share(ctx, r) -> float:
    from cpa.units import dimension_of

    unit = r["unit"]
    try:
        if dimension_of(unit) != "dimensionless":
            raise UnitError(unit, "not a share")
        s = float(r["value"]) * ctx.cf(unit, "%") / 100.0
    except UnitError:
        _fail(ctx.ws, r["_loc"], "effects", "unit",
              f"option '{r['option']}': a {r['effect']} effect is a share: write its unit as % (found {unit!r})")
    if not 0.0 <= s <= 1.0:
        _fail(ctx.ws, r["_loc"], "effects", "value",
              f"option '{r['option']}': a {r['effect']} share must be between 0 and 100 % "
              f"(found {float(r['value']):g} {unit}): it cannot save more than the stream holds")
    return s


def _need_stream(ctx, r, column="stream") -> tuple[float, str]:
    """The annual baseline of the effect's stream, checked to exist."""
    stream = r.get(column)
    if not isinstance(stream, str) or not stream:
        _fail(ctx.ws, r["_loc"], "effects", column,
              f"option '{r['option']}': a {r['effect']} effect needs a {column}")
    if stream not in ctx.conv.streams:
        _fail(ctx.ws, r["_loc"], "effects", column,
              f"option '{r['option']}': stream '{stream}' is not in the streams table")
    q, unit = ctx.annual_baseline(stream)
    return q, unit


def _no_baseline(ctx, r, stream):
    kind = ctx.conv.kind(stream)
    where = "leaving the facility (to empty)" if kind in OUT_KINDS else "entering the facility (from empty)"
    _fail(ctx.ws, r["_loc"], "effects", "stream",
          f"option '{r['option']}': stream '{stream}' has no flow {where} in the baseline period "
          f"'{ctx.baseline}', so there is nothing to reduce (an internal stream such as steam from an "
          "own boiler is saved through the fuel it uses)")


def effect_changes(ctx: Context, r) -> list[Change]:
    """The stream changes of one effect row, against the baseline (stand-alone)."""
    eff, opt = r["effect"], r["option"]
    loc = r["_loc"]
    if eff == "money":
        try:
            v = float(r["value"]) * ctx.cf(r["unit"], "VND")
        except UnitError:
            try:
                v = float(r["value"]) * ctx.cf(r["unit"], "VND/yr")
            except UnitError:
                _fail(ctx.ws, loc, "effects", "unit",
                      f"option '{opt}': a money effect needs a money unit such as VND or VND/yr (found {r['unit']!r})")
        return [Change(opt, eff, r.get("stream") or "", "money", 0.0, "VND", money=v)]
    q0, unit = _need_stream(ctx, r)
    stream = r["stream"]
    if not q0 > 0:
        _no_baseline(ctx, r, stream)
    if eff == "reduce_share":
        return [Change(opt, eff, stream, "reduced", _share(ctx, r) * q0, unit)]
    if eff == "reduce_amount":
        v = float(r["value"])
        try:
            try:
                x = v * ctx.cf(r["unit"], unit)
            except UnitError:
                x = v * ctx.cf(r["unit"], f"({unit})/yr")
        except UnitError:
            _fail(ctx.ws, loc, "effects", "unit",
                  f"option '{opt}': {r['unit']!r} is not a unit of stream '{stream}' (recorded in {unit}); "
                  f"write the amount per year in {unit}")
        return [Change(opt, eff, stream, "reduced", x, unit)]
    if eff == "reduce_per_unit":
        p, punit = ctx.annual_production()
        if not p > 0:
            _fail(ctx.ws, loc, "effects", "effect",
                  f"option '{opt}': reduce_per_unit needs the production of the reference product in "
                  f"the baseline period '{ctx.baseline}'")
        try:
            per = float(r["value"]) * ctx.cf(r["unit"], f"({unit})/({punit})")
        except UnitError:
            _fail(ctx.ws, loc, "effects", "unit",
                  f"option '{opt}': {r['unit']!r} is not {unit} of '{stream}' per {punit} of product")
        return [Change(opt, eff, stream, "reduced", per * p, unit,
                       note=f"{_fmt(per)} {unit}/{punit} × {_fmt(p)} {punit}/yr")]
    if eff == "substitute":
        s = _share(ctx, r)
        _need_stream(ctx, r, "to_stream")
        to = r["to_stream"]
        to_unit = ctx.stream_unit(to) or "t"
        year = ctx.year[ctx.baseline]
        h_from = ctx.conv.convert(stream, unit, year).energy_gj
        try:
            h_to = ctx.conv.convert(to, to_unit, year).energy_gj
        except CalculationError:
            raise
        except Exception as exc:  # FactorError and friends: say where
            _fail(ctx.ws, loc, "effects", "to_stream", f"option '{opt}': {exc}")
        if not (h_from == h_from and h_from > 0):
            _fail(ctx.ws, loc, "effects", "stream",
                  f"option '{opt}': substitution is on an energy basis but '{stream}' in {unit} has no "
                  "energy content (calorific value)")
        if not (h_to == h_to and h_to > 0):
            _fail(ctx.ws, loc, "effects", "to_stream",
                  f"option '{opt}': '{to}' in {to_unit} has no energy content (calorific value): add its "
                  "fuel or an ncv factor")
        saved = s * q0
        added = saved * h_from / h_to
        note = f"{_fmt(saved * h_from)} GJ/yr: {_fmt(h_from)} GJ/{unit} → {_fmt(h_to)} GJ/{to_unit}"
        return [Change(opt, eff, stream, "reduced", saved, unit, note=note),
                Change(opt, eff, to, "added", -added, to_unit, note=note)]
    if eff == "recover":
        s = _share(ctx, r)
        kind = ctx.conv.kind(stream)
        if kind not in OUT_KINDS:
            _fail(ctx.ws, loc, "effects", "stream",
                  f"option '{opt}': recover acts on a waste, loss or by-product stream; '{stream}' is {kind}")
        rec = s * q0
        out = [Change(opt, eff, stream, "reduced", rec, unit)]
        to = r.get("to_stream")
        if isinstance(to, str) and to:
            _need_stream(ctx, r, "to_stream")
            to_kind = ctx.conv.kind(to)
            to_unit = ctx.stream_unit(to) or unit
            try:
                x = ctx.to_unit(stream, rec, unit, to, to_unit)
            except UnitError as exc:
                _fail(ctx.ws, loc, "effects", "to_stream", f"option '{opt}': {exc}")
            if to_kind in INPUT_KINDS:
                out.append(Change(opt, eff, to, "recovered", x, to_unit,
                                  note=f"recovered {stream} replaces purchased {to}"))
            elif to_kind in ("by_product", "product"):
                out.append(Change(opt, eff, to, "added", -x, to_unit, note=f"recovered {stream} sold as {to}"))
            else:
                out[0].note = f"destination {to} ({to_kind}) is not valued"
        return out
    raise AssertionError(eff)


# ----------------------------------------------------------------------------------------------
# savings


def _apply(ctx, changes, remaining, r, combined):
    """Check the reductions against what each stream holds and book them in `remaining`.

    Combined, a share-based effect (reduce_share, substitute, recover) acts on what the options
    before it left of its stream: all its changes are scaled by left / baseline.
    """
    scale = 1.0
    if combined and changes and changes[0].effect in ("reduce_share", "substitute", "recover"):
        src = changes[0].stream
        base = ctx.annual_baseline(src)[0]
        scale = remaining.get(src, base) / base if base > 0 else 1.0
    out = []
    for ch in changes:
        if ch.role == "money":
            out.append(ch)
            continue
        key = ch.stream
        base = ctx.annual_baseline(key)[0]
        left = remaining.get(key, base)
        q = ch.quantity * scale
        if q > 0 and q > left * (1 + 1e-9) + 1e-12:
            prev = "" if left == base else \
                f" (the options before it in the order leave {_fmt(left)} {ch.unit}/yr)"
            _fail(ctx.ws, r["_loc"], "effects", "value",
                  f"option '{ch.option}' saves {_fmt(q)} {ch.unit}/yr of stream '{key}', more than the "
                  f"stream holds: baseline {_fmt(base)} {ch.unit}/yr{prev}")
        remaining[key] = left - q
        out.append(Change(ch.option, ch.effect, ch.stream, ch.role, q, ch.unit, ch.money, ch.note))
    return out


def _rows(ctx, changes, basis, included):
    rows = []
    year = ctx.year[ctx.baseline]
    for ch in changes:
        row = {"option": ch.option, "basis": basis, "included": included, "effect": ch.effect,
               "stream": ch.stream, "kind": ctx.conv.kind(ch.stream) if ch.stream else "",
               "role": ch.role, "quantity_per_yr": ch.quantity, "unit": ch.unit, "note": ch.note}
        if ch.role == "money":
            row.update({f"{k}_per_yr": 0.0 for k in LAYERS})
            row.update(baseline_per_yr=math.nan, unit_cost_vnd=math.nan, saving_vnd_per_yr=ch.money)
            rows.append(row)
            continue
        c = ctx.conv.convert(ch.stream, ch.unit, year)
        for k in LAYERS:
            m = getattr(c, k)
            row[f"{k}_per_yr"] = ch.quantity * m if m == m else 0.0
        cost, note = ctx.unit_cost(ch.stream, ch.unit)
        row["baseline_per_yr"] = ctx.annual_baseline(ch.stream)[0]
        row["unit_cost_vnd"] = cost
        row["saving_vnd_per_yr"] = ch.quantity * cost
        if note:
            row["note"] = "; ".join(x for x in (ch.note, note) if x)
        rows.append(row)
    return rows


def savings_table(ws, ctx: Context | None = None):
    """Savings of every option, stand-alone and combined, per option × effect × stream.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SAVINGS_COLUMNS`. ``basis`` is ``standalone`` (the option alone on the
        baseline) or ``combined`` (after the options before it in the order; rejected options
        have no combined rows). ``quantity_per_yr`` is the reduction [unit/yr] (negative: the
        stream increases, e.g. the biomass that replaces coal); the layers are
        ``mass_t_per_yr`` [t/yr], ``water_m3_per_yr`` [m3/yr], ``energy_gj_per_yr`` [GJ/yr],
        ``toe_vn_per_yr`` [TOE_VN/yr], ``co2_*_t_per_yr`` [tCO2e/yr]; ``unit_cost_vnd`` [VND per
        unit] at baseline prices; ``saving_vnd_per_yr`` [VND/yr], NaN when a price is missing
        (``note`` says which).

    Raises
    ------
    CalculationError
        An effect on a stream without a baseline flow, of a unit of another dimension, or saving
        more than the stream holds (stand-alone or after the options before it).
    """
    import pandas as pd

    ctx = ctx or Context(ws)
    effects = _effects_by_option(ws)
    remaining: dict = {}
    rows = []
    for opt in _options_in_order(ws):
        oid = opt["id"]
        included = opt["screening"] != "reject"
        alone_left: dict = {}   # stand-alone: the option's own effects still act in turn
        for r in effects.get(oid, []):
            changes = effect_changes(ctx, r)
            alone = _apply(ctx, changes, alone_left, r, combined=True)
            rows += _rows(ctx, alone, "standalone", included)
            if included:
                comb = _apply(ctx, changes, remaining, r, combined=True)
                rows += _rows(ctx, comb, "combined", included)
    return pd.DataFrame(rows, columns=SAVINGS_COLUMNS)


def _summarise(df):
    """Aggregate savings rows into the reported layers (one dict). Plain numpy over the columns:
    it runs once per option and stream (pandas' per-call overhead was most of its cost)."""
    import numpy as np

    if not len(df):
        return {"saving_vnd_per_yr": 0.0, "saving_gj_per_yr": 0.0, "toe_vn_per_yr": 0.0, "co2e_t_per_yr": 0.0,
                "co2_biogenic_t_per_yr": 0.0, "water_m3_per_yr": 0.0, "wastewater_m3_per_yr": 0.0,
                "waste_t_per_yr": 0.0, "complete": True, "unknown": ""}

    def col(name):
        return df[name].to_numpy(dtype=float, na_value=np.nan)

    def total(values, where=None):  # a sum that skips NaN, as pandas' sum does
        v = values if where is None else values[where]
        return float(np.nansum(v)) if len(v) else 0.0

    kind = df["kind"].to_numpy(dtype=object)
    money = col("saving_vnd_per_yr")
    unknown = [n for n, m in zip(df["note"].tolist(), money, strict=True) if m != m]
    water = col("water_m3_per_yr")
    return {
        "saving_vnd_per_yr": total(money),
        "saving_gj_per_yr": total(col("energy_gj_per_yr"), np.isin(kind, list(ENERGY_KINDS))),
        "toe_vn_per_yr": total(col("toe_vn_per_yr")),
        "co2e_t_per_yr": total(col("co2_fossil_t_per_yr") + col("co2e_other_t_per_yr")),
        "co2_biogenic_t_per_yr": total(col("co2_biogenic_t_per_yr")),
        "water_m3_per_yr": total(water, kind == "water"),
        "wastewater_m3_per_yr": total(water, kind == "wastewater"),
        "waste_t_per_yr": total(col("mass_t_per_yr"), np.isin(kind, list(WASTE_T_KINDS))),
        "complete": not unknown,
        "unknown": "; ".join(dict.fromkeys(unknown)),
    }


def combined_savings(ws, savings=None, ctx: Context | None = None):
    """Per stream: baseline, the sum of stand-alone savings and the combined saving of the
    options that are not rejected (each acting on what the previous left).

    Returns
    -------
    pandas.DataFrame
        ``stream, kind, unit, baseline_per_yr, standalone_sum_per_yr, combined_per_yr,
        remaining_per_yr`` [unit/yr], ``combined_share`` [fraction of the baseline],
        ``energy_gj_per_yr, toe_vn_per_yr, co2e_t_per_yr, co2_biogenic_t_per_yr`` and
        ``saving_vnd_per_yr`` of the combined saving. Money effects are one row with an empty
        stream.
    """
    import pandas as pd

    ctx = ctx or Context(ws)
    s = savings_table(ws, ctx) if savings is None else savings
    inc = s[s["included"].astype(bool)]
    out = []
    for stream, g in inc.groupby("stream", sort=False):
        alone = g[g["basis"] == "standalone"]
        comb = g[g["basis"] == "combined"]
        base = ctx.annual_baseline(stream)[0] if stream else math.nan
        cq = float(comb["quantity_per_yr"].sum())
        summ = _summarise(comb)
        out.append({
            "stream": stream, "kind": ctx.conv.kind(stream) if stream else "",
            "unit": g["unit"].iloc[0], "baseline_per_yr": base,
            "standalone_sum_per_yr": float(alone["quantity_per_yr"].sum()),
            "combined_per_yr": cq, "remaining_per_yr": base - cq,
            "combined_share": cq / base if base and base == base else math.nan,
            "energy_gj_per_yr": float(comb["energy_gj_per_yr"].sum()),
            "toe_vn_per_yr": summ["toe_vn_per_yr"], "co2e_t_per_yr": summ["co2e_t_per_yr"],
            "co2_biogenic_t_per_yr": summ["co2_biogenic_t_per_yr"],
            "saving_vnd_per_yr": float(comb["saving_vnd_per_yr"].sum(min_count=1)),
        })
    return pd.DataFrame(out, columns=["stream", "kind", "unit", "baseline_per_yr", "standalone_sum_per_yr",
                                      "combined_per_yr", "remaining_per_yr", "combined_share",
                                      "energy_gj_per_yr", "toe_vn_per_yr", "co2e_t_per_yr",
                                      "co2_biogenic_t_per_yr", "saving_vnd_per_yr"])


def combined_totals(ws, savings=None, ctx: Context | None = None) -> dict:
    """Totals over the options that are not rejected, combined without double counting, minus
    their operating-cost changes (keys as in :data:`OPTION_UNITS`)."""
    s = savings_table(ws, ctx or Context(ws)) if savings is None else savings
    comb = s[(s["basis"] == "combined") & s["included"].astype(bool)]
    out = _summarise(comb)
    opts = option_register(ws)
    inc = opts[opts["included"]]
    out["operating_cost_change_vnd_per_yr"] = float(inc["operating_cost_change_vnd_per_yr"].sum())
    out["net_saving_vnd_per_yr"] = out["saving_vnd_per_yr"] - out["operating_cost_change_vnd_per_yr"]
    out["investment_vnd"] = float(inc["investment_vnd"].sum())
    out["grant_vnd"] = float(inc["grant_vnd"].sum())
    out["options"] = int(len(inc))
    return out


# ----------------------------------------------------------------------------------------------
# register and economics


def option_register(ws):
    """The option register with investment in VND (no savings): one row per option, in order.

    ``investment_vnd`` = equipment + installation + engineering + other [VND] (empty cells are
    0); ``grant_vnd`` and ``operating_cost_change_vnd_per_yr`` [VND/yr] converted from the
    option's ``money_unit``; ``included`` is False for rejected options.
    """
    import pandas as pd

    from cpa.schema import choices
    from cpa.units import conversion_factor

    codes = {c.id: c.code for c in choices("option_category")}
    rows = []
    for i, r in enumerate(_options_in_order(ws)):
        mu = r.get("money_unit") or "VND"
        k = conversion_factor(mu, "VND")
        inv = sum(_num(r[c]) for c in INVESTMENT_COLUMNS if _given(r[c])) * k
        grant = (_num(r["grant"]) if _given(r["grant"]) else 0.0) * k
        opex = (_num(r["operating_cost_change"]) if _given(r["operating_cost_change"]) else 0.0) * k
        rows.append({
            "position": i + 1, "id": r["id"], "title_vi": r["title_vi"], "title_en": r.get("title_en") or "",
            "category": r["category"], "code": codes.get(r["category"], ""), "screening": r["screening"],
            "screening_reason": r.get("screening_reason") or "", "status": r["status"],
            "effort": r.get("effort") or "", "included": r["screening"] != "reject",
            "investment_vnd": inv, "grant_vnd": grant, "net_investment_vnd": inv - grant,
            "operating_cost_change_vnd_per_yr": opex,
            "lifetime_yr": _num(r.get("lifetime")), "discount_rate": _num(r.get("discount_rate")) / 100.0,
            "escalation": (_num(r["escalation"]) / 100.0) if _given(r.get("escalation")) else 0.0,
            "_loc": r["_loc"],
        })
    return pd.DataFrame(rows)


def economics(investment, grant, net_saving, lifetime, rate, escalation) -> dict:
    """Payback, NPV, IRR and discounted payback of one option (scalars; see :mod:`cpa.finance`).

    Parameters
    ----------
    investment, grant : float
        [VND] at year 0.
    net_saving : float
        Savings minus the change in operating cost in year 1 [VND/yr]; NaN when not valued.
    lifetime : float
        [yr]; NaN when not given (then NPV, IRR and discounted payback are not computed).
    rate, escalation : float
        Discount rate and yearly escalation of the savings [1/yr]; rate NaN: no NPV.

    Returns
    -------
    dict
        ``payback_yr`` (``inf`` = never), ``payback_bucket``, ``npv_vnd``, ``irr``,
        ``irr_note`` (``""``, ``"none"``, ``"multiple: use NPV"`` or why not computed),
        ``discounted_payback_yr``, ``economics_note``.
    """
    from cpa import finance

    out = {"payback_yr": math.nan, "payback_bucket": "", "npv_vnd": math.nan, "irr": math.nan,
           "irr_note": "", "discounted_payback_yr": math.nan, "economics_note": ""}
    if not net_saving == net_saving:
        out["economics_note"] = "savings not valued (a price is missing)"
        out["irr_note"] = "not computed"
        return out
    pb = finance.simple_payback(investment, net_saving, grant)
    out["payback_yr"] = pb
    out["payback_bucket"] = finance.payback_bucket(pb)
    notes = []
    if not lifetime == lifetime:
        notes.append("lifetime not given: no NPV, IRR or discounted payback")
        out["irr_note"] = "not computed"
    elif not float(lifetime).is_integer():
        notes.append("lifetime must be whole years for the cash flows: no NPV, IRR or discounted payback")
        out["irr_note"] = "not computed"
    else:
        flows = finance.cash_flows(investment, net_saving, int(lifetime), grant=grant, escalation=escalation)
        rates = finance.irr_all(flows)
        if len(rates) == 1:
            out["irr"] = rates[0]
        else:
            out["irr_note"] = "none" if not rates else "multiple: use NPV"
        if rate == rate:
            out["npv_vnd"] = finance.npv(rate, flows)
            out["discounted_payback_yr"] = finance.discounted_payback(rate, flows)
        else:
            notes.append("discount rate not given: no NPV or discounted payback")
    out["economics_note"] = "; ".join(notes)
    return out


def option_table(ws, ctx: Context | None = None, savings=None, weights: dict | None = None,
                 sort_by: str = "payback"):
    """The option register with savings (stand-alone), economics and rank: one row per option.

    Columns: the register (:func:`option_register`), the savings layers of :data:`OPTION_UNITS`
    (stand-alone, so each option's economics stand on their own), ``net_saving_vnd_per_yr``
    (savings − operating-cost change), ``combined_net_saving_vnd_per_yr`` (its share of the
    combined total, after the options before it), the economics of :func:`economics`,
    ``co2e_t_per_yr_per_million_vnd``, ``score`` (when ``weights`` are given) and ``rank``
    (see :func:`rank_options`; rejected options come last, without a rank).
    """
    import pandas as pd

    ctx = ctx or Context(ws)
    s = savings_table(ws, ctx) if savings is None else savings
    reg = option_register(ws)
    rows = []
    for r in reg.to_dict("records"):
        r.pop("_loc")
        oid = r["id"]
        alone = s[(s["option"] == oid) & (s["basis"] == "standalone")]
        comb = s[(s["option"] == oid) & (s["basis"] == "combined")]
        summ = _summarise(alone)
        net = summ["saving_vnd_per_yr"] - r["operating_cost_change_vnd_per_yr"]
        if not summ["complete"]:
            net_for_econ = math.nan
        else:
            net_for_econ = net
        r.update(summ)
        r["net_saving_vnd_per_yr"] = net if summ["complete"] else math.nan
        r["combined_net_saving_vnd_per_yr"] = (
            float(comb["saving_vnd_per_yr"].sum(min_count=1)) - r["operating_cost_change_vnd_per_yr"]
            if r["included"] and len(comb) else (0.0 - r["operating_cost_change_vnd_per_yr"] if r["included"] else 0.0))
        r.update(economics(r["investment_vnd"], r["grant_vnd"], net_for_econ, r["lifetime_yr"],
                           r["discount_rate"], r["escalation"]))
        ni = r["net_investment_vnd"]
        r["co2e_t_per_yr_per_million_vnd"] = (r["co2e_t_per_yr"] / (ni / 1e6)) if ni > 0 else (
            math.inf if r["co2e_t_per_yr"] > 0 else math.nan)
        rows.append(r)
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    return rank_options(out, by=sort_by, weights=weights)


SORT_KEYS = {
    "payback": ("payback_yr", True),
    "npv": ("npv_vnd", False),
    "savings": ("net_saving_vnd_per_yr", False),
    "co2": ("co2e_t_per_yr_per_million_vnd", False),
    "score": ("score", False),
}


def rank_options(table, by: str = "payback", weights: dict | None = None):
    """Sort options and number them.

    ``by`` is ``payback`` (shortest first; "never" and unknown last), ``npv``, ``savings`` (net
    VND/yr), ``co2`` (tCO2e/yr per million VND invested) or ``score``. Ties are broken by NPV,
    then net savings. Rejected options come last with no rank.

    ``weights`` = ``{"technical": wt, "economic": we, "environmental": wv}`` adds ``score`` in
    [0, 1], a weighted mean of three simple sub-scores: technical = 1, 0.5, 0 for low, medium,
    high effort (0.5 when not given); economic = 1 / (1 + payback) (0 for never);
    environmental = the option's CO2e saved / the largest CO2e saved of the included options.
    """
    import numpy as np

    t = table.copy()
    if weights:
        wt = float(weights.get("technical", 0)), float(weights.get("economic", 0)), float(weights.get("environmental", 0))
        if sum(wt) <= 0 or min(wt) < 0:
            raise CalculationError("weights must be ≥ 0 and not all 0")
        tech = t["effort"].map({"low": 1.0, "medium": 0.5, "high": 0.0}).fillna(0.5)
        pb = t["payback_yr"].astype(float)
        econ = (1.0 / (1.0 + pb)).where(np.isfinite(pb), 0.0).fillna(0.0)
        co2 = t["co2e_t_per_yr"].clip(lower=0)
        top = co2[t["included"]].max() if t["included"].any() else 0.0
        env = co2 / top if top and top > 0 else co2 * 0.0
        t["score"] = (wt[0] * tech + wt[1] * econ + wt[2] * env) / sum(wt)
    elif by == "score":
        raise CalculationError("ranking by score needs weights")
    else:
        t["score"] = math.nan
    if by not in SORT_KEYS:
        raise CalculationError(f"unknown ranking {by!r}: use one of {', '.join(SORT_KEYS)}")
    col, asc = SORT_KEYS[by]
    key = t[col].astype(float)
    key = key.where(key.notna(), np.inf if asc else -np.inf)
    t = t.assign(_ex=~t["included"], _k=key if asc else -key,
                 _npv=-t["npv_vnd"].astype(float).fillna(-np.inf), _sav=-t["net_saving_vnd_per_yr"].astype(float).fillna(-np.inf))
    t = t.sort_values(["_ex", "_k", "_npv", "_sav", "position"], kind="stable")
    t = t.drop(columns=["_ex", "_k", "_npv", "_sav"]).reset_index(drop=True)
    n_inc = int(t["included"].sum())
    import pandas as pd

    t["rank"] = pd.Series([i + 1 if i < n_inc else None for i in range(len(t))], dtype=object)
    return t
