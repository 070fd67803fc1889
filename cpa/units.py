"""The one unit registry of cpa, and the safe way to read units users type.

All quantities in cpa go through the registry returned by :func:`registry` (built once, from
pint's defaults plus ``cpa/data/units.txt``). A unit string typed by a user never goes straight
into ``pint.Quantity``: numbers and units are read separately (see :mod:`cpa.numbers`), and unit
text goes through :func:`parse_unit`, which

* normalises it to NFC and trims it,
* maps the spellings people type (``tấn``, ``lít``, ``kwh``, ``m3``, ``đồng``...) to pint names
  through the documented alias table :data:`ALIASES`,
* refuses numbers inside a unit (``1000 L`` is a scale, not a unit) and names pint would read
  surprisingly (``ton`` is the US short ton, ``kt`` is a knot),
* caches the result, so each distinct unit string is parsed once.

Conversions between units are done once per distinct pair by :func:`conversion_factor` and then
applied to float columns: cpa never converts a table row by row through pint.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from functools import lru_cache
from importlib import resources

from cpa.errors import UnitError

#: Spellings users type, mapped to the pint expression cpa uses. Keys are compared after NFC
#: normalisation and case folding. Documented in docs/units-and-factors.md (a test keeps the
#: two in step).
ALIASES: dict[str, str] = {
    # mass
    "tấn": "t", "tan": "t", "ton": "t", "tons": "t", "tonne": "t", "tonnes": "t", "t": "t",
    "kg": "kg", "kilogram": "kg", "g": "g", "gam": "g",
    # volume
    "m3": "m**3", "m³": "m**3", "khối": "m**3", "cbm": "m**3",
    "l": "L", "lít": "L", "lit": "L", "litre": "L", "liter": "L", "litres": "L", "liters": "L",
    "ml": "mL",
    "nm3": "Nm3", "nm³": "Nm3", "sm3": "Sm3",
    # area and length
    "m2": "m**2", "m²": "m**2", "dm2": "dm**2", "dm²": "dm**2", "m": "m",
    # energy
    "kwh": "kWh", "mwh": "MWh", "gwh": "GWh", "wh": "Wh",
    "mj": "MJ", "gj": "GJ", "tj": "TJ", "kj": "kJ", "kcal": "kcal", "mcal": "Mcal",
    "gcal": "Gcal", "toe": "toe", "btu": "Btu",
    # regulatory energy (Vietnam)
    "toe_vn": "TOE_VN", "toe (vn)": "TOE_VN",
    # power (equipment ratings)
    "kw": "kW", "mw": "MW", "kva": "kVA",
    # money
    "vnd": "VND", "vnđ": "VND", "đ": "VND", "đồng": "VND", "dong": "VND",
    "triệu vnd": "million_VND", "triệu đồng": "million_VND", "million vnd": "million_VND",
    "tr.vnd": "million_VND", "tỷ vnd": "billion_VND", "tỷ đồng": "billion_VND",
    "billion vnd": "billion_VND",
    # greenhouse gases
    "tco2e": "tCO2e", "tco2": "tCO2e", "kgco2e": "kgCO2e", "kgco2": "kgCO2e", "gco2e": "gCO2e",
    # counts
    "piece": "piece", "pieces": "piece", "pcs": "piece", "pc": "piece", "cái": "piece",
    "chiếc": "piece", "sản phẩm": "piece", "sp": "piece", "bộ": "piece", "set": "piece",
    # time
    "h": "hour", "hour": "hour", "hours": "hour", "giờ": "hour", "d": "day", "day": "day",
    "days": "day", "ngày": "day", "yr": "year", "year": "year", "năm": "year",
    "month": "month", "tháng": "month",
    # dimensionless
    "%": "percent", "percent": "percent", "1": "dimensionless", "-": "dimensionless",
}

#: Names pint knows but that mean something else than a user of this field intends.
TRAPS: dict[str, str] = {
    "kt": "pint reads 'kt' as a knot (a speed), not a kilotonne; write the quantity in t",
    "a": "pint reads 'a' as a year of 365.25 days; write 'yr' and count operating time in days",
    "short_ton": "the US short ton is 907 kg; write 't' for the metric tonne",
}

#: Named dimensions cpa talks about, as pint dimensionality strings.
DIMENSIONS: dict[str, str] = {
    "mass": "[mass]",
    "volume": "[length] ** 3",
    "area": "[length] ** 2",
    "length": "[length]",
    "energy": "[mass] * [length] ** 2 / [time] ** 2",
    "power": "[mass] * [length] ** 2 / [time] ** 3",
    "normal_volume": "[normal_volume]",
    "count": "[item]",
    "money": "[currency]",
    "emission": "[emission]",
    "regulatory_energy": "[regulatory_energy]",
    "time": "[time]",
    "dimensionless": "dimensionless",
}

_TOKEN_SPLIT = re.compile(r"\s*(/|\*|·|×|\bper\b|\btrên\b)\s*")
_HAS_DIGIT_SCALE = re.compile(r"(^|[\s/*·×(])\d")


@lru_cache(maxsize=1)
def registry():
    """The cpa unit registry (built on first use, then shared)."""
    import pint

    try:
        ureg = pint.UnitRegistry(cache_folder=":auto:")
    except Exception:  # pragma: no cover - a read-only cache folder must not break cpa
        ureg = pint.UnitRegistry()
    with resources.as_file(resources.files("cpa") / "data" / "units.txt") as path:
        ureg.load_definitions(str(path))
    ureg.formatter.default_format = "~P"
    return ureg


def Q_(value, unit):  # noqa: N802 - pint's customary name
    """Make a Quantity from a float and a unit string that has been checked by :func:`parse_unit`."""
    return registry().Quantity(value, parse_unit(unit) if isinstance(unit, str) else unit)


def normalise_text(text: str) -> str:
    """NFC-normalise and trim a string (decomposed Vietnamese matches its composed twin)."""
    return unicodedata.normalize("NFC", text).strip()


def _canonical_token(token: str) -> str:
    key = normalise_text(token).casefold()
    if key in ALIASES:
        return ALIASES[key]
    if key in TRAPS or token in TRAPS:
        raise UnitError(token, TRAPS.get(token, TRAPS.get(key, "")))
    if any(ch.isspace() for ch in token.strip()):
        raise UnitError(token, "two units side by side", "join units with / or * (e.g. kW*h, VND/t)")
    # exponents: m^3, m**3, m3 handled by alias; keep pint syntax for the rest
    return token.replace("^", "**")


@lru_cache(maxsize=4096)
def parse_unit(text: str):
    """Read a unit string into a ``pint.Unit``.

    Parameters
    ----------
    text : str
        A unit as a user typed it, e.g. ``"m3"``, ``"tấn"``, ``"VND/kWh"``, ``"GJ / t"``.

    Returns
    -------
    pint.Unit

    Raises
    ------
    UnitError
        With the reason and, where one is close, the spelling that was probably meant.
    """
    if not isinstance(text, str):
        raise UnitError(repr(text), "a unit must be text")
    norm = normalise_text(text)
    if not norm:
        raise UnitError(text, "the unit is empty", "write a unit such as t, m3, kWh or VND/t")
    whole = norm.casefold()
    if "TOE" in _TOKEN_SPLIT.split(norm):
        raise UnitError(text, "ambiguous: 'TOE' could be the physical toe or Vietnam's regulatory TOE",
                        "write toe for the physical tonne of oil equivalent (41.868 GJ) or TOE_VN "
                        "for the regulatory TOE of the MOIT table")
    if whole in ALIASES:
        expr = ALIASES[whole]
    else:
        if _HAS_DIGIT_SCALE.search(norm.replace("**", "^")):
            raise UnitError(
                text,
                "a unit must not contain a number (a scale such as '1000 L')",
                "put the scale into the quantity and write the plain unit (2.5 m3, not 2.5 '1000 L')",
            )
        parts = _TOKEN_SPLIT.split(norm.replace("**", "^"))
        out = []
        for part in parts:
            if part in ("/", "per", "trên"):
                out.append("/")
            elif part in ("*", "·", "×"):
                out.append("*")
            elif part:
                out.append(_canonical_token(part))
        expr = " ".join(out)
    ureg = registry()
    try:
        unit = ureg.parse_units(expr)
    except Exception as exc:  # pint raises several kinds; all mean "not a unit"
        raise UnitError(text, "not a unit cpa knows", _suggest(norm)) from exc
    return unit


def _suggest(text: str) -> str:
    names = sorted(set(ALIASES) | {"t", "kg", "m3", "kWh", "MWh", "GJ", "VND", "L", "Nm3"})
    close = difflib.get_close_matches(text.casefold(), names, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return hint + "see the unit list in docs/units-and-factors.md"


def dimension_of(unit) -> str:
    """The cpa name of a unit's dimension (``"mass"``, ``"energy"``...), or its pint form."""
    if isinstance(unit, str):
        return _dimension_of_text(unit)
    return _dimension_name(unit)


@lru_cache(maxsize=4096)
def _dimension_of_text(text: str) -> str:
    return _dimension_name(parse_unit(text))


def _dimension_name(unit) -> str:
    dim = unit.dimensionality
    return _dimension_names().get(dim, str(dim))


@lru_cache(maxsize=1)
def _dimension_names() -> dict:
    ureg = registry()
    out = {}
    for name, expr in DIMENSIONS.items():
        if expr == "dimensionless":
            out[ureg.parse_units("dimensionless").dimensionality] = name
        else:
            out[ureg.get_dimensionality(expr)] = name
    return out


def is_dimension(unit, *names: str) -> bool:
    """True when ``unit`` has one of the named dimensions (see :data:`DIMENSIONS`)."""
    return dimension_of(unit) in names


@lru_cache(maxsize=4096)
def conversion_factor(from_unit: str, to_unit: str) -> float:
    """The float that converts a value in ``from_unit`` into ``to_unit``.

    Computed once per distinct pair and cached; apply it to whole float columns.

    Raises
    ------
    UnitError
        When the two units have different dimensions.
    """
    src = parse_unit(from_unit)
    dst = parse_unit(to_unit)
    ureg = registry()
    try:
        return float(ureg.Quantity(1.0, src).to(dst).magnitude)
    except Exception as exc:
        raise UnitError(
            from_unit,
            f"is a {dimension_of(src)} unit and cannot be converted to {to_unit} ({dimension_of(dst)})",
        ) from exc


def format_unit(unit) -> str:
    """Short, readable text of a unit (``m³/t``, ``VND/kWh``)."""
    if isinstance(unit, str):
        unit = parse_unit(unit)
    return f"{unit:~P}" if str(unit) != "dimensionless" else ""
