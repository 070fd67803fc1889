"""Financial appraisal of cleaner-production options.

Pure functions on scalar floats and 1-D cash-flow arrays (numpy only). Amounts
are in Vietnamese dong [VND]; rates are fractions per year [1/yr], e.g. 0.10 for
10 %. Year 0 is "now" (the investment date); every later flow is booked at the
end of its year. Invalid input raises :class:`cpa.errors.CalculationError`, a
subclass of :class:`ValueError`.
"""

from __future__ import annotations

import math

import numpy as np

from cpa.errors import CalculationError

__all__ = [
    "annuity_factor",
    "cash_flows",
    "discounted_payback",
    "irr",
    "irr_all",
    "npv",
    "payback_bucket",
    "simple_payback",
]


def _finite(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise CalculationError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise CalculationError(f"{name} must be a finite number, got {value!r}")
    return value


def _rate(rate):
    rate = _finite("rate", rate)
    if rate <= -1.0:
        raise CalculationError(f"rate must be greater than -1 (i.e. > -100 %), got {rate!r}")
    return rate


def _flows(flows):
    arr = np.asarray(flows, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise CalculationError("flows must be a non-empty 1-D sequence of numbers [VND]")
    if not np.all(np.isfinite(arr)):
        raise CalculationError("flows must contain only finite numbers")
    return arr


def _investment(investment, grant):
    investment = _finite("investment", investment)
    grant = _finite("grant", grant)
    if investment < 0:
        raise CalculationError(f"investment must be >= 0, got {investment!r}")
    if grant < 0:
        raise CalculationError(f"grant must be >= 0, got {grant!r}")
    if grant > investment:
        raise CalculationError(f"grant ({grant!r}) must not exceed investment ({investment!r})")
    return investment - grant


def cash_flows(investment, annual_net_savings, lifetime, grant=0.0, escalation=0.0, salvage=0.0):
    r"""Yearly net cash flows of an option, year 0 to ``lifetime``.

    Parameters
    ----------
    investment : float
        Capital cost paid at year 0 [VND]. Must be >= 0.
    annual_net_savings : float
        Net savings (savings minus added operating cost) in year 1 [VND/yr].
        May be negative.
    lifetime : int
        Economic lifetime [yr]; a positive whole number (``3`` or ``3.0``).
    grant : float, default 0
        Subsidy received at year 0 [VND]; ``0 <= grant <= investment``.
    escalation : float, default 0
        Yearly growth of the net savings [1/yr]; must be > -1.
    salvage : float, default 0
        Residual value added in the last year [VND]; negative for a
        decommissioning cost.

    Returns
    -------
    numpy.ndarray
        ``lifetime + 1`` flows [VND]; index ``t`` is year ``t``.

    Raises
    ------
    CalculationError
        (a :class:`ValueError`) Non-finite input, negative investment or grant,
        grant > investment, escalation <= -1, or a lifetime that is not a
        positive whole number.

    Notes
    -----
    .. math::

        C_0 = -(I - G), \qquad C_t = S\,(1 + e)^{t-1} \ (1 \le t \le n), \qquad
        C_n \mathrel{+}= V
    """
    net_investment = _investment(investment, grant)
    savings = _finite("annual_net_savings", annual_net_savings)
    escalation = _finite("escalation", escalation)
    salvage = _finite("salvage", salvage)
    if escalation <= -1.0:
        raise CalculationError(f"escalation must be greater than -1, got {escalation!r}")
    whole = (
        isinstance(lifetime, (int, float, np.integer, np.floating))
        and not isinstance(lifetime, bool)
        and math.isfinite(lifetime)
        and float(lifetime).is_integer()
    )
    if not whole or lifetime < 1:
        raise CalculationError(
            f"lifetime must be a positive whole number of years, got {lifetime!r}"
        )
    n = int(lifetime)
    flows = np.empty(n + 1)
    flows[0] = -net_investment
    flows[1:] = savings * (1.0 + escalation) ** np.arange(n)
    flows[-1] += salvage
    return flows


def simple_payback(investment, annual_net_savings, grant=0.0):
    r"""Simple (undiscounted) payback period.

    Parameters
    ----------
    investment : float
        Capital cost [VND], >= 0.
    annual_net_savings : float
        Constant net savings [VND/yr].
    grant : float, default 0
        Subsidy [VND], ``0 <= grant <= investment``.

    Returns
    -------
    float
        :math:`(I - G) / S` [yr]; ``math.inf`` ("never") when ``S <= 0``;
        ``0.0`` when the net investment is 0 and ``S > 0``.
    """
    net_investment = _investment(investment, grant)
    savings = _finite("annual_net_savings", annual_net_savings)
    if savings <= 0:
        return math.inf
    return net_investment / savings


def npv(rate, flows):
    r"""Net present value with the first flow at year 0 (not discounted).

    Parameters
    ----------
    rate : float
        Discount rate [1/yr]; must be > -1.
    flows : array_like
        Cash flows [VND]; ``flows[t]`` occurs ``t`` years from now.

    Returns
    -------
    float
        NPV [VND].

    Notes
    -----
    .. math:: \mathrm{NPV} = \sum_{t=0}^{n} \frac{C_t}{(1 + r)^t}

    Spreadsheet ``NPV()`` functions (Microsoft Excel, Google Sheets) treat
    their first value as occurring one period from now, i.e. they discount
    every value, ``C_0`` included, by one extra period [1]_. The spreadsheet
    equivalent of this function is therefore ``=NPV(r, C1:Cn) + C0``, and
    ``=NPV(r, C0:Cn)`` equals ``npv(r, flows) / (1 + r)``.

    References
    ----------
    .. [1] Microsoft, "NPV function" (VBA language reference), remarks: "If
       your first cash flow occurs at the beginning of the first period, the
       first value must be added to the value returned by NPV".
       https://learn.microsoft.com/office/vba/language/reference/user-interface-help/npv-function
    """
    rate = _rate(rate)
    arr = _flows(flows)
    factors = (1.0 + rate) ** -np.arange(arr.size, dtype=float)
    return float(np.sum(arr * factors))


def _trim(arr):
    """Drop leading and trailing zero flows (they do not change the IRRs)."""
    nz = np.flatnonzero(arr)
    return arr[nz[0] : nz[-1] + 1] if nz.size else arr[:0]


def _sign_changes(arr):
    signs = np.sign(arr[arr != 0])
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def _scaled_npv(c, u):
    """NPV at r = exp(u) - 1 times a positive factor, free of overflow."""
    t = np.arange(c.size, dtype=float)
    if u >= 0:  # x = 1/(1+r) <= 1: sum c_t x^t
        return float(np.sum(c * math.exp(-u) ** t))
    return float(np.sum(c * math.exp(u) ** (t[-1] - t)))  # x^-n * sum c_t x^t


def _irr_bisect(c):
    """Unique IRR of trimmed flows with one sign change, by bisection on ln(1+r)."""
    s_hi, s_lo = np.sign(c[0]), np.sign(c[-1])  # signs as r -> +inf and r -> -1
    lo, hi = -1.0, 1.0  # bracket in u = ln(1 + r), widened until the signs differ
    for u in (lo, hi):
        if _scaled_npv(c, u) == 0:
            return float(math.expm1(u))
    while np.sign(_scaled_npv(c, lo)) != s_lo and lo > -2048:
        lo *= 2.0  # at u = -2048 the scaled NPV is exactly c[-1]
    while np.sign(_scaled_npv(c, hi)) != s_hi and hi < 2048:
        hi *= 2.0  # at u = 2048 the scaled NPV is exactly c[0]
    mid = 0.5 * (lo + hi)
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        f = _scaled_npv(c, mid)
        if f == 0 or hi - lo <= 1e-15 * max(1.0, abs(mid)):
            break
        if np.sign(f) == s_lo:
            lo = mid
        else:
            hi = mid
    return float(math.expm1(mid))


def irr_all(flows):
    r"""All real internal rates of return greater than -1, sorted ascending.

    Parameters
    ----------
    flows : array_like
        Cash flows [VND], ``flows[0]`` at year 0.

    Returns
    -------
    list of float
        Every rate ``r > -1`` [1/yr] with ``npv(r, flows) == 0``; empty when
        none exists.

    Notes
    -----
    With :math:`x = 1/(1+r)` the NPV is the polynomial
    :math:`P(x) = \sum_t C_t x^t` and rates ``r > -1`` map to ``x > 0``. By
    Descartes' rule of signs the number of positive roots equals the number of
    sign changes of the (non-zero) flows minus an even number. One sign change
    gives exactly one IRR, found by bisection on :math:`\ln(1+r)` (no initial
    guess; relative tolerance about 1e-15). Otherwise the roots of ``P`` are
    taken from :func:`numpy.roots` (eigenvalues of the companion matrix);
    roots with a relative imaginary part above 1e-9 are discarded, so a
    double root where the NPV only touches zero may be missed.
    """
    c = _trim(_flows(flows))
    changes = _sign_changes(c)
    if changes == 0:
        return []
    if changes == 1:
        return [_irr_bisect(c)]
    roots = np.roots(c[::-1])
    real = roots[np.abs(roots.imag) <= 1e-9 * np.abs(roots)].real
    rates = sorted(1.0 / x - 1.0 for x in real if x > 0)
    unique = []
    for r in rates:
        if not unique or abs(r - unique[-1]) > 1e-9 * max(1.0, abs(r)):
            unique.append(float(r))
    return unique


def irr(flows):
    r"""Internal rate of return, or ``None`` when it is not unique or does not exist.

    Parameters
    ----------
    flows : array_like
        Cash flows [VND], ``flows[0]`` at year 0.

    Returns
    -------
    float or None
        The IRR [1/yr]. ``None`` when the flows never change sign (no rate
        exists), when no real root exists, or when several real IRRs exist (an
        IRR is then meaningless: compare options by NPV instead).

    Notes
    -----
    Solves :math:`\sum_t C_t (1+r)^{-t} = 0` for ``r > -1``; see
    :func:`irr_all`. Unlike an iterative solver started from a guess (the
    spreadsheet ``IRR()``), the result does not depend on a starting value.
    Note that a small negative flow at the end (e.g. a disposal cost) adds a
    second sign change and usually a second root close to -100 %; such flows
    are then reported as having several IRRs (``None``).
    """
    rates = irr_all(flows)
    return rates[0] if len(rates) == 1 else None


def discounted_payback(rate, flows):
    r"""Discounted payback period with linear interpolation inside the year.

    Parameters
    ----------
    rate : float
        Discount rate [1/yr]; must be > -1.
    flows : array_like
        Cash flows [VND], ``flows[0]`` at year 0.

    Returns
    -------
    float
        First time [yr] at which the cumulative discounted cash flow
        :math:`S_k = \sum_{t \le k} C_t (1+r)^{-t}` reaches >= 0: ``0.0`` if
        :math:`S_0 \ge 0`, otherwise :math:`(k-1) - S_{k-1} / (S_k - S_{k-1})`
        for the first ``k`` with :math:`S_k \ge 0`; ``math.inf`` if that never
        happens within the flows. Later dips below zero are ignored. A sum
        within 1e-12 of the total absolute discounted flow counts as zero, so
        a project that breaks even exactly in its last year is not "never".
    """
    rate = _rate(rate)
    arr = _flows(flows)
    disc = arr * (1.0 + rate) ** -np.arange(arr.size, dtype=float)
    cum = np.cumsum(disc)
    reached = cum >= -1e-12 * np.sum(np.abs(disc))  # >= 0 up to rounding
    if reached[0]:
        return 0.0
    hits = np.flatnonzero(reached)
    if hits.size == 0:
        return math.inf
    k = int(hits[0])
    return min(float(k), float((k - 1) - cum[k - 1] / disc[k]))


def payback_bucket(years):
    """Classify a payback period [yr] for reporting.

    Parameters
    ----------
    years : float
        Payback period [yr], >= 0; ``math.inf`` means "never".

    Returns
    -------
    str
        ``"<1"`` for [0, 1), ``"1-2"`` for [1, 2), ``"2-3"`` for [2, 3] (3 years
        itself counts as "2-3"), ``">3"`` for (3, inf) and ``"never"`` for inf.
    """
    years = float(years)
    if math.isnan(years) or years < 0:
        raise CalculationError(f"payback years must be >= 0 or inf, got {years!r}")
    if math.isinf(years):
        return "never"
    if years < 1:
        return "<1"
    if years < 2:
        return "1-2"
    if years <= 3:
        return "2-3"
    return ">3"


def annuity_factor(rate, years):
    r"""Present value of 1 [VND/yr] received at the end of each of ``years`` years.

    Parameters
    ----------
    rate : float
        Discount rate [1/yr]; must be > -1.
    years : float
        Number of years [yr], >= 0.

    Returns
    -------
    float
        :math:`(1 - (1+r)^{-n}) / r` [yr], or ``n`` when ``r == 0``.
    """
    rate = _rate(rate)
    years = _finite("years", years)
    if years < 0:
        raise CalculationError(f"years must be >= 0, got {years!r}")
    if rate == 0:
        return years
    return float(-math.expm1(-years * math.log1p(rate)) / rate)
