"""Command-line commands for Excel workbooks: ``cpa import`` and ``cpa export``.

A thin shell over :mod:`cpa.xlsx`; heavy libraries are imported inside the commands. The main
CLI registers them with ``main.add_command(import_cmd)`` and ``main.add_command(export_cmd)``,
and its ``template`` command calls :func:`template_xlsx` when OUT ends in ``.xlsx``.
"""

from __future__ import annotations

import os

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(message: str):
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(1)


def _report(ws) -> bool:
    """Print every problem (errors and warnings) to stderr; True when there is an error."""
    for p in ws.problems:
        click.echo(str(p), err=True)
    n_err = len(ws.errors)
    if n_err:
        click.echo(f"{ws.path}: {n_err} error{'s' if n_err != 1 else ''}, "
                   f"{len(ws.problems) - n_err} warning(s); nothing was written", err=True)
    return bool(n_err)


def template_xlsx(out: str, lang: str = "vi", sector: str | None = None, force: bool = False) -> None:
    """Write a blank workbook to OUT (the ``cpa template OUT.xlsx`` case) and say so."""
    from cpa.errors import CPAError
    from cpa.xlsx import write_template

    try:
        write_template(out, lang=lang, sector=sector, force=force)
    except CPAError as exc:
        _fail(str(exc))
    click.echo(f"wrote {out}")


@click.command("import", context_settings=CONTEXT)
@click.argument("source", metavar="IN.xlsx", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.cpa.md", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def import_cmd(source, out, force):
    """Turn a filled workbook IN.xlsx into a text worksheet OUT.cpa.md.

    The workbook is checked first, every problem reported with its sheet and cell
    (Sheet!B7). If there is any error nothing is written and the exit status is 1.
    """
    from cpa.errors import CPAError
    from cpa.io import OutputExistsError, write_text_atomic
    from cpa.worksheet import read, to_text

    if not source.lower().endswith((".xlsx", ".xlsm")):
        raise click.UsageError("IN must be a workbook (.xlsx or .xlsm)")
    if not out.lower().endswith(".md"):
        raise click.UsageError("OUT must end in .cpa.md")
    if os.path.exists(out) and not force:
        _fail(str(OutputExistsError(out)))
    try:
        ws = read(source)
        if _report(ws):
            raise click.exceptions.Exit(1)
        write_text_atomic(out, to_text(ws), force=force)
    except CPAError as exc:
        _fail(str(exc))
    click.echo(f"wrote {out}")


#: Result tables exported, in order: attribute of cpa.results.FacilityResults → sheet name.
RESULT_SHEETS = {"balances": "balances", "indicators": "indicators", "waste_costs": "waste costs",
                 "options": "options", "savings": "option savings", "combined": "combined savings",
                 "compare": "before-after", "periods": "periods (annualised)", "factors": "factors used"}


def _results(ws) -> dict:
    """Result tables to export (the results bundle of :mod:`cpa.results`).

    A worksheet whose results cannot be computed is still exported (its tables), with a warning.
    """
    from cpa import results as calc
    from cpa.errors import CPAError

    results = {}
    try:
        bundle = calc.facility_results(ws)
        for attr, sheet in RESULT_SHEETS.items():
            frame = getattr(bundle, attr, None)
            if frame is not None and hasattr(frame, "columns") and len(frame.columns):
                results[sheet] = frame
        return results
    except CPAError as exc:
        click.echo(f"warning: results not exported, only the worksheet: {exc}", err=True)
        return {}
    except Exception as exc:  # a fault in a calculation must not cost the user the worksheet export
        click.echo(f"warning: results not exported, only the worksheet: the calculation failed "
                   f"({type(exc).__name__}: {exc}); please report this as a bug", err=True)
        return {}


@click.command("export", context_settings=CONTEXT)
@click.argument("path", metavar="PATH", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.xlsx", type=click.Path(dir_okay=False))
@click.option("--lang", type=click.Choice(["vi", "en"]), default="en", show_default=True,
              help="Language of the sheet names and headings.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def export_cmd(path, out, lang, force):
    """Write the worksheet PATH (.cpa.md or .xlsx) and its results to a workbook OUT.xlsx.

    The worksheet's tables keep the template's layout, so `cpa import` reads the workbook back.
    Text is always written as text: nothing that begins with = + - @ becomes a formula.
    """
    from cpa.errors import CPAError
    from cpa.io import OutputExistsError
    from cpa.worksheet import read
    from cpa.xlsx import write_export

    if not out.lower().endswith(".xlsx"):
        raise click.UsageError("OUT must end in .xlsx")
    if os.path.exists(out) and not force:
        _fail(str(OutputExistsError(out)))
    if os.path.abspath(out) == os.path.abspath(path):
        raise click.UsageError("OUT must not be the input file")
    try:
        ws = read(path)
        if _report(ws):
            raise click.exceptions.Exit(1)
        write_export(out, ws, results=_results(ws), lang=lang, force=force)
    except CPAError as exc:
        _fail(str(exc))
    click.echo(f"wrote {out}")
