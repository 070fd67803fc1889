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


PRELOAD = ["cpa.results", "cpa.booklet", "cpa.charts", "cpa.options", "cpa.compare", "cpa.programme",
           "matplotlib.pyplot", "typst"]


def _results_task(ws):
    """Worker: a facility's results, or the message of the calculation that failed."""
    from cpa.errors import CPAError
    from cpa.results import facility_results

    try:
        return facility_results(ws), None
    except CPAError as exc:  # a calculation the validator could not foresee
        return None, str(exc)


def _facility_task(res, lang, ldir, name, settings, tmp):
    """Worker: the charts and the booklet of one facility in one language; returns the charts."""
    from cpa.booklet import build_facility_booklet

    charts_mod = _charts_module()
    charts = None
    if charts_mod is not None:
        charts = charts_mod.render_facility_charts(res, lang, os.path.join(ldir, "charts", name))
    build_facility_booklet(res, lang, os.path.join(ldir, f"{name}.pdf"), charts, settings,
                           workdir=_workdir(tmp))
    return charts


def _programme_task(results, lang, ldir, table, summary, settings, fcharts, tmp):
    """Worker: the programme charts and booklet in one language."""
    from cpa.booklet import build_programme_booklet

    charts_mod = _charts_module()
    pcharts = None
    if charts_mod is not None and table is not None:
        pcharts = charts_mod.render_programme_charts(table, lang, os.path.join(ldir, "charts", "_programme"),
                                                     band=settings["target"])
    build_programme_booklet(results, lang, os.path.join(ldir, "programme.pdf"), table=table,
                            summary=summary, settings=settings, facility_charts=fcharts,
                            programme_charts=pcharts, workdir=_workdir(tmp))


def _table_task(worksheets, raw_settings):
    prog = _programme_module()
    if prog is None:
        return None, None
    table = prog.programme_table(worksheets, raw_settings)
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


def _executor(jobs: int):
    """A process pool forked from a server that has imported cpa (no typst state inherited)."""
    if jobs <= 1:
        return _Serial()
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    try:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
    except ValueError:  # pragma: no cover - platforms without fork
        ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)


def default_jobs() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # pragma: no cover
        return max(1, min(os.cpu_count() or 1, 8))


def run_report(files, out: str, langs, settings_path: str | None = None, progress: bool = True,
               jobs: int | None = None) -> dict:
    """Build everything for the worksheet ``files`` into ``out``; returns what was written.

    Each facility's results are computed once (for both languages); charts and booklets run in
    ``jobs`` worker processes. Raises :class:`ReportInvalid` (every problem of every worksheet)
    before anything is written.
    """
    import shutil
    import tempfile
    from concurrent.futures import as_completed

    jobs = default_jobs() if jobs is None else jobs
    worksheets = check_all(files)
    raw_settings, settings = load_settings(settings_path)
    names = output_names(worksheets)
    with _executor(jobs) as ex:
        table_future = ex.submit(_table_task, worksheets, raw_settings)
        results, failures = [], []
        for ws, (res, err) in zip(worksheets, ex.map(_results_task, worksheets), strict=True):
            if err:
                failures.append((ws.path, [err], 1))
            results.append(res)
        if failures:
            raise ReportInvalid(failures, total=len(worksheets))

        os.makedirs(out, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".cpa-build-", dir=out)
        written = []
        total = len(langs) * (len(results) + 1) + 1
        try:
            with _Progress(total, progress) as bar:
                futures = {}
                for lang in langs:
                    ldir = os.path.join(tmp, lang)
                    os.makedirs(ldir, exist_ok=True)
                    for res, name in zip(results, names, strict=True):
                        f = ex.submit(_facility_task, res, lang, ldir, name, settings, tmp)
                        futures[f] = (lang, res.ws.id, name)
                table, summary = table_future.result()
                fcharts = {lang: {} for lang in langs}
                for f in as_completed(futures):
                    lang, fid, name = futures[f]
                    fcharts[lang][fid] = f.result()
                    bar.step(f"{lang}: {name}.pdf")
                pfutures = {ex.submit(_programme_task, results, lang, os.path.join(tmp, lang), table,
                                      summary, settings, fcharts[lang], tmp): lang for lang in langs}
                write_summary(os.path.join(tmp, "summary.xlsx"), results, names, table)
                bar.step("summary.xlsx")
                for f in as_completed(pfutures):
                    f.result()
                    bar.step(f"{pfutures[f]}: programme.pdf")
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
    n_pdf = sum(1 for f in info["files"] if f.endswith(".pdf"))
    click.echo(f"wrote {n_pdf} booklets, {len(info['files'])} files in {out}"
               + (f" ({'; '.join(notes)})" if notes else ""))
