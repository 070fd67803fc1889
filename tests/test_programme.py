"""The programme roll-up, against sums worked out by hand on three small facilities.

All three are copies of tests/data/mini.cpa.md (baseline 'base': 75 operating days, 300 a year →
annual factor 4) with one option each:

A  o1 reduce_share 10 % of water. Baseline water 10,310 m3 × 4 = 41,240 m3/yr → 4,124 m3/yr
   × 11,500 VND/m3 = 47,426,000 VND/yr. Investment 10,000,000 VND.
B  o1 reduce_amount 20 t/yr of coal → 20 × 3,000,000 = 60,000,000 VND/yr; 20 t × 26.7 GJ/t =
   534 GJ/yr; 20 t × 0.60 TOE/t = 12 TOE/yr; CO2 0.534 TJ × 98.3 t/TJ = 52.4922 t plus
   CH4+N2O 0.534 × (10 × 28 + 1.5 × 265) / 1000 = 0.3617850 t → 52.853985 tCO2e/yr.
   Investment 200,000,000 VND.
C  o1 money 5,000,000 VND/yr, no investment; its second option is rejected (not counted).

Totals: 47,426,000 + 60,000,000 + 5,000,000 = 112,426,000 VND/yr; investment 210,000,000 VND;
portfolio payback 210 / 112.426 = 1.86789 yr; water 4,124 m3/yr; energy 534 GJ/yr; 12 TOE/yr.
Water per tonne in every facility: 103.1 m3/t (base) → 9,300 / 110 = 84.545 m3/t (after):
−17.99 %, above the 13 % top of the band → "exceeds".
"""

import json
import os

import pytest
from click.testing import CliRunner

from cpa.cli import main
from cpa.programme import Settings, load_settings, programme_summary, programme_table
from cpa.worksheet import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OPTIONS = {
    "A": ("| o1 | Sửa rò rỉ | good_housekeeping | implement_now | implemented | 10000000 |",
          "| o1 | reduce_share | water | 10 | % |"),
    "B": ("| o1 | Tối ưu lò hơi | process_control | implement_now | implemented | 200000000 |",
          "| o1 | reduce_amount | coal | 20 | t |"),
    "C": ("| o1 | Khác | good_housekeeping | implement_now | implemented | |\n"
          "| o2 | Bị loại | technology_change | reject | proposed | 999000000 |",
          "| o1 | money | | 5000000 | VND |\n| o2 | money | | 900000000 | VND |"),
}


def _facility(mini_text, key):
    opt, eff = OPTIONS[key]
    head, _, _ = mini_text.partition("## options")
    text = head.replace("| id | mini |", f"| id | fac-{key} |")
    text += ("## options\n\n| id | title_vi | category | screening | status | investment_equipment |\n"
             "| --- | --- | --- | --- | --- | --- |\n" + opt + "\n\n"
             "## effects\n\n| option | effect | stream | value | unit |\n| --- | --- | --- | --- | --- |\n"
             + eff + "\n")
    if key == "C":
        text = text.replace("| o2 | Bị loại | technology_change | reject |", "| o2 | Bị loại | technology_change | reject |")
    return text


@pytest.fixture
def three(tmp_path, mini_text):
    paths = []
    for key in "ABC":
        p = tmp_path / f"{key}.cpa.md"
        p.write_text(_facility(mini_text, key), encoding="utf-8")
        paths.append(str(p))
    return paths


def test_rollup_totals_by_hand(three):
    t = programme_table([load(p) for p in three], Settings())
    s = programme_summary(t, Settings())["totals"]
    assert s["net_saving_vnd_per_yr"] == pytest.approx(112_426_000)
    assert s["investment_vnd"] == pytest.approx(210_000_000)
    assert s["payback_yr"] == pytest.approx(210 / 112.426)
    assert s["water_m3_per_yr"] == pytest.approx(4124)
    assert s["saving_gj_per_yr"] == pytest.approx(534)
    assert s["toe_vn_per_yr"] == pytest.approx(12)
    assert s["co2e_t_per_yr"] == pytest.approx(52.853985)
    assert s["options_total"] == 4 and s["options_rejected"] == 1


def test_rollup_rows_by_hand(three):
    t = programme_table([load(p) for p in three], Settings(target_low_pct=8, target_high_pct=13))
    a = t.set_index("facility_id").loc["fac-A"]
    assert a["water_baseline"] == pytest.approx(103.1)
    assert a["water_latest"] == pytest.approx(9300 / 110)
    assert a["water_change_pct"] == pytest.approx(100 * (9300 / 110 - 103.1) / 103.1)
    assert a["water_target"] == "exceeds"
    # energy: 1479 GJ / 100 t = 14.79 → 1429.2 / 110 = 12.9927 GJ/t: −12.15 % → within 8–13 %: meets
    assert a["energy_change_pct"] == pytest.approx(100 * (1429.2 / 110 - 14.79) / 14.79)
    assert a["energy_target"] == "meets"
    assert a["payback_yr"] == pytest.approx(10 / 47.426)
    assert not a["key_energy_user"]
    c = t.set_index("facility_id").loc["fac-C"]
    assert c["options_good_housekeeping"] == 1 and c["options_technology_change"] == 0


def test_medians(three):
    t = programme_table([load(p) for p in three], Settings())
    med = programme_summary(t)["medians"]
    # savings 47.426, 60 and 5 million VND/yr → median 47,426,000
    assert med["net_saving_vnd_per_yr"] == pytest.approx(47_426_000)


def test_duplicate_ids_refused(three, tmp_path):
    dup = tmp_path / "dup.cpa.md"
    dup.write_text(open(three[0], encoding="utf-8").read(), encoding="utf-8")
    r = CliRunner().invoke(main, ["programme", three[0], str(dup)])
    assert r.exit_code == 1 and "two facilities have the id 'fac-A'" in r.output


def test_invalid_facility_stops_unless_allowed(three, tmp_path):
    bad = tmp_path / "bad.cpa.md"
    bad.write_text(open(three[1], encoding="utf-8").read().replace("| id | fac-B |", "| id | fac-X |")
                   .replace("| 102 | t |", "| 102 | tonnn |"), encoding="utf-8")
    r = CliRunner().invoke(main, ["programme", *three, str(bad)])
    assert r.exit_code == 1 and "bad.cpa.md" in r.output and "nothing rolled up" in r.output
    r = CliRunner().invoke(main, ["programme", *three, str(bad), "--allow-invalid", "--json"])
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["summary"]["facilities"] == 3 and doc["summary"]["excluded_invalid"] == [str(bad)]


def test_periods_in_different_years_are_stated(three, tmp_path):
    other = tmp_path / "D.cpa.md"
    other.write_text(open(three[0], encoding="utf-8").read().replace("| id | fac-A |", "| id | fac-D |")
                     .replace("2024-01-01 | 2024-03-31", "2023-01-01 | 2023-03-31")
                     .replace("| 2024-01-01 | 60000000", "| 2023-01-01 | 60000000"), encoding="utf-8")
    r = CliRunner().invoke(main, ["programme", three[0], str(other), "--json"])
    assert r.exit_code == 0, r.output
    assert "different years (2023, 2024)" in r.stderr
    doc = json.loads(r.stdout)
    starts = {f["facility_id"]: f["baseline_start"] for f in doc["facilities"]}
    assert starts == {"fac-A": "2024-01-01", "fac-D": "2023-01-01"}


def test_settings_file(tmp_path):
    p = tmp_path / "programme.toml"
    p.write_text('name = "X"\nyear = 2025\n[target]\nlow_pct = 5\nhigh_pct = 8\n', encoding="utf-8")
    s = load_settings(str(p))
    assert (s.name, s.year, s.target_low_pct, s.target_high_pct) == ("X", 2025, 5.0, 8.0)
    p.write_text('[target]\nlow_pct = 20\nhigh_pct = 8\n', encoding="utf-8")
    with pytest.raises(Exception, match="low_pct"):
        load_settings(str(p))


def test_cli_outputs(three, tmp_path):
    r = CliRunner().invoke(main, ["programme", *three, "--lang", "vi"])
    assert r.exit_code == 0, r.output
    assert "112" in r.output and "TỔNG" in r.output
    out = tmp_path / "p.xlsx"
    r = CliRunner().invoke(main, ["programme", *three, "--xlsx", str(out)])
    assert r.exit_code == 0 and out.exists()


def test_row_from_the_results_bundle_is_the_same_row(three):
    """`cpa report` builds each row from the facility's results bundle (computed once for the
    booklets); the row must be the one computed from the worksheet alone, field for field."""
    import math

    from cpa.programme import facility_row
    from cpa.results import facility_results

    for path in three + [os.path.join(ROOT, "examples", "01-textile.cpa.md")]:
        ws = load(path)
        alone = facility_row(ws, Settings())
        reused = facility_row(ws, Settings(), results=facility_results(ws))
        assert alone.keys() == reused.keys()
        for k, v in alone.items():
            w = reused[k]
            assert (v == w) or (isinstance(v, float) and math.isnan(v) and math.isnan(w)), (path, k, v, w)
