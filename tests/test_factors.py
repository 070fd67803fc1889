"""Factors against their sources (docs/units-and-factors.md, shared/domain/factors.md)."""

import pytest

from cpa.errors import FactorError
from cpa.factors import Factor, FactorSet, default_factors
from cpa.units import conversion_factor


def test_every_factor_names_document_table_year_status():
    for f in default_factors():
        assert f.document and f.table and f.year and f.status, f


def test_diesel_co2_from_ipcc():
    # 1 t diesel x 43.0 GJ/t (IPCC 2006 vol.2 ch.1 Table 1.2) x 74,100 kg/TJ (Table 1.4) = 3.186 t CO2
    fs = FactorSet()
    ncv = fs.get("ncv", "diesel")
    co2 = fs.get("co2", "diesel")
    energy_tj = 1.0 * ncv.value * conversion_factor(ncv.unit.split("/")[0], "TJ")
    t_co2 = energy_tj * co2.value / 1000.0
    assert t_co2 == pytest.approx(3.1863, abs=5e-4)


def test_electricity_toe_regulatory_vs_physical():
    # 125 MWh x 0.1543 TOE/MWh (MOIT 3505/BCT-KHCN, 2011) = 19.29 TOE;
    # physically 125 MWh = 450 GJ = 450 / 41.868 = 10.75 toe.
    fs = FactorSet()
    toe = fs.get("toe", "electricity", per="energy")
    assert 125 * toe.value == pytest.approx(19.2875)
    physical = 125 * conversion_factor("MWh", "GJ") / conversion_factor("toe", "GJ")
    assert physical == pytest.approx(10.748, abs=1e-3)


def test_toe_by_volume_and_mass_of_diesel():
    fs = FactorSet()
    assert fs.get("toe", "diesel", per="mass").value == 1.02
    assert fs.get("toe", "diesel", per="volume").value == 0.88  # per 1000 L = per m3


def test_grid_factor_of_the_year_and_fallback():
    fs = FactorSet()
    fac, note = fs.grid_ef(2022)
    assert fac.value == 0.6766 and note == ""
    fac, note = fs.grid_ef(2025)
    assert fac.key == "2023" and "2025" in note
    fac, note = fs.grid_ef(2024)  # only an unofficial estimate exists for 2024
    assert fac.key == "2023" and "2024" in note


def test_override_wins_and_is_visible():
    over = Factor("ncv", "cashew_shell", 19.0, "GJ/t", "lab test 2024", status="measured")
    fs = FactorSet([over])
    got = fs.get("ncv", "cashew_shell")
    assert got.value == 19.0 and got.overridden and got.id == "ncv:cashew_shell*"
    assert FactorSet().get("ncv", "cashew_shell").value == 11.6


def test_unknown_factor_says_how_to_add_one():
    with pytest.raises(FactorError, match="factors table"):
        FactorSet().get("ncv", "unobtainium")
