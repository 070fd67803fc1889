"""Time the main job, `cpa report examples/ --lang both`, and where its time goes.

    python benchmarks/bench_report.py [--jobs N] [--repeat R] [--max-load L] [--stages] [--profile]

Runs the report on a copy of examples/ into a temporary folder ``--repeat`` times (the process
pool with ``--jobs``, default: the CPUs) and prints each time with the machine's load average
(``os.getloadavg()``: other processes share the CPUs, so a time means little without it). With
``--max-load``, each run first waits (up to two minutes) for the 1-minute load to fall below
that. ``--stages`` times the stages once in this process for one language: reading + checking,
results, programme rows, charts (SVG + PNG), booklets (typst). ``--profile`` prints the top of
a cProfile of a serial run. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        n = os.cpu_count()
    return f"{n} CPUs ({model})"


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load {a:.2f} {b:.2f} {c:.2f}"


def wait_for_load(max_load: float | None, limit: float = 120.0) -> None:
    if max_load is None:
        return
    t = time.time()
    while os.getloadavg()[0] > max_load and time.time() - t < limit:
        time.sleep(5)


def whole_job(src: str, out: str, jobs) -> float:
    import subprocess

    # a fresh interpreter, as on the command line (imports and the process pool included)
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "cpa.cli", "report", src, "--out", out, "--lang", "both", "-q"]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def stages(src: str, out: str) -> dict:
    from cpa.booklet import CHART_WIDTHS, build_facility_booklet
    from cpa.cli import _expand
    from cpa.commands_report import (
        _charts_module,
        _programme_table,
        _results_task,
        check_all,
        load_settings,
    )
    from cpa.results import facility_results

    t = {}
    t0 = time.perf_counter()
    wss = check_all(_expand([src]))
    t["read + check"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = [facility_results(ws) for ws in wss]
    t["results"] = time.perf_counter() - t0
    raw, _settings = load_settings(os.path.join(src, "programme.toml"))
    t0 = time.perf_counter()
    rows = [_results_task((ws, raw))[1] for ws in wss]
    _programme_table(wss, rows, raw)
    t["results + programme rows"] = time.perf_counter() - t0
    charts = _charts_module()
    ch = {}
    t0 = time.perf_counter()
    if charts is not None:
        for r in results:
            ch[r.ws.id] = charts.render_facility_charts(r, "vi", os.path.join(out, "charts", r.ws.id),
                                                        widths=CHART_WIDTHS)
    t["charts (vi, SVG + PNG)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in results:
        build_facility_booklet(r, "vi", os.path.join(out, f"{r.ws.id}.pdf"), ch.get(r.ws.id))
    t["booklets (vi, typst)"] = time.perf_counter() - t0
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-load", type=float, default=None)
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cpa-bench-")
    try:
        src = os.path.join(tmp, "examples")
        shutil.copytree(os.path.join(ROOT, "examples"), src)
        n = len([f for f in os.listdir(src) if f.endswith(".cpa.md")])
        print(f"machine: {machine()}; {n} facilities; both languages")
        secs = []
        for i in range(args.repeat):
            wait_for_load(args.max_load)
            before = load()
            s = whole_job(src, os.path.join(tmp, f"out{i}"), args.jobs)
            secs.append(s)
            print(f"cpa report examples/ --lang both (jobs={args.jobs or 'auto'}): {s:5.1f} s"
                  f"   [{before} before, {load()} after]")
        if len(secs) > 1:
            print(f"  best {min(secs):.1f} s, median {statistics.median(secs):.1f} s")
        if args.stages:
            print(f"stages, serial, one language ({load()}):")
            for k, v in stages(src, os.path.join(tmp, "stages")).items():
                print(f"  {k:26s} {v:6.2f} s")
        if args.profile:
            import cProfile
            import pstats

            from cpa.cli import _expand
            from cpa.commands_report import find_settings, run_report

            prof = cProfile.Profile()
            prof.enable()
            run_report(_expand([src]), os.path.join(tmp, "prof"), ["vi", "en"], find_settings([src]),
                       progress=False, jobs=1)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
