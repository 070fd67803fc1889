"""``cpa report``: the main job — every booklet, every chart and a summary workbook.

Output layout inside ``--out DIR``::

    DIR/summary.xlsx                        programme table, options, before/after, ...
    DIR/<lang>/<facility>.pdf               one case-study booklet per facility
    DIR/<lang>/programme.pdf                the programme booklet
    DIR/<lang>/charts/<facility>/<chart>.png|.svg
    DIR/<lang>/charts/_programme/<chart>.png|.svg

``<facility>`` is the facility id passed through :func:`cpa.io.safe_name` (unique, never
``programme``), so every output stays inside DIR. Everything is built in a temporary folder
inside DIR and then moved into place file by file (``os.replace``): a re-run replaces the
outputs atomically, an interrupted run leaves the previous outputs whole. Inputs are only read.
"""

from __future__ import annotations

import os
import sys

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
RESERVED = {"programme", "summary", "charts"}
DEFAULT_TARGET = (8.0, 13.0)


# ----------------------------------------------------------------------------------------------
# programme settings


def find_settings(paths) -> str | None:
    """``programme.toml`` in a named folder, or beside the first named file."""
    for p in paths:
        folder = p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p))
        cand = os.path.join(folder, "programme.toml")
        if os.path.isfile(cand):
            return cand
    return None


def load_settings(path: str | None) -> tuple[object, dict]:
    """(settings for :mod:`cpa.programme`, normalised settings for the booklets).

    The normalised dict has ``name_vi``, ``name_en``, ``year``, ``province`` and ``target`` =
    (low, high) in % (8–13 %, Dong Nai's target, when the file gives none).
    """
    prog = _programme_module()
    if prog is not None and hasattr(prog, "load_settings"):
        s = prog.load_settings(path)
        g = lambda k, d=None: getattr(s, k, d)  # noqa: E731
        norm = {"name_vi": g("name_vi") or g("name"), "name_en": g("name_en") or g("name"),
                "year": g("year"), "province": g("province"),
                "target": (float(g("target_low_pct", DEFAULT_TARGET[0])),
                           float(g("target_high_pct", DEFAULT_TARGET[1])))}
        return s, norm
    raw: dict = {}
    if path:
        import tomllib

        from cpa.errors import CPAError

        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CPAError(f"{path}: cannot read the programme file ({exc})") from exc
    target = raw.get("target") if isinstance(raw.get("target"), dict) else {}
    norm = {"name_vi": raw.get("name_vi") or raw.get("name"), "name_en": raw.get("name_en") or raw.get("name"),
            "year": raw.get("year"), "province": raw.get("province"),
            "target": (float(target.get("low_pct", DEFAULT_TARGET[0])),
                       float(target.get("high_pct", DEFAULT_TARGET[1])))}
    return raw, norm


# ----------------------------------------------------------------------------------------------
# names


def output_names(worksheets) -> list[str]:
    """A unique, safe file stem per worksheet (from its facility id, else its name)."""
    from cpa.io import safe_name

    seen: set[str] = set()
    out = []
    for ws in worksheets:
        base = safe_name(ws.id or ws.facility.get("name") or "facility")
        if base.lower() in RESERVED:
            base = f"facility-{base}"
        name, i = base, 2
        while name.lower() in seen:
            name = f"{base}-{i}"
            i += 1
        seen.add(name.lower())
        out.append(name)
    return out


# ----------------------------------------------------------------------------------------------
# the job


class _Progress:
    """rich progress bar on a terminal; one plain line per step when piped."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.live = enabled and sys.stderr.isatty()
        self.done = 0
        self._p = None

    def __enter__(self):
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self._p.__enter__()
            self._task = self._p.add_task("cpa report", total=self.total)
        return self

    def step(self, what: str):
        self.done += 1
        if self._p is not None:
            self._p.update(self._task, advance=1, description=what[:60])
        elif self.enabled:
            click.echo(f"[{self.done}/{self.total}] {what}", err=True)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)


def _charts_module():
    try:
        from cpa import charts
    except ImportError:
        return None
    return charts


def _programme_module():
    try:
        from cpa import programme
    except ImportError:
        return None
    return programme


#: What the workers that read and compute need (imported here, then forked).
LOAD_MODULES = ["pandas", "pint", "cpa.worksheet", "cpa.validate", "cpa.results", "cpa.options", "cpa.compare",
                "cpa.programme"]
#: What the workers that draw and typeset need as well.
PRELOAD = LOAD_MODULES + ["cpa.booklet", "cpa.charts", "matplotlib.pyplot", "typst", "pypdfium2", "isal.isal_zlib"]


def _results_task(args):
    """Worker: a facility's results and its row of the programme table (or the message of the
    calculation that failed). Both are computed once, for both languages."""
    from cpa.errors import CPAError
    from cpa.results import facility_results

    ws, raw_settings = args
    try:
        res = facility_results(ws)
    except CPAError as exc:  # a calculation the validator could not foresee
        return None, None, str(exc)
    row = None
    prog = _programme_module()
    if prog is not None and hasattr(prog, "facility_row") and hasattr(prog, "Settings"):
        try:
            settings = raw_settings if isinstance(raw_settings, prog.Settings) else None
            row = prog.facility_row(ws, settings or prog.Settings(), results=res)
        except CPAError:
            row = None  # the table is then built (and its error raised) by programme_table
    return res, row, None


def _load_task(args):
    """Worker: read and check one worksheet; when it has no error, its results and programme
    row too. Returns (worksheet, (path, problems, n_errors), results, row, calculation error)."""
    from cpa.worksheet import read

    path, raw_settings = args
    ws = read(path)
    n_errors = len(ws.errors)
    entry = (path, list(ws.problems), n_errors)
    if n_errors:
        return ws, entry, None, None, None
    res, row, err = _results_task((ws, raw_settings))
    return ws, entry, res, row, err


def _programme_charts_task(table, lang, ldir, settings):
    """Worker: the programme charts of one language (they need the table only)."""
    from cpa.booklet import PROGRAMME_CHART_WIDTHS

    charts_mod = _charts_module()
    if charts_mod is None or table is None:
        return None
    return charts_mod.render_programme_charts(_chart_table(table), lang, os.path.join(ldir, "charts", "_programme"),
                                              band=settings["target"], widths=PROGRAMME_CHART_WIDTHS)


def _facility_task(res, lang, ldir, name, settings, tmp):
    """Worker: the charts and the booklet of one facility in one language; returns the charts
    and the booklet's data (which the programme booklet reuses)."""
    from cpa.booklet import CHART_WIDTHS, build_facility_booklet, facility_data

    charts_mod = _charts_module()
    charts = None
    workdir = _workdir(tmp)
    if charts_mod is not None:  # the SVGs and charts.pdf (what the booklets embed); the PNGs later
        charts = charts_mod.render_facility_charts(res, lang, os.path.join(ldir, "charts", name),
                                                   widths=CHART_WIDTHS, formats=("svg", "pdf"))
        pdfs = {v["pdf"] for v in charts.values() if v.get("pdf")}
        for pdf in pdfs:  # a working file, not an output: kept beside the booklet's work
            os.replace(pdf, os.path.join(workdir, "charts.pdf"))
        for v in charts.values():
            if v.get("pdf"):
                v["pdf"] = os.path.join(workdir, "charts.pdf")
    data = facility_data(res, lang, charts, settings)
    build_facility_booklet(res, lang, os.path.join(ldir, f"{name}.pdf"), charts, settings,
                           workdir=workdir, data=data)
    return charts, data


def _png_task(res, lang, charts):
    """Worker: the PNGs of one facility's charts in one language, from their SVGs."""
    from cpa.booklet import CHART_WIDTHS

    charts_mod = _charts_module()
    return charts_mod.render_pngs(
        charts, make=lambda key: charts_mod.facility_chart(res, lang, key, widths=CHART_WIDTHS))


def _programme_task(results, lang, ldir, table, summary, settings, fcharts, fdatas, pcharts, tmp):
    """Worker: the programme booklet in one language (its charts are made beforehand)."""
    from cpa.booklet import build_programme_booklet

    build_programme_booklet(results, lang, os.path.join(ldir, "programme.pdf"), table=table,
                            summary=summary, settings=settings, facility_charts=fcharts,
                            programme_charts=pcharts, workdir=_workdir(tmp), facility_datas=fdatas)


def _chart_table(table):
    """The programme table as the programme charts should read it: the changes of the
    indicators every facility has (:data:`cpa.charts.CHANGE_COLUMNS`: energy, electricity,
    water...), not those of one facility's own materials (``material_<stream>_change_pct``,
    one column per material, each empty but for one facility); savings net of added operating
    costs as ``saving_vnd_per_yr`` when the table has only that."""
    charts_mod = _charts_module()
    known = getattr(charts_mod, "CHANGE_COLUMNS", {})
    drop = [c for c in table.columns if c.endswith("_change_pct") and c not in known]
    table = table.drop(columns=drop)
    if "saving_vnd_per_yr" not in table.columns and "net_saving_vnd_per_yr" in table.columns:
        table = table.assign(saving_vnd_per_yr=table["net_saving_vnd_per_yr"])
    return table


def _programme_table(worksheets, rows, raw_settings):
    """The programme table and summary from the rows computed beside each facility's results
    (exactly :func:`cpa.programme.programme_table`, without computing every facility again);
    (None, None) without the programme module."""
    prog = _programme_module()
    if prog is None:
        return None, None
    ids = [ws.id for ws in worksheets]
    if any(r is None for r in rows) or len(set(ids)) != len(ids):
        table = prog.programme_table(worksheets, raw_settings)  # raises the proper error
    else:
        import pandas as pd

        table = pd.DataFrame(rows)
    return table, prog.programme_summary(table, raw_settings)


class _Serial:
    """The executor interface, run in this process (``--jobs 1``)."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*args))
        return f

    def map(self, fn, items):
        return [fn(i) for i in items]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _typst_used_here() -> bool:
    """Has this process run a typst compile (its compiler's threads would not survive a fork)?"""
    m = sys.modules.get("cpa.booklet")
    f = getattr(m, "typst_compiler", None) if m is not None else None
    return bool(f is not None and f.cache_info().currsize)


def _can_fork() -> bool:
    """Can workers be forked from this process (the platform forks, and this process has not
    run typst, whose threads would not survive a fork)?"""
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods() and not _typst_used_here()


def _import_all(modules) -> None:
    import importlib

    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            pass


def _executor(jobs: int, modules=None):
    """A process pool whose workers start with ``modules`` imported (default :data:`PRELOAD`:
    cpa, matplotlib and typst).

    Where the platform forks and this process has not run typst yet (the command line), the
    modules are imported once here and the workers are forked from this process: no second
    interpreter to start and no imports to repeat. Otherwise (a test that built a booklet
    in-process first, a platform without fork) a forkserver that has imported all of
    :data:`PRELOAD`.
    """
    if jobs <= 1:
        return _Serial()
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    modules = PRELOAD if modules is None else modules
    if _can_fork():
        _import_all(modules)
        _warm(render=modules == PRELOAD)
        ctx = mp.get_context("fork")
    elif "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
    else:  # pragma: no cover - platforms without fork
        ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)


def _warm(render: bool = True) -> None:
    """Before forking: what every worker would otherwise build for itself on first use (the
    unit registry, the factor tables, the schema's look-ups; with ``render``, the number
    formats of both languages, the widths of the common characters and the typst fonts' folder),
    built once here."""
    from cpa import schema
    from cpa.factors import default_factors
    from cpa.units import conversion_factor, dimension_of

    conversion_factor("kg", "t")
    dimension_of("kWh")
    default_factors()
    schema.table_lookup()
    if not render:
        return
    from cpa.numbers import format_number

    for lang in ("vi", "en"):
        format_number(1234.5, lang)
    charts = _charts_module()
    if charts is not None:
        charts.warm()
    try:
        from cpa.booklet import typst_font_dir

        typst_font_dir()  # one folder of fonts for all workers (made here, removed at exit)
    except ImportError:  # pragma: no cover
        pass


def default_jobs() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # pragma: no cover
        return max(1, min(os.cpu_count() or 1, 8))


def _weight(res) -> float:
    """A rough cost of a facility's charts and booklet (for the order of the work)."""
    t = res.ws.tables
    return len(t["steps"]) + len(t["options"]) + 0.3 * len(t["streams"])


def run_report(files, out: str, langs, settings_path: str | None = None, progress: bool = True,
               jobs: int | None = None) -> dict:
    """Build everything for the worksheet ``files`` into ``out``; returns what was written.

    Each facility's results (and its row of the programme table) are computed once for both
    languages, in worker processes; then the charts and booklet of each (facility, language)
    are one task each, the larger facilities first, and each language's programme booklet
    starts as soon as that language's facilities are done. Raises :class:`ReportInvalid`
    (every problem of every worksheet) before anything is written.
    """
    import shutil
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, wait
    from contextlib import ExitStack

    from cpa.io import staging

    jobs = default_jobs() if jobs is None else jobs
    raw_settings, settings = load_settings(settings_path)
    # two pools when workers can be forked: the first, forked before matplotlib and typst are
    # imported, reads and computes while this process imports them; the second is forked after
    two_pools = jobs > 1 and _can_fork()
    with staging(), ExitStack() as stack:
        ex = stack.enter_context(_executor(jobs, LOAD_MODULES if two_pools else PRELOAD))
        # read, check and compute each facility in the workers, in parallel
        futures = [ex.submit(_load_task, (path, raw_settings)) for path in files]
        if two_pools:
            _import_all(PRELOAD)
            _warm()
        loaded = [f.result() for f in futures]
        if two_pools:
            ex.shutdown()
            ex = stack.enter_context(_executor(jobs))
        worksheets, report, results, rows, failures = [], [], [], [], []
        for path, (ws, entry, res, row, err) in zip(files, loaded, strict=True):
            worksheets.append(ws)
            report.append(entry)
            results.append(res)
            rows.append(row)
            if err:
                failures.append((path, [err], 1))
        if any(n for _p, _pr, n in report):
            raise ReportInvalid(report)
        if failures:
            raise ReportInvalid(failures, total=len(worksheets))
        names = output_names(worksheets)
        table, summary = _programme_table(worksheets, rows, raw_settings)

        os.makedirs(out, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".cpa-build-", dir=out)
        written = []
        with_charts = _charts_module() is not None
        total = len(langs) * (len(results) * (2 if with_charts else 1) + 1) + 1
        try:
            with _Progress(total, progress) as bar:
                order = sorted(range(len(results)), key=lambda i: -_weight(results[i]))
                for lang in langs:
                    os.makedirs(os.path.join(tmp, lang), exist_ok=True)
                # our own queue (the pool's is first in, first out) with a few tasks in flight:
                # the programme charts first, then the facilities (charts as SVG, booklet),
                # larger ones first; a language's programme booklet (the longest task) goes to
                # the front as soon as that language's facilities and programme charts are done;
                # the charts' PNGs (nothing waits for them) go to the back, where they fill the
                # cores while the programme booklets are typeset
                queue = [("pcharts", lang, None) for lang in langs]
                queue += [("facility", lang, i) for lang in langs for i in order]
                fcharts = {lang: {} for lang in langs}
                fdatas = {lang: {} for lang in langs}
                pcharts = {}
                left = {lang: len(results) + 1 for lang in langs}
                inflight: dict = {}

                def feed():
                    while queue and len(inflight) < 2 * jobs:
                        kind, lang, i = queue.pop(0)
                        ldir = os.path.join(tmp, lang)
                        if kind == "facility":
                            f = ex.submit(_facility_task, results[i], lang, ldir, names[i], settings, tmp)
                        elif kind == "png":
                            f = ex.submit(_png_task, results[i], lang, fcharts[lang][results[i].ws.id])
                        elif kind == "pcharts":
                            f = ex.submit(_programme_charts_task, table, lang, ldir, settings)
                        else:
                            f = ex.submit(_programme_task, results, lang, ldir, table, summary, settings,
                                          fcharts[lang], fdatas[lang], pcharts.get(lang), tmp)
                        inflight[f] = (kind, lang, i)

                feed()
                write_summary(os.path.join(tmp, "summary.xlsx"), results, names, table)  # meanwhile
                bar.step("summary.xlsx")
                while inflight:
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for f in done:
                        kind, lang, i = inflight.pop(f)
                        if kind == "programme":
                            f.result()
                            bar.step(f"{lang}: programme.pdf")
                            continue
                        if kind == "png":
                            f.result()
                            bar.step(f"{lang}: {names[i]}: PNG")
                            continue
                        if kind == "pcharts":
                            pcharts[lang] = f.result()
                        else:
                            fid = results[i].ws.id
                            fcharts[lang][fid], fdatas[lang][fid] = f.result()
                            bar.step(f"{lang}: {names[i]}.pdf")
                            if fcharts[lang][fid]:
                                queue.append(("png", lang, i))
                        left[lang] -= 1
                        if not left[lang]:
                            queue.insert(0, ("programme", lang, None))
                    feed()
            shutil.rmtree(os.path.join(tmp, ".work"), ignore_errors=True)
            written = _move_into_place(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"files": written, "facilities": names,
            "charts": _charts_module() is not None, "programme": _programme_module() is not None}


def _workdir(tmp: str) -> str:
    import tempfile

    base = os.path.join(tmp, ".work")
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(dir=base)


def _move_into_place(tmp: str, out: str) -> list[str]:
    """Move every file built in ``tmp`` to the same place under ``out`` (os.replace)."""
    written = []
    out_real = os.path.realpath(out)
    for folder, _dirs, files in os.walk(tmp):
        rel = os.path.relpath(folder, tmp)
        dest_dir = os.path.normpath(os.path.join(out, rel))
        if not os.path.realpath(dest_dir).startswith(out_real):  # pragma: no cover - names are safe
            raise RuntimeError(f"refusing to write outside {out}: {dest_dir}")
        os.makedirs(dest_dir, exist_ok=True)
        for f in sorted(files):
            dest = os.path.join(dest_dir, f)
            os.replace(os.path.join(folder, f), dest)
            written.append(dest)
    return sorted(written)


class ReportInvalid(Exception):
    """Some worksheets have errors; ``problems`` lists (path, problems, n_errors)."""

    def __init__(self, report, total: int | None = None):
        super().__init__("invalid worksheets")
        self.report = report
        self.total = len(report) if total is None else total


def check_all(files):
    """Read every worksheet; raise :class:`ReportInvalid` with every problem if any has an error."""
    from cpa.worksheet import read

    worksheets, report, failed = [], [], False
    for path in files:
        ws = read(path)
        errors = ws.errors
        failed = failed or bool(errors)
        report.append((path, list(ws.problems), len(errors)))
        worksheets.append(ws)
    if failed:
        raise ReportInvalid(report)
    return worksheets


def write_summary(path: str, results, names, table) -> None:
    """The summary workbook: programme table, options, before/after, indicators, cost of waste."""
    import pandas as pd

    from cpa.booklet import before_after, fallback_programme_table
    from cpa.export import write_xlsx

    if table is None:
        table = fallback_programme_table(results)

    def tagged(attr):
        frames = []
        for res in results:
            df = getattr(res, attr, None)
            if df is not None and len(df):
                df = df.drop(columns=[c for c in df.columns if c.startswith("_")]).copy()
                df.insert(0, "facility_id", res.ws.id)
                frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"facility_id": []})

    ba = pd.DataFrame([{"facility_id": res.ws.id, "indicator": x["indicator"], "stream": x["stream"],
                        "unit": x["unit"], "baseline": x["before"], "latest": x["after"],
                        "change_pct": 100.0 * x["change"]}
                       for res in results for x in before_after(res)])
    files = pd.DataFrame({"facility_id": [r.ws.id for r in results], "file": names,
                          "worksheet": [r.ws.path for r in results],
                          "illustrative": [r.ws.illustrative for r in results]})
    tables = {"programme": table, "facilities": files, "options": tagged("options"),
              "before_after": ba, "indicators": tagged("indicators"), "waste_costs": tagged("waste_costs"),
              "factors": tagged("factors")}
    write_xlsx(path, tables, force=True)


# ----------------------------------------------------------------------------------------------
# the command


@click.command("report", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for the booklets, charts and workbook (created; outputs inside it are replaced).")
@click.option("--lang", type=click.Choice(["vi", "en", "both"]), default="both", show_default=True,
              help="Language of the booklets and charts.")
@click.option("--programme", "programme_file", type=click.Path(exists=True, dir_okay=False),
              help="Programme settings (TOML: name, name_en, year, province, target band). "
                   "Default: programme.toml in a PATH folder.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes for charts and booklets (default: the number of CPUs).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def report_cmd(paths, out, lang, programme_file, jobs, quiet):
    """Case-study booklets (PDF), charts and a summary workbook for worksheets PATHS.

    PATHS are worksheet files or folders of them. For each facility and language: a 2–4 page
    booklet in the Vietnamese case-study format (profile, problem, team, assessment, options,
    results as technical | economic | environmental benefits, data basis); then a programme
    booklet (cover, roll-up of all facilities, one chapter per facility) and summary.xlsx.

    If any worksheet has an error, every problem is reported (as by `cpa check`) and nothing is
    written (exit status 1). Re-running replaces the outputs; inputs are never modified.
    """
    from cpa.cli import _expand

    files = _expand(paths)
    out_abs = os.path.realpath(out)
    for f in files:
        if os.path.realpath(f) == out_abs:
            raise click.UsageError(f"--out {out} is an input file")
    settings_path = programme_file or find_settings(paths)
    langs = ["vi", "en"] if lang == "both" else [lang]
    try:
        info = run_report(files, out, langs, settings_path, progress=not quiet, jobs=jobs)
    except ReportInvalid as exc:
        n_bad = 0
        for path, problems, n_errors in exc.report:
            for p in problems:
                click.echo(str(p), err=True)
            if n_errors:
                n_bad += 1
                click.echo(f"{path}: INVALID ({n_errors} errors, {len(problems) - n_errors} warnings)", err=True)
        click.echo(f"Error: {n_bad} of {exc.total} worksheets are invalid; nothing written "
                   f"(fix them, see `cpa check`)", err=True)
        sys.exit(1)
    notes = []
    if not info["charts"]:
        notes.append("charts module not installed: booklets without charts")
    if not info["programme"]:
        notes.append("programme module not installed: simple roll-up used")
    n_pdf = sum(1 for f in info["files"] if f.endswith(".pdf") and os.path.basename(os.path.dirname(f)) in langs)
    click.echo(f"wrote {n_pdf} booklets, {len(info['files'])} files in {out}"
               + (f" ({'; '.join(notes)})" if notes else ""))
