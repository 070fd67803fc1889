"""``cpa balance``: balances, indicators and the cost of waste of one worksheet."""

from __future__ import annotations

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
JSON_FORMAT = "cpa.balance/1"


def balance_results(ws, period=None, layer=None) -> dict:
    """The tables `cpa balance` reports, from :func:`cpa.results.facility_results` (no I/O)."""
    from cpa.results import facility_results

    res = facility_results(ws, options=False)
    bal, ind, cost = res.balances, res.indicators, res.waste_costs
    if period:
        bal, ind, cost = (t[t["period"] == period] for t in (bal, ind, cost))
    if layer:
        bal = bal[bal["layer"] == layer]
    return {"periods": res.periods, "balances": bal.reset_index(drop=True), "indicators": ind,
            "waste_costs": cost, "factors": res.factors}


@click.command("balance", context_settings=CONTEXT)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--period", help="Only this period id.")
@click.option("--layer", type=click.Choice(["mass", "water", "energy"]), help="Only this balance layer.")
@click.option("--lang", type=click.Choice(["vi", "en"]), default="en", show_default=True,
              help="Language of labels and number format (vi: 1.234,5).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (see docs/balances.md).")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False), help="Write one CSV per table into DIR.")
@click.option("--xlsx", "xlsx_path", type=click.Path(dir_okay=False), help="Write the tables to a workbook.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
def balance_cmd(path, period, layer, lang, as_json, csv_dir, xlsx_path, force):
    """Balances, indicators and the cost of waste of the worksheet PATH.

    Shows, per period, the mass, water and energy balance of each process step and of the whole
    facility (inputs, outputs, closure gap and unknown loss), the specific consumption per unit
    of the reference product, energy in GJ, regulatory TOE and physical toe, CO2, and the cost of
    each waste stream ranked (Pareto).
    """
    from cpa.balance import closure_warnings
    from cpa.export import dumps, records, write_csv_dir, write_xlsx
    from cpa.worksheet import load

    ws = load(path)
    if period and period not in set(ws.tables["periods"]["id"]):
        raise click.UsageError(f"no period {period!r} in {path}; periods: "
                               + ", ".join(ws.tables["periods"]["id"]))
    res = balance_results(ws, period, layer)
    warnings = closure_warnings(ws, res["balances"]) + ws.warnings
    tables = {k: v for k, v in res.items()}
    if csv_dir:
        for p in write_csv_dir(csv_dir, tables, force=force):
            click.echo(f"wrote {p}", err=True)
    if xlsx_path:
        write_xlsx(xlsx_path, tables, force=force)
        click.echo(f"wrote {xlsx_path}", err=True)
    if as_json:
        doc = {
            "format": JSON_FORMAT,
            "facility": {"id": ws.id, "name": ws.facility.get("name"), "name_en": ws.facility.get("name_en"),
                         "sector": ws.facility.get("sector"), "illustrative": ws.illustrative,
                         "reference_product": ws.facility.get("reference_product")},
            "periods": records(res["periods"]),
            "balances": records(res["balances"]),
            "indicators": records(res["indicators"]),
            "waste_costs": records(res["waste_costs"]),
            "factors": records(res["factors"]),
            "warnings": [p.as_dict() for p in warnings],
        }
        click.echo(dumps(doc))
        return
    if csv_dir or xlsx_path:
        return
    _print(ws, res, warnings, lang)


def _print(ws, res, warnings, lang):
    from rich.console import Console
    from rich.table import Table

    from cpa.numbers import format_number, format_percent

    vi = lang == "vi"
    con = Console(soft_wrap=False, width=140)
    name = ws.facility.get("name") if vi else (ws.facility.get("name_en") or ws.facility.get("name"))
    con.print(f"[bold]{name}[/bold]" + (" — [italic]minh họa[/italic]" if vi and ws.illustrative else
                                        " — [italic]illustrative[/italic]" if ws.illustrative else ""))
    fmt = lambda x, d=1: format_number(x, lang, d)  # noqa: E731
    bal = res["balances"]
    t = Table(title="Cân bằng" if vi else "Balances")
    for h in (["giai đoạn", "lớp", "nút", "vào", "ra", "chênh lệch", "%", "ước tính", "trạng thái"] if vi else
              ["period", "layer", "node", "inputs", "outputs", "gap", "gap %", "estimated", "status"]):
        t.add_column(h, justify="right" if h in ("inputs", "outputs", "gap", "gap %", "vào", "ra", "chênh lệch", "%", "estimated", "ước tính") else "left")
    for r in bal.to_dict("records"):
        node = r["node_name_vi"] if vi else r["node_name_en"]
        t.add_row(r["period"], r["layer"], node, f"{fmt(r['inputs'])} {r['unit']}", f"{fmt(r['outputs'])} {r['unit']}",
                  fmt(r["gap"]), fmt(r["gap_pct"]), format_percent(r["estimated_share"], lang, 0), r["status"])
    con.print(t)
    ind = res["indicators"]
    t = Table(title="Chỉ số" if vi else "Indicators")
    for h in (["giai đoạn", "chỉ số", "dòng", "tổng", "đơn vị", "trên sản phẩm", "đơn vị"] if vi else
              ["period", "indicator", "stream", "total", "unit", "per product", "unit"]):
        t.add_column(h)
    for r in ind.to_dict("records"):
        t.add_row(r["period"], r["indicator"], r["stream"] or "", fmt(r["value"], 2), r["unit"],
                  fmt(r["specific"], 3) if r["specific"] == r["specific"] else "—", r["specific_unit"])
    con.print(t)
    cost = res["waste_costs"]
    t = Table(title="Chi phí dòng thải (VND)" if vi else "Cost of waste streams (VND)")
    for h in (["giai đoạn", "#", "dòng thải", "lượng", "vật liệu", "năng lượng", "xử lý+thải bỏ", "tổng", "tổng/năm", "lũy kế"] if vi else
              ["period", "#", "waste stream", "quantity", "material", "energy", "treatment+disposal", "total", "total/yr", "cum. share"]):
        t.add_column(h)
    for r in cost.to_dict("records"):
        t.add_row(r["period"], str(r["rank"]), (r["name_vi"] if vi else r["name_en"]) or r["stream"],
                  f"{fmt(r['quantity'])} {r['unit']}", fmt(r["material_value_vnd"], 0), fmt(r["energy_value_vnd"], 0),
                  fmt(r["treatment_vnd"] + r["disposal_vnd"] + r["fee_vnd"], 0),
                  fmt(r["total_vnd"], 0) + ("" if r["complete"] else " ≥"), fmt(r["annual_total_vnd"], 0),
                  format_percent(r["cumulative_share"], lang, 0))
    con.print(t)
    for p in warnings:
        click.echo(str(p), err=True)
