"""Reading and writing numbers in the reader's language.

Reading (:func:`parse_number`) is strict. A worksheet declares its ``number_locale``:

``plain`` (the default)
    ``1234.5``, ``-0.25``, ``1.5e3``. No grouping separators. A comma is an error, and so is
    ``1.234`` (a dot followed by exactly three digits after 1–3 leading digits): it would mean
    1234 to a Vietnamese reader and 1.234 to an English one, so cpa refuses to guess.
``en``
    ``1,234,567.8``: comma groups of three, dot decimal.
``vi``
    ``1.234.567,8``: dot groups of three, comma decimal (Vietnamese usage).

Writing (:func:`format_number`) uses Babel's CLDR data: ``vi`` gives ``1.234.567,8``, ``en``
gives ``1,234,567.8``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from cpa.errors import NumberError

LOCALES = ("plain", "en", "vi")

_PLAIN = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_AMBIGUOUS_DOT = re.compile(r"^[+-]?[1-9]\d{0,2}\.\d{3}$")
_EN = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_VI = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")
_SPACES = re.compile(r"[\s\u00a0\u202f]")


def parse_number(text, locale: str = "plain") -> float:
    """Read a number typed by a user.

    Parameters
    ----------
    text : str or float or int
        The text of a cell. Numbers (from a spreadsheet) pass through.
    locale : {"plain", "en", "vi"}
        The worksheet's declared number locale.

    Returns
    -------
    float

    Raises
    ------
    NumberError
        For text that is not a number, grouping that does not fit the locale, an ambiguous
        ``1.234`` or ``1,5`` without a declared locale, or a non-finite value.
    """
    if isinstance(text, bool):
        raise NumberError(str(text), "a true/false value is not a number")
    if isinstance(text, (int, float)):
        value = float(text)
        if not math.isfinite(value):
            raise NumberError(str(text), "the number is not finite", "write a finite number")
        return value
    s = str(text).strip()
    if not s:
        raise NumberError(s, "the number is empty")
    if _SPACES.search(s):
        raise NumberError(s, "spaces inside a number", "write the number without spaces")
    low = s.casefold()
    if low in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        raise NumberError(s, "the number is not finite", "write a finite number")
    if locale == "plain":
        if "," in s:
            raise NumberError(
                s,
                "a comma in a number, and the worksheet declares no number locale",
                "write the number with a decimal point (1.5) and no grouping, or declare "
                "number_locale = vi (1.234,5) or en (1,234.5) in the facility table",
            )
        if _AMBIGUOUS_DOT.match(s):
            raise NumberError(
                s,
                "ambiguous: a Vietnamese reader takes it as thousands, an English one as a decimal",
                "declare number_locale (vi or en) in the facility table, or write it unambiguously "
                f"(e.g. {s.replace('.', '')} or {s}0)",
            )
        if not _PLAIN.match(s):
            raise NumberError(s, "not a number", "write digits with an optional decimal point")
        value = float(s)
    elif locale == "en":
        if not _EN.match(s):
            if _PLAIN.match(s):
                value = float(s)
            else:
                raise NumberError(s, "not a number in the 'en' locale", "write it as 1,234.5")
        else:
            value = float(s.replace(",", ""))
    elif locale == "vi":
        if not _VI.match(s):
            raise NumberError(
                s, "not a number in the 'vi' locale", "write it as 1.234,5 (dot groups, comma decimal)"
            )
        value = float(s.replace(".", "").replace(",", "."))
    else:
        raise NumberError(s, f"unknown number locale {locale!r}", "use plain, en or vi")
    if not math.isfinite(value):
        raise NumberError(s, "the number is not finite", "write a finite number")
    return value


_SWAP_VI = str.maketrans(",.", ".,")  # en_US separators → vi_VN


def format_number(value, lang: str = "en", decimals: int = 1, group: bool = True) -> str:
    """Format a number for a reader: ``vi`` → ``1.234.567,8``, ``en`` → ``1,234,567.8``.

    ``None`` and NaN become an em dash (a value that is unknown is shown as unknown, never 0).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    # CLDR's decimal pattern of en_US and vi_VN ("#,##0.0…", groups of three, half-even
    # rounding of the shortest decimal form of the float), as babel's format_decimal applies it
    # (a test compares the two on 6,000 numbers × 16 formats), at a quarter of its cost: the booklets
    # format thousands of numbers
    d = Decimal(value) if isinstance(value, int) else Decimal(str(value))
    text = format(d, f"{',' if group else ''}.{decimals}f")
    return text.translate(_SWAP_VI) if lang == "vi" else text


def format_percent(value, lang: str = "en", decimals: int = 1) -> str:
    """Format a fraction (0.083) as a percentage for a reader (``8,3 %`` / ``8.3%``)."""
    if value is None or (isinstance(value, float) and (math.isnan(value))):
        return "—"
    text = format_number(value * 100.0, lang, decimals)
    return f"{text} %" if lang == "vi" else f"{text}%"
