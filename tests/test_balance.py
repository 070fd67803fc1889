"""Balances, indicators and the cost of waste of tests/data/mini.cpa.md, worked out by hand.

The mini dye-house (3 steps: pretreatment → dyeing, with a coal boiler feeding steam to dyeing),
baseline period 'base' (75 operating days; 300 days a year → annual factor 4):

mass [t]   prep: in grey 102; out wet 101                      → gap 1.0 (0.98 %)
           dye:  in wet 101; out fabric 100 + trimmings 0.8      → gap 0.2 (0.198 %)
           facility: in 102; out 100.8                           → gap 1.2 (1.176 %)
water [m3] prep: in 4000; out ww 3800 + evaporation 190          → gap 10 (0.25 %)
           dye: in 6000 + steam 300 t (= 300 m3 water equivalent); out ww 5900 + evap 380 → gap 20
           boiler: in 310; out steam 300 + blowdown 10           → gap 0
           facility: in 4000 + 6000 + 310 = 10310; out 3800+5900+10+190+380 = 10280 → gap 30
energy [GJ] boiler: coal 50 t × 26.7 GJ/t (IPCC anthracite) = 1335; out steam 300 t × 2.643 GJ/t
           = 792.9 + losses 520 = 1312.9 → gap 22.1 (1.655 %)
           dye: steam 792.9 + electricity 40,000 kWh × 0.0036 = 144 → 936.9; out 900 → gap 36.9
           facility: in 1335 + 144 = 1479; out 520 + 900 = 1420 → gap 59 (3.989 %)
"""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from cpa.balance import balances, closure_warnings
from cpa.cli import main
from cpa.costs import waste_costs
from cpa.indicators import indicators
from cpa.worksheet import load


@pytest.fixture
def mini(mini_path):
    return load(mini_path)


def _row(df, **kw):
    sel = df
    for k, v in kw.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, (kw, sel)
    return sel.iloc[0]


@pytest.mark.parametrize("layer, node, inputs, outputs, gap", [
    ("mass", "prep", 102, 101, 1.0), ("mass", "dye", 101, 100.8, 0.2), ("mass", "facility", 102, 100.8, 1.2),
    ("water", "prep", 4000, 3990, 10), ("water", "dye", 6300, 6280, 20), ("water", "boiler", 310, 310, 0),
    ("water", "facility", 10310, 10280, 30),
    ("energy", "boiler", 1335, 1312.9, 22.1), ("energy", "dye", 936.9, 900, 36.9),
    ("energy", "facility", 1479, 1420, 59),
])
def test_baseline_balances_by_hand(mini, layer, node, inputs, outputs, gap):
    b = balances(mini, period="base")
    r = _row(b, layer=layer, node=node)
    assert r["inputs"] == pytest.approx(inputs)
    assert r["outputs"] == pytest.approx(outputs)
    assert r["gap"] == pytest.approx(gap, abs=1e-9)
    assert r["gap_pct"] == pytest.approx(100 * gap / inputs)
    assert r["status"] == "closes"


def test_estimated_share(mini):
    # mass, step prep: inputs 102 (measured) + outputs 101 (estimated) → 101 / 203
    r = _row(balances(mini, period="base", layer="mass"), node="prep")
    assert r["estimated_share"] == pytest.approx(101 / 203)


def test_gap_above_tolerance_is_a_warning_naming_step_and_layer(mini_text, write_ws):
    # evaporation in dyeing not recorded → dye water gap 20 + 380 = 400 m3 of 6300 = 6.35 % > 5 %
    text = mini_text.replace("| base | evap | dye | | 380 | m3 | estimated | |\n", "")
    ws = load(write_ws(text))
    warns = closure_warnings(ws)
    assert len(warns) == 1
    assert "water balance of step 'dye' in period base" in warns[0].message
    assert "6.3 %" in warns[0].found
    # the tolerance is a facility setting
    ws2 = load(write_ws(text.replace("| operating_days_per_year | 300 |", "| operating_days_per_year | 300 |\n| tolerance_water | 7 |")))
    assert closure_warnings(ws2) == []


def test_outputs_exceeding_inputs_warn(mini_text, write_ws):
    text = mini_text.replace("| base | ww | dye | | 5900 |", "| base | ww | dye | | 6500 |")
    warns = closure_warnings(load(write_ws(text)))
    assert any("outputs exceed inputs" in w.message and "'dye'" in w.message for w in warns)


def test_indicators_by_hand(mini):
    ind = indicators(mini)
    base = ind[ind["period"] == "base"]
    # energy 1479 GJ / 100 t = 14.79 GJ/t; electricity 40,000 kWh / 100 t = 400 kWh/t
    assert _row(base, indicator="energy", stream="")["specific"] == pytest.approx(14.79)
    assert _row(base, indicator="electricity")["specific"] == pytest.approx(400)
    # water intake 10,310 m3 / 100 t = 103.1 m3/t
    assert _row(base, indicator="water")["specific"] == pytest.approx(103.1)
    # TOE (MOIT 3505/BCT-KHCN): 50 t coal grade 3-4 × 0.60 + 40 MWh × 0.1543 = 30 + 6.172 = 36.172
    assert _row(base, indicator="toe_vn")["value"] == pytest.approx(36.172)
    # annualised: 300 operating days a year / 75 in the period = × 4 → 144.688 TOE/yr: not a key user
    assert _row(base, indicator="toe_vn_per_year")["value"] == pytest.approx(144.688)
    assert _row(base, indicator="key_energy_user")["value"] == 0.0
    # physical toe is kept apart: 1479 GJ / 41.868 = 35.325 toe
    assert _row(base, indicator="toe_physical")["value"] == pytest.approx(35.3253, abs=1e-4)
    # CO2: coal 1.335 TJ × 98,300 kg/TJ = 131.2305 t; electricity 40 MWh × 0.6592 (2023 factor
    # stands in for 2024, which has no official value) = 26.368 t; CH4+N2O 1.335 × (10×28 + 1.5×265)/1000
    assert _row(base, indicator="co2_fuels")["value"] == pytest.approx(131.2305)
    el = _row(base, indicator="co2_electricity")
    assert el["value"] == pytest.approx(26.368)
    assert el["factors"] == "grid_ef:2023" and "2024" in el["note"]
    assert _row(base, indicator="ch4_n2o")["value"] == pytest.approx(1.335 * (0.28 + 0.3975))
    assert _row(base, indicator="material", stream="grey")["specific"] == pytest.approx(1.02)


def test_key_energy_user_flag(mini_text, write_ws):
    # 6,000 t of coal grade 3-4 in a quarter-year period → 3,600 TOE → ×4 = 14,400 TOE/yr ≥ 1,000
    text = mini_text.replace("| base | coal | | boiler | 50 | t |", "| base | coal | | boiler | 6000 | t |")
    ind = indicators(load(write_ws(text)))
    assert _row(ind[ind["period"] == "base"], indicator="key_energy_user")["value"] == 1.0


def test_zero_production_is_undefined_not_a_number(mini_text, write_ws):
    text = mini_text.replace("| base | fabric | 100 | t | measured |", "| base | fabric | 0 | t | measured |")
    ind = indicators(load(write_ws(text)))
    r = _row(ind[ind["period"] == "base"], indicator="water")
    assert r["specific"] != r["specific"]  # NaN, and said so:
    assert "specific consumption undefined" in r["note"]


def test_biomass_co2_reported_apart(mini_text, write_ws):
    text = mini_text.replace("| coal | Than cám 4 | Coal grade 4 | fuel | coal_grade_3_4 |", "| coal | Trấu | Rice husk | fuel | rice_husk |")
    ind = indicators(load(write_ws(text)))
    base = ind[ind["period"] == "base"]
    # 50 t × 11.6 GJ/t = 580 GJ = 0.58 TJ × 100,000 kg/TJ = 58 t biogenic CO2, not in the total
    assert _row(base, indicator="co2_biogenic")["value"] == pytest.approx(58.0)
    assert _row(base, indicator="co2_fuels")["value"] == 0.0
    # regulatory TOE of biomass is derived from its NCV: 580 / 41.868 = 13.853
    assert _row(base, indicator="toe_vn")["value"] == pytest.approx(580 / 41.868 + 6.172)


def test_cost_of_waste_by_hand(mini):
    c = waste_costs(mini)
    base = c[c["period"] == "base"]
    ww = _row(base, stream="ww")
    # wastewater 9,710 m3: lost water 9,710 × 11,500 = 111,665,000; treatment × 8,000 = 77,680,000
    assert ww["material_value_vnd"] == pytest.approx(111_665_000)
    assert ww["treatment_vnd"] == pytest.approx(77_680_000)
    assert ww["annual_total_vnd"] == pytest.approx(4 * 189_345_000)
    # boiler losses 520 GJ of coal heat: 520 / 26.7 GJ/t = 19.4757 t × 3,000,000 = 58,426,966
    assert _row(base, stream="boiler_loss")["energy_value_vnd"] == pytest.approx(520 / 26.7 * 3e6)
    # trimmings 0.8 t of grey fabric at 60,000,000 VND/t + disposal 0.8 × 500,000
    assert _row(base, stream="trim")["total_vnd"] == pytest.approx(48_000_000 + 400_000)
    # ranked (Pareto): wastewater, boiler losses, trimmings, evaporation, heat losses
    assert base.sort_values("rank")["stream"].tolist() == ["ww", "boiler_loss", "trim", "evap", "heat_loss"]
    # heat losses have no lost material declared: their value is unknown, not zero
    hl = _row(base, stream="heat_loss")
    assert not hl["complete"] and "no lost_material" in hl["unknown"]


def test_missing_price_is_unknown_not_zero(mini_text, write_ws):
    text = mini_text.replace("| ww | treatment | 2024-01-01 | 8000 | VND/m3 | test value |\n", "")
    c = waste_costs(load(write_ws(text)))
    ww = _row(c[c["period"] == "base"], stream="ww")
    assert not ww["complete"] and "treatment or disposal cost of ww" in ww["unknown"]


def test_fuel_without_calorific_value(mini_text, write_ws):
    # a fuel in litres whose NCV is per tonne, and no density: a clear error naming the fuel
    text = mini_text.replace("| base | coal | | boiler | 50 | t |", "| base | coal | | boiler | 50 | L |")
    r = CliRunner().invoke(main, ["balance", write_ws(text)])
    assert r.exit_code == 1
    assert "fuel stream 'coal'" in r.output and "density" in r.output
    assert "Traceback" not in r.output


def test_cli_balance_json_is_stable(mini_path):
    import json

    r = CliRunner().invoke(main, ["balance", mini_path, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["format"] == "cpa.balance/1"
    assert set(doc) == {"format", "facility", "periods", "balances", "indicators", "waste_costs", "factors", "warnings"}
    assert set(doc["balances"][0]) == {"period", "layer", "node", "node_name_vi", "node_name_en", "unit", "inputs",
                                       "outputs", "stock_change", "gap", "gap_pct", "unknown_loss", "estimated_share",
                                       "n_flows", "tolerance_pct", "status"}
    assert doc["facility"]["illustrative"] is True


def test_cli_balance_vi_numbers_and_files(mini_path, tmp_path):
    r = CliRunner().invoke(main, ["balance", mini_path, "--lang", "vi", "--layer", "water", "--period", "base"])
    assert r.exit_code == 0, r.output
    assert "10.310,0 m3" in r.output and "minh họa" in r.output
    out = tmp_path / "b.xlsx"
    r = CliRunner().invoke(main, ["balance", mini_path, "--xlsx", str(out), "--csv", str(tmp_path / "csv")])
    assert r.exit_code == 0, r.output
    assert out.exists() and (tmp_path / "csv" / "balances.csv").exists()
    r = CliRunner().invoke(main, ["balance", mini_path, "--xlsx", str(out)])
    assert r.exit_code == 1 and "--force" in r.output


def test_calculation_modules_import_no_plotting_or_cli():
    code = ("import sys, cpa.balance, cpa.indicators, cpa.costs, cpa.quantities, cpa.worksheet, cpa.units;"
            "bad = [m for m in ('matplotlib', 'cpa.cli', 'click', 'rich') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
