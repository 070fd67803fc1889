"""Factor tables: calorific values, emission factors, regulatory TOE, grid emission factors.

The defaults ship as package data (``cpa/data/factors.csv`` and ``cpa/data/fuels.csv``); every row
names its document, table, year and status (``official``, ``secondary copy``, ``estimate``,
``derived``). A worksheet may override any factor in its ``factors`` table (a supplier's
calorific value, a measured steam enthalpy); the override keeps its own source and is marked
``overridden`` wherever it is used.

Factor names
------------
``ncv``            net calorific value per unit of fuel (default per tonne) [GJ/t]
``co2``            CO2 per energy of fuel [kgCO2e/TJ]
``ch4``, ``n2o``   CH4 and N2O per energy of fuel [kg/TJ]
``gwp``            global warming potential of a gas (key ``ch4`` or ``n2o``) [-]
``toe``            Vietnamese regulatory TOE per unit of carrier [TOE_VN/t, TOE_VN/m3, TOE_VN/MWh]
``grid_ef``        grid emission factor of a year (key = year) [tCO2e/MWh]
``density``        density of a fuel or material, to read volumes as mass [kg/m3]
``energy_content`` energy per unit of a stream (steam, hot water) [GJ/t]
``mass_per_unit``  mass of one piece or one m2 of product [kg/piece, kg/m2]
``physical_toe``   the physical tonne of oil equivalent [GJ/toe]

Regulatory TOE and physical toe are never converted into one another: ``TOE_VN`` is its own
pint dimension.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib import resources

from cpa.errors import FactorError

FACTOR_NAMES = (
    "ncv", "co2", "ch4", "n2o", "gwp", "toe", "grid_ef", "density", "energy_content",
    "mass_per_unit", "physical_toe",
)
STATUSES = ("official", "secondary copy", "estimate", "derived", "measured", "supplier")


@dataclass(frozen=True)
class Factor:
    """One factor with its provenance."""

    factor: str
    key: str
    value: float
    unit: str
    document: str
    table: str = ""
    year: int | None = None
    status: str = "official"
    note: str = ""
    overridden: bool = False
    origin: str = "cpa default"

    @property
    def id(self) -> str:
        """Stable id, e.g. ``ncv:diesel`` or ``grid_ef:2023``; ``*`` marks a worksheet override."""
        return f"{self.factor}:{self.key}" + ("*" if self.overridden else "")

    @property
    def source(self) -> str:
        """Human-readable source: document, table, year."""
        parts = [self.document]
        if self.table:
            parts.append(self.table)
        if self.year:
            parts.append(str(self.year))
        return ", ".join(p for p in parts if p)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["id"] = self.id
        d["source"] = self.source
        return d


@lru_cache(maxsize=1)
def fuels() -> dict[str, dict]:
    """The fuel and carrier catalogue: id → labels, group, biogenic flag, note."""
    with resources.files("cpa").joinpath("data/fuels.csv").open(encoding="utf-8") as f:
        out = {}
        for row in csv.DictReader(f):
            row["biogenic"] = row["biogenic"] == "yes"
            out[row["fuel"]] = row
        return out


@lru_cache(maxsize=1)
def default_factors() -> tuple[Factor, ...]:
    """All factors shipped with cpa."""
    with resources.files("cpa").joinpath("data/factors.csv").open(encoding="utf-8") as f:
        return tuple(
            Factor(
                factor=r["factor"], key=r["key"], value=float(r["value"]), unit=r["unit"],
                document=r["document"], table=r["table"], year=int(r["year"]) if r["year"] else None,
                status=r["status"], note=r["note"],
            )
            for r in csv.DictReader(f)
        )


class FactorSet:
    """The factors in force for one facility: cpa's defaults plus the worksheet's overrides.

    Parameters
    ----------
    overrides : iterable of Factor
        Factors from the worksheet; each replaces the default with the same factor, key and
        unit dimension.
    """

    def __init__(self, overrides=()):
        from cpa.units import dimension_of

        self._by_key: dict[tuple[str, str], list[Factor]] = {}
        for fac in default_factors():
            self._by_key.setdefault((fac.factor, fac.key), []).append(fac)
        self.overrides = tuple(overrides)
        for fac in self.overrides:
            slot = self._by_key.setdefault((fac.factor, fac.key), [])
            dim = dimension_of(fac.unit)
            slot[:] = [f for f in slot if dimension_of(f.unit) != dim]
            slot.insert(0, replace(fac, overridden=True))

    def candidates(self, factor: str, key: str) -> list[Factor]:
        return list(self._by_key.get((factor, key), []))

    def get(self, factor: str, key: str, per: str | None = None) -> Factor:
        """The factor ``factor`` for ``key``; ``per`` picks among units by the dimension of the
        quantity it applies to (``"mass"``, ``"volume"``, ``"energy"``, ``"normal_volume"``).

        Raises
        ------
        FactorError
            Naming the factor and key, and how to add one in the worksheet.
        """
        found = self.candidates(factor, key)
        if per is not None:
            found = [f for f in found if _denominator_dimension(f.unit) == per]
        if not found:
            raise FactorError(
                f"no {factor} factor for {key!r}"
                + (f" per unit of {per}" if per else "")
                + f"; add a row to the worksheet's factors table: | {key} | {factor} | value | unit | source |"
            )
        return found[0]

    def grid_ef(self, year: int) -> tuple[Factor, str]:
        """Grid emission factor for ``year``, and a note when another year's value stands in.

        An official (or overridden) value of the year is used when there is one; otherwise the
        latest official value before it, and the note says so. An estimate is used only when a
        worksheet overrides with it or when no official value precedes the year.
        """
        exact = self.candidates("grid_ef", str(year))
        if exact and (exact[0].overridden or exact[0].status != "estimate"):
            return exact[0], ""
        official = sorted(
            (f for (name, _), fs in self._by_key.items() if name == "grid_ef" for f in fs
             if f.status != "estimate" and int(f.key) <= year),
            key=lambda f: int(f.key),
        )
        if official:
            fac = official[-1]
            return fac, f"no official grid factor for {year}: the {fac.key} value is used"
        if exact:
            return exact[0], f"the {year} grid factor is an estimate ({exact[0].document})"
        raise FactorError(
            f"no grid emission factor for {year} or earlier; add one to the worksheet's factors "
            f"table: | electricity | grid_ef | value | tCO2e/MWh | source | with year {year}"
        )

    def table(self):
        """All factors in force as a DataFrame (one row per factor, overrides marked)."""
        import pandas as pd

        rows = [f.as_dict() for fs in self._by_key.values() for f in fs]
        return pd.DataFrame(rows)


def _denominator_dimension(unit: str) -> str:
    """Dimension of what a factor is 'per': GJ/t → mass, TOE_VN/m**3 → volume."""
    from cpa.units import dimension_of

    if "/" not in unit:
        return "dimensionless"
    return dimension_of(unit.split("/", 1)[1])
