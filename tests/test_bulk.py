"""The fast path of many worksheets (cpa.bulk) against the exact path, table for table.

The exact path is ``programme_table([read(p) for p in valid paths])`` with the problems of
``cpa.worksheet.read`` for the invalid ones; the fast path must give the same table (same
columns in the same order, same dtypes, values to 1e-9 relative), the same invalid worksheets
with the same problems, and the same errors.
"""

import glob
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from cpa import bulk
from cpa.errors import CPAError
from cpa.programme import Settings, programme_table
from cpa.worksheet import read

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_programme as bench  # noqa: E402


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    # a fault in the fast path must fail the test, not hide behind the exact path
    monkeypatch.setattr(bulk, "STRICT", True)


def _exact(paths, settings):
    wss = [read(p) for p in paths]
    invalid = {ws.path: ws.problems for ws in wss if ws.errors}
    return programme_table([ws for ws in wss if not ws.errors], settings), invalid


def _same(paths, settings=None, workers=1):
    settings = settings or Settings(target_low_pct=5, target_high_pct=8)
    b = bulk.load_many(paths, workers=workers)
    fast = bulk.programme_table_bulk(b, settings)
    exact, invalid = _exact(paths, settings)
    assert list(b.invalid) == list(invalid)
    for p in invalid:
        assert [str(x) for x in b.invalid[p]] == [str(x) for x in invalid[p]]
    assert list(fast.columns) == list(exact.columns)
    pd.testing.assert_frame_equal(fast, exact, check_exact=False, rtol=1e-9, atol=1e-6)
    return b, fast


def test_test_data_and_examples(tmp_path):
    paths = []
    for p in sorted(glob.glob(os.path.join(HERE, "data", "*.cpa.md"))) + sorted(
            glob.glob(os.path.join(ROOT, "examples", "*.cpa.md"))):
        dst = tmp_path / os.path.basename(p)
        shutil.copy(p, dst)
        paths.append(str(dst))
    valid = [p for p in paths if not read(p).errors]
    assert len(valid) >= 4
    b, fast = _same(valid)
    assert b.stats["fast"] == len(valid)       # all of them through the fast path
    assert len(fast) == len(valid)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """44 facilities: 30 ordinary, one of each way of breaking a worksheet, and the unusual but
    valid ones that the fast path hands to the exact reader."""
    folder = tmp_path_factory.mktemp("synthetic")
    breaks = {30 + k: b for k, b in enumerate(bench.BREAKS)}
    unusual = {40 + k: u for k, u in enumerate(bench.UNUSUAL)}
    paths = bench.generate(44, str(folder), seed=7, breaks=breaks, unusual=unusual, csv_name=None)
    return paths, breaks, unusual


def test_synthetic_parity(synthetic):
    paths, breaks, unusual = synthetic
    b, fast = _same(paths)
    assert sorted(os.path.basename(p) for p in b.invalid) == sorted(f"f{i:06d}.cpa.md" for i in breaks)
    assert len(fast) == 44 - len(breaks)
    assert b.stats["fast"] == 30
    assert b.stats["exact"] == len(breaks) + len(unusual)


def test_distinct_rows_parity(synthetic, monkeypatch):
    # the rows repeated across facilities are split once: the same table and problems
    monkeypatch.setattr(bulk, "DEDUP_ROWS", 0)
    b, fast = _same(synthetic[0])
    assert b.stats["fast"] == 30


def test_settings_only_change_targets(synthetic):
    paths = synthetic[0][:12]
    _same(paths, Settings(target_low_pct=0, target_high_pct=1))
    _same(paths, Settings(target_low_pct=20, target_high_pct=40))


def test_two_workers(synthetic):
    paths = synthetic[0]
    one = bulk.programme_table_bulk(bulk.load_many(paths, workers=1))
    two = bulk.programme_table_bulk(bulk.load_many(paths, workers=2))
    pd.testing.assert_frame_equal(one, two)


def _whole_despite(dying, paths, chunk, monkeypatch, busy=0.0):
    """The table with two workers, whose forked one runs ``dying(chunk)`` instead of a chunk's
    work (and this process sleeps ``busy`` seconds before each of its own), equals the table
    with one worker."""
    import time

    parent = os.getpid()
    real = bulk._run_chunk

    def work(c):
        if os.getpid() != parent:
            return dying(c)
        time.sleep(busy)
        return real(c)

    monkeypatch.setattr(bulk, "CHUNK", chunk)
    monkeypatch.setattr(bulk, "_run_chunk", work)
    two = bulk.programme_table_bulk(bulk.load_many(paths, workers=2))
    monkeypatch.setattr(bulk, "_run_chunk", real)
    pd.testing.assert_frame_equal(two, bulk.programme_table_bulk(bulk.load_many(paths, workers=1)))


def test_a_worker_that_dies(synthetic, monkeypatch):
    # a worker process that dies on a chunk: this process computes that chunk, the table is whole
    _whole_despite(lambda c: os._exit(3), synthetic[0], 5, monkeypatch)


def test_a_worker_that_dies_while_sending(synthetic, monkeypatch):
    # a worker killed in the middle of sending a large result (this process busy meanwhile):
    # no hang, its chunks are computed here, the table is whole
    import threading

    def dying(chunk):
        threading.Timer(0.3, lambda: os._exit(3)).start()
        return ("x" * 20_000_000, {})

    _whole_despite(dying, synthetic[0][:12], 4, monkeypatch, busy=0.6)


def test_errors_in_the_order_of_the_chunks(synthetic, tmp_path, monkeypatch):
    # a missing file in one chunk and a folder in a later one: two workers raise what one
    # raises (the first chunk's error), whichever worker met its error first
    paths = list(synthetic[0][:12])
    paths[4] = str(tmp_path / "missing.cpa.md")
    os.makedirs(tmp_path / "adir.cpa.md")
    paths[7] = str(tmp_path / "adir.cpa.md")
    monkeypatch.setattr(bulk, "CHUNK", 3)
    with pytest.raises(Exception) as one:
        bulk.load_many(paths, workers=1)
    for _ in range(3):
        with pytest.raises(Exception) as two:
            bulk.load_many(paths, workers=2)
        assert type(two.value) is type(one.value) and str(two.value) == str(one.value)


def test_duplicate_ids(tmp_path, synthetic):
    a = synthetic[0][0]
    dup = tmp_path / "copy.cpa.md"
    shutil.copy(a, dup)
    with pytest.raises(CPAError) as exact:
        programme_table([read(a), read(str(dup))])
    with pytest.raises(CPAError) as fast:
        bulk.programme_table_bulk(bulk.load_many([a, str(dup)]))
    assert str(fast.value) == str(exact.value)


def test_calculation_error_is_the_exact_one(tmp_path, synthetic):
    text = open(synthetic[0][0], encoding="utf-8").read()
    # an option that saves more water than the facility uses
    head = "## effects\n\n| option | effect | stream | value | unit | to_stream |\n| --- | --- | --- | --- | --- | --- |\n"
    assert head in text
    text = text.replace(head, head + "| o1 | reduce_amount | water | 999999999 | m3 | |\n")
    p = tmp_path / "over.cpa.md"
    p.write_text(text, encoding="utf-8")
    assert not read(str(p)).errors
    with pytest.raises(CPAError) as exact:
        programme_table([read(str(p))])
    with pytest.raises(CPAError) as fast:
        bulk.programme_table_bulk(bulk.load_many([str(p)]))
    assert type(fast.value) is type(exact.value) and str(fast.value) == str(exact.value)


def test_programme_from_paths(synthetic):
    paths, breaks, _ = synthetic
    table, invalid = bulk.programme_from_paths(paths[28:34], Settings(), allow_invalid=False)
    assert table is None and len(invalid) == 4
    table, invalid = bulk.programme_from_paths(paths[28:34], Settings(), allow_invalid=True)
    assert len(table) == 2 and list(invalid) == [p for p in paths[28:34] if int(p[-13:-7]) in breaks]
    table, invalid = bulk.programme_from_paths([], Settings())
    assert len(table) == 0 and invalid == {}


_EFFECTS_HEAD = ("## effects\n\n| option | effect | stream | value | unit | to_stream |\n"
                 "| --- | --- | --- | --- | --- | --- |\n")


def _with_effects(synthetic, tmp_path, name, effects, reject=()):
    """A synthetic worksheet (not burning rice husk) with its effects replaced by ``effects``
    and the options in ``reject`` screened out."""
    import re

    for p in synthetic[0][:30]:
        text = open(p, encoding="utf-8").read()
        if "| fuel | rice_husk |" not in text.split("## streams")[1].split("## production")[0].replace(
                "| Nhiên liệu | fuel |", "| fuel |"):
            break
    head, rest = text.split(_EFFECTS_HEAD)
    tail = rest[rest.find("\n\n"):] if "\n\n" in rest else "\n"
    text = head + _EFFECTS_HEAD + "\n".join(effects) + tail
    opts, effs = text.split("## effects")
    for oid in reject:
        opts = re.sub(rf"(\n\| {oid} \| [^|]*\| [^|]*\| )[^|]*\| [^|]*\|", r"\1reject | too costly |", opts)
    text = opts + "## effects" + effs
    out = tmp_path / f"{name}.cpa.md"
    out.write_text(text, encoding="utf-8")
    assert not read(str(out)).errors, read(str(out)).problems
    return str(out)


EFFECT_CASES = {
    # several options on one stream: shares multiply, amounts subtract, in the options' order
    "overlap": ["| o1 | reduce_share | water | 20 | % | |", "| o2 | reduce_share | water | 10 | % | |",
                "| o3 | reduce_amount | water | 100 | m3 | |", "| o4 | reduce_share | water | 50 | % | |",
                "| o5 | reduce_per_unit | water | 0.5 | m3/t | |"],
    # substitution, then shares of what is left of the fuel, then substitution again
    "substitute": ["| o1 | substitute | fuel | 15 | % | husk |", "| o2 | reduce_share | fuel | 10 | % | |",
                   "| o3 | reduce_share | water | 5 | % | |", "| o4 | substitute | fuel | 30 | % | husk |",
                   "| o5 | reduce_share | fuel | 50 | % | |"],
    # recovery into an input, into a by-product and nowhere; the input is also reduced
    "recover": ["| o1 | recover | sw | 20 | % | r1 |", "| o2 | reduce_share | r1 | 5 | % | |",
                "| o3 | recover | sw | 30 | % | byp |", "| o4 | recover | sw | 10 | % | |",
                "| o5 | reduce_share | sw | 10 | % | |"],
    # money effects (signed, money units), an option with two effects
    "money": ["| o1 | money | | 5000000 | VND/yr | |", "| o2 | money | | -2 | million_VND | |",
              "| o3 | money | | 7 | million_VND/yr | |", "| o3 | reduce_share | elec | 3 | % | |",
              "| o4 | reduce_per_unit | elec | 1 | kWh/t | |"],
}


@pytest.mark.parametrize("case", sorted(EFFECT_CASES))
def test_effect_parity(case, synthetic, tmp_path):
    p = _with_effects(synthetic, tmp_path, case, EFFECT_CASES[case])
    b, fast = _same([p, *synthetic[0][:3]])
    assert b.stats["fast"] == 4


def test_rejected_options_parity(synthetic, tmp_path):
    # the rejected options neither count nor take their share of the stream
    p = _with_effects(synthetic, tmp_path, "reject", EFFECT_CASES["overlap"], reject=("o2", "o4"))
    b, fast = _same([p])
    assert b.stats["fast"] == 1 and fast["options_rejected"].iloc[0] >= 2


@pytest.mark.parametrize("effects", [
    # combined, the third option saves more than the first two leave (each alone is fine)
    ["| o1 | reduce_share | water | 60 | % | |", "| o2 | reduce_share | water | 60 | % | |",
     "| o3 | reduce_per_unit | water | 15 | m3/t | |"],
    # a share above 100 %, a stream without a baseline flow, a money effect in kWh
    ["| o1 | reduce_share | water | 120 | % | |"],
    ["| o1 | reduce_share | steam | 10 | % | |"],
    ["| o1 | money | | 10 | kWh | |"],
])
def test_effect_errors_are_the_exact_ones(effects, synthetic, tmp_path):
    p = _with_effects(synthetic, tmp_path, "bad", effects)
    with pytest.raises(CPAError) as exact:
        programme_table([read(p)])
    with pytest.raises(CPAError) as fast:
        bulk.programme_table_bulk(bulk.load_many([p]))
    assert type(fast.value) is type(exact.value) and str(fast.value) == str(exact.value)


# prices: dated rows (the one in force at the baseline's midpoint, else the last started),
# other money units, components that add and subtract, missing prices, time of use
_PRICES = ("## prices\n\n| stream | component | time_of_use | valid_from | valid_to | price | unit | source |\n"
           "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
           "| water | purchase | | 2000-01-01 | 2001-12-31 | 1000 | VND/m3 | expired |\n"
           "| water | purchase | | 2000-06-01 | 2002-01-01 | 2000 | VND/m3 | expired, later |\n"
           "| r1 | purchase | | 2000-01-01 | | 17000000 | VND/t | old |\n"
           "| r1 | purchase | | 2010-01-01 | | 18 | million_VND/t | newer |\n"
           "| r1 | purchase | | 2099-01-01 | | 99 | million_VND/t | future |\n"
           "| r2 | purchase | | 2000-01-01 | | 0.04 | million_VND/kg | per kg |\n"
           "| ww | treatment | | 2000-01-01 | | 9000 | VND/m3 | park |\n"
           "| ww | fee | | 2000-01-01 | | 2000 | VND/m3 | fee |\n"
           "| byp | sale | | 2000-01-01 | | 1000000 | VND/t | sales |\n"
           "| byp | disposal | | 2000-01-01 | | 100000 | VND/t | sales |\n"
           "| hw | disposal | | 2099-01-01 | | 5000 | VND/kg | future only |\n"
           "| elec | purchase | flat | 2000-01-01 | | 2100 | VND/kWh | EVN |\n"
           "| elec | purchase | peak | 2000-01-01 | | 0.0031 | million_VND/kWh | EVN |\n"
           "| elec | purchase | off_peak | 2000-01-01 | | 1200 | VND/kWh | EVN |\n"
           "| fuel | purchase | | 2099-01-01 | | 1 | VND/L | future |\n\n")


@pytest.mark.parametrize("tou", ["none", "peak", "normal"])
def test_price_table_parity(synthetic, tmp_path, tou):
    import re

    effects = ["| o1 | reduce_share | water | 10 | % | |", "| o1 | reduce_share | r1 | 5 | % | |",
               "| o2 | reduce_amount | r2 | 0.5 | t | |", "| o2 | reduce_share | ww | 10 | % | |",
               "| o3 | reduce_share | sw | 10 | % | |", "| o3 | reduce_share | byp | 10 | % | |",
               "| o4 | reduce_share | hw | 10 | % | |", "| o4 | reduce_share | elec | 10 | % | |",
               "| o5 | reduce_share | fuel | 10 | % | |"]
    p = _with_effects(synthetic, tmp_path, f"prices_{tou}", effects)
    text = open(p, encoding="utf-8").read()
    text = re.sub(r"## prices\n.*?\n\n", lambda m: _PRICES, text, count=1, flags=re.S)
    if tou != "none":   # every second electricity flow at another time of use
        n = iter(range(10**6))
        text = re.sub(r"(\| base \| elec \|[^\n]*\| )(\| [^|\n]*\|)$",
                      lambda m: m.group(1) + (f" {tou} " if next(n) % 2 else " ") + m.group(2),
                      text, flags=re.M)
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
    assert not read(p).errors, read(p).problems
    b, fast = _same([p, *synthetic[0][:3]])
    assert b.stats["fast"] == 4


# the shortcuts of the section scan: "###" sub-headings are fine, any other "#" line, an
# indented row or a line break other than "\n" hands the worksheet to the exact reader
@pytest.mark.parametrize("insert, fast", [
    ("\n### Notes\n\nsome words\n", True), ("\n#### deeper\n", True), ("\n# Other\n", False),
    ("\n#no space\n", False), ("\n##\n", False), ("\n  | indented | row |\n", False),
    ("\nline\u2028break\n", False), ("\nform\x0cfeed\n", False)])
def test_scan_shortcuts_parity(synthetic, tmp_path, insert, fast):
    text = open(synthetic[0][0], encoding="utf-8").read()
    text = text.replace("\n## steps\n", insert + "\n## steps\n", 1)
    p = tmp_path / "scan.cpa.md"
    p.write_text(text, encoding="utf-8")
    b, _ = _same([str(p), synthetic[0][1]])
    assert b.stats["fast"] == (2 if fast else 1)


def test_overrides_only_where_they_apply(synthetic, tmp_path):
    # factor rows for a stream, for a fuel and for the grid: only the rows they apply to use them
    src = next(q for q in synthetic[0][:30] if "## factors" not in open(q, encoding="utf-8").read())
    text = open(src, encoding="utf-8").read()
    extra = ("| steam | energy_content | 2.9 | GJ/t | measured | steam tables |\n"
             "| 2024 | grid_ef | 0.8 | tCO2e/MWh | estimate | own |\n"
             "| 2023 | grid_ef | 0.75 | tCO2e/MWh | estimate | own |\n"
             "| 2022 | grid_ef | 0.7 | tCO2e/MWh | estimate | own |\n")
    head = ("## factors\n\n| applies_to | factor | value | unit | status | source |\n"
            "| --- | --- | --- | --- | --- | --- |\n")
    text = text.replace("\n## prices\n", "\n" + head + extra + "\n## prices\n")
    p = tmp_path / "ovr.cpa.md"
    p.write_text(text, encoding="utf-8")
    assert not read(str(p)).errors, read(str(p)).problems
    b, _ = _same([str(p), *[q for q in synthetic[0][:6] if q != src]])
    assert b.stats["fast"] == 6


@pytest.mark.parametrize("n, w", [(0, 1), (44, 1), (1000, 2), (4500, 2), (10001, 2), (100000, 2)])
def test_chunks_cover_the_paths_in_order(n, w):
    chunks = bulk._chunks(list(range(n)), w)
    assert [x for c in chunks for x in c] == list(range(n))
    assert all(len(c) <= bulk.CHUNK for c in chunks)


def _cells_as_text(res):
    codes, uniq = res
    return [[uniq[c] for c in row] for row in codes.tolist()]


@pytest.mark.parametrize("many_long, collide", [(False, False), (True, False), (False, True)])
def test_cells_by_bytes_as_by_strings(many_long, collide, monkeypatch):
    if collide:   # every cell of 8–15 bytes with one hash: the exact numbering takes over
        monkeypatch.setattr(bulk, "_HASH_K", (np.uint64(0), np.uint64(0)))
    # cells are numbered by their UTF-8 bytes (≤ 7, 8–15 bytes, longer): the same cells as
    # splitting the text into strings, equal cells with one code, different cells apart
    import random

    rng = random.Random(3)
    pieces = ["", " ", "a", " a ", "a\x00", "1234567", "12345678", "123456789012345", "1234567890123456",
              " 12345678 ", "Giải pháp", " Giải pháp tiết kiệm ", "tiết", "x" * 40, "x" * 41, "7", "07",
              "\u00e9", "e\u0301", "1.5", "1,5"]
    if not many_long:
        pieces = [p for p in pieces if len(p.encode()) <= 15] + ["a long cell of many bytes"]
    width = 4
    blocks, counts = [], []
    for _ in range(60):
        k = rng.randint(0, 4)
        rows = ["|" + "|".join(rng.choice(pieces) for _ in range(width)) + "|" for _ in range(k)]
        blocks.append("\n".join(rows).encode("utf-8"))
        counts.append(k)
    fast = bulk._Chunk._cells(blocks, counts, width)
    slow = bulk._Chunk._cells_str(blocks, counts, width)
    assert _cells_as_text(fast) == _cells_as_text(slow)
    codes, uniq = fast
    assert len(set(uniq.tolist())) == len(uniq)          # one code per distinct cell
    assert sorted(uniq.tolist()) == sorted(slow[1].tolist())


@pytest.mark.parametrize("collide", [False, True])
def test_cells_of_one_head_and_many_tails(collide, monkeypatch):
    # cells of 8–15 bytes that share their first 8 bytes and differ after: more distinct tails
    # than heads (where numbering the pairs as head × number of heads + tail was not one-to-one)
    if collide:
        monkeypatch.setattr(bulk, "_HASH_K", (np.uint64(0), np.uint64(0)))
    cells = [f"12345678{i:03d}" for i in range(60)] + ["abcdefgh1", "abcdefgh2", "1000000.005", "2000000.001"]
    rows = ["|" + "|".join(cells[(k + j) % len(cells)] for j in range(3)) + "|" for k in range(len(cells))]
    blocks, counts = ["\n".join(rows).encode()], [len(rows)]
    fast = bulk._Chunk._cells(blocks, counts, 3)
    assert _cells_as_text(fast) == _cells_as_text(bulk._Chunk._cells_str(blocks, counts, 3))
    assert len(fast[1]) == len(set(fast[1].tolist()))


@pytest.mark.parametrize("extra", ["| employees | 12 |", "| color | blue |", "|  |  |", "| Employees | 12 |"])
def test_facility_fields_twice_unknown_or_empty(extra, synthetic, tmp_path):
    # a field given twice, an unknown field, an empty row, a field by its label's case: the
    # exact path decides, with its own problems
    text = open(synthetic[0][0], encoding="utf-8").read()
    anchor = "| illustrative | yes |\n"
    assert anchor in text
    p = tmp_path / "fields.cpa.md"
    p.write_text(text.replace(anchor, anchor + extra + "\n", 1), encoding="utf-8")
    b, _ = _same([str(p), synthetic[0][1]])
    assert b.stats["exact"] >= 1


def test_indented_hash_line_inside_a_table(synthetic, tmp_path):
    # the exact reader ends a table at an indented "#" line: the fast path must agree
    text = open(synthetic[0][0], encoding="utf-8").read()
    assert "\n| Trần" in text
    p = tmp_path / "hash.cpa.md"
    p.write_text(text.replace("\n| Trần", "\n  # the others\n| Trần", 1), encoding="utf-8")
    b, _ = _same([str(p), synthetic[0][1]])
    assert b.stats["fast"] == 1


def test_invalid_utf8_across_files(synthetic, tmp_path):
    # a lone lead byte at the end of one file and a stray continuation byte at the start of
    # the next: both files are not UTF-8 text, whatever their neighbours
    a, b = (open(p, "rb").read() for p in synthetic[0][:2])
    pa, pb = tmp_path / "a.cpa.md", tmp_path / "b.cpa.md"
    pa.write_bytes(a + b"\nnote: caf\xc3 \n")
    pb.write_bytes(b"note \xa9\n" + b)
    res, _ = _same([str(pa), str(pb), synthetic[0][2]])
    assert len(res.invalid) == 2


@pytest.mark.parametrize("rows", ["|a|b|\n|c|d", "|a|b|\n|c|d|e|", "a|b|\n|c|d|", "|a|b\n|c|d|"])
def test_cells_of_the_wrong_shape(rows):
    counts = [rows.count("\n") + 1]
    assert bulk._Chunk._cells([rows.encode()], counts, 2) is None
    assert bulk._Chunk._cells_str([rows.encode()], counts, 2) is None


@pytest.mark.parametrize("constructor", ["columns", "rows"])
def test_table_from_packed_rows_as_from_dicts(constructor, monkeypatch):
    if constructor == "rows":   # (what another pandas without the internal constructors gets)
        monkeypatch.delattr(pd.DataFrame, "_from_arrays")
    # rows with different sets of columns (materials, options): the table built from the packed
    # rows is the one pd.DataFrame builds from the row dicts (columns in order of appearance,
    # NaN where a row has no such column, the same dtypes)
    nan = float("nan")
    dicts = [{"facility_id": "a", "x_change_pct": 10.0, "x_target": None, "flag": True, "n": 1,
              "none": None, "text": "x"},
             {"facility_id": "b", "material_s_unit": "t/t", "x_change_pct": nan, "x_target": None, "n": 2,
              "none": None, "text": None},
             {"facility_id": "c", "x_change_pct": -7.0, "x_target": None, "flag": False, "n": 3,
              "latest": None, "material_r_unit": "t/t", "none": None, "text": "y"},
             {"facility_id": "d", "x_change_pct": -7.0, "x_target": None, "flag": False, "n": 3,
              "latest": None, "material_r_unit": "t/t", "none": None, "text": "z"},
             {"facility_id": "e", "x_change_pct": -9.0, "x_target": None, "flag": True, "n": 4,
              "none": None, "text": "w"}]
    settings = Settings(target_low_pct=5, target_high_pct=8)
    # rows come in blocks by set of columns, the blocks of two chunks in any order
    first, second = bulk._blocks([(0, dicts[0]), (1, dicts[1]), (2, dicts[2])]), \
        bulk._blocks([(3, dicts[3]), (5, dicts[4])])
    b = bulk.Bulk(paths=["p1", "p2", "p3", "p4", "p5", "p6"], invalid={"p5": []}, stats={},
                  rows=[("row", d["facility_id"]) for d in dicts[:4]] + [("invalid", []), ("row", "e")],
                  blocks=second + first)
    from cpa.programme import _target

    expected = []
    for d in dicts:
        d = dict(d)
        d["x_target"] = _target(d["x_change_pct"], settings)
        expected.append(d)
    pd.testing.assert_frame_equal(bulk.programme_table_bulk(b, settings), pd.DataFrame(expected))
    empty = bulk.Bulk(paths=["p"], invalid={"p": []}, stats={}, rows=[("invalid", [])])
    pd.testing.assert_frame_equal(bulk.programme_table_bulk(empty), pd.DataFrame([]))


@pytest.mark.parametrize("effects", [
    # recovery into streams of other units (by units, else by mass, water or energy), into a
    # product, a by-product, an auxiliary; substitution by electricity
    ["| o1 | recover | ww | 20 | % | water |", "| o2 | recover | hw | 50 | % | r1 |",
     "| o3 | recover | sw | 10 | % | water |", "| o4 | substitute | fuel | 10 | % | elec |",
     "| o5 | recover | sw | 5 | % | prod |"],
    ["| o3 | recover | evap | 10 | % | water |", "| o4 | recover | byp | 10 | % | a2 |",
     "| o5 | recover | ww | 10 | % | byp |"],
    ["| o2 | substitute | fuel | 20 | % | steam |"],   # steam without flows: in t, no energy
    ["| o1 | recover | sw | 10 | % | im1 |"],   # recovered into a stream without a baseline flow
    # the errors: substitution without a target or into a stream without energy, recovery of an
    # input, a share above 100 %
    ["| o1 | substitute | fuel | 10 | % | |"],
    ["| o1 | substitute | fuel | 10 | % | water |"],
    ["| o1 | recover | water | 10 | % | r1 |"],
    ["| o1 | recover | sw | 150 | % | r1 |"],
    ["| o1 | reduce_share | water | 10 | % | |", "| o2 | substitute | fuel | 10 | kg | husk |"],
])
def test_substitute_recover_parity(effects, synthetic, tmp_path):
    p = _with_effects(synthetic, tmp_path, "subrec", effects)
    try:
        programme_table([read(p)])
    except CPAError as exact:
        with pytest.raises(CPAError) as fast:
            bulk.programme_table_bulk(bulk.load_many([p]))
        assert type(fast.value) is type(exact) and str(fast.value) == str(exact)
        return
    b, _ = _same([p, *synthetic[0][:2]])
    assert b.stats["fast"] == 3


@pytest.mark.parametrize("spare", [0, -1])
def test_size_limit_as_the_exact_reader(synthetic, monkeypatch, spare):
    # a file of exactly the limit is read by the fast path; one byte more goes to the exact reader
    import cpa.worksheet

    p = synthetic[0][0]
    monkeypatch.setattr(cpa.worksheet, "MAX_TEXT_BYTES", os.path.getsize(p) + spare)
    b = bulk.load_many([p], workers=1)
    assert (b.stats["fast"], b.stats["exact"]) == ((1, 0) if spare == 0 else (0, 1))
    assert list(b.invalid) == ([p] if read(p).errors else [])


def test_lookup_matches_a_dictionary():
    """_Lookup.get (object keys and chunk-numbered keys, cached indexes shared between lookups)
    is the per-facility dictionary with the last row winning, None matching None only."""
    import numpy as np

    from cpa.bulk import _Lookup

    rng = np.random.default_rng(3)
    names = np.array(["a", "b", "c", None, "d"], dtype=object)
    fac = rng.integers(0, 6, 200)
    ki = rng.integers(0, 4, 200)   # never "d"
    keys = names[ki]
    gk = np.where(ki == 3, -1, ki)
    vals = np.arange(200).astype(object)
    lk = _Lookup(fac, keys, vals, gk)
    other = _Lookup(fac, keys, -vals, gk, same_keys=lk)
    d = {}
    for f, k, v in zip(fac.tolist(), keys.tolist(), vals.tolist(), strict=True):
        d[(f, k)] = v
    qf = rng.integers(0, 7, 300)
    qi = rng.integers(0, 5, 300)
    qk = names[qi]
    qg = np.where(qi == 3, -1, np.where(qi == 4, 7, qi))
    for _ in range(2):   # the second time from the cached indexes
        want = [d.get((f, k), "none") for f, k in zip(qf.tolist(), qk.tolist(), strict=True)]
        assert lk.get(qf, qk, "none").tolist() == want
        assert lk.get(qf, qk, "none", gkeys=qg).tolist() == want
        assert other.get(qf, qk, "none").tolist() == [w if w == "none" else -w for w in want]


# a table's last line with something after its last "|": the plain scan's rows (matched
# possessively) do not take it, the general scan or the exact reader decides, as before
@pytest.mark.parametrize("after", ["  ", " x", "\t", " |  "])
def test_text_after_the_last_pipe_parity(synthetic, tmp_path, after):
    text = open(synthetic[0][0], encoding="utf-8").read()
    assert "|\n\n## steps\n" in text
    text = text.replace("|\n\n## steps\n", "|" + after + "\n\n## steps\n", 1)
    p = tmp_path / "after.cpa.md"
    p.write_text(text, encoding="utf-8")
    _same([str(p), synthetic[0][1]])


# the chunk scan (all files of a chunk at once, on bytes) takes a file only where the per-file
# scan would take it, and gives it the same tables; anything else is left to the per-file scan
_SCAN_VARIANTS = {
    "plain": lambda t: t,
    "no final newline": lambda t: t.rstrip("\n"),
    "ends in a heading": lambda t: t + "\n## notes\n",
    "em dash, CO₂, ≥, °C": lambda t: t.replace("synthetic facility", "cơ sở — CO₂ ≥ 5 °C → ½"),
    "ohm sign (not NFC)": lambda t: t.replace("synthetic facility", "10 \u2126"),
    "combining accent": lambda t: t.replace("synthetic facility", "Cơ so\u0309"),
    "no-break space": lambda t: t.replace("synthetic facility", "a\u00a0b"),
    "C1 control": lambda t: t.replace("synthetic facility", "a\u0085b"),
    "<br>": lambda t: t.replace("| Giám đốc |", "| Giám<br>đốc |"),
    "a lone <": lambda t: t.replace("synthetic facility", "< 5 %"),
    "tab": lambda t: t.replace("| Giám đốc |", "| Giám\tđốc |"),
    "backslash": lambda t: t.replace("synthetic facility", "a \\ b"),
    "trailing space on a row": lambda t: t.replace("| Giám đốc | yes |", "| Giám đốc | yes | "),
    "row without its last pipe": lambda t: t.replace("| Giám đốc | yes |", "| Giám đốc | yes"),
    "table before the first heading": lambda t: t.replace("\n## facility", "\n| a | b |\n\n## facility", 1),
    "text between tables": lambda t: t.replace("\n## team", "\nsome words\n\n## team", 1),
    "sub-heading": lambda t: t.replace("\n## team", "\n### more\n\n## team", 1),
    "other heading": lambda t: t.replace("\n## team", "\n# more\n\n## team", 1),
    "no empty line after a heading": lambda t: t.replace("## team\n\n", "## team\n", 1),
    "heading without a table": lambda t: t.replace("\n## team", "\n## causes\n\nnothing\n\n## team", 1),
    "unknown table": lambda t: t.replace("## team\n", "## teams\n", 1),
    "a table twice": lambda t: t + "\n## team\n\n| name | role | leader |\n| --- | --- | --- |\n",
    "bad separator": lambda t: t.replace("| --- | --- | --- |\n| Nguyễn", "| --- | - | --- |\n| Nguyễn", 1),
    "indented row": lambda t: t.replace("\n| Trần", "\n  | Trần", 1),
    "indented # line in a table": lambda t: t.replace("\n| Trần", "\n  # the others\n| Trần", 1),
    "table without rows": lambda t: t.replace("\n| Trần Thị B | Quản đốc | no |", "").replace(
        "\n| Nguyễn Văn A | Giám đốc | yes |", ""),
    "CRLF": lambda t: t.replace("\n", "\r\n"),
    "invalid UTF-8": lambda t: t,   # (bytes replaced below)
    "empty": lambda t: "",
}


def test_chunk_scan_as_the_per_file_scan(synthetic):
    base = open(synthetic[0][0], encoding="utf-8").read()
    datas = [_SCAN_VARIANTS[k](base).encode("utf-8") for k in _SCAN_VARIANTS]
    names = list(_SCAN_VARIANTS)
    datas[names.index("invalid UTF-8")] = base.encode("utf-8").replace("ố".encode(), b"\xe1\xbb", 1)
    # a lead byte alone at the end of one file, a continuation byte alone at the start of the next
    datas += [base.encode("utf-8") + b"\nnote: caf\xc3 \n", b"note \xa9\n" + base.encode("utf-8")]
    names += ["lone lead byte at the end", "stray continuation byte at the start"]
    datas += [open(p, "rb").read() for p in synthetic[0]]
    names += [os.path.basename(p) for p in synthetic[0]]
    for p in sorted(glob.glob(os.path.join(ROOT, "examples", "*.cpa.md"))):
        datas.append(open(p, "rb").read())
        names.append(os.path.basename(p))
    ok, (fac, table, header, rows, count) = bulk._scan_chunk(datas + [None], ({}, {}))
    assert not ok[-1]
    chunked = [{} if good else None for good in ok.tolist()]
    for f, t, h, r, c in zip(fac.tolist(), table, header, rows, count.tolist(), strict=True):
        assert t not in chunked[f]
        chunked[f][t] = (h, r, c)
    taken = []
    for name, data, tabs in zip(names, datas, chunked, strict=False):
        if tabs is None:
            continue
        taken.append(name)
        each = bulk._scan(data.decode("utf-8"), ({}, {}))
        assert each is not None, name
        assert {k: (h.decode(), bytes(d).decode(), c) for k, (h, d, c) in tabs.items()} == each, name
    # what the chunk scan must take, and what it must leave
    must = ["plain", "no final newline", "em dash, CO₂, ≥, °C", "a lone <",
            "text between tables", "sub-heading", "table without rows"]
    assert set(must) <= set(taken)
    assert not {"ohm sign (not NFC)", "combining accent", "no-break space", "C1 control", "<br>", "tab",
                "backslash", "other heading", "indented row", "CRLF", "invalid UTF-8", "empty",
                "indented # line in a table", "lone lead byte at the end", "stray continuation byte at the start",
                "trailing space on a row", "row without its last pipe", "table before the first heading",
                "unknown table", "a table twice", "bad separator"} & set(taken)
    ordinary = {f"f{i:06d}.cpa.md" for i in range(30)}
    unusual = {f"f{i:06d}.cpa.md" for i, u in synthetic[2].items() if u in ("escape", "br")}
    assert ordinary <= set(taken) and not unusual & set(taken)


def test_safe_characters_never_compose():
    # no character the chunk scan accepts unnormalised is changed by NFC, is a combining mark,
    # or is the second of a canonical composition (from the Unicode database of this Python)
    import sys
    import unicodedata

    seconds = set()
    for cp in range(sys.maxunicode + 1):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<") and len(d.split()) == 2:
            seconds.add(int(d.split()[1], 16))
    safe = bulk._safe_chars()
    chars = [cp for cp in range(len(safe)) if safe[cp]]
    assert len(chars) > 800
    assert not seconds & set(chars)
    for cp in chars:
        c = chr(cp)
        assert unicodedata.normalize("NFC", c) == c and not unicodedata.combining(c)
        assert unicodedata.normalize("NFC", "a" + c) == "a" + c
    # the Vietnamese letters, dashes, quotes, super- and subscripts, arrows, ≤ ≥ are among them
    assert all(safe[ord(c)] for c in "ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹđơưĐƠƯ—–‘’“”…₂³°→≤≥×÷€")
