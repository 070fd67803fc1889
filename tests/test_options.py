"""Options: savings, economics, ranking, before/after, and the two commands.

The worksheet is tests/data/options.cpa.md. Its baseline is one quarter of 75 operating days with
300 operating days per year: annual factor 300 / 75 = 4. Every expected value is worked out by
hand in the comment next to it.

Baseline per year (quarter × 4):
  water  2,500 m3 × 4 = 10,000 m3/yr at 11,500 VND/m3
  ww     2,000 m3 × 4 =  8,000 m3/yr, treatment 8,000 VND/m3
  coal      50 t  × 4 =    200 t/yr at 3,000,000 VND/t, NCV 26.7 GJ/t (IPCC anthracite)
  husk      none in the baseline; 800,000 VND/t; NCV 12 GJ/t (worksheet factor)
  elec  40,000 kWh × 4 = 160,000 kWh/yr at 2,000 VND/kWh
  trim       2 t  × 4 =      8 t/yr, disposal 500,000 VND/t; rags sold at 1,500,000 VND/t
  fabric   100 t  × 4 =    400 t/yr
"""

import json
import math
import os

import pytest
from click.testing import CliRunner

from cpa.commands_options import compare_cmd, options_cmd
from cpa.compare import compare, realised_savings
from cpa.errors import CalculationError
from cpa.options import (
    combined_savings,
    combined_totals,
    economics,
    option_table,
    rank_options,
    savings_table,
)
from cpa.worksheet import load, read

PATH = "tests/data/options.cpa.md"
TEXTILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "01-textile.cpa.md")


@pytest.fixture(scope="module")
def ws():
    import os

    return load(os.path.join(os.path.dirname(__file__), "data", "options.cpa.md"))


@pytest.fixture
def text():
    import os

    with open(os.path.join(os.path.dirname(__file__), "data", "options.cpa.md"), encoding="utf-8") as f:
        return f.read()


def _replace(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


def _row(df, **kw):
    m = df
    for k, v in kw.items():
        m = m[m[k] == v]
    assert len(m) == 1, (kw, m)
    return m.iloc[0]


def _opt(ws, oid):
    t = option_table(ws)
    return t[t["id"] == oid].iloc[0]


# ------------------------------------------------------------------------------------- savings


def test_overlapping_shares_do_not_double_count(ws):
    # o1: 20 % of 10,000 m3/yr = 2,000; o2 (order 2): 10 % of what o1 left (8,000) = 800.
    # Combined 2,800 m3/yr, not 2,000 + 1,000 = 3,000; 1 - (0.8 × 0.9) = 28 %.
    s = savings_table(ws)
    assert _row(s, option="o1", basis="standalone", stream="water")["quantity_per_yr"] == pytest.approx(2000)
    assert _row(s, option="o2", basis="standalone", stream="water")["quantity_per_yr"] == pytest.approx(1000)
    assert _row(s, option="o2", basis="combined", stream="water")["quantity_per_yr"] == pytest.approx(800)
    c = combined_savings(ws)
    w = _row(c, stream="water")
    assert w["standalone_sum_per_yr"] == pytest.approx(3000)
    assert w["combined_per_yr"] == pytest.approx(2800)
    assert w["combined_share"] == pytest.approx(0.28)
    # money: 2,800 m3 × 11,500 = 32,200,000 VND/yr
    assert w["saving_vnd_per_yr"] == pytest.approx(32_200_000)


def test_order_column_decides(ws, text, write_ws):
    # swap the order: o2 first (10 % of 10,000 = 1,000), then o1 20 % of 9,000 = 1,800; total 2,800
    t = _replace(text, "| VND | 5 | 10 | 1 |", "| VND | 5 | 10 | 9 |")
    s = savings_table(load(write_ws(t)))
    assert _row(s, option="o1", basis="combined", stream="water")["quantity_per_yr"] == pytest.approx(1800)
    assert _row(s, option="o2", basis="combined", stream="water")["quantity_per_yr"] == pytest.approx(1000)


def test_water_option_with_explicit_wastewater_effect(ws):
    # o1: water 2,000 m3 × 11,500 = 23,000,000; wastewater 1,600 m3 (its own effect, not implied
    # by the water saving) × 8,000 = 12,800,000; total 35,800,000 VND/yr
    o1 = _opt(ws, "o1")
    assert o1["water_m3_per_yr"] == pytest.approx(2000)
    assert o1["wastewater_m3_per_yr"] == pytest.approx(1600)
    assert o1["saving_vnd_per_yr"] == pytest.approx(35_800_000)
    # payback: 10,000,000 / 35,800,000 = 0.27933 yr
    assert o1["payback_yr"] == pytest.approx(10 / 35.8)
    assert o1["payback_bucket"] == "<1"


def test_substitution_coal_to_husk_by_calorific_value(ws):
    # 50 % of 200 t/yr coal = 100 t/yr saved = 100 × 26.7 GJ/t = 2,670 GJ/yr.
    # Husk for the same energy: 2,670 / 12 GJ/t = 222.5 t/yr.
    # Money: +100 × 3,000,000 = 300,000,000; -222.5 × 800,000 = -178,000,000 → 122,000,000 VND/yr.
    # Fossil CO2 saved: 2,670 GJ × 98.3 kg/GJ = 262.461 t; biogenic CO2 added: 2,670 × 100 kg/GJ
    # = 267 t (reported apart, as a negative saving).
    s = savings_table(ws)
    coal = _row(s, option="o3", basis="standalone", stream="coal")
    husk = _row(s, option="o3", basis="standalone", stream="husk")
    assert coal["quantity_per_yr"] == pytest.approx(100)
    assert coal["energy_gj_per_yr"] == pytest.approx(2670)
    assert husk["quantity_per_yr"] == pytest.approx(-222.5)
    assert husk["energy_gj_per_yr"] == pytest.approx(-2670)
    assert coal["co2_fossil_t_per_yr"] == pytest.approx(262.461)
    assert husk["co2_biogenic_t_per_yr"] == pytest.approx(-267.0)
    o3 = _opt(ws, "o3")
    assert o3["saving_vnd_per_yr"] == pytest.approx(122_000_000)
    assert o3["saving_gj_per_yr"] == pytest.approx(0.0, abs=1e-9)   # same energy, other fuel
    assert o3["co2_biogenic_t_per_yr"] == pytest.approx(-267.0)


def test_substitution_economics(ws):
    # o3: net saving 122,000,000 - 22,000,000 operating cost = 100,000,000 VND/yr;
    # investment 500,000,000 - grant 100,000,000 = 400,000,000 → payback 4.0 yr (">3").
    # NPV at 10 %, 10 yr: -400e6 + 100e6 × (1 - 1.1^-10) / 0.1 = -400e6 + 100e6 × 6.144567106
    # = 214,456,710.6 VND. IRR: annuity factor 4.0 over 10 yr → 21.41 % (tables: 21.4 %).
    o3 = _opt(ws, "o3")
    assert o3["net_saving_vnd_per_yr"] == pytest.approx(100_000_000)
    assert o3["payback_yr"] == pytest.approx(4.0)
    assert o3["payback_bucket"] == ">3"
    assert o3["npv_vnd"] == pytest.approx(214_456_710.6, abs=1)
    assert o3["irr"] == pytest.approx(0.2141, abs=5e-4)
    # o2: 20 million VND (money_unit million_VND) / 11,500,000 = 1.739 yr;
    # NPV 5 yr 10 %: -20e6 + 11.5e6 × 3.790786769 = 23,594,047.8
    o2 = _opt(ws, "o2")
    assert o2["investment_vnd"] == pytest.approx(20_000_000)
    assert o2["npv_vnd"] == pytest.approx(23_594_047.8, abs=1)


def test_recovery_disposal_avoided_and_revenue(ws):
    # o4: 50 % of 8 t/yr trimmings = 4 t/yr: disposal avoided 4 × 500,000 = 2,000,000;
    # sold as rags 4 × 1,500,000 = 6,000,000 → 8,000,000 VND/yr; 4 t/yr less waste.
    o4 = _opt(ws, "o4")
    assert o4["saving_vnd_per_yr"] == pytest.approx(8_000_000)
    assert o4["waste_t_per_yr"] == pytest.approx(4)
    assert o4["payback_yr"] == 0.0                  # no investment
    assert "lifetime not given" in o4["economics_note"]
    assert math.isnan(o4["npv_vnd"])


def test_recovery_into_an_input(text, write_ws):
    # recover 50 % of wastewater (8,000 m3/yr → 4,000 m3) back into fresh water: treatment avoided
    # 4,000 × 8,000 = 32,000,000 and water bought 4,000 × 11,500 = 46,000,000 → 78,000,000 VND/yr
    t = _replace(text, "| o4 | recover | trim | 50 | % | rags |", "| o4 | recover | ww | 50 | % | water |")
    t = _replace(t, "| o1 | reduce_amount | ww | 1600 | m3 | | estimated |\n", "")
    t = _replace(t, "| o1 | reduce_share | water | 20 | % | | estimated |\n", "")
    t = _replace(t, "| o2 | reduce_share | water | 10 | % | | estimated |\n", "")
    o4 = _opt(load(write_ws(t)), "o4")
    assert o4["saving_vnd_per_yr"] == pytest.approx(78_000_000)
    assert o4["water_m3_per_yr"] == pytest.approx(4000)
    assert o4["wastewater_m3_per_yr"] == pytest.approx(4000)


def test_reduce_per_unit(ws):
    # o7: 20 kWh/t × 400 t/yr = 8,000 kWh/yr × 2,000 = 16,000,000 VND/yr;
    # 8,000 kWh × 0.0036 = 28.8 GJ; TOE 8 MWh × 0.1543 = 1.2344 TOE_VN/yr
    o7 = _opt(ws, "o7")
    assert o7["saving_vnd_per_yr"] == pytest.approx(16_000_000)
    assert o7["saving_gj_per_yr"] == pytest.approx(28.8)
    assert o7["toe_vn_per_yr"] == pytest.approx(1.2344)


def test_zero_saving_is_never(ws):
    # o5: money 0 VND/yr, investment 5,000,000: payback never; flows -5e6, 0, 0, 0 → NPV -5e6,
    # no sign change → IRR "none"
    o5 = _opt(ws, "o5")
    assert o5["payback_yr"] == math.inf
    assert o5["payback_bucket"] == "never"
    assert o5["npv_vnd"] == pytest.approx(-5_000_000)
    assert math.isnan(o5["irr"]) and o5["irr_note"] == "none"


def test_rejected_option_not_in_totals(ws):
    # o6 (rejected): 30 % of 160,000 kWh = 48,000 kWh stand-alone, but not in the combined total.
    # Combined net: water 32,200,000 + ww 12,800,000 + o3 122,000,000 + o4 8,000,000 + o7 16,000,000
    # = 191,000,000 gross; minus o3's 22,000,000 operating cost = 169,000,000 VND/yr.
    t = option_table(ws)
    o6 = t[t["id"] == "o6"].iloc[0]
    assert not o6["included"] and o6["rank"] is None and o6["screening_reason"] == "too costly for now"
    assert o6["saving_vnd_per_yr"] == pytest.approx(96_000_000)
    tot = combined_totals(ws)
    assert tot["saving_vnd_per_yr"] == pytest.approx(191_000_000)
    assert tot["net_saving_vnd_per_yr"] == pytest.approx(169_000_000)
    assert tot["water_m3_per_yr"] == pytest.approx(2800)
    assert tot["options"] == 6
    assert list(t["id"])[-1] == "o6"


def test_ranking(ws):
    t = option_table(ws)
    # payback: o7 and o4 (0 yr; o7 saves more), o1 0.28, o2 1.74, o3 4.0, o5 never; o6 rejected
    assert list(t["id"]) == ["o7", "o4", "o1", "o2", "o3", "o5", "o6"]
    by_npv = rank_options(t, by="npv")
    assert list(by_npv["id"][:2]) == ["o3", "o1"]   # 214.5 M, 125.7 M
    scored = rank_options(t, by="score", weights={"technical": 1, "economic": 1, "environmental": 1})
    assert scored["score"].between(0, 1).all()


def test_saving_more_than_the_stream_holds(text, write_ws):
    # 12,000 m3/yr from a stream of 10,000 m3/yr
    t = _replace(text, "| o1 | reduce_share | water | 20 | % |", "| o1 | reduce_amount | water | 12000 | m3 |")
    with pytest.raises(CalculationError, match=r"option 'o1' saves 12,000 m3/yr of stream 'water'.*baseline 10,000"):
        savings_table(load(write_ws(t)))


def test_combined_more_than_left(text, write_ws):
    # o1 9,000 m3 then o2 a fixed 2,000 m3: each fits alone, together 11,000 > 10,000
    t = _replace(text, "| o1 | reduce_share | water | 20 | % |", "| o1 | reduce_amount | water | 9000 | m3 |")
    t = _replace(t, "| o2 | reduce_share | water | 10 | % |", "| o2 | reduce_amount | water | 2000 | m3 |")
    with pytest.raises(CalculationError, match=r"option 'o2'.*leave 1,000"):
        savings_table(load(write_ws(t)))


def test_share_over_100(text, write_ws):
    t = _replace(text, "| o1 | reduce_share | water | 20 | % |", "| o1 | reduce_share | water | 120 | % |")
    with pytest.raises(CalculationError, match=r"between 0 and 100"):
        savings_table(load(write_ws(t)))


def test_stream_without_baseline_flow(text, write_ws):
    t = _replace(text, "| o1 | reduce_share | water | 20 | % |", "| o1 | reduce_share | husk | 20 | % |")
    path = write_ws(t)
    with pytest.raises(CalculationError, match=r"\[effects.stream\].*'husk' has no flow entering"):
        savings_table(load(path))


def test_unit_of_another_dimension(text, write_ws):
    t = _replace(text, "| o1 | reduce_amount | ww | 1600 | m3 |", "| o1 | reduce_amount | ww | 1600 | kWh |")
    with pytest.raises(CalculationError, match=r"options.cpa.md|ws.cpa.md:\d+ \[effects.unit\]"):
        savings_table(load(write_ws(t)))


def test_negative_lifetime_and_rate_reported_by_read(text, write_ws):
    t = _replace(text, "| VND | 5 | 10 | 1 |", "| VND | -5 | -10 | 1 |")
    ws = read(write_ws(t))
    cols = {(p.table, p.column) for p in ws.errors}
    assert ("options", "lifetime") in cols and ("options", "discount_rate") in cols


def test_economics_irr_multiple():
    # escalation that turns savings negative is not needed: a negative net saving with no
    # investment gives no sign change → "none"
    e = economics(0.0, 0.0, -1e6, 5, 0.1, 0.0)
    assert e["payback_yr"] == math.inf and e["irr_note"] == "none"
    e = economics(1e6, 0.0, math.nan, 5, 0.1, 0.0)
    assert "price is missing" in e["economics_note"]


def test_missing_price_is_unknown_not_zero(text, write_ws):
    t = _replace(text, "| husk | purchase | 2024-01-01 | 800000 | VND/t | test value |\n", "")
    o3 = _opt(load(write_ws(t)), "o3")
    assert not o3["complete"] and "husk" in o3["unknown"]
    assert math.isnan(o3["payback_yr"]) and math.isnan(o3["net_saving_vnd_per_yr"])


# --------------------------------------------------------------------------------- before/after


def test_compare_water_by_hand(ws):
    # water: baseline 2,500 m3 / 100 t = 25 m3/t; after 2,200 / 110 t = 20 m3/t → -20 %.
    # adjusted baseline 25 × 110 = 2,750; normalised saving 2,750 - 2,200 = 550 m3 per quarter,
    # × 4 = 2,200 m3/yr, at the 2025 price 12,000 VND/m3 = 26,400,000 VND/yr.
    c = compare(ws)
    w = _row(c, indicator="water", stream="")
    assert w["baseline_specific"] == pytest.approx(25)
    assert w["specific"] == pytest.approx(20)
    assert w["change_pct"] == pytest.approx(-20)
    assert w["normalised_saving"] == pytest.approx(550)
    assert w["normalised_saving_per_yr"] == pytest.approx(2200)
    s = _row(c, indicator="stream", stream="water")
    assert s["saving_vnd_per_yr"] == pytest.approx(26_400_000)


def test_compare_electricity_and_new_fuel(ws):
    # electricity: 400 kWh/t → 42,000 / 110 = 381.82 kWh/t: -4.545 %; 400 × 110 - 42,000 = 2,000
    # kWh per quarter → 8,000 kWh/yr. Husk (not in the baseline): 0 × 110 - 40 = -40 t → -160 t/yr
    # × 800,000 = -128,000,000 VND/yr (the cost of the new fuel counts against the saving).
    c = compare(ws)
    e = _row(c, indicator="electricity", stream="")
    assert e["change_pct"] == pytest.approx((42000 / 110 / 400 - 1) * 100)
    assert e["normalised_saving_per_yr"] == pytest.approx(8000)
    h = _row(c, indicator="stream", stream="husk")
    assert h["saving_vnd_per_yr"] == pytest.approx(-128_000_000)
    # total of the streams: grey 0.8 t × 60e6 = 48e6; trim 4 t × 0.5e6 = 2e6; water 26.4e6;
    # ww 2,000 m3 × 8,000 = 16e6; coal (25 × ... ) 100 t × 3e6 = 300e6; elec 16e6; husk -128e6
    tot = _row(c, indicator="total_vnd")
    assert tot["saving_vnd_per_yr"] == pytest.approx(48e6 + 2e6 + 26.4e6 + 16e6 + 300e6 + 16e6 - 128e6)


def test_realised_vs_estimated(ws):
    # o1 metered 480 m3 in the quarter × 4 = 1,920 m3/yr vs 2,000 estimated → 96 %
    r = realised_savings(ws)
    row = _row(r, option="o1")
    assert row["realised_per_yr"] == pytest.approx(1920)
    assert row["estimated_per_yr"] == pytest.approx(2000)
    assert row["realisation"] == pytest.approx(0.96)
    assert row["realised_vnd_per_yr"] == pytest.approx(1920 * 12000)


def test_monitoring_period_without_production(text, write_ws):
    t = _replace(text, "| after | fabric | 110 | t | measured |", "| after | fabric | 0 | t | measured |")
    with pytest.raises(CalculationError, match=r"monitoring period 'after' has no production"):
        compare(load(write_ws(t)))


# ------------------------------------------------------------------------------------------ CLI


def test_cli_options_text_en():
    r = CliRunner().invoke(options_cmd, [PATH, "--lang", "en"])
    assert r.exit_code == 0, r.output
    assert "Fix water leaks" in r.output
    assert "35,800,000" in r.output           # o1 saving, en grouping
    assert "never" in r.output                # o5
    assert "rejected: o6 — too costly for now" in r.output


def test_cli_options_text_vi():
    r = CliRunner().invoke(options_cmd, [PATH])
    assert r.exit_code == 0, r.output
    assert "35.800.000" in r.output           # vi grouping
    assert "không hoàn vốn" in r.output


def test_cli_options_json():
    r = CliRunner().invoke(options_cmd, [PATH, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    o5 = next(o for o in data["options"] if o["id"] == "o5")
    assert o5["payback_yr"] is None and o5["payback_bucket"] == "never" and o5["irr"] is None
    assert o5["irr_note"] == "none"
    o1 = next(o for o in data["options"] if o["id"] == "o1")
    assert o1["rank"] == 3 and o1["saving_vnd_per_yr"] == pytest.approx(35_800_000)
    assert data["combined"]["net_saving_vnd_per_yr"] == pytest.approx(169_000_000)
    assert data["units"]["npv_vnd"] == "VND"


def test_cli_compare():
    r = CliRunner().invoke(compare_cmd, [PATH, "--lang", "en"])
    assert r.exit_code == 0, r.output
    assert "-20.0%" in r.output and "26,400,000" in r.output
    r = CliRunner().invoke(compare_cmd, [PATH, "--json"])
    data = json.loads(r.output)
    w = next(x for x in data["comparison"] if x["indicator"] == "water")
    assert w["change_pct"] == pytest.approx(-20)
    assert data["realised"][0]["realisation"] == pytest.approx(0.96)


def test_cli_error_exit_1(text, write_ws):
    import click

    from cpa.cli import CpaGroup

    @click.group(cls=CpaGroup)
    def grp():
        pass

    grp.add_command(options_cmd)
    grp.add_command(compare_cmd)
    t = _replace(text, "| after | fabric | 110 | t | measured |", "| after | fabric | 0 | t | measured |")
    r = CliRunner().invoke(grp, ["compare", write_ws(t)])
    assert r.exit_code == 1 and "has no production" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(grp, ["options", "-h"])
    assert r.exit_code == 0 and "--json" in r.output


def test_cli_sort_by_score_with_weights():
    """`cpa options --sort score --weights T,E,V`: each score is the weighted mean of
    technical (low 1, medium 0.5, high 0, none 0.5), economic 1 / (1 + payback) and
    environmental CO2e / the largest CO2e of the options not rejected (docs/options.md),
    recomputed here from the printed fields; ranks follow the score."""
    r = CliRunner().invoke(options_cmd, [TEXTILE, "--json", "--sort", "score", "--weights", "1,2,1"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["sorted_by"] == "score"
    assert out["weights"] == {"technical": 1.0, "economic": 2.0, "environmental": 1.0}
    inc = [o for o in out["options"] if o["included"]]
    top = max(max(o["co2e_t_per_yr"], 0.0) for o in inc)
    for o in inc:
        tech = {"low": 1.0, "medium": 0.5, "high": 0.0}.get(o["effort"] or "", 0.5)
        pb = o["payback_yr"]
        econ = 0.0 if pb is None or pb == "inf" or (isinstance(pb, float) and math.isinf(pb)) else 1.0 / (1.0 + pb)
        env = max(o["co2e_t_per_yr"], 0.0) / top
        assert o["score"] == pytest.approx((1 * tech + 2 * econ + 1 * env) / 4, rel=1e-9), o["id"]
    scores = [o["score"] for o in sorted(inc, key=lambda o: o["rank"])]
    assert scores == sorted(scores, reverse=True)
    text = CliRunner().invoke(options_cmd, [TEXTILE, "--sort", "score", "--lang", "en"]).output
    assert "score" in text


@pytest.mark.parametrize("bad", ["1,x,1", "1,1", "0,0,0", "-1,1,1"])
def test_cli_weights_refused_with_a_clear_message(bad):
    r = CliRunner().invoke(options_cmd, [TEXTILE, "--sort", "score", "--weights", bad])
    assert r.exit_code == 2
    assert "three numbers ≥ 0, not all 0" in r.output and repr(bad) in r.output
