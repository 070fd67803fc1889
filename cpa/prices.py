"""Dated prices and tariffs: which price is in force for a period, and valuing quantities.

A price row applies to a period when it is in force at the period's midpoint
(``valid_from`` ≤ midpoint ≤ ``valid_to``, an empty ``valid_to`` meaning "until replaced"); of
several, the latest ``valid_from`` wins. A saving or a cost is valued at the tariff of its period.
Electricity split by time of use is valued register by register; a flow without a time of use is
valued at a ``flat`` price, and is *unknown* (never zero) when only time-of-use prices exist.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    value_vnd: float       # VND per one `per_unit`
    per_unit: str          # the unit of the stream the price is per (t, m3, kWh...)
    source: str
    valid_from: dt.date


class PriceBook:
    """Prices of one worksheet, looked up by stream, component, period and time of use."""

    def __init__(self, ws):
        from cpa.units import conversion_factor

        self._rows: dict = {}
        p = ws.tables["prices"]
        for stream, comp, tou, vf, vt, price, unit, source in zip(
                p["stream"], p["component"], p["time_of_use"], p["valid_from"], p["valid_to"],
                p["price"], p["unit"], p["source"], strict=True):
            money, per = unit.split("/", 1)
            vnd = price * conversion_factor(money, "VND")
            self._rows.setdefault((stream, comp), []).append((tou or "flat", vf, vt, Price(vnd, per, source, vf)))
        per = ws.tables["periods"]
        self._mid = {pid: s + dt.timedelta(days=(e - s).days // 2)
                     for pid, s, e in zip(per["id"], per["start"], per["end"], strict=True)}

    def has(self, stream: str, component: str) -> bool:
        return (stream, component) in self._rows

    def get(self, stream: str, component: str, period: str, time_of_use: str | None = None) -> Price | None:
        """The price in force for the period (and time-of-use register), or None."""
        rows = self._rows.get((stream, component))
        if not rows:
            return None
        mid = self._mid.get(period)
        tou = time_of_use or "flat"
        best = None
        for r_tou, vf, vt, price in rows:
            if r_tou != tou:
                continue
            if mid is not None and (vf > mid or (vt is not None and vt < mid)):
                continue
            if best is None or vf > best.valid_from:
                best = price
        if best is None and mid is not None:
            # no price in force at the midpoint: the latest one that started before the period ended
            cands = [price for r_tou, vf, vt, price in rows if r_tou == tou and vf <= mid]
            best = max(cands, key=lambda p: p.valid_from) if cands else None
        return best

    def value(self, stream: str, component: str, period: str, quantity: float, unit: str,
              time_of_use: str | None = None) -> float:
        """Quantity × price in VND, converting the quantity into the price's unit; NaN if no price
        or the units do not convert (the caller reports it as unknown)."""
        from cpa.errors import UnitError
        from cpa.units import conversion_factor

        price = self.get(stream, component, period, time_of_use)
        if price is None:
            return math.nan
        try:
            return quantity * conversion_factor(unit, price.per_unit) * price.value_vnd
        except UnitError:
            return math.nan
