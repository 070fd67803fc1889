"""Units: the registry, the alias table and the traps (docs/units-and-factors.md)."""

import pytest

from cpa.errors import UnitError
from cpa.units import ALIASES, Q_, conversion_factor, dimension_of, format_unit, parse_unit


@pytest.mark.parametrize(
    "text, expected",
    [("m3", "m³"), ("m³", "m³"), ("tấn", "t"), ("lít", "l"), ("kwh", "kWh"), ("KWh", "kWh"),
     ("Nm3", "Nm3"), ("VND/kWh", "VND/kWh"), ("đ/kWh", "VND/kWh"), ("đồng/tấn", "VND/t"),
     ("GJ / t", "GJ/t"), ("m**3/t", "m³/t"), ("kg/m^3", "kg/m³"), ("tCO2e/MWh", "tCO2e/MWh")],
)
def test_aliases_users_type(text, expected):
    assert format_unit(text) == expected


def test_decomposed_vietnamese_matches_composed():
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "tấn")
    assert decomposed != "tấn"
    assert parse_unit(decomposed) == parse_unit("tấn")


def test_ton_is_the_metric_tonne_not_pints_short_ton():
    # pint's 'ton' is 907.18474 kg (US short ton); cpa maps what users type to the tonne.
    assert conversion_factor("ton", "kg") == 1000.0


@pytest.mark.parametrize("text", ["kt", "1000 L", "tonnn", "", "kWh kWh kWh!", "TOE", "TOE/t"])
def test_bad_units_raise_unit_error(text):
    with pytest.raises(UnitError):
        parse_unit(text)


def test_unit_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        parse_unit("bananas")


def test_vnd_is_its_own_dimension():
    assert dimension_of("VND") == "money"
    assert dimension_of("triệu đồng") == "money"
    assert conversion_factor("million_VND", "VND") == 1e6
    with pytest.raises(UnitError):
        conversion_factor("VND", "kg")


def test_co2e_never_adds_to_mass():
    assert dimension_of("tCO2e") == "emission"
    assert conversion_factor("tCO2e", "kgCO2e") == 1000.0
    with pytest.raises(UnitError):
        conversion_factor("tCO2e", "t")


def test_regulatory_toe_never_converts_to_joules():
    assert dimension_of("TOE_VN") == "regulatory_energy"
    with pytest.raises(UnitError):
        conversion_factor("TOE_VN", "GJ")
    with pytest.raises(UnitError):
        conversion_factor("TOE_VN", "toe")


def test_physical_toe_is_41_868_GJ():
    # IEA definition: 1 toe = 10^7 kcal(IT) = 41.868 GJ
    assert conversion_factor("toe", "GJ") == pytest.approx(41.868)


def test_normal_cubic_metre_is_not_a_geometric_volume():
    assert dimension_of("Nm3") == "normal_volume"
    with pytest.raises(UnitError):
        conversion_factor("Nm3", "m3")


def test_quantity_prints_short_units():
    assert f"{Q_(1.5, 'm3')}" == "1.5 m³"
    assert f"{Q_(2, 'VND')}" == "2 VND"


def test_every_alias_parses():
    for alias in ALIASES:
        parse_unit(alias)
