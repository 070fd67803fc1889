"""Time reading and checking a large worksheet, and computing its balances.

    python benchmarks/bench_check.py [N]

Generates a worksheet with N extra streams and N extra flows (default 30,000) in a temporary
folder, then times `cpa.worksheet.read` and `cpa.balance.balances`. Prints the figures; asserts
nothing (speed is measured here, never in a timed test).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
MINI = os.path.join(HERE, "..", "tests", "data", "mini.cpa.md")


def make(n: int) -> str:
    with open(MINI, encoding="utf-8") as f:
        text = f.read()
    streams = "\n".join(f"| s{i} | Dòng {i} | | raw_material | | | |" for i in range(n))
    flows = "\n".join(f"| base | s{i} | | prep | {i % 97 + 1} | kg | measured | |" for i in range(n))
    text = text.replace("| grey | Vải mộc |", streams + "\n| grey | Vải mộc |", 1)
    return text.replace("| base | grey | | prep |", flows + "\n| base | grey | | prep |", 1)


def main(n: int = 30_000) -> None:
    from cpa.balance import balances
    from cpa.worksheet import read

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.cpa.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(make(n))
        t0 = time.perf_counter()
        ws = read(path)
        t1 = time.perf_counter()
        assert not ws.errors, ws.errors[:3]
        b = balances(ws)
        t2 = time.perf_counter()
    print(f"rows: {n + 34} flows, {n + 12} streams")
    print(f"read + check: {t1 - t0:.2f} s")
    print(f"balances:     {t2 - t1:.2f} s ({len(b)} balance rows)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000)
