"""Material, water and energy balances per period and process step (DESIRE task 5).

Each balance is taken over a *node*: a process step, or the whole facility (the system boundary,
node ``facility``). For a node and a layer:

.. math::

    \\text{gap} = \\sum \\text{inputs} - \\sum \\text{outputs} - \\Delta\\text{stock}

    \\text{gap\\%} = 100 \\cdot \\text{gap} / \\sum \\text{inputs}

A flow enters step S when its ``to`` is S and leaves it when its ``from`` is S; it enters the
facility when its ``from`` is empty and leaves it when its ``to`` is empty. A positive gap is the
unaccounted ("unknown") loss; a negative gap means more leaves than was recorded entering. A gap
above the layer's tolerance (facility fields ``tolerance_mass``, ``tolerance_water``,
``tolerance_energy``; default 5 %) is a warning naming the period, node and layer.

Layers (see :mod:`cpa.quantities` for the conversions): ``mass`` [t], ``water`` [m³] and
``energy`` [GJ]. A node whose energy inputs are recorded but none of its energy outputs has no
energy balance to close (its status says so) and raises no warning: most assessments record
energy use, not every heat loss.

References
----------
.. [1] UNEP/UNIDO, *Cleaner Production Assessment in Industries* (DESIRE), step 2, task 5
   "material and energy balance"; UNEP/COWI, *Cleaner Production Assessment in Dairy
   Processing*, ch. 5.
"""

from __future__ import annotations

from cpa.errors import Problem
from cpa.quantities import ENERGY_KINDS, MASS_KINDS, WATER_KINDS, Converter, resolve_flows

FACILITY = "facility"
LAYERS = {"mass": ("mass_t", "t"), "water": ("water_m3", "m3"), "energy": ("energy_gj", "GJ")}

COLUMNS = ["period", "layer", "node", "node_name_vi", "node_name_en", "unit", "inputs", "outputs",
           "stock_change", "gap", "gap_pct", "unknown_loss", "estimated_share", "n_flows",
           "tolerance_pct", "status"]


def _layer_mask(flows, layer: str, water_in_mass: bool):
    import numpy as np

    col = LAYERS[layer][0]
    has = flows[col].notna().to_numpy()
    kind = flows["kind"].to_numpy(dtype=object)
    if layer == "mass":
        kinds = MASS_KINDS + (WATER_KINDS if water_in_mass else ())
        return has & np.isin(kind, kinds)
    if layer == "water":
        return has
    return has & np.isin(kind, ENERGY_KINDS + ("loss",))


def _tolerance(ws, layer: str) -> float:
    v = ws.facility.get(f"tolerance_{layer}")
    return float(v) if v is not None and v == v else 5.0


def balances(ws, period: str | None = None, layer: str | None = None, flows=None):
    """Balances of every node, layer and period.

    Parameters
    ----------
    ws : cpa.worksheet.Worksheet
    period, layer : str, optional
        Keep only this period id / layer (``mass``, ``water``, ``energy``).
    flows : pandas.DataFrame, optional
        The result of :func:`cpa.quantities.resolve_flows`, when already computed.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`. ``inputs``, ``outputs``, ``stock_change``, ``gap`` and
        ``unknown_loss`` are in ``unit`` (t, m3 or GJ); ``gap_pct`` [%] of inputs;
        ``estimated_share`` [-] the share of the recorded quantities (inputs + outputs) whose
        basis is *estimated*; ``status`` one of ``closes``, ``gap``, ``excess``,
        ``no inputs``, ``no outputs``.
    """
    import numpy as np
    import pandas as pd

    conv = Converter(ws)
    flows = resolve_flows(ws, conv) if flows is None else flows
    water_in_mass = bool(ws.facility.get("water_in_mass_balance"))
    stocks = _stock_changes(ws, conv)
    steps = ws.tables["steps"]
    names_vi = dict(zip(steps["id"], steps["name_vi"], strict=True))
    names_en = dict(zip(steps["id"], steps["name_en"], strict=True))
    names_vi[FACILITY], names_en[FACILITY] = "Toàn cơ sở", "Whole facility"
    order = {s: i for i, s in enumerate(steps["id"].tolist())}
    order[FACILITY] = -1
    frames = []
    for lname, (col, unit) in LAYERS.items():
        if layer and lname != layer:
            continue
        f = flows[_layer_mask(flows, lname, water_in_mass)]
        if period:
            f = f[f["period"] == period]
        if not len(f):
            continue
        est = (f["basis"] == "estimated").to_numpy()
        v = f[col].to_numpy(dtype=float)
        parts = []
        for side, node_col in (("in", "to"), ("out", "from")):
            nodes = f[node_col].to_numpy(dtype=object)
            internal = pd.notna(nodes)
            parts.append(pd.DataFrame({"period": f["period"].to_numpy()[internal], "node": nodes[internal],
                                       "side": side, "value": v[internal], "est": v[internal] * est[internal]}))
            boundary = ~internal
            parts.append(pd.DataFrame({"period": f["period"].to_numpy()[boundary], "node": FACILITY,
                                       "side": "out" if side == "in" else "in",
                                       "value": v[boundary], "est": v[boundary] * est[boundary]}))
        long = pd.concat(parts, ignore_index=True)
        # flows whose 'from' and 'to' are both empty cannot exist (validation), and an internal
        # flow counts once at each step and not at all at the facility boundary.
        g = long.groupby(["period", "node", "side"], sort=False).agg(value=("value", "sum"), est=("est", "sum"),
                                                                      n=("value", "size"))
        wide = g.unstack("side", fill_value=0.0)
        res = pd.DataFrame(index=wide.index)
        res["inputs"] = wide[("value", "in")] if ("value", "in") in wide else 0.0
        res["outputs"] = wide[("value", "out")] if ("value", "out") in wide else 0.0
        est_sum = sum(wide[("est", s)] for s in ("in", "out") if ("est", s) in wide)
        res["n_flows"] = sum(wide[("n", s)] for s in ("in", "out") if ("n", s) in wide).astype(int)
        res = res.reset_index()
        sc = stocks.get(lname)
        if sc is not None and len(sc):
            res = res.merge(sc, on=["period", "node"], how="left")
        else:
            res["stock_change"] = 0.0
        res["stock_change"] = res["stock_change"].fillna(0.0)
        total = res["inputs"] + res["outputs"]
        res["estimated_share"] = np.where(total > 0, np.asarray(est_sum) / total.where(total > 0, 1.0), 0.0)
        res["gap"] = res["inputs"] - res["outputs"] - res["stock_change"]
        with np.errstate(divide="ignore", invalid="ignore"):
            res["gap_pct"] = np.where(res["inputs"] > 0, 100.0 * res["gap"] / res["inputs"], np.nan)
        res["unknown_loss"] = res["gap"].clip(lower=0.0)
        tol = _tolerance(ws, lname)
        res["tolerance_pct"] = tol
        status = np.where(res["inputs"] <= 0, "no inputs",
                          np.where(res["outputs"] <= 0, "no outputs",
                                   np.where(res["gap_pct"].abs() <= tol, "closes",
                                            np.where(res["gap"] > 0, "gap", "excess"))))
        res["status"] = status
        res["layer"] = lname
        res["unit"] = unit
        frames.append(res)
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["node_name_vi"] = [names_vi.get(n) or n for n in out["node"]]
    out["node_name_en"] = [names_en.get(n) or names_vi.get(n) or n for n in out["node"]]
    porder = {p: i for i, p in enumerate(ws.tables["periods"]["id"].tolist())}
    lorder = {name: i for i, name in enumerate(LAYERS)}
    out = out.assign(_p=out["period"].map(porder), _l=out["layer"].map(lorder), _n=out["node"].map(order))
    out = out.sort_values(["_p", "_l", "_n"]).drop(columns=["_p", "_l", "_n"]).reset_index(drop=True)
    return out[COLUMNS]


def _stock_changes(ws, conv) -> dict:
    """Stock changes per layer as (period, node, stock_change) frames; also summed at the facility."""
    import pandas as pd

    st = ws.tables["stocks"]
    out = {}
    if not len(st):
        return out
    rows = {name: [] for name in LAYERS}
    periods = {p: y for p, y in zip(ws.tables["periods"]["id"], ws.tables["periods"]["start"], strict=True)}
    for period, step, stream, change, unit in zip(st["period"], st["step"], st["stream"], st["change"], st["unit"], strict=True):
        c = conv.convert(stream, unit, periods[period].year if period in periods else None)
        kind = conv.kind(stream)
        for name, (col, _) in LAYERS.items():
            mult = getattr(c, col)
            if mult != mult:
                continue
            if name == "mass" and kind not in MASS_KINDS:
                continue
            rows[name] += [(period, step, change * mult), (period, FACILITY, change * mult)]
    for name, r in rows.items():
        if r:
            df = pd.DataFrame(r, columns=["period", "node", "stock_change"])
            out[name] = df.groupby(["period", "node"], as_index=False)["stock_change"].sum()
    return out


def closure_warnings(ws, table=None) -> list[Problem]:
    """A warning for each balance whose gap exceeds its tolerance, naming period, node and layer."""
    from cpa.numbers import format_number

    try:
        b = balances(ws) if table is None else table
    except Exception as exc:  # a factor missing: reported by `cpa balance`, not a crash of check
        from cpa.errors import CPAError

        if isinstance(exc, CPAError):
            return [Problem(ws.path, f"balances cannot be computed: {exc}", severity="warning", code="balance")]
        raise
    out = []
    bad = b["status"].isin(["gap", "excess"]) | ((b["status"] == "no outputs") & (b["layer"] != "energy")) | (
        (b["status"] == "no inputs") & (b["outputs"] > 0))
    for r in b[bad].to_dict("records"):
        where = "the whole facility" if r["node"] == FACILITY else f"step '{r['node']}'"
        what = "unaccounted loss" if r["status"] in ("gap", "no outputs") else "outputs exceed inputs"
        out.append(Problem(
            ws.path,
            f"{r['layer']} balance of {where} in period {r['period']} does not close: {what}",
            found=f"inputs {format_number(r['inputs'])} {r['unit']}, outputs {format_number(r['outputs'])} "
                  f"{r['unit']}, gap {format_number(r['gap'])} {r['unit']}"
                  + (f" ({format_number(r['gap_pct'])} %)" if r["gap_pct"] == r["gap_pct"] else " (no inputs recorded)"),
            expected=f"a gap within ±{r['tolerance_pct']:g} % of inputs",
            fix="measure the missing flows, or record the loss (kind loss) if it is a finding",
            table="flows", severity="warning", code="balance"))
    return out
