"""The programme roll-up: one table across facilities, totals and medians.

For each facility (one valid worksheet): sector, production, the baseline and the latest
specific consumption of energy, electricity, water and each main material, their % change and
whether the reduction meets the programme's target band; options by category and status;
investment; the annual savings of the options that are not rejected (combined without double
counting, :func:`cpa.options.combined_totals`); the simple payback of the portfolio; and the
key-energy-user flag (≥ 1,000 TOE/yr in the baseline).

.. math::

    \\Delta SC\\% = 100 \\cdot \\frac{SC_{latest} - SC_{baseline}}{SC_{baseline}} \\qquad
    \\text{reduction\\%} = -\\Delta SC\\%

A facility *meets the target* for a resource when its reduction is at least the lower bound of
the band (Dong Nai: 8–13 % less per unit of product; the national CP strategy: 5–8 %), and
*exceeds* it above the upper bound. The band, the programme's name and year are settings in a
small TOML file (:func:`load_settings`), not constants in code.

Portfolio payback = Σ net investment / Σ net annual savings (undiscounted).
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass

from cpa.errors import CPAError

RESOURCES = (("energy", "", "GJ"), ("electricity", "", "kWh"), ("water", "", "m3"))
SAVING_FIELDS = ("net_saving_vnd_per_yr", "saving_gj_per_yr", "toe_vn_per_yr", "co2e_t_per_yr",
                 "water_m3_per_yr", "waste_t_per_yr")


@dataclass(frozen=True)
class Settings:
    name: str = "Cleaner-production programme"
    name_vi: str = "Chương trình sản xuất sạch hơn"
    year: int | None = None
    province: str = ""
    target_low_pct: float = 8.0
    target_high_pct: float = 13.0
    source: str = "defaults"


def load_settings(path: str | None) -> Settings:
    """Read a programme file (TOML)::

        name = "Dong Nai sustainable production programme"
        name_vi = "Chương trình sản xuất và tiêu dùng bền vững tỉnh Đồng Nai"
        year = 2025
        province = "Đồng Nai"
        [target]
        low_pct = 8     # % less per unit of product
        high_pct = 13
    """
    import tomllib

    if path is None:
        return Settings()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise CPAError(f"{path}: cannot read the programme file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CPAError(f"{path}: not a valid programme file: {exc}; see docs/programme.md") from exc
    target = data.get("target", {})
    try:
        low = float(target.get("low_pct", 8.0))
        high = float(target.get("high_pct", 13.0))
    except (TypeError, ValueError) as exc:
        raise CPAError(f"{path}: [target] low_pct and high_pct must be numbers (%)") from exc
    if not 0 <= low <= high <= 100:
        raise CPAError(f"{path}: [target] needs 0 ≤ low_pct ≤ high_pct ≤ 100, found {low} and {high}")
    year = data.get("year")
    if year is not None and not isinstance(year, int):
        raise CPAError(f"{path}: year must be a whole number, found {year!r}")
    return Settings(name=str(data.get("name", Settings.name)), name_vi=str(data.get("name_vi", Settings.name_vi)),
                    year=year, province=str(data.get("province", "")), target_low_pct=low,
                    target_high_pct=high, source=os.path.basename(path))


def facility_row(ws, settings: Settings, results=None) -> dict:
    """The programme row of one facility (pure). ``results``: the facility's
    :class:`cpa.results.FacilityResults`, when it has been computed (its indicators, periods
    and option savings are then read, not computed again)."""
    if results is not None:
        ind, periods = results.indicators, results.periods
    else:
        from cpa.indicators import indicators
        from cpa.quantities import Converter, period_table, resolve_flows

        conv = Converter(ws)
        ind = indicators(ws, flows=resolve_flows(ws, conv), conv=conv)
        periods = period_table(ws)
    base = periods[periods["kind"] == "baseline"].iloc[0]
    mons = periods[periods["kind"] == "monitoring"].sort_values("start")
    latest = mons.iloc[-1] if len(mons) else None
    row = {
        "facility_id": ws.id, "facility_name": ws.facility.get("name"),
        "facility_name_en": ws.facility.get("name_en") or ws.facility.get("name"),
        "sector": ws.facility.get("sector"), "illustrative": ws.illustrative, "file": ws.path,
        "baseline_period": base["id"], "baseline_start": base["start"], "baseline_end": base["end"],
        "latest_period": latest["id"] if latest is not None else None,
        "latest_start": latest["start"] if latest is not None else None,
        "latest_end": latest["end"] if latest is not None else None,
    }
    prod = ind[ind["indicator"] == "production"]
    pb = prod[prod["period"] == base["id"]]
    row["production_unit"] = pb["unit"].iloc[0] if len(pb) else ""
    row["production_baseline"] = float(pb["value"].iloc[0]) if len(pb) else math.nan
    row["production_baseline_per_yr"] = row["production_baseline"] * float(base["annual_factor"])
    if latest is not None:
        pl = prod[prod["period"] == latest["id"]]
        row["production_latest"] = float(pl["value"].iloc[0]) if len(pl) else math.nan
    else:
        row["production_latest"] = math.nan
    resources = list(RESOURCES)
    mats = ind[(ind["indicator"] == "material") & (ind["period"] == base["id"])]["stream"].tolist()
    resources += [("material", s, "t") for s in mats]
    for name, stream, _unit in resources:
        key = name if not stream else f"material_{stream}"
        sel = ind[(ind["indicator"] == name) & (ind["stream"] == stream)]
        b = sel[sel["period"] == base["id"]]
        b_val = float(b["specific"].iloc[0]) if len(b) else math.nan
        row[f"{key}_unit"] = b["specific_unit"].iloc[0] if len(b) else ""
        row[f"{key}_baseline"] = b_val
        if latest is not None:
            lt = sel[sel["period"] == latest["id"]]
            l_val = float(lt["specific"].iloc[0]) if len(lt) else math.nan
        else:
            l_val = math.nan
        row[f"{key}_latest"] = l_val
        change = 100.0 * (l_val - b_val) / b_val if (b_val == b_val and b_val and l_val == l_val) else math.nan
        row[f"{key}_change_pct"] = change
        row[f"{key}_target"] = _target(change, settings)
    toe_year = ind[(ind["indicator"] == "toe_vn_per_year") & (ind["period"] == base["id"])]
    row["toe_vn_per_yr_baseline"] = float(toe_year["value"].iloc[0]) if len(toe_year) else math.nan
    row["key_energy_user"] = bool(row["toe_vn_per_yr_baseline"] >= 1000.0)
    _options(ws, row, results.savings if results is not None else None)
    return row


def _target(change_pct: float, s: Settings) -> str:
    if change_pct != change_pct:
        return "no data"
    reduction = -change_pct
    if reduction >= s.target_high_pct:
        return "exceeds"
    if reduction >= s.target_low_pct:
        return "meets"
    return "below"


def no_options() -> dict:
    """The option fields of a facility row with no options (counts 0, savings 0, payback NaN)."""
    from cpa.schema import choices

    row = {f"options_{c.id}": 0 for name in ("option_category", "option_status") for c in choices(name)}
    row["options_total"] = 0
    row["options_rejected"] = 0
    for f in SAVING_FIELDS + ("investment_vnd", "grant_vnd"):
        row[f] = 0.0
    row["payback_yr"] = math.nan
    return row


def _options(ws, row: dict, savings=None) -> None:
    row.update(no_options())
    if not len(ws.tables["options"]):
        return
    from cpa.options import combined_totals, option_register

    reg = option_register(ws)
    row["options_total"] = int(len(reg))
    row["options_rejected"] = int((~reg["included"]).sum())
    inc = reg[reg["included"]]
    for cat, n in inc["category"].value_counts().items():
        row[f"options_{cat}"] = int(n)
    for st, n in inc["status"].value_counts().items():
        row[f"options_{st}"] = int(n)
    tot = combined_totals(ws, savings=savings)
    for f in SAVING_FIELDS + ("investment_vnd", "grant_vnd"):
        v = tot.get(f, math.nan)
        row[f] = float(v) if v is not None else math.nan
    net_inv = row["investment_vnd"] - row["grant_vnd"]
    sav = row["net_saving_vnd_per_yr"]
    row["payback_yr"] = net_inv / sav if sav and sav > 0 else math.inf


def programme_table(worksheets, settings: Settings | None = None):
    """One row per facility (see :func:`facility_row`). Facility ids must be unique."""
    import pandas as pd

    settings = settings or Settings()
    seen: dict[str, str] = {}
    for ws in worksheets:
        if ws.id in seen:
            raise CPAError(f"two facilities have the id {ws.id!r}: {seen[ws.id]} and {ws.path}; "
                           "give each facility its own id in its facility table")
        seen[ws.id] = ws.path
    rows = [facility_row(ws, settings) for ws in worksheets]
    return pd.DataFrame(rows)


def programme_summary(table, settings: Settings | None = None) -> dict:
    """Totals and medians across facilities, and counts against the target band."""
    settings = settings or Settings()
    out: dict = {"facilities": int(len(table)), "programme": settings.name, "programme_vi": settings.name_vi,
                 "year": settings.year, "province": settings.province,
                 "target_low_pct": settings.target_low_pct, "target_high_pct": settings.target_high_pct}
    totals = {}
    for f in SAVING_FIELDS + ("investment_vnd", "grant_vnd", "options_total", "options_rejected"):
        if f in table:
            totals[f] = float(table[f].sum(min_count=1)) if len(table) else 0.0
    for c in table.columns:
        if c.startswith("options_") and c not in totals:
            totals[c] = float(table[c].sum())
    inv = totals.get("investment_vnd", 0.0) - totals.get("grant_vnd", 0.0)
    sav = totals.get("net_saving_vnd_per_yr", 0.0)
    totals["payback_yr"] = inv / sav if sav and sav > 0 else None
    totals["key_energy_users"] = int(table["key_energy_user"].sum()) if len(table) else 0
    out["totals"] = totals
    medians = {}
    for c in table.columns:
        if c.endswith("_change_pct") or c in SAVING_FIELDS or c == "payback_yr":
            vals = [v for v in table[c].tolist() if v == v and v not in (math.inf, -math.inf)]
            medians[c] = statistics.median(vals) if vals else None
    out["medians"] = medians
    targets = {}
    for c in table.columns:
        if c.endswith("_target"):
            targets[c[: -len("_target")]] = {k: int(v) for k, v in table[c].value_counts().items()}
    out["targets"] = targets
    return out
