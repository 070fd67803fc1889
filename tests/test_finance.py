"""Tests for cpa.finance.

Every expected value is worked out independently of the code: either by hand (the arithmetic is
in the comment) or taken from a published example (source given). Published spreadsheet values
are quoted with the precision they were printed with, and compared with a tolerance of half the
last printed digit.
"""

import math

import numpy as np
import pytest

from cpa.finance import (
    annuity_factor,
    cash_flows,
    discounted_payback,
    irr,
    irr_all,
    npv,
    payback_bucket,
    simple_payback,
)

# Microsoft Excel "IRR function" help, example table (checked in the zh-CN and ja-JP pages,
# https://support.microsoft.com/zh-cn/excel/irr-function): -70,000 initial cost, then net
# income 12,000 / 15,000 / 18,000 / 21,000 / 26,000.
EXCEL_IRR_FLOWS = [-70000, 12000, 15000, 18000, 21000, 26000]

# numpy-financial issue #44 (https://github.com/numpy/numpy-financial/issues/44).
NPF_ISSUE_44 = [-1678.87, 771.96, 1814.05, 3520.30, 3552.95, 3584.99, 4789.91, -1]


# --------------------------------------------------------------------------- simple payback


def test_simple_payback_with_grant():
    # Hand: (500 - 100) million VND / 160 million VND/yr = 400 / 160 = 2.5 yr.
    years = simple_payback(500e6, 160e6, grant=100e6)
    assert years == pytest.approx(2.5, rel=1e-15)
    assert payback_bucket(years) == "2-3"


def test_simple_payback_without_grant():
    # Hand: 300 million / 200 million VND/yr = 1.5 yr.
    assert simple_payback(300e6, 200e6) == pytest.approx(1.5, rel=1e-15)


@pytest.mark.parametrize("savings", [0.0, -5e6])
def test_simple_payback_no_saving_is_never(savings):
    # Savings <= 0 never repay the investment: inf, not ZeroDivisionError.
    years = simple_payback(500e6, savings)
    assert years == math.inf
    assert payback_bucket(years) == "never"


def test_simple_payback_fully_granted_is_zero():
    # Hand: grant = investment -> net investment 0 -> 0 / 50 million = 0 yr.
    years = simple_payback(200e6, 50e6, grant=200e6)
    assert years == 0.0
    assert payback_bucket(years) == "<1"


# --------------------------------------------------------------------------- cash flows


def test_cash_flows_with_grant_escalation_and_salvage():
    # Hand: year 0 = -(500 - 100) = -400 million;
    # year 1 = 160; year 2 = 160 * 1.05 = 168; year 3 = 160 * 1.05**2 = 176.4, + 20 salvage = 196.4.
    flows = cash_flows(500e6, 160e6, 3, grant=100e6, escalation=0.05, salvage=20e6)
    assert flows == pytest.approx([-400e6, 160e6, 168e6, 196.4e6], rel=1e-14)


def test_cash_flows_constant_savings():
    # Hand: 2 years, no grant: [-100, 40, 40]; an integral float lifetime (2.0) is accepted.
    assert cash_flows(100.0, 40.0, 2.0) == pytest.approx([-100.0, 40.0, 40.0], rel=1e-15)


def test_cash_flows_npv_matches_annuity_factor():
    # Hand: annuity factor at 10 % for 3 yr = 1/1.1 + 1/1.21 + 1/1.331
    #   = 0.909090909 + 0.826446281 + 0.751314801 = 2.486851991 (= (1 - 1.1**-3) / 0.1).
    factor = 1 / 1.1 + 1 / 1.21 + 1 / 1.331
    assert annuity_factor(0.10, 3) == pytest.approx(2.486851991, abs=5e-10)
    assert annuity_factor(0.10, 3) == pytest.approx(factor, rel=1e-14)
    # NPV = -400 million + 160 million * 2.486851991 = -2,103,681.4 VND.
    flows = cash_flows(500e6, 160e6, 3, grant=100e6)
    assert npv(0.10, flows) == pytest.approx(-2_103_681.4, abs=0.1)
    assert npv(0.10, flows) == pytest.approx(-400e6 + 160e6 * factor, rel=1e-12)
    # Rate 0: the annuity factor is the number of years.
    assert annuity_factor(0.0, 7) == 7.0


# --------------------------------------------------------------------------- NPV


def test_npv_hand_calculation():
    # Hand: -1000 + 500/1.1 + 500/1.21 + 500/1.331 = -1000 + 454.5455 + 413.2231 + 375.6574
    #   = 243.4260 (first flow at year 0, not discounted).
    assert npv(0.10, [-1000, 500, 500, 500]) == pytest.approx(243.4260, abs=5e-5)
    # Rate 0: plain sum.
    assert npv(0.0, [-1000, 500, 500, 500]) == pytest.approx(500.0, rel=1e-15)
    # A rate between -1 and 0 is accepted: -1 + 1/0.5 = 1.
    assert npv(-0.5, [-1, 1]) == pytest.approx(1.0, rel=1e-15)


def test_npv_adobe_formcalc_examples_use_spreadsheet_convention():
    # Adobe AEM Forms FormCalc reference, NPV:
    # https://help.adobe.com/en_US/AEMForms/6.1/DesignerFormCalcRef/WS92d06802c76abadb-32254d55129f5ee7c98-7fba.2.html
    # NPV(0.10, 500, 1500, 4000, 10000) = 11529.60863329007 and NPV(0.065, 5000) =
    # 4694.83568075117; "each of the next four years", i.e. the first value is one period away,
    # which is npv() with a zero at year 0.
    assert npv(0.10, [0, 500, 1500, 4000, 10000]) == pytest.approx(11529.60863329007, rel=1e-12)
    assert npv(0.065, [0, 5000]) == pytest.approx(4694.83568075117, rel=1e-12)


def test_npv_vs_spreadsheet_npv():
    # Spreadsheet NPV(r, v1..vn) discounts v1 by one period (Microsoft VBA "NPV function"
    # remarks: a first cash flow at the beginning of the first period "must be added to the value
    # returned by NPV"), so  NPV(r, C0..Cn) = npv(r, C) / (1 + r)  and  npv = NPV(r, C1..Cn) + C0.
    #
    # Claris FileMaker Pro help, NPV (https://help.claris.com/ja/pro-help/content/npv.html):
    # NPV({-2000, 600, 300, 500, 700, 400}; .05) = 156.91277445...  (digits cut off, so the
    # true value lies in [156.91277445, 156.91277446)).
    flows = [-2000, 600, 300, 500, 700, 400]
    assert 0 <= npv(0.05, flows) / 1.05 - 156.91277445 < 1e-8
    # Same page: NPV({-5000, 10000, 0, 10000, 10000}; .10) = 16758.35604870...
    flows = [-5000, 10000, 0, 10000, 10000]
    assert 0 <= npv(0.10, flows) / 1.10 - 16758.35604870 < 1e-8
    # "=NPV(r, C1:Cn) + C0": NPV(0.10, 10000, 0, 10000, 10000) by hand
    #   = 9090.90909 + 0 + 7513.14801 + 6830.13455 = 23434.19165; + C0 (-5000) = 18434.19165.
    assert npv(0.10, flows) == pytest.approx(18434.19165, abs=1e-5)

    # MESCIUS SPREAD formula reference, NPV
    # (https://docs.mescius.jp/help/spread-aspnet-formula-10/FunctionNPV.html):
    # NPV(6.5%, -10000, 3000, 3400, 7700) = $2,055.38.
    assert npv(0.065, [0, -10000, 3000, 3400, 7700]) == pytest.approx(2055.38, abs=0.005)

    # docs.rs, crate "financial" 1.1.2, fn npv: npv(0.1, [-1000, 500, 500, 500]) =
    # 221.29635953828267 (spreadsheet convention) = 243.4260 / 1.1 from the hand calculation.
    assert npv(0.10, [-1000, 500, 500, 500]) / 1.1 == pytest.approx(221.29635953828267, rel=1e-12)


@pytest.mark.parametrize("rate", [-1.0, -1.5, math.nan, math.inf])
def test_npv_rejects_rate_at_or_below_minus_one(rate):
    with pytest.raises(ValueError, match="rate"):
        npv(rate, [-1, 2])


def test_npv_rejects_bad_flows():
    with pytest.raises(ValueError):
        npv(0.1, [])
    with pytest.raises(ValueError):
        npv(0.1, [-1, math.nan])


# --------------------------------------------------------------------------- IRR


def test_irr_excel_help_example():
    # Excel IRR help (see EXCEL_IRR_FLOWS): =IRR(A2:A7) -> 8.7 %, =IRR(A2:A6) -> -2.1 %,
    # =IRR(A2:A4,-10%) -> -44.4 % (results printed to 0.1 %).
    assert irr(EXCEL_IRR_FLOWS) == pytest.approx(0.087, abs=5e-4)
    assert irr(EXCEL_IRR_FLOWS[:5]) == pytest.approx(-0.021, abs=5e-4)
    assert irr(EXCEL_IRR_FLOWS[:3]) == pytest.approx(-0.444, abs=5e-4)
    # Same page: NPV at the IRR is zero to the solver's precision.
    assert npv(irr(EXCEL_IRR_FLOWS), EXCEL_IRR_FLOWS) == pytest.approx(0.0, abs=1e-6)


def test_irr_other_published_examples():
    # ValQ docs, IRR (https://docs.valq.com/model/formula-functions/finance-functions/irr):
    # -10,000 then 4,000 for four years -> 21.86 %.
    assert irr([-10000, 4000, 4000, 4000, 4000]) == pytest.approx(0.2186, abs=5e-5)
    # TipsMake, "IRR function in Excel" (https://tipsmake.com/irr-function-in-excel-usage-and-examples):
    # =IRR({-4000,1200,1410,1875,1050},10%) -> 14.3 %.
    assert irr([-4000, 1200, 1410, 1875, 1050]) == pytest.approx(0.143, abs=5e-4)
    # Greytrout spreadsheet user guide, IRR (http://www.greytrout.com/manuals/SS_user_guide/node132.html):
    # IRR(0, -700, 750, 900, 600, 850) = 1.0462142 (an IRR above 100 %).
    assert irr([-700, 750, 900, 600, 850]) == pytest.approx(1.0462142, abs=5e-8)


def test_irr_above_100_percent_exact():
    # Hand: -100 + 200.4 / (1 + r) = 0  ->  1 + r = 2.004  ->  r = 1.004 (100.4 %).
    assert irr([-100, 200.4]) == pytest.approx(1.004, abs=1e-12)
    # Hand: -100 + 100 * 2.004**4 / (1 + r)**4 = 0  ->  (1 + r) = 2.004.
    assert irr([-100, 0, 0, 0, 100 * 2.004**4]) == pytest.approx(1.004, abs=1e-12)
    # Leading/trailing zeros only shift time: -100 at year 1, 200.4 at year 2 -> same r.
    assert irr([0, -100, 200.4, 0, 0]) == pytest.approx(1.004, abs=1e-12)


def test_irr_above_100_percent_annuity():
    # Constructed: 100 a year for 5 years, priced at r = 1.004:
    # P = 100 * sum_{t=1..5} 2.004**-t, so NPV(1.004) = -P + P = 0 and, with one sign change,
    # 1.004 is the only IRR.
    price = 100 * sum(2.004**-t for t in range(1, 6))
    assert irr([-price, 100, 100, 100, 100, 100]) == pytest.approx(1.004, abs=1e-12)


def test_irr_no_sign_change_is_none():
    # Flows all of one sign (zeros ignored): no rate makes NPV zero.
    assert irr([-100, -50, 0]) is None
    assert irr([100, 50]) is None
    assert irr([0, 0, 0]) is None
    assert irr([-100]) is None
    assert irr_all([100, 0, 50]) == []


def test_irr_no_real_root_is_none():
    # Flows [1, -3, 3] change sign twice, but with x = 1/(1+r):
    # NPV = 1 - 3x + 3x**2, discriminant = 9 - 4*3*1 = -3 < 0 -> no real root;
    # the NPV is always > 0 (minimum 1 - 9/12 = 0.25 at x = 1/2, i.e. r = 100 %).
    assert irr([1, -3, 3]) is None
    assert irr_all([1, -3, 3]) == []
    assert npv(1.0, [1, -3, 3]) == pytest.approx(0.25, rel=1e-15)


def test_irr_two_real_roots():
    # x = 1/(1+r): -1 + 5x - 6x**2 = -(2x - 1)(3x - 1) = 0 -> x = 1/2 or 1/3 -> r = 1 or r = 2.
    assert irr([-1, 5, -6]) is None
    assert irr_all([-1, 5, -6]) == pytest.approx([1.0, 2.0], abs=1e-12)


def test_irr_three_sign_changes_single_root():
    # [-1, 3, -3, 2] changes sign three times, but -1 + 3x - 3x**2 + 2x**3 = (2x - 1)(x**2 - x + 1)
    # and x**2 - x + 1 has discriminant 1 - 4 = -3 < 0: the only root is x = 1/2, r = 100 %.
    # Check: -1 + 3/2 - 3/4 + 2/8 = 0.
    assert irr([-1, 3, -3, 2]) == pytest.approx(1.0, abs=1e-12)
    assert irr_all([-1, 3, -3, 2]) == pytest.approx([1.0], abs=1e-12)


def test_irr_multiple_greytrout():
    # Greytrout spreadsheet user guide (node132): IRR(0, -80, 90, 67, 72, -90) = -0.32606171.
    # A guess-driven solver returns one root; the flows change sign twice and have a second IRR,
    # so irr() declines (None) and irr_all() lists both. The second root is checked by NPV = 0.
    flows = [-80, 90, 67, 72, -90]
    assert irr(flows) is None
    rates = irr_all(flows)
    assert len(rates) == 2
    assert rates[0] == pytest.approx(-0.32606171, abs=5e-9)
    assert rates[1] > 0
    assert npv(rates[1], flows) == pytest.approx(0.0, abs=1e-9)


def test_irr_numpy_financial_issue_28():
    # numpy-financial issue #28 (https://github.com/numpy/numpy-financial/issues/28):
    # [-50, -100, 600, 300, -100]: Excel gives 185 %, NumPy -76 %; the maintainer notes both are
    # solutions. So: two IRRs -> irr() is None. (Percentages quoted cut to whole percent.)
    flows = [-50, -100, 600, 300, -100]
    assert irr(flows) is None
    rates = irr_all(flows)
    assert len(rates) == 2
    assert -0.77 < rates[0] <= -0.76
    assert 1.85 <= rates[1] < 1.86
    for r in rates:
        assert npv(r, flows) == pytest.approx(0.0, abs=1e-9)


def test_irr_numpy_financial_issue_44():
    # numpy-financial issue #44: numpy-financial 1.0.0 returned -0.9997912604283283 for these
    # flows; the fixed version returns 1.004269848720547 (+100.4 %). The final -1 makes a second
    # sign change and both values are genuine roots, so irr() reports "multiple" (None) and
    # irr_all() returns both, sorted.
    assert irr(NPF_ISSUE_44) is None
    assert irr_all(NPF_ISSUE_44) == pytest.approx(
        [-0.9997912604283283, 1.004269848720547], rel=1e-9
    )
    # Without the final -1 there is one sign change and a single IRR above 100 %.
    single = irr(NPF_ISSUE_44[:-1])
    assert single is not None and single > 1.0
    assert npv(single, NPF_ISSUE_44[:-1]) == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- discounted payback


def test_discounted_payback_interpolated():
    # Hand, 10 %: 440/1.1 = 400, 484/1.21 = 400, 532.4/1.331 = 400.
    # Cumulative: -1000, -600, -200, +200 -> crosses in year 3: 2 + 200/400 = 2.5 yr.
    assert discounted_payback(0.10, [-1000, 440, 484, 532.4]) == pytest.approx(2.5, abs=1e-12)


def test_discounted_payback_at_zero_rate_equals_simple_payback():
    # Hand: cumulative -400, -240, -80, +80 -> 2 + 80/160 = 2.5 yr = (500 - 100) / 160.
    flows = cash_flows(500e6, 160e6, 3, grant=100e6)
    assert discounted_payback(0.0, flows) == pytest.approx(2.5, abs=1e-12)


def test_discounted_payback_exact_break_even_in_last_year():
    # Hand, 10 %: 550/1.1 = 500, 605/1.21 = 500 -> cumulative -1000, -500, 0 -> 2.0 yr.
    assert discounted_payback(0.10, [-1000, 550, 605]) == pytest.approx(2.0, abs=1e-12)


def test_discounted_payback_never_and_immediate():
    # Hand: 100/1.1 + 100/1.21 = 173.6 < 1000 -> never within the flows.
    assert discounted_payback(0.10, [-1000, 100, 100]) == math.inf
    # Nothing to repay at year 0 -> 0 yr.
    assert discounted_payback(0.10, [0, 10]) == 0.0


# --------------------------------------------------------------------------- buckets


@pytest.mark.parametrize(
    ("years", "bucket"),
    [
        (0.0, "<1"),
        (0.999, "<1"),
        (1.0, "1-2"),
        (1.999, "1-2"),
        (2.0, "2-3"),
        (3.0, "2-3"),
        (3.0001, ">3"),
        (25.0, ">3"),
        (math.inf, "never"),
    ],
)
def test_payback_bucket_boundaries(years, bucket):
    # Convention: [0,1) "<1", [1,2) "1-2", [2,3] "2-3", (3,inf) ">3", inf "never".
    assert payback_bucket(years) == bucket


@pytest.mark.parametrize("years", [-0.5, math.nan])
def test_payback_bucket_rejects_invalid(years):
    with pytest.raises(ValueError):
        payback_bucket(years)


# --------------------------------------------------------------------------- input errors


@pytest.mark.parametrize("lifetime", [0, -1, 2.5, math.nan, math.inf, True, "3", None])
def test_cash_flows_rejects_bad_lifetime(lifetime):
    with pytest.raises(ValueError, match="lifetime"):
        cash_flows(100.0, 40.0, lifetime)


def test_cash_flows_accepts_numpy_integer_lifetime():
    assert len(cash_flows(100.0, 40.0, np.int64(4))) == 5


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"investment": -1.0}, "investment"),
        ({"grant": 150.0}, "grant"),
        ({"grant": -1.0}, "grant"),
        ({"annual_net_savings": math.nan}, "annual_net_savings"),
        ({"investment": math.inf}, "investment"),
        ({"escalation": -1.0}, "escalation"),
        ({"salvage": math.nan}, "salvage"),
    ],
)
def test_cash_flows_rejects_bad_values(kwargs, word):
    args = {"investment": 100.0, "annual_net_savings": 40.0, "lifetime": 3} | kwargs
    with pytest.raises(ValueError, match=word):
        cash_flows(**args)


def test_simple_payback_rejects_grant_above_investment():
    with pytest.raises(ValueError, match="grant"):
        simple_payback(100e6, 50e6, grant=120e6)


@pytest.mark.parametrize("rate", [-1.0, -2.0])
def test_rate_at_or_below_minus_one_rejected(rate):
    with pytest.raises(ValueError, match="rate"):
        discounted_payback(rate, [-1, 2])
    with pytest.raises(ValueError, match="rate"):
        annuity_factor(rate, 3)
