"""``cpa programme``: the roll-up across facilities."""

from __future__ import annotations

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
JSON_FORMAT = "cpa.programme/1"


@click.command("programme", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--settings", "settings_path", type=click.Path(exists=True, dir_okay=False),
              help="Programme file (TOML): name, year, target band. Default: programme.toml beside "
                   "the worksheets, if there is one.")
@click.option("--lang", type=click.Choice(["vi", "en"]), default="en", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the roll-up as JSON (see docs/programme.md).")
@click.option("--xlsx", "xlsx_path", type=click.Path(dir_okay=False), help="Write the roll-up to a workbook.")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False), help="Write the roll-up as CSV into DIR.")
@click.option("--allow-invalid", is_flag=True,
              help="Roll up the valid worksheets even if some are invalid (those are reported).")
@click.option("--force", is_flag=True, help="Replace existing output files.")
def programme_cmd(paths, settings_path, lang, as_json, xlsx_path, csv_dir, allow_invalid, force):
    """Roll up the results of many facilities: the programme report.

    One row per facility: sector, production, baseline and latest consumption per unit of product
    with the % change against the target band, options by category and status, investment,
    annual savings (VND, GJ, TOE, tCO2e, water, waste), payback and key energy users; then totals
    and medians. A facility that fails validation stops the roll-up (exit 1) unless
    --allow-invalid is given.
    """
    import os
    import sys

    from cpa.bulk import load_many, programme_table_bulk
    from cpa.cli import _expand
    from cpa.export import dumps, records, write_csv_dir, write_xlsx
    from cpa.programme import load_settings, programme_summary

    files = _expand(paths)
    if settings_path is None:
        for p in paths:
            cand = os.path.join(p if os.path.isdir(p) else os.path.dirname(p), "programme.toml")
            if os.path.exists(cand):
                settings_path = cand
                break
    settings = load_settings(settings_path)
    bulk = load_many(files)
    bad = bulk.invalid
    for path, problems in bad.items():
        errors = [p for p in problems if p.severity == "error"]
        click.echo(f"{path}: INVALID ({len(errors)} errors)", err=True)
        for p in errors:
            click.echo(str(p), err=True)
    if bad and not allow_invalid:
        click.echo(f"{len(bad)} of {len(files)} worksheets are invalid: nothing rolled up "
                   "(fix them, or use --allow-invalid to roll up the others)", err=True)
        sys.exit(1)
    table = programme_table_bulk(bulk, settings)
    summary = programme_summary(table, settings)
    summary["excluded_invalid"] = sorted(bad)
    base_years = sorted({d.year for d in table["baseline_start"]}) if len(table) else []
    if len(base_years) > 1:
        click.echo("note: the facilities' baselines fall in different years ("
                   + ", ".join(map(str, base_years)) + "): each facility's periods are listed in the table",
                   err=True)
    if xlsx_path:
        import pandas as pd

        write_xlsx(xlsx_path, {"facilities": table, "totals": pd.DataFrame([summary["totals"]])}, force=force)
        click.echo(f"wrote {xlsx_path}", err=True)
    if csv_dir:
        for p in write_csv_dir(csv_dir, {"facilities": table}, force=force):
            click.echo(f"wrote {p}", err=True)
    if as_json:
        click.echo(dumps({"format": JSON_FORMAT, "settings": {
            "name": settings.name, "name_vi": settings.name_vi, "year": settings.year,
            "province": settings.province, "target_low_pct": settings.target_low_pct,
            "target_high_pct": settings.target_high_pct, "source": settings.source},
            "summary": _clean(summary), "facilities": records(table)}))
        return
    if xlsx_path or csv_dir:
        return
    _print(table, summary, settings, lang)


def _clean(obj):
    import math

    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    return obj


def _print(table, summary, settings, lang):
    from rich.console import Console
    from rich.table import Table

    from cpa.numbers import format_number

    vi = lang == "vi"
    con = Console(width=160)
    con.print(f"[bold]{settings.name_vi if vi else settings.name}[/bold]"
              + (f" — {settings.year}" if settings.year else "")
              + f"  (target {format_number(settings.target_low_pct, lang, 0)}–"
                f"{format_number(settings.target_high_pct, lang, 0)} % less per unit of product)")
    t = Table()
    heads = (["cơ sở", "ngành", "năng lượng %", "nước %", "điện %", "giải pháp", "đầu tư (tr.đ)",
              "tiết kiệm (tr.đ/năm)", "TOE/năm", "tCO2e/năm", "hoàn vốn (năm)"] if vi else
             ["facility", "sector", "energy %", "water %", "electricity %", "options", "investment (M VND)",
              "savings (M VND/yr)", "TOE/yr", "tCO2e/yr", "payback (yr)"])
    for h in heads:
        t.add_column(h, justify="left" if h in heads[:2] else "right")
    fmt = lambda x, d=1: format_number(x, lang, d)  # noqa: E731
    for r in table.to_dict("records"):
        t.add_row(r["facility_id"], r["sector"] or "",
                  *(f"{fmt(r[f'{k}_change_pct'])} ({r[f'{k}_target']})" for k in ("energy", "water", "electricity")),
                  str(r["options_total"] - r["options_rejected"]), fmt(r["investment_vnd"] / 1e6, 0),
                  fmt(r["net_saving_vnd_per_yr"] / 1e6, 0), fmt(r["toe_vn_per_yr"]), fmt(r["co2e_t_per_yr"]),
                  fmt(r["payback_yr"]))
    tot = summary["totals"]
    t.add_row("TỔNG" if vi else "TOTAL", "", "", "", "", str(int(tot.get("options_total", 0) - tot.get("options_rejected", 0))),
              fmt(tot.get("investment_vnd", 0) / 1e6, 0), fmt(tot.get("net_saving_vnd_per_yr", 0) / 1e6, 0),
              fmt(tot.get("toe_vn_per_yr", 0)), fmt(tot.get("co2e_t_per_yr", 0)), fmt(tot.get("payback_yr")))
    med = summary["medians"]
    t.add_row("trung vị" if vi else "median", "",
              *(fmt(med.get(f"{k}_change_pct")) for k in ("energy", "water", "electricity")), "", "",
              fmt((med.get("net_saving_vnd_per_yr") or 0) / 1e6, 0), fmt(med.get("toe_vn_per_yr")),
              fmt(med.get("co2e_t_per_yr")), fmt(med.get("payback_yr")))
    con.print(t)
    con.print(f"key energy users (≥ 1,000 TOE/yr): {tot.get('key_energy_users', 0)}" if not vi else
              f"cơ sở sử dụng năng lượng trọng điểm (≥ 1.000 TOE/năm): {tot.get('key_energy_users', 0)}")
