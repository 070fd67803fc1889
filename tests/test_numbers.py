"""Numbers: strict reading by declared locale, formatting for the reader's language."""

import pytest

from cpa.errors import NumberError
from cpa.numbers import format_number, format_percent, parse_number


@pytest.mark.parametrize(
    "text, locale, value",
    [("1.5", "plain", 1.5), ("1234.5", "plain", 1234.5), ("0.125", "plain", 0.125),
     ("1e3", "plain", 1000.0), ("-2", "plain", -2.0), ("1.234.567,8", "vi", 1234567.8),
     ("1234,5", "vi", 1234.5), ("1.234", "vi", 1234.0), ("1,234,567.8", "en", 1234567.8),
     ("1234.5", "en", 1234.5)],
)
def test_parse(text, locale, value):
    assert parse_number(text, locale) == value


@pytest.mark.parametrize(
    "text, locale",
    [("1,5", "plain"), ("1.234", "plain"), ("12.345", "plain"), ("1.5", "vi"), ("1,2,3", "en"),
     ("nan", "plain"), ("inf", "plain"), ("1 234", "plain"), ("abc", "plain"), ("", "plain"),
     ("1.234,5", "en")],
)
def test_reject_ambiguous_or_bad(text, locale):
    with pytest.raises(NumberError):
        parse_number(text, locale)


def test_pint_would_have_read_1_comma_5_as_15():
    # The trap this module exists for: pint's parser drops the comma.
    from cpa.units import registry

    assert registry().Quantity("1,5 kWh").magnitude == 15
    with pytest.raises(NumberError):
        parse_number("1,5")


def test_format_vi_and_en():
    assert format_number(1234567.8, "vi") == "1.234.567,8"
    assert format_number(1234567.8, "en") == "1,234,567.8"
    # the Dong Nai plan's budget, as printed in the plan (958.079.880 đồng)
    assert format_number(958079880, "vi", 0) == "958.079.880"


def test_format_unknown_is_a_dash_not_zero():
    assert format_number(None) == "—"
    assert format_number(float("nan"), "vi") == "—"


def test_format_percent():
    assert format_percent(0.0834, "vi") == "8,3 %"
    assert format_percent(0.0834, "en") == "8.3%"


def test_format_number_is_cldr_as_babel_formats_it():
    """cpa formats numbers itself (a quarter of babel's cost); babel's format_decimal with the
    CLDR patterns of en_US and vi_VN is the independent reference: the same text for 6,000
    numbers of every size, sign and rounding tie, 0–3 decimals, with and without grouping."""
    import random

    from babel.numbers import format_decimal

    from cpa.numbers import format_number

    rng = random.Random(7)
    values = [0.0, -0.0, 0.5, 1.5, 2.5, -0.5, 0.125, 2.675, 1e-9, -0.04, 0.05, 0.15, 999.95,
              -999.95, 1234567.85, 1e15, 3, -7, 0, 10**12]
    for _ in range(2000):
        v = rng.uniform(-1, 1) * 10 ** rng.randint(-6, 12)
        values += [v, round(v, rng.randint(0, 4)), rng.randint(-10**7, 10**7) / rng.choice([1, 2, 8, 10, 100, 1000])]
    for v in values:
        for decimals in (0, 1, 2, 3):
            for group in (True, False):
                pattern = ("#,##0" if group else "0") + ("." + "0" * decimals if decimals else "")
                for lang, locale in (("en", "en_US"), ("vi", "vi_VN")):
                    want = format_decimal(v, format=pattern, locale=locale)
                    assert format_number(v, lang, decimals, group) == want, (v, decimals, group, lang)
