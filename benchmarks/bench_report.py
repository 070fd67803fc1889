"""Time the main job, `cpa report examples/ --lang both`, and where its time goes.

    python benchmarks/bench_report.py [--jobs N] [--profile]

Runs the report on a copy of examples/ into a temporary folder (the process pool with
``--jobs``, default: the CPUs), then times the stages once in this process for one language:
reading + checking, results, charts, booklets (typst), programme roll-up. ``--profile`` prints
the top of a cProfile of the serial run. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)


def whole_job(src: str, out: str, jobs) -> float:
    from cpa.cli import _expand
    from cpa.commands_report import find_settings, run_report

    t = time.perf_counter()
    run_report(_expand([src]), out, ["vi", "en"], find_settings([src]), progress=False, jobs=jobs)
    return time.perf_counter() - t


def stages(src: str, out: str) -> dict:
    from cpa.booklet import build_facility_booklet
    from cpa.cli import _expand
    from cpa.commands_report import _charts_module, check_all
    from cpa.results import facility_results

    t = {}
    t0 = time.perf_counter()
    wss = check_all(_expand([src]))
    t["read + check"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = [facility_results(ws) for ws in wss]
    t["results"] = time.perf_counter() - t0
    charts = _charts_module()
    ch = {}
    t0 = time.perf_counter()
    if charts is not None:
        for r in results:
            ch[r.ws.id] = charts.render_facility_charts(r, "vi", os.path.join(out, "charts", r.ws.id))
    t["charts (vi)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for r in results:
        build_facility_booklet(r, "vi", os.path.join(out, f"{r.ws.id}.pdf"), ch.get(r.ws.id))
    t["booklets (vi, typst)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        from cpa.programme import load_settings, programme_table

        programme_table(wss, load_settings(None))
    except ImportError:
        pass
    t["programme table"] = time.perf_counter() - t0
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cpa-bench-")
    try:
        src = os.path.join(tmp, "examples")
        shutil.copytree(os.path.join(ROOT, "examples"), src)
        n = len([f for f in os.listdir(src) if f.endswith(".cpa.md")])
        print(f"machine: {os.cpu_count()} CPUs; {n} facilities; both languages")
        secs = whole_job(src, os.path.join(tmp, "out"), args.jobs)
        print(f"cpa report examples/ --lang both (jobs={args.jobs or 'auto'}): {secs:.1f} s")
        print("stages, serial, one language:")
        for k, v in stages(src, os.path.join(tmp, "stages")).items():
            print(f"  {k:24s} {v:6.2f} s")
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            whole_job(src, os.path.join(tmp, "out2"), 1)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
