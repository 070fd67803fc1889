"""The seven illustrative pilot facilities in examples/.

Every worksheet must pass `cpa check` with no error, close its balances, and keep its key
results. The REGRESSION values below were computed by cpa itself when the examples were
written (they pin behaviour: a change in them must be deliberate). A few are also worked out by
hand from the worksheets, with the arithmetic in the comments.
"""

import glob
import os

import pytest
from click.testing import CliRunner

from cpa.balance import balances
from cpa.cli import main
from cpa.programme import Settings, programme_table
from cpa.worksheet import load

ROOT = os.path.dirname(os.path.dirname(__file__))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "0*.cpa.md")))

# REGRESSION values (cpa output when the examples were written), per facility:
# energy GJ/unit before → after, water m3/unit before → after, net saving VND/yr, payback yr.
PINNED = {
    "textile-anphu": (33.8395, 30.632554, 120.0, 97.217021, 2_132_310_295.224, 2.164319),
    "tapioca-tanphu": (2.45186, 2.22396, 17.76975, 14.971148, 6_211_705_600.0, 1.06251),
    "rubber-xuanloc": (0.596772, 0.558304, 13.889370, 9.925367, 564_671_600.0, 6.07079),
    "cashew-trangbom": (23.544, 20.434662, 7.08, 4.375128, 2_238_100_000.0, 1.54595),
    "wood-bienhoa": (8.49112, 7.41345, 1.468667, 1.332625, 2_765_202_000.0, 0.922175),
    "plating-longthanh": (0.0108, 0.0099, 0.1531, 0.07035, 423_621_450.0, 1.65242),
    "ceramics-tanvan": (26.552740, 23.381522, 3.002979, 2.0764, 1_276_282_088.0, 0.650326),
}


def test_there_are_seven():
    assert len(EXAMPLES) == 7


def test_cpa_check_passes_on_all_seven():
    r = CliRunner().invoke(main, ["check", os.path.join(ROOT, "examples")])
    assert r.exit_code == 0, r.output
    assert r.output.count(": valid (0 errors") == 7


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_is_complete_and_illustrative(path):
    ws = load(path)
    assert ws.illustrative and "inh họa" in open(path, encoding="utf-8").read()  # "minh họa"
    t = ws.tables
    assert 5 <= len(t["steps"]) <= 10
    assert set(t["periods"]["kind"]) == {"baseline", "monitoring"}
    opts = t["options"]
    assert len(opts) >= 6 and opts["category"].nunique() >= 4
    assert (opts["screening"] == "reject").any()
    assert opts.loc[opts["screening"] == "reject", "screening_reason"].notna().all()
    assert opts["status"].isin(["implemented", "verified"]).any()
    eff = t["effects"].dropna(subset=["stream"])
    assert eff.groupby("stream")["option"].nunique().max() >= 2  # a pair acting on one flow
    assert len(t["causes"]) >= 1 and len(t["prices"]) >= 3 and len(t["team"]) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_balances_close(path):
    b = balances(load(path))
    assert set(b["status"]) <= {"closes", "no outputs"}, b[~b["status"].isin(["closes", "no outputs"])]


def test_key_results_pinned():
    t = programme_table([load(p) for p in EXAMPLES], Settings()).set_index("facility_id")
    for fid, (e0, e1, w0, w1, sav, pb) in PINNED.items():
        r = t.loc[fid]
        got = (r["energy_baseline"], r["energy_latest"], r["water_baseline"], r["water_latest"],
               r["net_saving_vnd_per_yr"], r["payback_yr"])
        assert got == pytest.approx((e0, e1, w0, w1, sav, pb), rel=1e-5), fid


def test_textile_water_by_hand():
    # examples/01-textile.cpa.md, baseline 2023: fresh water into pretreatment 32,400 + dyeing
    # 28,800 + rinsing 41,130 + boiler 5,670 = 108,000 m3 for 900 t of fabric = 120 m3/t
    t = programme_table([load(EXAMPLES[0])], Settings()).iloc[0]
    assert t["water_baseline"] == pytest.approx(108_000 / 900)


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_options_and_compare_run(path):
    for cmd in ("options", "compare"):
        r = CliRunner().invoke(main, [cmd, path, "--json"])
        assert r.exit_code == 0, r.output
