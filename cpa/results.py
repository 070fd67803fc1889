"""All results of one facility, computed once: the bundle that charts, booklets, exports and the
programme roll-up read.

:func:`facility_results` is pure (tables in, tables out). Charts and booklets must only *read*
this bundle; they never compute (a test holds it).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FacilityResults:
    """Results of one worksheet.

    Attributes
    ----------
    ws : cpa.worksheet.Worksheet
        The worksheet (profile, team, steps, links, streams... as tables).
    periods, flows, balances, indicators, waste_costs, factors : pandas.DataFrame
        See :mod:`cpa.quantities`, :mod:`cpa.balance`, :mod:`cpa.indicators`, :mod:`cpa.costs`.
    options, savings, compare : pandas.DataFrame or None
        From :mod:`cpa.options` and :mod:`cpa.compare` (None until the worksheet has options /
        monitoring periods).
    warnings : list of cpa.errors.Problem
    """

    ws: object
    periods: object
    flows: object
    balances: object
    indicators: object
    waste_costs: object
    factors: object
    options: object = None
    savings: object = None
    combined: object = None
    compare: object = None
    warnings: list = field(default_factory=list)

    def _period_ids(self) -> tuple:
        """(baseline id, monitoring ids), looked up once per ``periods`` table (charts and
        booklets ask for them hundreds of times)."""
        p = self.periods
        cached = self.__dict__.get("_period_cache")
        if cached is None or cached[0] is not p:
            ids = (p.loc[p["kind"] == "baseline", "id"].iloc[0], p.loc[p["kind"] == "monitoring", "id"].tolist())
            cached = self.__dict__["_period_cache"] = (p, ids)
        return cached[1]

    @property
    def baseline(self) -> str:
        return self._period_ids()[0]

    @property
    def monitoring(self) -> list[str]:
        return list(self._period_ids()[1])


def facility_results(ws, options: bool = True) -> FacilityResults:
    """Compute every result of a (valid) worksheet once.

    With ``options=False`` only the balances, indicators and costs of waste are computed (what
    ``cpa balance`` shows); an option that cannot be valued then does not stop them.
    """
    from cpa.balance import balances, closure_warnings
    from cpa.costs import waste_costs
    from cpa.indicators import factors_used, indicators
    from cpa.quantities import Converter, period_table, resolve_flows

    conv = Converter(ws)
    flows = resolve_flows(ws, conv)
    bal = balances(ws, flows=flows)
    res = FacilityResults(
        ws=ws, periods=period_table(ws), flows=flows, balances=bal,
        indicators=indicators(ws, flows=flows, conv=conv),
        waste_costs=waste_costs(ws, flows=flows, conv=conv),
        factors=None,
        warnings=closure_warnings(ws, bal) + list(ws.warnings),
    )
    if options:
        _add_options(ws, res, conv)
    res.factors = factors_used(ws, conv)
    return res


def _add_options(ws, res, conv=None) -> None:
    """Options, savings and before/after, where the worksheet has options / monitoring periods."""
    from cpa.compare import compare
    from cpa.options import Context, combined_savings, option_table, savings_table

    ctx = Context(ws, conv)  # shared by the savings, the register, the totals and before/after
    if len(ws.tables["options"]):
        res.savings = savings_table(ws, ctx)
        res.options = option_table(ws, ctx, savings=res.savings)
        res.combined = combined_savings(ws, savings=res.savings, ctx=ctx)
    if res.monitoring:
        res.compare = compare(ws, ctx, indicators_table=res.indicators)
