"""Flows in common units: mass [t], water volume [m3], energy [GJ], TOE_VN, CO2.

This is the one place where a worksheet's quantities are converted. Conversions are resolved
once per distinct (stream, unit) pair — a unit string is parsed once, a factor looked up once —
and then applied to float columns, so a table of 100,000 flows costs no more pint work than a
table of ten.

Conversions
-----------
mass [t]
    mass units directly; volumes of materials by a ``density`` factor; pieces or m² of product
    by ``mass_per_unit``; water and wastewater at 1 t/m³ (used in the mass balance only when the
    facility sets ``water_in_mass_balance``).
water [m³]
    water and wastewater (mass at 1 m³/t), steam as water equivalent (1 m³/t), losses given in
    volume.
energy [GJ]
    fuel: quantity × net calorific value (``ncv``; per mass, per volume, per Nm³; a volume of a
    fuel whose NCV is per tonne needs its ``density``); electricity: kWh × 0.0036 GJ/kWh; steam:
    quantity × ``energy_content``; energy units directly. An explicit multiplication, never a
    pint context with a silently defaulted parameter.
regulatory TOE [TOE_VN]
    fuels and electricity by the MOIT table per unit of mass, volume, Nm³ or MWh; fuels absent
    from it (biomass, imported coal types) by NCV / 41.868 GJ, labelled ``derived``.
CO2 [tCO2e]
    fuels: energy × CO2 factor (fossil, or biogenic for biomass, reported apart) plus CH4 and N2O
    × GWP; electricity: MWh × the grid emission factor of the period's year.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cpa.errors import FactorError, UnitError
from cpa.frames import row_dicts

MASS_KINDS = ("raw_material", "auxiliary", "intermediate", "product", "by_product", "solid_waste",
              "hazardous_waste", "air_emission", "loss")
WATER_KINDS = ("water", "wastewater")
ENERGY_KINDS = ("fuel", "electricity", "steam")
WASTE_KINDS = ("wastewater", "solid_waste", "hazardous_waste", "air_emission", "loss", "by_product")

PHYSICAL_TOE_GJ = 41.868  # IEA: 1 toe = 10^7 kcal(IT) = 41.868 GJ


@dataclass
class Conversion:
    """How one (stream, unit) pair converts; NaN where a layer does not apply."""

    mass_t: float = math.nan
    water_m3: float = math.nan
    energy_gj: float = math.nan
    toe_vn: float = math.nan
    co2_fossil_t: float = math.nan
    co2_biogenic_t: float = math.nan
    co2e_other_t: float = math.nan   # CH4 + N2O as CO2e
    factors: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def _cf(a: str, b: str) -> float:
    from cpa.units import conversion_factor

    return conversion_factor(a, b)


class Converter:
    """Resolves conversions for the streams of one worksheet, caching each (stream, unit).

    Parameters
    ----------
    ws : cpa.worksheet.Worksheet
    """

    def __init__(self, ws):
        self.ws = ws
        self.fs = ws.factor_set()
        streams = ws.tables["streams"]
        self.streams = {r["id"]: r for r in row_dicts(streams)}
        self.water_in_mass = bool(ws.facility.get("water_in_mass_balance"))
        self._cache: dict = {}
        self.used: dict[str, object] = {}  # factor id -> Factor

    # -- factor lookup: stream-specific override first, then the fuel ----------------------------
    def factor(self, name: str, stream: str, per: str | None = None):
        s = self.streams.get(stream, {})
        keys = [stream]
        fuel = s.get("fuel")
        if fuel:
            keys.append(fuel)
        last = None
        for key in keys:
            try:
                f = self.fs.get(name, key, per=per)
                self.used[f.id] = f
                return f
            except FactorError as exc:
                last = exc
        raise last or FactorError(f"no {name} factor for {stream}")

    def kind(self, stream: str) -> str:
        return self.streams.get(stream, {}).get("kind") or ""

    def convert(self, stream: str, unit: str, year: int | None = None) -> Conversion:
        key = (stream, unit, year)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._convert(stream, unit, year)
            self._cache[key] = hit
        return hit

    def _convert(self, stream: str, unit: str, year: int | None) -> Conversion:
        from cpa.units import dimension_of

        c = Conversion()
        kind = self.kind(stream)
        dim = dimension_of(unit)
        # -- mass
        if dim == "mass":
            c.mass_t = _cf(unit, "t")
        elif dim in ("volume", "normal_volume", "count", "area") and kind in MASS_KINDS + WATER_KINDS + ("fuel",):
            fname = "density" if dim in ("volume", "normal_volume") else "mass_per_unit"
            if kind in WATER_KINDS and dim == "volume":
                c.mass_t = _cf(unit, "m**3")  # 1 t/m3
            else:
                try:
                    f = self.factor(fname, stream, per=dim)
                    num, den = f.unit.split("/", 1)
                    c.mass_t = f.value * _cf(num, "t") / _cf(den, unit)
                    c.factors.append(f.id)
                except (FactorError, UnitError):
                    if kind in MASS_KINDS:
                        c.notes.append(f"{stream}: no {fname} to read {unit} as mass: left out of the mass balance")
        # -- water
        if kind in WATER_KINDS or kind == "steam" or (kind == "loss" and dim == "volume"):
            if dim == "volume":
                c.water_m3 = _cf(unit, "m**3")
            elif dim == "mass":
                c.water_m3 = _cf(unit, "t")  # 1 m3/t
        # -- energy
        if dim == "energy" and kind in ENERGY_KINDS + ("loss",):
            c.energy_gj = _cf(unit, "GJ")
        elif kind == "fuel":
            c.energy_gj = self._fuel_energy(stream, unit, dim, c)
        elif kind == "steam":
            try:
                f = self.factor("energy_content", stream, per=dim)
                num, den = f.unit.split("/", 1)
                c.energy_gj = f.value * _cf(num, "GJ") / _cf(den, unit)
                c.factors.append(f.id)
            except FactorError:
                c.notes.append(f"{stream}: steam needs an energy_content factor (e.g. GJ/t) to enter the energy balance")
        # -- TOE and CO2: only carriers (fuel, electricity, purchased steam has none)
        if kind == "fuel" and not math.isnan(c.energy_gj):
            c.toe_vn = self._toe(stream, unit, dim, c)
            self._fuel_co2(stream, c)
        if kind == "electricity":
            f = self._electricity_toe()
            den = f.unit.split("/", 1)[1]
            c.toe_vn = f.value / _cf(den, unit)
            c.factors.append(f.id)
            if year is not None:
                g, note = self.fs.grid_ef(year)
                self.used[g.id] = g
                gnum, gden = g.unit.split("/", 1)
                c.co2_fossil_t = g.value * _cf(gnum, "tCO2e") / _cf(gden, unit)
                c.factors.append(g.id)
                if note:
                    c.notes.append(note)
        return c

    def _electricity_toe(self):
        f = self.fs.get("toe", "electricity", per="energy")
        self.used[f.id] = f
        return f

    def _fuel_energy(self, stream, unit, dim, c) -> float:
        try:
            f = self.factor("ncv", stream, per=dim)
            num, den = f.unit.split("/", 1)
            c.factors.append(f.id)
            return f.value * _cf(num, "GJ") / _cf(den, unit)
        except FactorError:
            pass
        # a volume of fuel with an NCV per tonne: through its density
        f = self.factor("ncv", stream, per="mass")
        if dim in ("volume", "normal_volume"):
            try:
                d = self.factor("density", stream, per=dim)
            except FactorError as exc:
                raise FactorError(
                    f"fuel stream '{stream}' is recorded in {unit} but its calorific value is per "
                    f"tonne: add its density (e.g. | {stream} | density | 840 | kg/m3 | supplier | ... |) "
                    f"or an NCV per {unit} to the factors table") from exc
            dnum, dden = d.unit.split("/", 1)
            mass_t = d.value * _cf(dnum, "t") / _cf(dden, unit)
            num, den = f.unit.split("/", 1)
            c.factors += [f.id, d.id]
            return mass_t * f.value * _cf(num, "GJ") / _cf(den, "t")
        raise FactorError(f"no calorific value for fuel stream '{stream}' in {unit}")

    def _toe(self, stream, unit, dim, c) -> float:
        try:
            f = self.factor("toe", stream, per=dim)
            num, den = f.unit.split("/", 1)
            c.factors.append(f.id)
            return f.value / _cf(den, unit)
        except FactorError:
            pass
        if dim != "mass":
            try:
                f = self.factor("toe", stream, per="mass")
                if not math.isnan(c.mass_t):
                    c.factors.append(f.id)
                    return f.value * c.mass_t
            except FactorError:
                pass
        # derived from NCV: physical toe, labelled
        c.factors.append("toe:derived-from-ncv")
        return c.energy_gj / PHYSICAL_TOE_GJ

    def _fuel_co2(self, stream, c):
        fuel = self.streams.get(stream, {}).get("fuel") or ""
        from cpa.factors import fuels

        biogenic = fuels().get(fuel, {}).get("biogenic", False)
        tj = c.energy_gj / 1000.0
        try:
            f = self.factor("co2", stream, per="energy")
            num, den = f.unit.split("/", 1)
            co2 = f.value * _cf(num, "tCO2e") / _cf(den, "TJ") * tj
            c.factors.append(f.id)
        except FactorError:
            co2 = math.nan
            c.notes.append(f"{stream}: no CO2 factor")
        if biogenic:
            c.co2_biogenic_t, c.co2_fossil_t = co2, 0.0
        else:
            c.co2_fossil_t, c.co2_biogenic_t = co2, 0.0
        other = 0.0
        for gas in ("ch4", "n2o"):
            try:
                f = self.factor(gas, stream, per="energy")
                gwp = self.fs.get("gwp", gas)
                self.used[gwp.id] = gwp
                num, den = f.unit.split("/", 1)
                other += f.value * _cf(num, "t") / _cf(den, "TJ") * tj * gwp.value
                c.factors += [f.id, gwp.id]
            except FactorError:
                pass
        c.co2e_other_t = other


def period_table(ws):
    """Periods with their year for factors (year of the midpoint), calendar and operating days,
    and the annualisation factor.

    annual factor = operating_days_per_year / operating_days of the period when the facility
    gives its operating days per year; otherwise 365 / calendar days of the period.
    """
    import datetime as dt

    import pandas as pd

    p = ws.tables["periods"].copy()
    per_year = ws.facility.get("operating_days_per_year")
    years, cal, annual = [], [], []
    for start, end, od in zip(p["start"], p["end"], p["operating_days"], strict=True):
        mid = start + dt.timedelta(days=(end - start).days // 2)
        years.append(mid.year)
        days = (end - start).days + 1
        cal.append(days)
        if per_year and od and od == od:
            annual.append(per_year / od)
        else:
            annual.append(365.0 / days)
    p["year"] = years
    p["calendar_days"] = cal
    p["annual_factor"] = annual
    return p.drop(columns=["_loc"]).reset_index(drop=True).pipe(pd.DataFrame)


def resolve_flows(ws, conv: Converter | None = None):
    """The flows table with every quantity also in common units.

    Returns
    -------
    pandas.DataFrame
        One row per flow: ``period, stream, kind, from, to, quantity, unit, basis`` plus
        ``mass_t`` [t], ``water_m3`` [m3], ``energy_gj`` [GJ], ``toe_vn`` [TOE_VN],
        ``co2_fossil_t``, ``co2_biogenic_t``, ``co2e_other_t`` [tCO2e], ``factors`` (ids used,
        ``;``-separated) and ``notes``. NaN where a layer does not apply to the flow.
    """
    import numpy as np
    import pandas as pd

    conv = conv or Converter(ws)
    flows = ws.tables["flows"]
    periods = period_table(ws)
    year_of = dict(zip(periods["id"], periods["year"], strict=True))
    out = flows.drop(columns=["_loc"]).copy()
    out["kind"] = [conv.kind(s) for s in out["stream"]]
    out["year"] = [year_of.get(p) for p in out["period"]]
    keys = list(zip(out["stream"], out["unit"], out["year"], strict=True))
    uniq = {k: conv.convert(*k) for k in dict.fromkeys(keys)}
    q = out["quantity"].to_numpy(dtype=float)
    for col in ("mass_t", "water_m3", "energy_gj", "toe_vn", "co2_fossil_t", "co2_biogenic_t",
                "co2e_other_t"):
        mult = np.array([getattr(uniq[k], col) for k in keys], dtype=float)
        out[col] = q * mult
    out["factors"] = [";".join(dict.fromkeys(uniq[k].factors)) for k in keys]
    out["notes"] = [";".join(uniq[k].notes) for k in keys]
    out["from"] = out["from"].where(out["from"].notna(), None)
    out["to"] = out["to"].where(out["to"].notna(), None)
    return pd.DataFrame(out)
