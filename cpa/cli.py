"""The ``cpa`` command line: a thin shell over the library.

Heavy libraries (pandas, pint, matplotlib) are imported inside the commands, so that
``cpa --help`` answers at once. Every :class:`cpa.errors.CPAError` becomes a short message and
exit code 1; usage errors exit 2; nothing a user does ends in a traceback.
"""

from __future__ import annotations

import json
import os
import sys

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
WORKSHEET_SUFFIXES = (".cpa.md", ".xlsx", ".xlsm")


def _expand(paths) -> list[str]:
    """Worksheet files named, and those found inside named folders (sorted)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(
                os.path.join(p, n) for n in os.listdir(p)
                if n.lower().endswith(WORKSHEET_SUFFIXES) and not n.startswith((".", "~$"))
            )
            if not found:
                raise click.UsageError(f"no worksheets (*.cpa.md, *.xlsx) in folder {p}")
            out.extend(found)
        else:
            out.append(p)
    return out


class CpaGroup(click.Group):
    def invoke(self, ctx):
        from cpa.errors import CPAError

        try:
            return super().invoke(ctx)
        except CPAError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except OSError as exc:
            name = exc.filename or ""
            click.echo(f"Error: {name}: {exc.strerror or exc}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("CPA_DEBUG"):
                raise
            click.echo(f"Internal error (a bug in cpa, not in your input): {type(exc).__name__}: {exc}\n"
                       "Please report it with the command and the worksheet; set CPA_DEBUG=1 to see "
                       "the traceback.", err=True)
            ctx.exit(3)


@click.group(cls=CpaGroup, context_settings=CONTEXT)
@click.version_option(package_name="cpa", message="cpa %(version)s")
def main():
    """cpa: cleaner-production assessment (sản xuất sạch hơn).

    Worksheets record a facility's production, process steps and every input and output with
    its unit; cpa checks them, computes balances, indicators and the savings of options, and
    writes case-study booklets. A worksheet is a Markdown file (*.cpa.md) or a workbook (*.xlsx).
    """


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
def check(paths, as_json):
    """Check worksheets and report every problem at once.

    PATHS are worksheet files or folders of them. Exit status: 0 when every worksheet is valid
    (warnings allowed), 1 when any has an error, 2 for a usage error.
    """
    from cpa.worksheet import read

    files = _expand(paths)
    report = []
    failed = False
    for path in files:
        ws = read(path)
        problems = list(ws.problems)
        if not ws.errors:
            problems += _balance_warnings(ws)
        errors = [p for p in problems if p.severity == "error"]
        failed = failed or bool(errors)
        report.append({"file": path, "valid": not errors,
                       "errors": len(errors), "warnings": len(problems) - len(errors),
                       "problems": [p.as_dict() for p in problems]})
        if not as_json:
            for p in problems:
                click.echo(str(p), err=bool(errors))
            status = "valid" if not errors else "INVALID"
            click.echo(f"{path}: {status} ({len(errors)} errors, {len(problems) - len(errors)} warnings)",
                       err=bool(errors))
    if as_json:
        click.echo(json.dumps({"files": report, "valid": not failed}, ensure_ascii=False, indent=2,
                              default=str))
    sys.exit(1 if failed else 0)


def _balance_warnings(ws):
    """Warnings from the balances (closure gaps), once the balance module is there."""
    try:
        from cpa.balance import closure_warnings
    except ImportError:
        return []
    return closure_warnings(ws)


@main.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True,
              help="Language of the headings and labels.")
@click.option("--sector", default=None, help="Prefill the facility's sector (workbooks only).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def template(out, lang, sector, force):
    """Write a blank worksheet to OUT: a text worksheet (.cpa.md) or a workbook (.xlsx).

    Both are generated from the schema, with headings, column labels and help in the chosen
    language; the workbook adds dropdowns, notes on every header and locked header cells.
    """
    if out.lower().endswith(".xlsx"):
        from cpa.commands_xlsx import template_xlsx

        template_xlsx(out, lang, sector, force)
        return
    from cpa.io import write_text_atomic
    from cpa.worksheet import blank_text

    if not out.lower().endswith(".md"):
        raise click.UsageError("OUT must end in .cpa.md (text) or .xlsx (workbook)")
    write_text_atomic(out, blank_text(lang), force=force)
    click.echo(f"wrote {out}")


def _register():
    from cpa.commands_balance import balance_cmd
    from cpa.commands_options import compare_cmd, options_cmd
    from cpa.commands_programme import programme_cmd
    from cpa.commands_report import report_cmd
    from cpa.commands_xlsx import export_cmd, import_cmd

    for cmd in (balance_cmd, options_cmd, compare_cmd, programme_cmd, report_cmd, import_cmd, export_cmd):
        main.add_command(cmd)


_register()


def run() -> None:
    """The command line (the `cpa` script and `python -m cpa.cli`): :func:`main`, then a quick
    exit. A run that built booklets leaves a large heap (pandas, matplotlib, typst's caches);
    freeing it object by object at interpreter exit took about 0.5 s. Everything cpa writes is
    closed and in place before :func:`main` returns, so once the terminal output is flushed the
    process ends at once. (Tests call :func:`main` through click's runner, never this.)"""
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # `cpa ... | head`, or a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
