"""The programme benchmark runs (CI smoke test at N = 20; no timing is asserted)."""

import os
import subprocess
import sys

HERE = os.path.dirname(__file__)
BENCH = os.path.join(os.path.dirname(HERE), "benchmarks", "bench_programme.py")


def test_bench_programme_smoke():
    r = subprocess.run([sys.executable, BENCH, "--smoke"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for text in ("bare pandas", "cpa fast path", "ratio", "peak memory", "20 facilities"):
        assert text in r.stdout


def test_bench_import_has_no_side_effects(tmp_path):
    code = ("import sys, os; sys.path.insert(0, os.path.dirname(sys.argv[1])); "
            "import bench_programme as b; print(len(b.facility_text(3)[0]) > 1000)")
    r = subprocess.run([sys.executable, "-c", code, BENCH], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "True" and not os.listdir(tmp_path)
