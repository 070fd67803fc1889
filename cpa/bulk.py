"""The fast path for many worksheets: a national programme of thousands of facilities.

:func:`cpa.programme.programme_table` reads each worksheet into a dozen pandas DataFrames and
computes its row with per-facility pandas code: about half a second per facility, hours for a
national programme. This module produces **the same table** (same columns in the same order,
same dtypes, same values but for the last bits of some sums, which add in another order; the
tests hold it to 1e-9 relative) in a few seconds, by working on all facilities at once:

1. **Reading.** The files of a chunk are joined into one buffer and their lines classified with
   array operations (:func:`_scan_chunk`): sections, headers and rows are found for all files at
   once; a file of an unusual layout is split by its own scan (:func:`_scan`). The rows of a
   table are then concatenated across facilities and split into cells *once* (on the positions
   of "|" in their UTF-8 bytes), so a table is parsed once for all facilities.
2. **Converting.** Every column is converted by its schema type once per *distinct* text (numbers
   by one regular-expression pass over all distinct values, then ``float``; choices, units,
   dates, ids through the very same :meth:`cpa.worksheet._Builder.convert` as the exact reader).
3. **Checking.** The checks of :mod:`cpa.validate` that can make a worksheet invalid are redone
   vectorised over the concatenated tables (references with ``isin`` on integer keys,
   duplicates with ``duplicated``, periods, units by stream kind, prices, factors, options).
4. **Computing.** Conversions are resolved by the exact :class:`cpa.quantities.Converter` once
   per distinct (stream kind, fuel, unit, year, overrides in force); indicators are grouped
   sums; the options are combined without double counting by stepping through the position of
   each effect in its facility's order, vectorised across facilities (the semantics of
   :func:`cpa.options.combined_totals`: each option on what the previous ones left; rejected
   options out; operating-cost changes, investment and grants); the combined changes are valued
   by joining the baseline flow parts with a price table resolved once per chunk.
5. **Two cores.** Files are split into contiguous chunks, taken in turn by this process and
   forked workers (``fork``); a worker's results come back through a pipe of its own.

The fast path is an accelerator, never a second source of truth: any worksheet it is not sure
of — a check that fails, a declared ``vi``/``en`` number locale, ``\\|`` escapes, ``<br>``,
headers in Vietnamese or English labels, unusual line breaks, a table twice, a calculation that
would stop with an error — is handed to the exact path (:func:`cpa.worksheet.read` and
:func:`cpa.programme.facility_row`), so its problems and messages are those of ``cpa check``.

Use :func:`programme_from_paths` for ``cpa programme``; :func:`load_many` and
:func:`programme_table_bulk` are its two halves.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from cpa import schema
from cpa.errors import CPAError
from cpa.programme import no_options

__all__ = ["Bulk", "load_many", "programme_table_bulk", "programme_from_paths"]

#: Below this many files per worker, no worker processes are started.
MIN_PER_WORKER = 400
#: Files per chunk: a chunk's tables are built, used and freed before the next (bounded memory).
CHUNK = 1000
#: Above this many rows of a table in a chunk, its distinct rows are looked for before splitting.
DEDUP_ROWS = 2000

# characters str.splitlines() breaks on besides \n, the escape character, and <br>
_ODD_CHARS = tuple("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")   # (the escape and <br> are checked apart)
# an indented table line, or an indented "#" line (the exact reader ends a table there)
_INDENTED_ROW = re.compile(r"\n[^\S\n]+[|#]")   # a section body starts with "\n"
_OTHER_HEADING = re.compile(r"\n##[^\S\n]")
_BLOCK = re.compile(r"\n(\|[^\n]*(?:\n\|[^\n]*)*)")
# a section of the common layout: title, an empty line, header, separator, rows ("\n|...|" each);
# the rows possessive (no backtracking into them: where fewer rows would be needed for a match,
# a line starting with "|" would be left outside the tables, and the general scan decides anyway)
_PLAIN_SECTION = re.compile(r"\n## ([^\n]*)\n\n(\|[^\n]*\|)\n(\|[^\n]*\|)((?:\n\|[^\n]*\|)*+)(?=\n|$)")
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_ANY_AMBIGUOUS = re.compile(r"(?m)^[+-]?[1-9]\d{0,2}\.\d{3}$")
_NOT_PLAIN = str.maketrans("", "", "0123456789.+-eE\n")   # deletes what a plain number may hold

#: multipliers of the hash of 8–15-byte cells in :meth:`_Chunk._cells` (its codes are checked)
_HASH_K = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))

_LAYERS = ("mass_t", "water_m3", "energy_gj", "toe_vn", "co2_fossil_t", "co2_biogenic_t", "co2e_other_t")


# ----------------------------------------------------------------------------------------------
# the result of loading


@dataclass
class Bulk:
    """Many worksheets, loaded.

    ``paths`` in the order given; ``invalid`` maps each invalid worksheet's path to its problems
    (exactly those of :func:`cpa.worksheet.read`); ``stats`` counts the worksheets handled by
    the fast path (``fast``) and by the exact path (``exact``). The settings-independent figures
    of each valid facility are computed while loading (in the worker processes): ``rows`` has one
    entry per path, ``("row", id)``, ``("invalid", problems)`` or ``("error", id, exception)``
    (the error its exact roll-up stops with), and the programme rows themselves are in
    ``blocks``, by column: one block per set of columns, ``(columns, positions, values)`` with
    the positions of its rows in ``paths`` and the values of each column, a list or an array
    (the ``*_target`` columns still to be set from the settings).
    """

    paths: list
    invalid: dict
    stats: dict
    rows: list = field(repr=False, default_factory=list)
    blocks: list = field(repr=False, default_factory=list)


def _blocks(rows) -> list:
    """``(position, row dict)`` pairs → blocks ``(columns, positions, values by column)``, one per
    set of columns, in order of their first row."""
    groups: dict = {}
    for pos, row in rows:
        keys = tuple(row)
        g = groups.get(keys)
        if g is None:
            g = groups[keys] = ([], [])
        g[0].append(pos)
        g[1].append(tuple(row.values()))
    return [(keys, pos, [list(c) for c in zip(*vals, strict=True)]) for keys, (pos, vals) in groups.items()]


# ----------------------------------------------------------------------------------------------
# caches kept by a (worker) process from one chunk to the next: pure functions of their keys
# (cell conversions in the plain locale, unit factors, conversions of a stream kind)

_CACHES: dict = {}
#: A cache is emptied when it holds more entries than this (memory stays bounded).
CACHE_MAX = 200_000


def _cache(name: str) -> dict:
    c = _CACHES.get(name)
    if c is None or len(c) > CACHE_MAX:
        c = _CACHES[name] = {}
    return c


# ----------------------------------------------------------------------------------------------
# stage 1: split files into tables


def _lookup_title(title: str, cache: dict):
    hit = cache.get(title)
    if hit is None:
        key = re.split(r"\s+[—–-]\s+|\s*/\s*|\s*\(", title, maxsplit=1)[0].strip().casefold()
        lookup = schema.table_lookup()
        hit = lookup.get(key) or lookup.get(title.strip().casefold()) or ""
        cache[title] = hit
    return hit


def _header_info(table: str, header: str, cache: dict):
    """(width, {column: position}) of a header row, or None if the exact reader would complain."""
    key = (table, header)
    if key in cache:
        return cache[key]
    from cpa.worksheet import _split_row

    cells = _split_row(header)
    spec = schema.table(table)
    if spec.keyvalue:
        info = (2, {}) if len(cells) == 2 else None
        cache[key] = info
        return info
    lookup = schema.header_lookup(table)
    positions: dict = {}
    ok = True
    for i, text in enumerate(cells):
        if text.strip() == "" and i == len(cells) - 1:
            continue
        name = lookup.get(text.strip().casefold())
        # labels are accepted by the exact reader; the fast path takes column ids only
        if name is None or name in positions or name != text.strip():
            ok = False
            break
        positions[name] = i
    if ok:
        for col in spec.columns:
            if col.required and col.name not in positions:
                ok = False
    info = (len(cells), positions) if ok else None
    cache[key] = info
    return info


def _scan(text: str, caches) -> dict | None:
    """{table: (header, data rows as one string, number of rows)} of one worksheet's text, or
    None to use the exact reader."""
    title_cache, sep_cache = caches
    if "\\" in text or "<br>" in text or any(c in text for c in _ODD_CHARS):
        return None
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = "\n" + text
    parts = text.split("\n## ")
    pre = parts[0]
    if len(parts) < 2 or "\n|" in pre or _OTHER_HEADING.search(pre):
        return None
    # the checks of every section at once: no indented row anywhere; after the first section
    # heading, no line starting with "#" other than "## " headings and "###" sub-headings
    if _INDENTED_ROW.search(text):
        return None
    rest = text[len(pre):]
    if rest.count("\n#") - rest.count("\n###") != len(parts) - 1:
        return None
    out = _scan_plain(text, caches, len(parts) - 1)
    if out is not None:
        return out
    out = {}
    for part in parts[1:]:
        nl = part.find("\n")
        title, body = (part[:nl], part[nl:]) if nl >= 0 else (part, "")
        name = _lookup_title(title.strip(), title_cache) if title.strip() else ""
        if not name or name in out:
            return None
        blocks = _BLOCK.findall(body)
        if not blocks:
            out[name] = ("", "", 0)
            continue
        block = blocks[0] if len(blocks) == 1 else "\n".join(blocks)
        if " \n" in block or "\t\n" in block or block[-1] in " \t":
            block = "\n".join(ln.rstrip() for ln in block.split("\n"))
        nl1 = block.find("\n")
        if nl1 < 0:
            out[name] = (block, "", 0)
            continue
        nl2 = block.find("\n", nl1 + 1)
        sep = block[nl1 + 1: nl2] if nl2 >= 0 else block[nl1 + 1:]
        ok = sep_cache.get(sep)
        if ok is None:
            ok = sep_cache[sep] = bool(_SEPARATOR.match(sep))
        if not ok:
            return None
        data = block[nl2 + 1:] if nl2 >= 0 else ""
        out[name] = (block[:nl1], data, data.count("\n") + 1 if data else 0)
    return out


def _scan_plain(text: str, caches, nsections: int) -> dict | None:
    """:func:`_scan` for the common layout, with one regular expression: every section is its
    title, one empty line and a table whose lines all start and end with "|", and no other line
    of the text starts with "|". None if the text is not laid out so (then the general scan
    decides)."""
    title_cache, sep_cache = caches
    secs = _PLAIN_SECTION.findall(text)
    if len(secs) != nsections:
        return None
    out: dict = {}
    lines = 0
    for title, header, sep, data in secs:
        t = title.strip()
        name = _lookup_title(t, title_cache) if t else ""
        if not name or name in out:
            return None
        ok = sep_cache.get(sep)
        if ok is None:
            ok = sep_cache[sep] = bool(_SEPARATOR.match(sep))
        if not ok:
            return None
        nrows = data.count("\n")
        lines += 2 + nrows
        out[name] = (header, data[1:], nrows)
    if lines != text.count("\n|"):   # a table line outside these tables: the general scan
        return None
    return out


# The whole chunk at once (bytes): the common case, every file laid out as _scan_plain expects
# and written in characters that need no normalising, is recognised with one pass of the section
# pattern and a few array operations over the concatenated files, instead of a dozen string
# passes per file. Any file it is not sure of is left to the per-file _scan (the decision stays
# _scan's): so each file scanned here gets exactly what _scan would give it.
#: bytes a file may hold for the chunk scan (besides the non-ASCII checked apart): "\n" and
#: printable ASCII but "\\"; everything else (tabs, other line breaks, controls) → _scan
_PLAIN_BYTES = bytes([10] + [c for c in range(32, 127) if c not in b"\\<"] + list(range(128, 256)))
_PLAIN_BYTES_LT = _PLAIN_BYTES + b"<"
_SEP = b"\n\x00\n"   # between files: no line of a file runs into the next


#: non-ASCII characters the chunk scan accepts: Latin (Vietnamese included), general
#: punctuation, super- and subscripts, currency, letter-like symbols, arrows and mathematical
#: operators, but any that normalising would change, combining marks, spaces and controls
_SAFE_RANGES = ((0xA1, 0x300), (0x1E00, 0x1F00), (0x2010, 0x2028), (0x2030, 0x205F), (0x2070, 0x20C1),
                (0x2100, 0x2150), (0x2190, 0x2300))


@lru_cache(maxsize=1)
def _safe_chars() -> np.ndarray:
    safe = np.zeros(0x10000, dtype=bool)
    for a, b in _SAFE_RANGES:
        for cp in range(a, b):
            c = chr(cp)
            safe[cp] = (unicodedata.is_normalized("NFC", c) and not unicodedata.combining(c)
                        and not c.isspace() and unicodedata.category(c)[0] not in "CZ")
    return safe


def _utf8_nfc_bad(buf: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Positions (among ``hi``, the offsets of the bytes ≥ 0x80 in ``buf``) of the bytes that are
    not part of a well-formed 2- or 3-byte UTF-8 character of :func:`_safe_chars`. Text of
    ASCII and those characters is valid UTF-8 and already NFC: none of them is changed by NFC,
    none is a combining mark or the second character of a canonical composition (a test derives
    this from the Unicode database), so no two of them compose."""
    v = buf[hi].astype(np.int64)
    n = len(hi)
    pos = np.full(n + 2, -10, dtype=np.int64)
    pos[:n] = hi
    val = np.zeros(n + 2, dtype=np.int64)
    val[:n] = v
    cont = (val >= 0x80) & (val <= 0xBF)
    lead2 = (v >= 0xC2) & (v <= 0xDF)
    lead3 = (v >= 0xE0) & (v <= 0xEF)
    safe = _safe_chars()
    k2 = np.flatnonzero(lead2)
    cp2 = ((v[k2] & 0x1F) << 6) | (val[k2 + 1] & 0x3F)
    ok2 = (pos[k2 + 1] == hi[k2] + 1) & cont[k2 + 1] & safe[cp2]
    k3 = np.flatnonzero(lead3)
    cp3 = ((v[k3] & 0x0F) << 12) | ((val[k3 + 1] & 0x3F) << 6) | (val[k3 + 2] & 0x3F)
    ok3 = ((pos[k3 + 1] == hi[k3] + 1) & (pos[k3 + 2] == hi[k3] + 2) & cont[k3 + 1] & cont[k3 + 2]
           & (cp3 >= 0x800) & safe[cp3])
    # continuation bytes: each right after exactly one lead (a lead claims only the bytes that
    # follow it directly: a stray continuation byte elsewhere, in this file or another, stays bad)
    claimed = np.zeros(n + 2, dtype=np.int64)
    claimed[k2[pos[k2 + 1] == hi[k2] + 1] + 1] += 1
    claimed[k3[pos[k3 + 1] == hi[k3] + 1] + 1] += 1
    claimed[k3[pos[k3 + 2] == hi[k3] + 2] + 2] += 1
    bad = ~(lead2 | lead3 | cont[:n]) | (cont[:n] != (claimed[:n] == 1)) | (claimed[:n] > 1)
    bad[k2[~ok2]] = True
    bad[k3[~ok3]] = True
    return hi[bad]


def _scan_chunk(datas: list, caches):
    """The tables of files (their bytes; None: not read) as :func:`_scan` finds them:
    ``(ok, (file, table, header, rows, row count))``, ``ok`` the files scanned here and, for
    each of their sections, its file (index), table name, header (UTF-8 bytes) and rows (a view of
    the UTF-8 bytes, rows
    joined by "\\n") and number of rows. The per-file :func:`_scan` decides for the others.

    The files are joined (each after a "\\n", as :func:`_scan` prepends, and apart by a line of
    its own) and their lines classified with array operations: a file is scanned here only if
    :func:`_scan_plain` would take it (every "## " heading followed by an empty line and a table
    whose lines all start and end with "|", no other table line, no other "#" line after the
    first heading but "###" ones) and :func:`_scan` would not stop before (no "\\", "<br>", tab,
    control or line break but "\\n", no indented table line, text already NFC)."""
    title_cache, sep_cache = caches
    n = len(datas)
    if not n:
        return np.zeros(0, dtype=bool), (np.zeros(0, dtype=np.int64), [], [], [], np.zeros(0, dtype=np.int64))
    lens = np.fromiter((0 if d is None else len(d) for d in datas), dtype=np.int64, count=n)
    starts = np.zeros(n, dtype=np.int64)   # file i's text starts with the "\n" at starts[i]
    starts[1:] = np.cumsum(lens[:-1] + len(_SEP))
    chunk = b"\n" + _SEP.join(b"" if d is None else d for d in datas) + b"\n\x00"
    ok = lens > 0
    buf = np.frombuffer(chunk + b"\x00\x00", dtype=np.uint8)   # (two more: c2, c3 of the last line)

    def files_at(pos) -> np.ndarray:
        return np.searchsorted(starts, pos, side="right") - 1

    odd = chunk.translate(None, _PLAIN_BYTES)   # what is left: NULs (one per _SEP), "<", odd bytes
    if len(odd) != n:
        if odd.count(0) != n or odd.translate(None, b"<\x00"):
            for i, d in enumerate(datas):
                if d is not None and d.translate(None, _PLAIN_BYTES_LT):
                    ok[i] = False
        if b"<" in odd:
            ok[[files_at(m.start()) for m in re.finditer(rb"<br>", chunk)]] = False
    if not chunk.isascii():
        ok[files_at(_utf8_nfc_bad(buf, np.flatnonzero(buf >= 0x80)))] = False
    # the lines: line i is chunk[s[i]:e[i]], of file f[i]
    nl = np.flatnonzero(buf[:-2] == 10)
    s, e = nl[:-1] + 1, nl[1:]
    nlines = len(s)
    f = files_at(nl[:-1])
    size = e - s
    c1, c2, c3 = buf[s], buf[s + 1], buf[s + 2]
    last = buf[e - 1]
    pipe = c1 == 124
    row = pipe & (last == 124) & (size >= 2)
    hashed = c1 == 35
    sec = hashed & (c2 == 35) & (c3 == 32)
    sub = hashed & (c2 == 35) & (c3 == 35)
    n_pipe = np.bincount(f[pipe], minlength=n)
    h = np.flatnonzero(sec)
    fh = f[h]
    n_sec = np.bincount(fh, minlength=n)
    ok &= n_sec > 0
    first = np.full(n, nlines, dtype=np.int64)
    np.minimum.at(first, fh, h)
    other = np.flatnonzero(hashed & ~sec & ~sub)   # "#" lines are fine before the first "## " only
    ok[f[other][other > first[f[other]]]] = False
    for i in np.flatnonzero(c1 == 32).tolist():    # an indented table line or "#" line
        if chunk[s[i]: e[i]].lstrip(b" ").startswith((b"|", b"#")):
            ok[f[i]] = False
    # the sections: "## title", an empty line, header and separator, then the rows
    at = np.minimum(h[:, None] + np.arange(1, 5), nlines - 1)
    plain = (h + 3 < nlines) & (size[at[:, 0]] == 0) & row[at[:, 1]] & row[at[:, 2]] & (f[at[:, 2]] == fh)
    breaks = np.append(np.flatnonzero(~row), nlines)
    nrows = np.where(h + 4 < nlines, breaks[np.searchsorted(breaks, h + 4)] - (h + 4), 0)
    ok &= np.bincount(fh[plain], minlength=n) == n_sec
    ok &= np.bincount(fh[plain], weights=nrows[plain] + 2, minlength=n).astype(np.int64) == n_pipe
    sel = np.flatnonzero(ok[fh])   # (all the sections of these files are plain)
    h, fh, nrows, at = h[sel], fh[sel], nrows[sel], at[sel]
    # titles → tables and separators checked once per distinct text; a file with an unknown
    # title, a bad separator or a table twice is left to the per-file scan
    titles = [chunk[a:b] for a, b in zip((s[h] + 3).tolist(), e[h].tolist(), strict=True)]
    for t in set(titles).difference(title_cache):
        text = t.decode("utf-8").strip()
        title_cache[t] = _lookup_title(text, title_cache) if text else ""
    seps = [chunk[a:b] for a, b in zip(s[at[:, 2]].tolist(), e[at[:, 2]].tolist(), strict=True)]
    for sp in set(seps).difference(sep_cache):
        sep_cache[sp] = bool(_SEPARATOR.match(sp.decode("utf-8")))
    names = [title_cache[t] for t in titles]
    code = {spec.name: k for k, spec in enumerate(schema.TABLES)}
    tcode = np.fromiter((code.get(nm, -1) for nm in names), dtype=np.int64, count=len(names))
    good = np.fromiter((sep_cache[sp] for sp in seps), dtype=bool, count=len(seps)) & (tcode >= 0)
    ok[fh[~good]] = False
    key = np.sort(fh * (len(code) + 1) + tcode)
    ok[key[1:][key[1:] == key[:-1]] // (len(code) + 1)] = False
    keep = np.flatnonzero(ok[fh])
    kl = keep.tolist()
    h0, h1 = s[at[keep, 1]].tolist(), e[at[keep, 1]].tolist()
    d0, d1 = s[at[keep, 3]].tolist(), e[np.maximum(h[keep] + 3 + nrows[keep], h[keep] + 3)].tolist()
    k = nrows[keep]
    view = memoryview(chunk)   # the rows as views: copied once, when a table's rows are joined
    return ok, (fh[keep], [names[i] for i in kl], [chunk[a:b] for a, b in zip(h0, h1, strict=True)],
                [view[a:b] if n else b"" for a, b, n in zip(d0, d1, k.tolist(), strict=True)], k)


# ----------------------------------------------------------------------------------------------
# stage 2: cells → typed columns


class _Conv:
    """Converts columns through the exact reader's cell conversion, once per distinct text."""

    def __init__(self):
        from cpa.worksheet import RawWorksheet, _Builder

        self.b = _Builder(RawWorksheet("", {}, []))
        self.cache = _cache("cells")

    def one(self, col, text: str, table: str):
        key = (table, col.name, text)
        hit = self.cache.get(key)
        if hit is None:
            from cpa.worksheet import Loc

            n = len(self.b.problems)
            try:
                value = self.b.convert(col, text, Loc(line=1), table)
                bad = len(self.b.problems) > n
            except Exception:  # noqa: BLE001 - anything odd goes to the exact path
                value, bad = None, True
            del self.b.problems[n:]
            hit = self.cache[key] = (value, bad)
        return hit

    def column(self, col, table: str, codes, uniq: list, ids: dict | None = None):
        """(values, bad rows, dates) of a column given as codes into its distinct raw cells
        ``uniq`` (dates: datetime64[D] for a date column, else None). With ``ids``, the values of
        a column of text, ids, references, units, choices or dates are also numbered (one
        integer per distinct value across the chunk, -1 for none) in ``self.g``."""
        n = len(codes)
        self.g = np.zeros(0, dtype=np.int64)
        if not n:
            empty = np.zeros(0) if col.type in ("number", "int") else np.empty(0, dtype=object)
            return empty, np.zeros(0, dtype=bool), np.zeros(0, dtype="datetime64[D]")
        uniq = [u.strip() for u in uniq]
        if col.type in ("number", "int"):
            vals = np.full(len(uniq), np.nan)
            badu = np.zeros(len(uniq), dtype=bool)
            filled = [u or col.default for u in uniq] if col.default else uniq
            isempty = np.fromiter(map(len, filled), dtype=np.int64, count=len(filled)) == 0
            nonempty = np.nonzero(~isempty)[0]
            texts = filled if not isempty.any() else [filled[i] for i in nonempty.tolist()]
            joined = "\n".join(texts)
            floats = None
            # plain numbers only ([+-]digits[.digits][e[+-]digits], in these characters float()
            # reads exactly those); anything else goes through the exact cell conversion
            if texts and not joined.translate(_NOT_PLAIN) and not _ANY_AMBIGUOUS.search(joined):
                try:
                    floats = np.fromiter(map(float, texts), dtype=float, count=len(texts))
                except ValueError:
                    floats = None
            if floats is not None:
                vals[nonempty] = floats
                badu[nonempty] = ~np.isfinite(floats)
                if col.type == "int":
                    badu[nonempty] |= floats != np.floor(floats)
            else:
                for i in nonempty.tolist():
                    value, bad = self.one(col, filled[i], table)
                    badu[i] = bad
                    vals[i] = np.nan if value is None else float(value)
            if col.required:
                badu |= isempty
            return vals[codes], badu[codes], None
        if col.type == "text":
            conv = [(u if u != "" else None, col.required and u == "") for u in uniq]
        else:
            conv = [self.one(col, u, table) for u in uniq]
        values = np.empty(len(uniq), dtype=object)
        values[:] = [c[0] for c in conv]
        badu = np.array([c[1] for c in conv], dtype=bool)
        dates = _dates(values)[codes] if col.type == "date" else None
        if ids is not None:   # every distinct value of the chunk as one integer (None: -1)
            g = np.array([-1 if v is None else ids.setdefault(v, len(ids)) for v in values.tolist()], dtype=np.int64)
            self.g = g[codes]
        return values[codes], badu[codes], dates


def _local(codes, n_uniq: int):
    """(codes renumbered 0..k-1, the k original codes used), in order of the original codes."""
    seen = np.zeros(n_uniq, dtype=bool)
    seen[codes] = True
    used = np.flatnonzero(seen)
    remap = np.zeros(n_uniq, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return remap[codes], used


def _factorize(texts: list):
    import pandas as pd

    codes, uniq = pd.factorize(np.array(texts, dtype=object))
    return codes, list(uniq)


def _dates(values) -> np.ndarray:
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    for i, v in enumerate(values):
        if v is not None:
            out[i] = np.datetime64(v, "D")
    return out


# ----------------------------------------------------------------------------------------------
# one chunk of files: read, check, compute


class _Chunk:
    def __init__(self, paths: list):
        self.paths = [str(p) for p in paths]
        self.n = len(self.paths)
        self.bad = np.zeros(self.n, dtype=bool)      # → exact reader
        self.fail = np.zeros(self.n, dtype=bool)     # → exact roll-up (would raise)
        self.t: dict = {}                            # table → {column: array, "fac": int array}
        self.fac: dict = {}                          # facility field → per-facility array

    def mark(self, fac_idx, mask=None, which="bad"):
        arr = self.bad if which == "bad" else self.fail
        if mask is None:
            arr[np.asarray(fac_idx, dtype=np.int64)] = True
        else:
            m = np.asarray(mask, dtype=bool)
            if m.any():
                arr[np.asarray(fac_idx)[m]] = True

    # -- reading ---------------------------------------------------------------------------------
    def read(self):
        from cpa.worksheet import MAX_TEXT_BYTES

        caches = ({}, {})
        datas: list = []
        for i, p in enumerate(self.paths):
            data = None
            if p.lower().endswith((".xlsx", ".xlsm")):
                self.bad[i] = True
            else:
                try:
                    fd = os.open(p, os.O_RDONLY)   # (no buffered file object: less work per file)
                    try:
                        # as f.read(MAX_TEXT_BYTES + 1), without a buffer of that size for every file
                        data = os.read(fd, min(os.fstat(fd).st_size, MAX_TEXT_BYTES) + 1)
                        while len(data) <= MAX_TEXT_BYTES:   # until the end (or a file that grew)
                            more = os.read(fd, min(MAX_TEXT_BYTES + 1 - len(data), 1 << 20))
                            if not more:
                                break
                            data += more
                    finally:
                        os.close(fd)
                except OSError:
                    data = None
                if data is not None and (len(data) > MAX_TEXT_BYTES
                                         or data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))
                                         or b"\x00" in data[:8192]):
                    data = None
                if data is None:
                    self.bad[i] = True
            datas.append(data)
        ok, (fac, table, header, rows, count) = _scan_chunk(datas, caches)
        # a worksheet without its facility table or a required one: the exact reader decides
        need = {spec.name for spec in schema.TABLES if spec.required} | {"facility"}
        has = np.bincount(fac[np.fromiter((t in need for t in table), dtype=bool, count=len(table))],
                          minlength=self.n)
        fac, count = fac.tolist(), count.tolist()
        for i in np.flatnonzero(~ok).tolist():   # the per-file scan decides
            if datas[i] is None:
                continue
            try:
                tabs = _scan(datas[i].decode("utf-8"), caches)
            except ValueError:
                tabs = None
            if tabs is None:
                self.bad[i] = True
                continue
            has[i] = len(need & tabs.keys())
            for name, (h, d, c) in tabs.items():
                if not h:
                    if schema.table(name).keyvalue:
                        self.bad[i] = True
                    continue
                fac.append(i)
                table.append(name)
                header.append(h.encode("utf-8"))
                rows.append(d.encode("utf-8"))
                count.append(c)
        self.bad |= has != len(need)
        # (table, header) -> [facs, rows, row counts], in order of the files
        import pandas as pd

        tc, tu = pd.factorize(np.array(table, dtype=object))
        hc, hu = pd.factorize(np.array(header, dtype=object))   # (bytes: their hashes are kept)
        gid, gu = pd.factorize(tc.astype(np.int64) * max(len(hu), 1) + hc)
        gmap = [(tu[g // max(len(hu), 1)], hu[g % max(len(hu), 1)]) for g in gu.tolist()]
        fac_a, count_a = np.asarray(fac, dtype=np.int64), np.asarray(count, dtype=np.int64)
        order = np.lexsort((fac_a, gid))
        bounds = np.searchsorted(gid[order], np.arange(len(gmap) + 1))
        groups: dict = {}
        for g, key in enumerate(gmap):
            idx = order[bounds[g]: bounds[g + 1]]
            groups[key] = [fac_a[idx].tolist(), [rows[k] for k in idx.tolist()], count_a[idx].tolist()]
        self._split(groups)

    def _split(self, groups):
        hcache: dict = {}
        parts: dict = {}
        for (name, header), (facs, blocks, counts) in groups.items():
            info = _header_info(name, header.decode("utf-8"), hcache)
            if info is None:
                self.bad[facs] = True
                continue
            width, positions = info
            keep = [k for k, f in enumerate(facs) if not self.bad[f]]
            if len(keep) < len(facs):
                facs, blocks, counts = ([x[k] for k in keep] for x in (facs, blocks, counts))
            cells = self._cells(blocks, counts, width)
            if cells is None:   # some facility has a row of the wrong shape: find it
                keep = []
                for k, block in enumerate(blocks):
                    if not block or all(r.endswith(b"|") and r.count(b"|") == width + 1
                                        for r in bytes(block).split(b"\n")):
                        keep.append(k)
                    else:
                        self.bad[facs[k]] = True
                facs, blocks, counts = ([x[k] for k in keep] for x in (facs, blocks, counts))
                cells = self._cells(blocks, counts, width)
            fac = np.repeat(np.array(facs, dtype=np.int64), counts)
            parts.setdefault(name, []).append((fac, *cells, positions))
        for name, plist in parts.items():
            self.t[name] = {"_parts": plist}

    @staticmethod
    def _cells(blocks, counts, width):
        """The rows of one table across facilities as (codes, distinct cells): ``codes[r, j]``
        is the cell ``j`` of row ``r`` as an index into the distinct raw cells; None if some row
        does not have ``width`` cells.

        The cells are found on the UTF-8 bytes of the joined rows (the positions of "|") and
        numbered by their bytes: a cell of at most 16 bytes *is* its key (two 64-bit words and
        its length), so equal keys are equal cells, exactly; only the distinct cells become
        Python strings. Tables with many longer cells are split as strings (:meth:`_cells_str`).
        """
        import pandas as pd

        nrows = sum(counts)
        step = width + 1
        if not nrows:
            return np.zeros((0, step), dtype=np.int64), np.array([""], dtype=object)
        if nrows > DEDUP_ROWS:
            # tables whose rows repeat across facilities (streams, prices, steps...): the
            # distinct rows are split as strings
            sample = b"\n".join(b for b in blocks[:100] if b).split(b"\n", 1000)[:1000]
            if len(set(sample)) < 0.5 * len(sample):
                return _Chunk._cells_str(blocks, counts, width)
        big = b"\n".join(b for b in blocks if b) + b"\n"
        nb = len(big)
        buf = np.frombuffer(big + bytes(16), dtype=np.uint8)
        pipes = np.flatnonzero(buf[:nb] == 124)   # "|"
        ncell = len(pipes) + 1
        # as "(big).split('|')": the same number of cells, the first one empty
        if ncell != 1 + nrows * step or pipes[0] != 0:
            return None
        starts = np.empty(ncell, dtype=np.int64)
        starts[0] = 0
        starts[1:] = pipes + 1
        ends = np.empty(ncell, dtype=np.int64)
        ends[:-1] = pipes
        ends[-1] = nb
        lens = ends - starts
        # the cell after the last "|" of every row is exactly "\n"
        last = np.arange(width + 1, ncell, step)
        if not ((lens[last] == 1).all() and (buf[starts[last]] == 10).all()):
            return None
        long_ = lens > 15
        if long_.sum() * 8 > ncell:   # many long cells: as strings
            return _Chunk._cells_str(blocks, counts, width)
        # 8 bytes at every offset (unaligned little-endian words), masked to the cell's length;
        # the length in the top byte of the last word
        words = np.ndarray(shape=(nb + 9,), dtype="<u8", buffer=buf, offset=0, strides=(1,))
        masks = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)
        tagged = lens.astype(np.uint64) << np.uint64(56)
        w1 = words[starts] & masks[np.minimum(lens, 8)]
        key = w1 | tagged   # ≤ 7 bytes: the key is the cell and its length (bits 56–58)
        # 8–15 bytes: a hash of the two words (bit 62 set), checked against the first cell of
        # each code below; longer: numbered as bytes (bit 63 set)
        mid = np.flatnonzero((lens >= 8) & ~long_)
        w2 = np.zeros(ncell, dtype=np.uint64)
        if len(mid):
            w2[mid] = (words[starts[mid] + 8] & masks[lens[mid] - 8]) | tagged[mid]
            with np.errstate(over="ignore"):
                h = (w1[mid] * _HASH_K[0]) ^ (w2[mid] * _HASH_K[1])
                h ^= h >> np.uint64(31)
            key[mid] = (h & np.uint64((1 << 62) - 1)) | np.uint64(1 << 62)
        if long_.any():   # longer: as bytes
            li = np.flatnonzero(long_)
            texts = [big[s:e] for s, e in zip(starts[li].tolist(), ends[li].tolist(), strict=True)]
            lc, _ = pd.factorize(np.array(texts, dtype=object))
            key[li] = lc.astype(np.uint64) | np.uint64(1 << 63)
        codes, _ = pd.factorize(key)
        # codes are numbered in order of appearance: the first cell of each is a new maximum
        top = np.maximum.accumulate(codes)
        first = np.flatnonzero(np.r_[True, top[1:] > top[:-1]])
        if len(mid):
            rep = first[codes[mid]]
            if not ((lens[rep] == lens[mid]) & (w1[rep] == w1[mid]) & (w2[rep] == w2[mid])).all():
                # two different cells with one hash: number the pairs exactly
                ca, _ = pd.factorize(w1[mid])
                cb, ub = pd.factorize(w2[mid])
                key[mid] = (ca.astype(np.uint64) * np.uint64(len(ub)) + cb.astype(np.uint64)) | np.uint64(1 << 62)
                codes, _ = pd.factorize(key)
                top = np.maximum.accumulate(codes)
                first = np.flatnonzero(np.r_[True, top[1:] > top[:-1]])
        # the distinct cells as strings: their bytes gathered with "|" after each, one decode
        ul = lens[first] + 1
        offs = np.cumsum(ul) - ul
        src = np.repeat(starts[first] - offs, ul) + np.arange(int(ul.sum()))
        gathered = buf[src]
        gathered[offs + ul - 1] = 124
        uniq = np.array(gathered.tobytes().decode("utf-8").split("|")[:-1], dtype=object)
        return codes[1:].reshape(nrows, step), uniq

    @staticmethod
    def _cells_str(blocks, counts, width):
        """:meth:`_cells` by splitting the text into Python strings (one hash pass over the
        whole table): for the tables with long cells."""
        import pandas as pd

        nrows = sum(counts)
        step = width + 1
        if not nrows:
            return np.zeros((0, step), dtype=np.int64), np.array([""], dtype=object)
        raw = b"\n".join(b for b in blocks if b)
        lines = None
        big = None
        if nrows > DEDUP_ROWS:
            # tables whose rows repeat across facilities (streams, prices, steps...): the rows
            # numbered as bytes (their hashes kept by the bytes objects), the distinct rows only
            # decoded and split
            sample = raw[:200_000].split(b"\n", 1000)[:1000]
            if len(set(sample)) < 0.5 * len(sample):
                lines, ulines = pd.factorize(np.array(raw.split(b"\n"), dtype=object))
                if len(lines) != nrows:
                    return None
                big = b"\n".join(ulines).decode("utf-8")
        if big is None:
            big = raw.decode("utf-8")
        nsplit = nrows if lines is None else len(ulines)
        cells = (big + "\n").split("|")
        if len(cells) != 1 + nsplit * step or cells[0] != "":
            return None
        codes, uniq = pd.factorize(np.array(cells, dtype=object))
        codes = codes[1:].reshape(nsplit, step)
        if lines is not None:
            codes = codes[lines]
        ends = codes[:, width]
        if not (ends == ends[0]).all() or uniq[ends[0]] != "\n":
            return None
        return codes, np.asarray(uniq, dtype=object)

    @staticmethod
    def _column(part, name: str):
        """(codes, distinct raw cells) of a column in one part of a table ("" if absent)."""
        fac, codes, uniq, positions = part
        pos = positions.get(name)
        if pos is None:
            return np.zeros(len(fac), dtype=np.int64), [""]
        local, used = _local(codes[:, pos], len(uniq))
        return local, uniq[used].tolist()

    # -- converting ------------------------------------------------------------------------------
    def convert(self):
        conv = _Conv()
        # the facility profile: a field/value table
        fac_spec = schema.table("facility")
        ft = self.t.get("facility")
        if ft is None:
            self.bad[:] = True
            return
        lookup = schema.header_lookup("facility")
        number = {c.name: k for k, c in enumerate(fac_spec.columns)}
        ffac, fields, values = [], [], []
        for part in ft.pop("_parts"):
            fac, codes, uniq, _ = part
            ffac.append(fac)
            # each distinct field cell → the number of its column (-1: unknown or empty)
            names = np.array([number.get(lookup.get(u.strip().casefold(), ""), -1) if u.strip() else -1
                              for u in uniq.tolist()], dtype=np.int64)
            fields.append(names[codes[:, 0]])
            values.append(uniq[codes[:, 1]])
        ffac, fields, values = (np.concatenate(x) for x in (ffac, fields, values))
        order = np.argsort(ffac, kind="stable")
        ffac, fields, values = ffac[order], fields[order], values[order]
        ft["fac"] = ffac
        # an unknown field, an empty row or a field twice: the exact path decides
        self.bad[ffac[fields < 0]] = True
        key = np.sort(ffac * (len(number) + 1) + fields)
        self.bad[key[1:][key[1:] == key[:-1]] // (len(number) + 1)] = True
        per_field: dict = {}
        for c in fac_spec.columns:
            col = np.empty(self.n, dtype=object)
            col[:] = ""
            m = fields == number[c.name]
            col[ffac[m]] = values[m]
            per_field[c.name] = col
        self.ids: dict = {}
        ids = self.ids
        for col in fac_spec.columns:
            codes, uniq = _factorize(per_field[col.name])
            vals, bad, _ = conv.column(col, "facility", codes, uniq, ids)
            self.fac[col.name] = vals
            if col.type not in ("number", "int", "bool"):
                self.fac[col.name + "#"] = conv.g
            self.bad |= bad
        loc = self.fac["number_locale"]
        self.bad |= np.array([v not in (None, "plain") for v in loc], dtype=bool)
        for spec in schema.TABLES:
            if spec.keyvalue:
                continue
            t = self.t.get(spec.name)
            if t is None:
                self.t[spec.name] = t = {"_parts": []}
            plist = t.pop("_parts")
            fac = np.concatenate([p[0] for p in plist]) if plist else np.zeros(0, dtype=np.int64)
            order = np.argsort(fac, kind="stable") if len(plist) > 1 else None
            t["fac"] = fac if order is None else fac[order]
            for col in spec.columns:
                if col.type == "text" and not col.required and col.name != "applies_to":
                    continue
                coded = col.type not in ("number", "int", "bool")
                pieces = []
                for p in plist:
                    pieces.append((*conv.column(col, spec.name, *self._column(p, col.name), ids), conv.g))
                if not pieces:
                    pieces = [(*conv.column(col, spec.name, np.zeros(0, dtype=np.int64), []), conv.g)]
                if len(pieces) == 1:
                    vals, bad, dates, g = pieces[0]
                else:
                    vals, bad, g = (np.concatenate([x[k] for x in pieces])[order] if k < 3 or coded else None
                                    for k in (0, 1, 3))
                    dates = np.concatenate([x[2] for x in pieces])[order] if col.type == "date" else None
                if coded:
                    t[col.name + "#"] = g
                if bad.any():
                    self.bad[t["fac"][bad]] = True
                if col.type == "date":
                    t[col.name + "_d"] = dates
                t[col.name] = vals

    # -- checking (the error checks of cpa.validate) -----------------------------------------------
    def check(self):
        import pandas as pd

        from cpa.units import dimension_of

        T = self.t
        # duplicates
        for spec in schema.TABLES:
            if spec.keyvalue or not spec.key:
                continue
            t = T[spec.name]
            if not len(t["fac"]):
                continue
            m = len(self.ids) + 1
            key = t["fac"].astype(np.int64)
            allnone = np.ones(len(key), dtype=bool)
            for k in spec.key:
                g = t[k + "#"]
                allnone &= g < 0
                key = key * m + (g + 1)
                if key.max() > 2**40:
                    key = pd.factorize(key)[0].astype(np.int64)
            _, first = np.unique(key, return_index=True)
            dup = np.ones(len(key), dtype=bool)
            dup[first] = False
            self.mark(t["fac"], dup & ~allnone)
        # references
        m = len(self.ids) + 1
        ids = {name: (T[name]["fac"], T[name]["id#"]) for name in ("periods", "steps", "streams", "options", "causes")}
        ref = self.fac["reference_product"]
        allfac = np.arange(self.n)
        self.mark(allfac, ~_gmember(allfac, self.fac["reference_product#"], *ids["streams"], m) & _notnone(ref))
        for spec in schema.TABLES:
            if spec.keyvalue:
                continue
            t = T[spec.name]
            for col in spec.columns:
                if col.type == "ref" and len(t["fac"]):
                    g = t[col.name + "#"]
                    self.mark(t["fac"], (g >= 0) & ~_gmember(t["fac"], g, *ids[col.ref], m))
        self._check_periods()
        # streams
        s = T["streams"]
        self.mark(s["fac"], (s["kind"] == "fuel") & ~_notnone(s["fuel"]))
        kind_of = _Lookup(s["fac"], s["id"], s["kind"], s["id#"])
        rk = kind_of.get(allfac, ref, gkeys=self.fac["reference_product#"])
        self.mark(allfac, _notnone(rk) & ~_oneof(rk, ("product", "by_product")))
        # units by stream kind
        dims: dict = {}

        def dim(u):
            if u not in dims:
                try:
                    dims[u] = dimension_of(u)
                except Exception:  # noqa: BLE001
                    dims[u] = None
            return dims[u]

        for table in ("flows", "stocks", "monitoring"):
            t = T[table]
            if not len(t["fac"]):
                continue
            kinds = kind_of.get(t["fac"], t["stream"], gkeys=t["stream#"])
            # once per distinct (kind, unit)
            kc, ku = pd.factorize(kinds)
            uc, uu = pd.factorize(np.asarray(t["unit"], dtype=object))
            pc, pu = pd.factorize((kc + 1) * (len(uu) + 1) + (uc + 1))
            ku, uu = ku.tolist(), uu.tolist()
            wrong_u = []
            for code in pu.tolist():
                a, b_ = divmod(code, len(uu) + 1)
                k, u = (ku[a - 1] if a else None), (uu[b_ - 1] if b_ else None)
                wrong_u.append(k is not None and isinstance(u, str) and dim(u) is not None
                               and dim(u) not in schema.KIND_DIMS.get(k, ()))
            self.mark(t["fac"], np.array(wrong_u, dtype=bool)[pc])
        f = T["flows"]
        self.mark(f["fac"], f["quantity"] < 0)
        self.mark(f["fac"], ~_notnone(f["from"]) & ~_notnone(f["to"]) & _notnone(f["stream"]))
        self.mark(T["production"]["fac"], T["production"]["quantity"] < 0)
        self.mark(T["prices"]["fac"], T["prices"]["price"] < 0)
        self._check_production(ref)
        self._check_prices(kind_of, dim)
        self._check_factors(dim)
        o = T["options"]
        if len(o["fac"]):
            inv = np.zeros(len(o["fac"]))
            for c in ("investment_equipment", "investment_installation", "investment_engineering", "investment_other"):
                self.mark(o["fac"], o[c] < 0)
                inv = inv + np.nan_to_num(o[c])
            self.mark(o["fac"], o["grant"] < 0)
            self.mark(o["fac"], o["lifetime"] <= 0)
            self.mark(o["fac"], o["discount_rate"] < 0)
            self.mark(o["fac"], o["grant"] > inv)

    def _check_periods(self):
        p = self.t["periods"]
        fac = p["fac"]
        nper = np.bincount(fac, minlength=self.n)
        nbase = np.bincount(fac[p["kind"] == "baseline"], minlength=self.n)
        self.bad |= (nper == 0) | (nbase != 1)
        if not len(fac):
            return
        start, end = p["start_d"], p["end_d"]
        days = (end - start).astype(np.int64) + 1
        self.mark(fac, end < start)
        od = p["operating_days"]
        self.mark(fac, (od <= 0) | (od > days))
        self.mark(fac, p["operating_hours"] > days * 24)
        order = np.lexsort((start, fac))
        fs, ss, es = fac[order], start[order], end[order]
        overlap = (fs[1:] == fs[:-1]) & (ss[1:] <= es[:-1])
        self.mark(fs[1:], overlap)

    def _check_production(self, ref):
        from cpa.units import dimension_of

        pr, pe = self.t["production"], self.t["periods"]
        have = _member(pe["fac"], pe["id"], pr["fac"][_eq(pr["product"], ref[pr["fac"]])],
                       pr["period"][_eq(pr["product"], ref[pr["fac"]])])
        self.mark(pe["fac"], ~have)
        isref = _eq(pr["product"], ref[pr["fac"]])
        dims: dict = {}
        for f, u in zip(pr["fac"][isref].tolist(), pr["unit"][isref].tolist(), strict=True):
            if isinstance(u, str):
                try:
                    d = dimension_of(u)
                except Exception:  # noqa: BLE001
                    self.bad[f] = True
                    continue
                dims.setdefault(f, set()).add(d)
        for f, ds in dims.items():
            if len(ds) > 1:
                self.bad[f] = True

    def _check_prices(self, kind_of, dim):
        p = self.t["prices"]
        if not len(p["fac"]):
            return
        kinds = kind_of.get(p["fac"], p["stream"], gkeys=p["stream#"])
        cache: dict = {}
        bad = np.zeros(len(p["fac"]), dtype=bool)
        for i, (u, k) in enumerate(zip(p["unit"], kinds, strict=True)):
            key = (u, k)
            if key not in cache:
                ok = False
                if isinstance(u, str):
                    parts = u.split("/", 1)
                    try:
                        ok = len(parts) == 2 and dim(parts[0]) == "money" and (
                            k is None or dim(parts[1]) in schema.KIND_DIMS.get(k, ()))
                    except Exception:  # noqa: BLE001
                        ok = False
                cache[key] = ok
            bad[i] = not cache[key]
        self.mark(p["fac"], bad)
        vt, vf = p["valid_to_d"], p["valid_from_d"]
        self.mark(p["fac"], vt < vf)

    def _check_factors(self, dim):
        from cpa.factors import fuels
        from cpa.validate import _FACTOR_UNITS

        t = self.t["factors"]
        if not len(t["fac"]):
            return
        known = _Lookup(self.t["streams"]["fac"], self.t["streams"]["id"], self.t["streams"]["id"])
        found = known.get(t["fac"], t["applies_to"])
        bad = np.zeros(len(t["fac"]), dtype=bool)
        for i, (key, name, unit, f) in enumerate(zip(t["applies_to"], t["factor"], t["unit"], found, strict=True)):
            if name == "grid_ef":
                if not (isinstance(key, str) and key.isdigit() and len(key) == 4):
                    bad[i] = True
            elif isinstance(key, str) and f is None and key not in fuels():
                bad[i] = True
            if name in _FACTOR_UNITS and isinstance(unit, str):
                num, dens = _FACTOR_UNITS[name]
                parts = unit.split("/", 1)
                if not (len(parts) == 2 and dim(parts[0]) == num and dim(parts[1]) in dens):
                    bad[i] = True
        self.mark(t["fac"], bad)
        self.mark(t["fac"], t["value"] <= 0)

    def keep_good(self):
        """Drop the rows of the facilities that go to the exact reader."""
        good = ~self.bad
        for t in self.t.values():
            keep = good[t["fac"]] if len(t["fac"]) else np.zeros(0, dtype=bool)
            if keep.all():
                continue
            for k in list(t):
                v = t[k]
                t[k] = v[keep] if isinstance(v, np.ndarray) else [x for x, m in zip(v, keep, strict=True) if m]

    # -- computing -----------------------------------------------------------------------------
    def compute(self):
        """Programme rows (settings-independent) of the good facilities: ({fac: id}, blocks as
        :func:`_blocks` makes them)."""
        good = ~self.bad
        if not good.any():
            return {}, []
        r = _Rollup(self)
        return r.rows()


def _join_keys(*parts) -> np.ndarray:
    """Element-wise "a\0b\0c" of object arrays (or a string for a whole column)."""
    out = None
    for p in parts:
        if not isinstance(p, str):
            p = np.asarray(p, dtype=object)
            p = np.where(_notnone(p), p, "\x01")
        out = p if out is None else out + "\x00" + p
    return np.asarray(out, dtype=object)


def _oneof(arr, values) -> np.ndarray:
    """Element-wise ``x in values`` for an array of strings (None and NaN: False), once per
    distinct element (np.isin sorts strings)."""
    return _among(arr)(values)


def _among(arr):
    """``_oneof(arr, values)`` as a function of ``values``, the array numbered once (for several
    tests of one array)."""
    import pandas as pd

    arr = np.asarray(arr, dtype=object)
    if not len(arr):
        return lambda values: np.zeros(0, dtype=bool)
    codes, uniq = pd.factorize(arr)
    ul = uniq.tolist()

    def test(values) -> np.ndarray:
        values = set(values)
        return np.array([isinstance(u, str) and u in values for u in ul] + [False], dtype=bool)[codes]

    return test


def _notnone(arr) -> np.ndarray:
    if arr.dtype != object:
        return ~np.isnan(arr)
    return np.asarray(arr != None, dtype=bool)  # noqa: E711 - element-wise "is not None"


def _eq(a, b) -> np.ndarray:
    return _notnone(a) & np.asarray(a == b, dtype=bool)


def _gmember(fac_a, g_a, fac_b, g_b, m: int) -> np.ndarray:
    """(fac_a, g_a) ∈ {(fac_b, g_b)} element-wise, for values numbered by the chunk (< m - 1;
    -1, none, is never a member)."""
    if not len(fac_a):
        return np.zeros(0, dtype=bool)
    import pandas as pd

    ka = np.asarray(fac_a, dtype=np.int64) * m + (g_a + 1)
    kb = np.asarray(fac_b, dtype=np.int64) * m + (g_b + 1)
    return pd.Index(ka).isin(kb) & (g_a >= 0)   # a hash join (np.isin sorts)


def _member(fac_a, vals_a, fac_b, vals_b) -> np.ndarray:
    """(fac_a, vals_a) ∈ {(fac_b, vals_b)}, element-wise."""
    import pandas as pd

    if not len(fac_a):
        return np.zeros(0, dtype=bool)
    allv = np.concatenate([np.asarray(vals_a, dtype=object), np.asarray(vals_b, dtype=object)])
    codes, uniq = pd.factorize(allv)
    m = max(len(uniq), 1) + 1
    ka = np.asarray(fac_a, dtype=np.int64) * m + codes[: len(fac_a)]
    kb = np.asarray(fac_b, dtype=np.int64) * m + codes[len(fac_a):]
    return np.isin(ka, kb) & (codes[: len(fac_a)] >= 0)


_M32 = np.int64(1 << 32)


class _Lookup:
    """Per-facility dictionary (fac, key) → value (the last row of a key wins), looked up
    element-wise with integer keys (no Python object per lookup)."""

    def __init__(self, fac, keys, values, gkeys=None, same_keys=None):
        # the indexes of the keys, shared with ``same_keys`` (a lookup of the same fac and keys)
        self._c = same_keys._c if same_keys is not None else {}
        self.fac = np.asarray(fac, dtype=np.int64)
        self.keys = np.asarray(keys, dtype=object) if not isinstance(keys, np.ndarray) else keys
        self.values = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
        self.gkeys = gkeys   # the keys numbered by the chunk, if known

    @property
    def d(self) -> dict:
        hit = self.__dict__.get("_d")
        if hit is None:
            hit = self.__dict__["_d"] = dict(zip(zip(self.fac.tolist(), self.keys.tolist(), strict=True),
                                                 self.values.tolist(), strict=True))
        return hit

    def get(self, fac, keys, default=None, gkeys=None) -> np.ndarray:
        """The values of (fac, keys) element-wise, ``default`` where there is none; ``gkeys``:
        the keys numbered by the chunk (as the lookup's ``gkeys``), a faster join."""
        import pandas as pd

        fac = np.asarray(fac, dtype=np.int64)
        out = np.empty(len(fac), dtype=object)
        out[:] = default
        if not len(fac) or not len(self.fac):
            return out
        # keys as fac * 2**32 + (number of the key + 1), 0 for None: the index of the last row
        # of each key is built once per lookup (and per kind of key numbers), then every query
        # is one hash lookup of integers
        if gkeys is not None and self.gkeys is not None:
            index, last = self._index("g")
            kb = fac * _M32 + (np.asarray(gkeys, dtype=np.int64) + 1)
            pos = index.get_indexer(kb)
        else:
            index, last = self._index("o")
            q = np.asarray(keys, dtype=object)
            r = self._c["kidx"].get_indexer(q)
            miss = np.flatnonzero(r < 0)
            qc = r + 1
            if len(miss):   # a key the lookup does not have never matches; None matches None
                na = pd.isna(q[miss])
                qc[miss[~na]] = -1
            pos = index.get_indexer(fac * _M32 + qc)
            pos[qc < 0] = -1
        hit = pos >= 0
        vals = self.values[last[pos[hit]]]
        out[hit] = vals if vals.dtype == object else vals.astype(object)
        return out

    def _index(self, which: str):
        """(pd.Index of the keys of the last row of each key, those rows) for integer keys
        ``fac * 2**32 + (key number + 1)``: ``which`` "g" numbers keys by ``gkeys``, "o" by
        their values (None: 0)."""
        import pandas as pd

        hit = self._c.get(which)
        if hit is None:
            if which == "g":
                codes = self.gkeys.astype(np.int64)
            else:
                codes, uniq = pd.factorize(self.keys.astype(object))
                self._c["kidx"] = pd.Index(uniq, dtype=object)
            ka = self.fac * _M32 + (codes + 1)
            n = len(ka)
            _, first = np.unique(ka[::-1], return_index=True)    # the last row of each key
            last = n - 1 - first
            hit = self._c[which] = (pd.Index(ka[last]), last)
        return hit


# ----------------------------------------------------------------------------------------------
# stage 4: the roll-up


class _Resolver:
    """Conversions of (stream kind, fuel, unit, year, overrides in force), each resolved once by
    :class:`cpa.quantities.Converter` on a one-stream worksheet."""

    def __init__(self):
        from cpa.factors import default_factors

        self.default_keys = {f.key for f in default_factors()}
        self.cache = _cache("conversions")

    def get(self, kind, fuel, unit, year, token, overrides):
        key = (kind, fuel, unit, year, token, overrides)
        hit = self.cache.get(key)
        if hit is None:
            try:
                hit = self._resolve(*key)
            except Exception as exc:  # noqa: BLE001 - the exact path raises it with its message
                hit = exc
            self.cache[key] = hit
        return hit

    @staticmethod
    def _resolve(kind, fuel, unit, year, token, overrides):
        from cpa.factors import Factor, FactorSet
        from cpa.quantities import Converter

        sid = token if token else "\x00stream"

        class _WS:
            facility: dict = {}
            tables: dict = {}

            def factor_set(self_inner):
                return FactorSet([Factor(factor=f, key=sid if k is None else k, value=v, unit=u,
                                         document="", status="measured") for f, k, v, u in overrides])

        ws = _WS()
        conv = Converter.__new__(Converter)
        conv.ws = ws
        conv.fs = ws.factor_set()
        conv.streams = {sid: {"id": sid, "kind": kind, "fuel": fuel}}
        conv.water_in_mass = False
        conv._cache = {}
        conv.used = {}
        return conv.convert(sid, unit, year)


class _Rollup:
    def __init__(self, ch: _Chunk):
        self.ch = ch
        self.T = ch.t
        self.n = ch.n
        self.good = ~ch.bad
        self.res = _Resolver()
        self.cf_cache = _cache("units")
        self.has_options: set = set()
        self._ctx = False
        self._parts = self._bgroups = None
        self._mid: dict = {}

    def cf(self, a, b):
        key = (a, b)
        hit = self.cf_cache.get(key)
        if hit is None:
            from cpa.units import conversion_factor

            try:
                hit = conversion_factor(a, b)
            except Exception:  # noqa: BLE001
                hit = math.nan
            self.cf_cache[key] = hit
        return hit

    def fail(self, fac, mask=None):
        self.ch.mark(fac, mask, which="fail")

    def id_list(self) -> list:
        """The chunk's values by their number."""
        hit = self.__dict__.get("_id_list")
        if hit is None:
            hit = self.__dict__["_id_list"] = list(self.ch.ids)
        return hit

    def id_in(self, values) -> np.ndarray:
        """Per number of the chunk's values (and -1, none, last): whether the value is in
        ``values``."""
        values = set(values)
        return np.array([v in values for v in self.ch.ids] + [False], dtype=bool)

    # -- periods --------------------------------------------------------------------------------
    def periods(self):
        p = self.T["periods"]
        fac = p["fac"]
        start, end = p["start_d"], p["end_d"]
        half = ((end - start).astype(np.int64) // 2)
        mid = start + half.astype("timedelta64[D]")
        year = mid.astype("datetime64[Y]").astype(np.int64) + 1970
        days = (end - start).astype(np.int64) + 1
        per_year = self.ch.fac["operating_days_per_year"][fac]
        od = p["operating_days"]
        use = (np.nan_to_num(per_year) != 0) & ~np.isnan(per_year) & (np.nan_to_num(od) != 0) & ~np.isnan(od)
        with np.errstate(divide="ignore", invalid="ignore"):
            annual = np.where(use, per_year / np.where(od == 0, 1, od), 365.0 / days)
        self.p_mid, self.p_year, self.p_annual = mid, year, annual
        self.pkey = _Lookup(fac, p["id"], np.arange(len(fac)), p["id#"])
        base = np.full(self.n, -1, dtype=np.int64)
        isb = p["kind"] == "baseline"
        base[fac[isb]] = np.nonzero(isb)[0]
        latest = np.full(self.n, -1, dtype=np.int64)
        ism = np.nonzero(p["kind"] == "monitoring")[0]
        order = ism[np.lexsort((start[ism], fac[ism]))]
        latest[fac[order]] = order        # the last assignment (latest start) wins
        self.base, self.latest = base, latest

    # -- flows and conversions -------------------------------------------------------------------
    def flows(self):
        T = self.T
        f = T["flows"]
        s = T["streams"]
        fac = f["fac"]
        self.kind_of = _Lookup(s["fac"], s["id"], s["kind"], s["id#"])
        self.fuel_of = _Lookup(s["fac"], s["id"], s["fuel"], s["id#"], same_keys=self.kind_of)
        kinds = self.kind_of.get(fac, f["stream"], gkeys=f["stream#"])
        fuelv = self.fuel_of.get(fac, f["stream"], gkeys=f["stream#"])
        # the kinds and fuels also as the chunk's numbers (-1: none), for integer keys
        kid, fid = (_Lookup(s["fac"], s["id"], s[c], s["id#"], same_keys=self.kind_of).get(
            fac, f["stream"], -1, gkeys=f["stream#"]).astype(np.int64) for c in ("kind#", "fuel#"))
        prow = self.pkey.get(fac, f["period"], -1, gkeys=f["period#"]).astype(np.int64)
        year = self.p_year[prow]
        self.f_kind, self.f_prow = kinds, prow
        self.f_kind_in = _among(kinds)
        self.f_layers = f["quantity"][:, None] * self.layers(fac, f["stream"], kinds, fuelv, f["unit"], year,
                                                             ids=(f["stream#"], f["unit#"], kid, fid))

    def overrides(self):
        """Per facility, its factor rows (factor, key, value, unit) in order."""
        if hasattr(self, "_ovr"):
            return self._ovr
        t = self.T["factors"]
        ovr: dict = {}
        for f, key, name, v, u in zip(t["fac"].tolist(), t["applies_to"], t["factor"], t["value"].tolist(), t["unit"], strict=True):
            ovr.setdefault(f, []).append((name, key, v, u))
        self._ovr = ovr
        return ovr

    def overridden(self, fac, streams, kinds, fuels, ids=None) -> np.ndarray:
        """Per row, whether some factor row of its facility applies to it (the rows for which
        :meth:`conversion` keeps an override); the others share the conversions of every
        facility."""
        t = self.T["factors"]
        if not len(t["fac"]):
            return np.zeros(len(fac), dtype=bool)
        tf, key = t["fac"], t["applies_to"]
        if ids is not None:   # streams and fuels numbered by the chunk: integer joins
            m = len(self.ch.ids) + 1
            own = _gmember(fac, ids[0], tf, t["applies_to#"], m) | _gmember(fac, ids[3], tf, t["applies_to#"], m)
        else:
            own = _member(fac, streams, tf, key) | _member(fac, fuels, tf, key)
        elec = (t["factor"] == "grid_ef") | (key == "electricity")
        own |= (np.asarray(kinds, dtype=object) == "electricity") & np.isin(fac, tf[elec])
        own |= np.isin(fac, tf[~_notnone(key)])   # a factor row without a key: as before
        return own

    def conversion(self, fac, stream, kind, fuel, unit, year):
        year = int(year) if year is not None else None
        ovr = self.overrides().get(fac)
        token = stream if stream in self.res.default_keys else ""
        if not ovr:
            return self.res.get(kind, fuel, unit, year, token, ())
        keep = []
        for name, key, v, u in ovr:
            if key == stream:
                keep.append((name, key if token else None, v, u))
            elif key == fuel or (kind == "electricity" and (name == "grid_ef" or key == "electricity")):
                keep.append((name, key, v, u))
        return self.res.get(kind, fuel, unit, year, token, tuple(keep))

    def layers(self, fac, streams, kinds, fuels, units, years, ids=None) -> np.ndarray:
        """Per row, the multipliers of each layer (NaN where a layer does not apply). ``ids``:
        the streams, units, kinds and fuels numbered by the chunk (-1: none), if known."""
        out = np.full((len(fac), len(_LAYERS)), np.nan)
        if not len(fac):
            return out
        import pandas as pd

        dk = self.res.default_keys
        fac = np.asarray(fac, dtype=np.int64)
        streams = np.asarray(streams, dtype=object)
        own = self.overridden(fac, streams, kinds, fuels, ids)
        if ids is None:
            sc, su = pd.factorize(streams)   # the streams once (np.isin on strings sorts them)
            named = own | np.array([s in dk for s in su.tolist()] + [False], dtype=bool)[sc]
            uparts = units
        else:
            sc = ids[0]
            named = own | self.id_in(dk)[sc]
            uparts = ids[1]
            kinds_k, fuels_k = ids[2], ids[3]
        key = np.zeros(len(fac), dtype=np.int64)
        for part in (np.where(own, fac, -1), np.where(named, sc, -2), kinds if ids is None else kinds_k,
                     fuels if ids is None else fuels_k, uparts, years):
            c, u = pd.factorize(np.asarray(part, dtype=object) if not isinstance(part, np.ndarray)
                                or part.dtype == object else part, use_na_sentinel=True)
            key = key * (len(u) + 1) + (c + 1)
            if key.max() > 2**40:
                key = pd.factorize(key)[0].astype(np.int64)
        _, first_rows, codes = np.unique(key, return_index=True, return_inverse=True)
        codes = codes.ravel()
        first = np.asarray(first_rows, dtype=np.int64)
        table = np.full((len(first), len(_LAYERS)), np.nan)
        failed = np.zeros(len(first), dtype=bool)
        for g, i in enumerate(first.tolist()):
            c = self.conversion(int(fac[i]), streams[i], kinds[i], fuels[i], units[i], years[i])
            if isinstance(c, Exception):
                failed[g] = True
            else:
                table[g] = [getattr(c, k) for k in _LAYERS]
        out = table[codes]
        if failed.any():
            self.ch.fail[np.asarray(fac)[failed[codes]]] = True
        return out

    # -- the row ---------------------------------------------------------------------------------
    def rows(self) -> dict:
        ch = self.ch
        self.periods()
        self.flows()
        fac_f = self.T["flows"]["fac"]
        f = self.T["flows"]
        entering = ~_notnone(f["from"])
        kinds = self.f_kind
        L = {k: self.f_layers[:, i] for i, k in enumerate(_LAYERS)}
        nper = len(self.T["periods"]["fac"])
        prow = self.f_prow

        def psum(mask, values, min_count=False):
            idx = prow[mask]
            v = values[mask]
            ok = ~np.isnan(v)
            total = np.bincount(idx[ok], weights=v[ok], minlength=nper)
            if min_count:
                cnt = np.bincount(idx[ok], minlength=nper)
                total = np.where(cnt > 0, total, np.nan)
            return total

        carriers = entering & self.f_kind_in(("fuel", "electricity", "steam"))
        n_car = np.bincount(prow[carriers], minlength=nper)
        energy = np.where(n_car > 0, psum(carriers, L["energy_gj"], True), 0.0)
        elec = entering & (kinds == "electricity")
        kwh = psum(elec, L["energy_gj"]) / 0.0036
        toe = psum(carriers, L["toe_vn"])
        water = psum(entering & (kinds == "water"), L["water_m3"])
        # production of the reference product per period
        p = self.T["periods"]
        pr = self.T["production"]
        ref = ch.fac["reference_product"]
        isref = _eq(pr["product"], ref[pr["fac"]])
        pq = np.full(nper, np.nan)
        pu = np.empty(nper, dtype=object)
        pu[:] = ""
        rows_p = self.pkey.get(pr["fac"][isref], pr["period"][isref], -1).astype(np.int64)
        pq[rows_p] = pr["quantity"][isref]
        pu[rows_p] = pr["unit"][isref]
        self.pq, self.pu = pq, pu
        with np.errstate(divide="ignore", invalid="ignore"):
            okq = (pq == pq) & (pq > 0)

            def spec(v):
                return np.where(okq, v / np.where(okq, pq, 1.0), np.nan)

            sp_energy, sp_kwh, sp_water = spec(energy), spec(kwh), spec(water)
        # main materials
        s = self.T["streams"]
        main = (s["main_material"] == True) & ~_oneof(s["kind"], ("water", "wastewater"))  # noqa: E712
        is_main = _gmember(fac_f, f["stream#"], s["fac"][main], s["id#"][main], len(ch.ids) + 1) & entering
        mats: dict = {}
        if is_main.any():
            idx = np.nonzero(is_main)[0]
            for fc, st, pr_i, m in zip(fac_f[idx].tolist(), [f["stream"][j] for j in idx],
                                        prow[idx].tolist(), L["mass_t"][idx].tolist(), strict=True):
                d = mats.setdefault(fc, {}).setdefault(st, {})
                cur = d.get(pr_i)
                if m == m:
                    d[pr_i] = m if cur is None or cur != cur else cur + m
                elif cur is None:
                    d[pr_i] = math.nan
        opts = self.options()
        sel = np.flatnonzero(self.good & ~ch.fail)
        if not len(sel):
            return {}, []
        F = ch.fac
        b, lt = self.base[sel], self.latest[sel]
        has_lt = lt >= 0
        ltc = np.where(has_lt, lt, 0)
        nan = math.nan

        def pick(arr, idx, missing=None):   # an object column, ``missing`` where there is no latest
            out = np.asarray(arr, dtype=object)[idx]
            out[~has_lt] = missing
            return out

        punit = pu[b]
        unit_of: dict = {}
        cols: dict = {}
        cols["facility_id"] = F["id"][sel]
        name = F["name"][sel]
        cols["facility_name"] = name
        cols["facility_name_en"] = np.array([en or nm for en, nm in zip(F["name_en"][sel].tolist(), name.tolist(),
                                                                         strict=True)], dtype=object)
        cols["sector"] = F["sector"][sel]
        cols["illustrative"] = np.array([bool(x) for x in F["illustrative"][sel].tolist()], dtype=bool)
        cols["file"] = np.asarray(ch.paths, dtype=object)[sel]
        cols["baseline_period"], cols["baseline_start"], cols["baseline_end"] = p["id"][b], p["start"][b], p["end"][b]
        cols["latest_period"], cols["latest_start"], cols["latest_end"] = (pick(p[k], ltc) for k in ("id", "start", "end"))
        cols["production_unit"] = punit
        cols["production_baseline"] = pq[b]
        cols["production_baseline_per_yr"] = pq[b] * self.p_annual[b]
        cols["production_latest"] = np.where(has_lt, pq[ltc], nan)

        def resource(key, unit, bv, lv):
            per = unit_of.setdefault(unit, {})
            cols[f"{key}_unit"] = np.array([per.setdefault(u, f"{unit}/{u}" if u else "") for u in punit.tolist()],
                                           dtype=object)
            cols[f"{key}_baseline"] = bv
            cols[f"{key}_latest"] = lv
            with np.errstate(divide="ignore", invalid="ignore"):
                cols[f"{key}_change_pct"] = np.where((bv == bv) & (bv != 0) & (lv == lv), 100.0 * (lv - bv) / bv, nan)
            cols[f"{key}_target"] = None   # set from the settings by programme_table_bulk

        for key, arr, unit in (("energy", sp_energy, "GJ"), ("electricity", sp_kwh, "kWh"), ("water", sp_water, "m3")):
            resource(key, unit, arr[b], np.where(has_lt, arr[ltc], nan))
        head = list(cols)
        # the main materials: their own columns, so facilities are grouped by the set they have
        mat_keys: list = []
        mat_vals: list = []
        pq_l, pu_l = pq.tolist(), pu.tolist()
        for fc, bi, li, hl in zip(sel.tolist(), b.tolist(), lt.tolist(), has_lt.tolist(), strict=True):
            fm = mats.get(fc)
            keys, vals = [], []
            if fm:
                for st in sorted(fm):
                    d = fm[st]
                    if bi not in d:
                        continue
                    qb = pq_l[bi]
                    bv = d[bi] / qb if (qb == qb and qb > 0) else nan
                    if hl and li in d:
                        ql = pq_l[li]
                        lv = d[li] / ql if (ql == ql and ql > 0) else nan
                    else:
                        lv = nan
                    key = f"material_{st}"
                    pu_ = pu_l[bi]
                    keys += [f"{key}_unit", f"{key}_baseline", f"{key}_latest", f"{key}_change_pct", f"{key}_target"]
                    vals += [f"t/{pu_}" if pu_ else "", bv, lv,
                             100.0 * (lv - bv) / bv if (bv == bv and bv and lv == lv) else nan, None]
            mat_keys.append(tuple(keys))
            mat_vals.append(vals)
        tail: dict = {}
        tail["toe_vn_per_yr_baseline"] = toe[b] * self.p_annual[b]
        tail["key_energy_user"] = tail["toe_vn_per_yr_baseline"] >= 1000.0
        tail.update(opts(sel))
        # blocks: one per set of material columns; columns as arrays (the materials' as lists)
        groups: dict = {}
        for k, keys in enumerate(mat_keys):
            groups.setdefault(keys, []).append(k)
        blocks = []
        for keys, idx in groups.items():
            at = np.asarray(idx, dtype=np.int64)
            values = [[None] * len(idx) if cols[c] is None else cols[c][at] for c in head]
            values += [list(v) for v in zip(*(mat_vals[k] for k in idx), strict=True)] if keys else []
            values += [tail[c][at] for c in tail]
            blocks.append((tuple(head) + keys + tuple(tail), sel[at].tolist(), values))
        return dict(zip(sel.tolist(), cols["facility_id"].tolist(), strict=True)), blocks

    # -- options ---------------------------------------------------------------------------------
    def options(self):
        """The option counts and combined totals (cpa.options semantics), vectorised across the
        facilities of the chunk: a function of the facilities chosen that gives their columns."""
        from cpa.options import ENERGY_KINDS, WASTE_T_KINDS
        from cpa.schema import choices

        T = self.T
        o, e = T["options"], T["effects"]
        if not len(o["fac"]):
            template = no_options()
            return lambda sel: {k_: np.full(len(sel), v, dtype=type(v)) for k_, v in template.items()}
        n = self.n
        ofac = o["fac"]
        no = len(ofac)
        self.has_options = set(ofac.tolist())
        self.context()
        # register: money in VND, in order (order given first, then its value, then the id)
        k = self.cfv([mu or "VND" for mu in o["money_unit"].tolist()], "VND")
        self.fail(ofac, np.isnan(k))
        inv = np.zeros(no)
        for c in ("investment_equipment", "investment_installation", "investment_engineering", "investment_other"):
            inv = inv + np.where(np.isnan(o[c]), 0.0, o[c])
        inv = inv * k
        grant = np.where(np.isnan(o["grant"]), 0.0, o["grant"]) * k
        opex = np.where(np.isnan(o["operating_cost_change"]), 0.0, o["operating_cost_change"]) * k
        included = np.asarray(o["screening"] != "reject", dtype=bool)
        has_order = ~np.isnan(o["order"])
        okey = np.where(has_order, o["order"], 0.0)
        ids = o["id"]
        idstr = np.array([str(x) for x in ids.tolist()]) if no else np.zeros(0, dtype=str)
        sorted_idx = np.lexsort((idstr, okey, (~has_order).astype(np.int64), ofac))
        opos = np.empty(no, dtype=np.int64)
        opos[sorted_idx] = np.arange(no)
        counts = {"options_total": np.bincount(ofac, minlength=n),
                  "options_rejected": np.bincount(ofac[~included], minlength=n)}
        finc = ofac[included]
        for col, choice in (("category", "option_category"), ("status", "option_status")):
            vals = o[col][included]
            for c in choices(choice):
                counts[f"options_{c.id}"] = np.bincount(finc[vals == c.id], minlength=n)
        sums = {"_inv": np.bincount(finc, inv[included], minlength=n),
                "_grant": np.bincount(finc, grant[included], minlength=n),
                "_opex": np.bincount(finc, opex[included], minlength=n)}
        # effects, in the order they act
        efac = e["fac"]
        ne = len(efac)
        okey_map = _Lookup(ofac, ids, opos)
        inc_map = _Lookup(ofac, ids, included)
        e_opos = okey_map.get(efac, e["option"], -1).astype(np.int64)
        e_inc = inc_map.get(efac, e["option"], False).astype(bool)
        order = np.lexsort((np.arange(ne), e_opos, efac))
        facs_with = np.unique(ofac)
        summ = {k_: np.zeros(n) for k_ in ("_saving", "saving_gj_per_yr", "toe_vn_per_yr", "co2e_t_per_yr",
                                           "water_m3_per_yr", "waste_t_per_yr")}
        if ne:
            rows = self.effect_rows()
            if rows is not None:
                q_comb = self.apply(order, rows, e_inc, e_opos)
                summ = self.summarise(rows, q_comb, e_inc, ENERGY_KINDS, WASTE_T_KINDS)
        # the option columns (those of cpa.programme.no_options, in its order) of the facilities
        # ``sel``: facilities without options keep its values
        template = no_options()
        with_opts = np.zeros(n, dtype=bool)
        with_opts[facs_with] = True
        saving = summ["_saving"].astype(float) - sums["_opex"].astype(float)
        inv_t, grant_t = sums["_inv"].astype(float), sums["_grant"].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            payback = np.where(saving > 0, (inv_t - grant_t) / np.where(saving > 0, saving, 1.0), math.inf)
        payback = np.where(with_opts, payback, math.nan)
        full = {**{k_: v.astype(np.int64) for k_, v in counts.items()},
                **{k_: summ[k_].astype(float) for k_ in ("saving_gj_per_yr", "toe_vn_per_yr", "co2e_t_per_yr",
                                                        "water_m3_per_yr", "waste_t_per_yr")},
                "net_saving_vnd_per_yr": saving, "investment_vnd": inv_t, "grant_vnd": grant_t,
                "payback_yr": payback}
        assert set(full) == set(template), set(full) ^ set(template)
        return lambda sel: {k_: full[k_][sel] for k_ in template}

    def cfv(self, units, to) -> np.ndarray:
        """conversion_factor(u, to) element-wise (NaN where it fails), once per distinct unit."""
        if not len(units):
            return np.zeros(0)
        codes, uniq = _factorize(units)   # (None: code -1, the NaN at the end)
        return np.array([self.cf(u, to) for u in uniq] + [math.nan], dtype=float)[codes]

    # the context of the options: flows crossing the boundary, by (facility, period, stream)
    def context(self):
        """cpa.options.Context._index_flows for all facilities: crossing flows grouped by
        (facility, period, stream), each group in the unit of its first flow."""
        import pandas as pd

        from cpa.options import OUT_KINDS

        if self._ctx:
            return
        self._ctx = True
        f = self.T["flows"]
        out_kind = self.f_kind_in(OUT_KINDS)
        crosses = np.where(out_kind, ~_notnone(f["to"]), ~_notnone(f["from"]))
        idx = np.nonzero(crosses)[0]
        self._firsts = None
        self._parts = self._bgroups = None
        if not len(idx):
            return
        fac, prow = f["fac"][idx], self.f_prow[idx]
        st = np.asarray(f["stream"], dtype=object)[idx]
        sg = f["stream#"][idx] + 1
        units = np.asarray(f["unit"], dtype=object)[idx]
        m = len(self.ch.ids) + 1
        # groups numbered in the order they first appear
        g = pd.factorize((fac.astype(np.int64) * (len(self.p_year) + 1) + prow + 1) * m + sg)[0]
        first = np.unique(g, return_index=True)[1]
        gunit = units[first]
        uid = f["unit#"][idx]
        k = self.cf_pairs(units, gunit[g], ids=(uid, uid[first][g])) if (uid >= 0).all() else \
            self.cf_pairs(units, gunit[g])
        q = f["quantity"][idx]
        x = q * k
        broken = np.isnan(x) & ~np.isnan(q)
        if broken.any():
            for fc in set(fac[broken].tolist()) & self.has_options:
                self.ch.fail[fc] = True
        qsum = np.bincount(g, weights=x)
        gfac, gpr, gst = fac[first], prow[first], st[first]
        annual = self.p_annual
        isb = np.nonzero(self.base[gfac] == gpr)[0]
        self._bgroups = _Lookup(gfac[isb], gst[isb], isb)
        self._gq = qsum * annual[gpr]   # per group: its sum as a year (used for the baseline ones)
        firsts = np.unique(pd.factorize(fac.astype(np.int64) * m + sg)[0], return_index=True)[1]
        self._firsts = _Lookup(fac[firsts], st[firsts], units[firsts])
        order = np.argsort(g, kind="stable")
        starts = np.searchsorted(g[order], np.arange(len(first) + 1))
        tou = np.asarray(f["time_of_use"], dtype=object)[idx]
        self._parts = (order, starts, x, tou, qsum, gunit)

    def price_table(self):
        """The prices in force at each facility's baseline midpoint (cpa.prices.PriceBook.get),
        resolved for every (facility, stream, component, time of use) at once: among the rows
        valid at the midpoint the one that starts last (the first of equals), else among those
        that started before it the one that starts last. Returns (index of the resolved rows,
        VND per unit, per-unit) and the keys "stream\\0component\\0time of use"."""
        hit = self.__dict__.get("_ptable")
        if hit is not None:
            return hit
        import pandas as pd

        t = self.T["prices"]
        fac = t["fac"]
        n = len(fac)
        streams = np.asarray(t["stream"], dtype=object)
        comps = np.asarray(t["component"], dtype=object)
        tous = np.asarray(t["time_of_use"], dtype=object)
        units = np.asarray(t["unit"], dtype=object)
        vnd = np.full(n, np.nan)
        per = np.empty(n, dtype=object)
        if n:
            ucodes, uuniq = pd.factorize(units)
            split = [u.split("/", 1) for u in uuniq.tolist()]
            vnd = t["price"] * np.array([self.cf(m, "VND") for m, _ in split], dtype=float)[ucodes]
            per = np.array([p for _, p in split], dtype=object)[ucodes]
        keys = _join_keys(streams, comps, np.where(_notnone(tous) & (tous != ""), tous, "flat"))
        presence = _join_keys(streams, comps)
        mid = self.p_mid[self.base[fac]] if n else np.zeros(0, dtype="datetime64[D]")
        vf, vt = t["valid_from_d"], t["valid_to_d"]
        cand = vf <= mid
        valid = cand & (np.isnat(vt) | (vt >= mid))
        ci = np.nonzero(cand)[0]
        kc, _ = pd.factorize(keys[ci]) if len(ci) else (np.zeros(0, dtype=np.int64), None)
        vfi = vf[ci].astype(np.int64)
        order = np.lexsort((ci, -vfi, ~valid[ci], kc, fac[ci]))
        sk = np.stack([fac[ci][order], kc[order]]) if len(ci) else np.zeros((2, 0), dtype=np.int64)
        firsts = np.r_[0, np.nonzero((sk[:, 1:] != sk[:, :-1]).any(axis=0))[0] + 1] if len(ci) else \
            np.zeros(0, dtype=np.int64)
        chosen = ci[order[firsts]]
        hit = self._ptable = {
            "lookup": _Lookup(fac[chosen], keys[chosen], chosen),
            "present": (fac, presence),
            "vnd": vnd, "per": per,
        }
        return hit

    def unit_costs(self, fac, streams, units) -> np.ndarray:
        """cpa.options unit costs element-wise [VND per unit], computed once per distinct
        (facility, stream, unit) by joining the baseline's flow parts with the resolved price
        table: Σ over the components present (purchase for inputs; treatment, disposal, fee
        minus sale otherwise) of Σ_parts q × cf(group unit, price unit) × price / Σ q, in the
        requested unit; NaN where a price is missing, 0 for streams that need none."""
        import pandas as pd

        from cpa.options import INPUT_KINDS

        fac = np.asarray(fac, dtype=np.int64)
        if not len(fac):
            return np.zeros(0)
        streams = np.asarray(streams, dtype=object)
        units = np.asarray(units, dtype=object)
        sc, _ = pd.factorize(streams)
        uc, _ = pd.factorize(units)
        key = (fac * (sc.max() + 2) + sc + 1) * (uc.max() + 2) + uc + 1
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        tf, ts, tu = fac[first], streams[first], units[first]
        nt = len(tf)
        kinds = self.kind_of.get(tf, ts)
        kind_in = _among(kinds)
        is_in = kind_in(INPUT_KINDS)
        needs = is_in | kind_in(("wastewater", "solid_waste", "hazardous_waste", "by_product"))
        pt = self.price_table()
        # the parts of each triple: its stream's baseline group, or one part of 1 in its own unit
        order, starts, x, tou, qsum, gunit = self._parts if self._parts is not None else (None,) * 6
        gi = self._bgroups.get(tf, ts, -1).astype(np.int64) if self._bgroups is not None else np.full(nt, -1)
        ok = gi >= 0
        if ok.any():
            ok[ok] = qsum[gi[ok]] > 0
        glen = np.where(ok, starts[gi + 1] - starts[gi], 1) if ok.any() else np.ones(nt, dtype=np.int64)
        part_t = np.repeat(np.arange(nt), glen)
        offs = np.arange(len(part_t)) - np.repeat(np.cumsum(glen) - glen, glen)
        use = ok[part_t]
        row = np.full(len(part_t), -1, dtype=np.int64)
        if use.any():
            row[use] = order[starts[gi[part_t[use]]] + offs[use]]
        q = np.ones(len(part_t))
        q[use] = x[row[use]]
        ptou = np.full(len(part_t), "flat", dtype=object)
        if use.any():
            tt = tou[row[use]]
            ptou[use] = np.where(_notnone(tt) & (tt != ""), tt, "flat")
        base_unit = tu.copy()
        if ok.any():
            base_unit[ok] = gunit[gi[ok]]
        total_q = np.bincount(part_t, weights=q, minlength=nt)
        pfac, pstream = tf[part_t], ts[part_t]
        cost = np.zeros(nt)
        any_present = np.zeros(nt, dtype=bool)
        for comp, sign, for_inputs in (("purchase", 1.0, True), ("treatment", 1.0, False),
                                       ("disposal", 1.0, False), ("fee", 1.0, False), ("sale", -1.0, False)):
            applies = is_in if for_inputs else ~is_in
            present = applies & _member(tf, _join_keys(ts, comp), *pt["present"])
            if not present.any():
                continue
            any_present |= present
            m = present[part_t]
            pi = pt["lookup"].get(pfac[m], _join_keys(pstream[m], comp, ptou[m]), -1).astype(np.int64)
            found = pi >= 0
            price = np.full(len(pi), np.nan)
            price[found] = pt["vnd"][pi[found]]
            per = np.empty(len(pi), dtype=object)
            per[found] = pt["per"][pi[found]]
            k = np.full(len(pi), np.nan)
            k[found] = self.cf_pairs(base_unit[part_t[m]][found], per[found])
            v = np.bincount(part_t[m], weights=q[m] * k * price, minlength=nt)
            with np.errstate(invalid="ignore", divide="ignore"):
                cost = cost + np.where(present, sign * v / np.where(present, total_q, 1.0), 0.0)
        cost = np.where(any_present, cost, np.where(needs, np.nan, 0.0))
        other = any_present & ~np.isnan(cost) & (tu != base_unit)
        if other.any():
            k = self.cf_pairs(tu[other], base_unit[other])
            cost[other] = np.where(np.isnan(k), np.nan, cost[other] / k)
        return cost[inv.ravel()]

    def cf_pairs(self, a, b, ids=None) -> np.ndarray:
        """conversion_factor(a, b) element-wise (NaN where it fails), once per distinct pair;
        ``ids``: the numbers of ``a`` and ``b`` in the chunk (none of them -1), if known."""
        import pandas as pd

        if not len(a):
            return np.zeros(0)
        if ids is not None:   # the units numbered by the chunk: integer pairs
            values = self.id_list()
            pc, pu = pd.factorize(ids[0].astype(np.int64) * (len(values) + 1) + ids[1])
            pairs = [(values[p // (len(values) + 1)], values[p % (len(values) + 1)]) for p in pu.tolist()]
            return np.array([self.cf(x, y) for x, y in pairs], dtype=float)[pc]
        ca, ua = pd.factorize(np.asarray(a, dtype=object))
        cb, ub = pd.factorize(np.asarray(b, dtype=object))
        pair = ca * len(ub) + cb
        pc, pu = pd.factorize(pair)
        ua, ub = ua.tolist(), ub.tolist()
        vals = np.array([self.cf(ua[p // len(ub)], ub[p % len(ub)]) for p in pu.tolist()], dtype=float)
        return vals[pc]

    def effect_rows(self):
        """The changes of every effect row, stand-alone (cpa.options.effect_changes), as flat
        arrays: one row per change (substitute and recover effects may have two). Effects that
        would stop the exact path with an error mark their facility ``fail``."""
        from cpa.options import INPUT_KINDS, OUT_KINDS

        e = self.T["effects"]
        efac = e["fac"]
        ne = len(efac)
        fail = self.ch.fail
        eff = e["effect"]
        streams = e["stream"].tolist()
        val = np.asarray(e["value"], dtype=float)
        units = e["unit"].tolist()
        # the annual baseline of each effect's stream and its unit (0 and None if none)
        q0 = np.zeros(ne)
        sua = np.full(ne, None, dtype=object)
        if self._bgroups is not None:
            gi = self._bgroups.get(efac, e["stream"], -1).astype(np.int64)
            hit = gi >= 0
            q0[hit] = self._gq[gi[hit]]
            sua[hit] = self._parts[5][gi[hit]]
        su = sua.tolist()
        is_money = eff == "money"
        # money: VND, else VND/yr
        money = np.full(ne, np.nan)
        if is_money.any():
            mi = np.nonzero(is_money)[0]
            mu = [units[i] for i in mi.tolist()]
            km = self.cfv(mu, "VND")
            km = np.where(np.isnan(km), self.cfv(mu, "VND/yr"), km)
            money[mi] = val[mi] * km
            bad = np.isnan(km)
            fail[efac[mi][bad]] = True
        # every other effect needs a stream with a positive baseline
        nomoney = ~is_money
        fail[efac[nomoney & ~(q0 > 0)]] = True
        q = np.full(ne, np.nan)
        # shares
        share = np.full(ne, np.nan)
        eff_in = _among(eff)
        wants_share = eff_in(("reduce_share", "substitute", "recover"))
        if wants_share.any():
            si = np.nonzero(wants_share)[0]
            ks = np.array([self.share_factor(units[i]) for i in si.tolist()], dtype=float)
            s = val[si] * ks / 100.0
            ok = (s >= 0.0) & (s <= 1.0)
            fail[efac[si][~ok]] = True
            share[si] = np.where(ok, s, np.nan)
        rs = eff == "reduce_share"
        q[rs] = share[rs] * q0[rs]
        ra = np.nonzero(eff == "reduce_amount")[0]
        if len(ra):
            ka = np.array([self.amount_factor(units[i], su[i]) for i in ra.tolist()], dtype=float)
            q[ra] = val[ra] * ka
            fail[efac[ra][np.isnan(ka)]] = True
        rp = np.nonzero(eff == "reduce_per_unit")[0]
        if len(rp):
            b = self.base[efac[rp]]
            p = self.pq[b] * self.p_annual[b]
            punits = self.pu[b].tolist()
            kp = np.array([self.cf(units[i], f"({su[i]})/({pu})") for i, pu in zip(rp.tolist(), punits, strict=True)],
                          dtype=float)
            q[rp] = (val[rp] * kp) * p
            fail[efac[rp][np.isnan(kp) | ~(p > 0)]] = True
        # rows: (effect, slot, stream, quantity, unit); slot 0 is the effect's own stream
        r_eff = list(range(ne))
        r_slot = [0] * ne
        r_stream = [s if not m else (s or "") for s, m in zip(streams, is_money.tolist(), strict=True)]
        r_q = q
        r_unit = ["VND" if m else u for u, m in zip(su, is_money.tolist(), strict=True)]
        other = np.nonzero(eff_in(("substitute", "recover")))[0]
        other = other[~fail[efac[other]]]
        extra_eff, extra_stream, extra_q, extra_unit = self.substitute_recover(
            other, q0, sua, share, r_q, INPUT_KINDS, OUT_KINDS)
        known = eff_in(("money", "reduce_share", "reduce_amount", "reduce_per_unit", "substitute", "recover"))
        fail[efac[~known]] = True
        return {
            "eff": np.array(r_eff + extra_eff, dtype=np.int64),
            "slot": np.array(r_slot + [1] * len(extra_eff), dtype=np.int64),
            "stream": r_stream + extra_stream,
            "q": np.concatenate([r_q, np.array(extra_q, dtype=float)]),
            "unit": r_unit + extra_unit,
            "money": np.concatenate([money, np.full(len(extra_eff), np.nan)]),
            "is_money": np.concatenate([is_money, np.zeros(len(extra_eff), dtype=bool)]),
            "is_share": wants_share,
        }

    def stream_units(self, fac, streams) -> np.ndarray:
        """The unit of each (facility, stream) (cpa.options.Context.stream_unit): of its
        baseline, else of its first crossing flow, else of its flat purchase, sale, treatment or
        disposal price; None if none."""
        n = len(fac)
        out = np.full(n, None, dtype=object)
        todo = np.ones(n, dtype=bool)
        if self._bgroups is not None:
            gi = self._bgroups.get(fac, streams, -1).astype(np.int64)
            hit = gi >= 0
            out[hit] = self._parts[5][gi[hit]]
            todo &= ~hit
        if todo.any() and self._firsts is not None:
            u = self._firsts.get(fac[todo], streams[todo])
            ti = np.flatnonzero(todo)
            got = _notnone(u)   # a unit that is None: looked for further (as a dict's get)
            out[ti[got]] = u[got]
            todo[ti[got]] = False
        if todo.any():
            pt = self.price_table()
            for comp in ("purchase", "sale", "treatment", "disposal"):
                ti = np.flatnonzero(todo)
                if not len(ti):
                    break
                pi = pt["lookup"].get(fac[ti], _join_keys(streams[ti], comp, "flat"), -1).astype(np.int64)
                got = pi >= 0
                out[ti[got]] = pt["per"][pi[got]]
                todo[ti[got]] = False
        return out

    def substitute_recover(self, idx, q0, su, share, r_q, INPUT_KINDS, OUT_KINDS):  # noqa: N803
        """The changes of the substitute and recover effects ``idx`` (cpa.options.effect_changes),
        vectorised: sets their own stream's quantity in ``r_q``, marks the facilities whose
        effect cannot be computed ``fail``, and returns the second rows (effect, stream,
        quantity, unit) in the order of the effects."""
        e = self.T["effects"]
        fail = self.ch.fail
        none = ([], [], [], [])
        if not len(idx):
            return none
        fac = e["fac"][idx]
        st = np.asarray(e["stream"], dtype=object)[idx]
        to = np.asarray(e["to_stream"], dtype=object)[idx]
        sun = su[idx]
        sub = np.asarray(e["effect"][idx] == "substitute", dtype=bool)
        ok = np.array([isinstance(x, str) and x != "" for x in st.tolist()], dtype=bool)
        has_to = np.array([isinstance(x, str) and x != "" for x in to.tolist()], dtype=bool)
        ok &= has_to | ~sub
        ok &= sub | _oneof(self.kind_of.get(fac, st), OUT_KINDS)   # recover: from an output
        s = share[idx]
        amount = s * q0[idx]        # saved (substitute), recovered (recover)
        # the unit of the target stream
        tunit = np.full(len(idx), None, dtype=object)
        ti = np.flatnonzero(ok & has_to)
        if len(ti):
            tunit[ti] = self.stream_units(fac[ti], to[ti])
        tunit = np.array([u or ("t" if sb else d) for u, sb, d in zip(tunit.tolist(), sub.tolist(), sun.tolist(),
                                                                     strict=True)] + [None], dtype=object)[:-1]
        # a recovered stream into the target's unit, by units where they convert
        k = np.full(len(idx), np.nan)
        rt = np.flatnonzero(ok & has_to & ~sub)
        if len(rt):
            k[rt] = [self.cf(u, v) for u, v in zip(sun[rt].tolist(), tunit[rt].tolist(), strict=True)]
        # conversions where needed: every substitute, recover where the units do not convert
        need = np.flatnonzero(ok & has_to & (sub | np.isnan(k)))
        x = np.full(len(idx), np.nan)
        if len(need):
            nf = fac[need]
            years = self.p_year[self.base[nf]]
            both_f = np.concatenate([nf, nf])
            both_s = np.concatenate([st[need], to[need]])
            both_u = np.concatenate([sun[need], tunit[need]])
            lay = self.layers(both_f, both_s, self.kind_of.get(both_f, both_s), self.fuel_of.get(both_f, both_s),
                              both_u, np.concatenate([years, years]))
            a, b = lay[: len(need)], lay[len(need):]
            ok[need] &= ~fail[nf]   # a conversion that fails
            gi = _LAYERS.index("energy_gj")
            hs, ht = a[:, gi], b[:, gi]
            is_sub = sub[need]
            with np.errstate(invalid="ignore", divide="ignore"):
                good = (hs > 0) & (ht > 0)   # (NaN: not)
                x[need[is_sub]] = (amount[need] * hs / ht)[is_sub]
                ok[need[is_sub & ~good]] = False
                found = np.zeros(len(need), dtype=bool)
                xr = np.full(len(need), np.nan)
                for layer in ("mass_t", "water_m3", "energy_gj"):
                    li = _LAYERS.index(layer)
                    xa, ya = a[:, li], b[:, li]
                    use = ~found & ~np.isnan(xa) & ~np.isnan(ya) & (ya > 0)
                    xr[use] = amount[need][use] * xa[use] / ya[use]
                    found |= use
            rec = ~is_sub
            x[need[rec]] = xr[rec]
            ok[need[rec & ~found]] = False
        withk = ~sub & ~np.isnan(k)
        x[withk] = amount[withk] * k[withk]
        fail[fac[~ok]] = True
        r_q[idx[ok]] = amount[ok]
        # the second rows: substitute adds the target; recover books it as recovered (an input)
        # or added (a product or by-product)
        tkind = np.full(len(idx), None, dtype=object)
        if len(ti):
            tkind[ti] = self.kind_of.get(fac[ti], to[ti])
        into = ~sub & _oneof(tkind, INPUT_KINDS)
        added = sub | (~sub & ~into & _oneof(tkind, ("by_product", "product")))
        second = ok & has_to & (into | added)
        sel = np.flatnonzero(second)
        return (idx[sel].tolist(), to[sel].tolist(), np.where(into, x, -x)[sel].tolist(), tunit[sel].tolist())

    def share_factor(self, unit) -> float:
        """cf(unit, %) for a dimensionless unit (NaN otherwise): share = value × it / 100."""
        key = ("\x00share", unit)
        hit = self.cf_cache.get(key)
        if hit is None:
            from cpa.units import dimension_of

            try:
                hit = self.cf(unit, "%") if dimension_of(unit) == "dimensionless" else math.nan
            except Exception:  # noqa: BLE001
                hit = math.nan
            self.cf_cache[key] = hit
        return hit

    def amount_factor(self, unit, su) -> float:
        if su is None:
            return math.nan
        k = self.cf(unit, su)
        if k != k:
            k = self.cf(unit, f"({su})/yr")
        return k

    def apply(self, order, rows, e_inc, e_opos) -> np.ndarray:
        """Book every effect against what the options before it left (cpa.options._apply), both
        stand-alone (per option) and combined (included options, across the facility), stepping
        through the position of each effect in its facility's order, vectorised across
        facilities. Returns the combined quantity of every change row (NaN: not included)."""
        import pandas as pd

        e = self.T["effects"]
        efac = e["fac"]
        ne = len(efac)
        fail = self.ch.fail
        # position of each effect within its facility's order
        pos = np.empty(ne, dtype=np.int64)
        sf = efac[order]
        first = np.r_[0, np.nonzero(sf[1:] != sf[:-1])[0] + 1] if ne else np.zeros(0, dtype=np.int64)
        starts = np.repeat(first, np.diff(np.r_[first, ne]))
        pos[order] = np.arange(ne) - starts
        live = ~rows["is_money"] & ~np.isnan(rows["q"])
        r_eff = rows["eff"]
        r_fac = efac[r_eff]
        r_stream = np.asarray(rows["stream"], dtype=object)
        src_stream = np.asarray(e["stream"], dtype=object)
        # slots: (facility, stream) combined, (facility, option, stream) stand-alone
        allst = np.concatenate([r_stream, src_stream])
        codes, uniq = pd.factorize(allst)
        m = len(uniq) + 1
        r_code, e_code = codes[: len(r_stream)], codes[len(r_stream):]
        mo = int(e_opos.max()) + 2 if ne else 1
        q_out = np.full(len(r_eff), np.nan)
        r_pos = pos[r_eff]
        r_slot = rows["slot"]
        is_share = rows["is_share"]
        e_pos = pos
        for combined in (False, True):
            if combined:
                rkey = r_fac * m + r_code
                ekey = efac * m + e_code
                r_use = live & e_inc[r_eff]
            else:
                rkey = (r_fac * mo + e_opos[r_eff]) * m + r_code
                ekey = (efac * mo + e_opos) * m + e_code
                r_use = live.copy()
            keys, inv = np.unique(np.concatenate([rkey, ekey]), return_inverse=True)
            r_slotk, e_slotk = inv[: len(rkey)], inv[len(rkey):]
            # the baseline of every slot
            base = np.zeros(len(keys))
            fac_of = np.zeros(len(keys), dtype=np.int64)
            st_of = np.empty(len(keys), dtype=object)
            fac_of[r_slotk] = r_fac
            st_of[r_slotk] = r_stream
            fac_of[e_slotk] = efac
            st_of[e_slotk] = src_stream
            if self._bgroups is not None:   # the annual baseline of the slot's stream (else 0)
                gi = self._bgroups.get(fac_of, st_of, -1).astype(np.int64)
                base[gi >= 0] = self._gq[gi[gi >= 0]]
            left = base.copy()
            idx = np.nonzero(r_use)[0]
            steps = np.lexsort((r_slot[idx], r_pos[idx]))
            idx = idx[steps]
            kpos = r_pos[idx] * 2 + r_slot[idx]
            bounds = np.r_[0, np.nonzero(kpos[1:] != kpos[:-1])[0] + 1, len(idx)] if len(idx) else [0]
            # the scale of every share effect, set when its position comes (before its slot 0)
            scale = np.ones(ne)
            eff_pos_order = np.argsort(e_pos, kind="stable")
            ep = e_pos[eff_pos_order]
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                rr = idx[a:b]
                p, slot = int(r_pos[rr[0]]), int(r_slot[rr[0]])
                if slot == 0:
                    lo, hi = np.searchsorted(ep, p), np.searchsorted(ep, p, side="right")
                    es = eff_pos_order[lo:hi]
                    es = es[is_share[es]]
                    if len(es):
                        sb = base[e_slotk[es]]
                        with np.errstate(divide="ignore", invalid="ignore"):
                            scale[es] = np.where(sb > 0, left[e_slotk[es]] / np.where(sb > 0, sb, 1.0), 1.0)
                sl = r_slotk[rr]
                lf = left[sl]
                qq = rows["q"][rr] * scale[r_eff[rr]]
                over = (qq > 0) & (qq > lf * (1 + 1e-9) + 1e-12)
                if over.any():
                    fail[r_fac[rr][over]] = True
                left[sl] = lf - qq
                if combined:
                    q_out[rr] = qq
        return q_out

    # -- summaries are made from the combined rows

    def summarise(self, rows, q_comb, e_inc, energy_kinds, waste_kinds) -> dict:
        """The combined rows of every facility → the reported layers (cpa.options._summarise):
        per-facility sums of the layers (one conversion per distinct key) and of the money
        (one unit cost per distinct facility × stream × unit)."""
        e = self.T["effects"]
        n = self.n
        r_eff = rows["eff"]
        fac = e["fac"][r_eff]
        inc = e_inc[r_eff] & ~self.ch.fail[fac]
        money_rows = inc & rows["is_money"]
        phys = inc & ~rows["is_money"] & ~np.isnan(q_comb)
        pi = np.nonzero(phys)[0]
        pf = fac[pi]
        pst = [rows["stream"][i] for i in pi.tolist()]
        pun = [rows["unit"][i] for i in pi.tolist()]
        kinds = self.kind_of.get(pf, pst)
        fuels = self.fuel_of.get(pf, pst)
        years = self.p_year[self.base[pf]]
        lay = self.layers(pf, pst, kinds, fuels, pun, years)
        q = q_comb[pi]
        col = {k: np.where(np.isnan(lay[:, i]), 0.0, q * lay[:, i]) for i, k in enumerate(_LAYERS)}
        cost = self.unit_costs(pf, pst, pun)
        money = q * cost

        def total(v, mask=None):
            if mask is None:
                return np.bincount(pf, weights=v, minlength=n)
            return np.bincount(pf[mask], weights=v[mask], minlength=n)

        mi = np.nonzero(money_rows)[0]
        saving = total(np.where(np.isnan(money), 0.0, money))
        mv = rows["money"][mi]
        saving = saving + np.bincount(fac[mi], weights=np.where(np.isnan(mv), 0.0, mv), minlength=n)
        kind_in = _among(kinds)
        return {"_saving": saving,
                "saving_gj_per_yr": total(col["energy_gj"], kind_in(energy_kinds)),
                "toe_vn_per_yr": total(col["toe_vn"]),
                "co2e_t_per_yr": total(col["co2_fossil_t"] + col["co2e_other_t"]),
                "water_m3_per_yr": total(col["water_m3"], kind_in(("water",))),
                "waste_t_per_yr": total(col["mass_t"], kind_in(waste_kinds))}


# ----------------------------------------------------------------------------------------------
# chunks, workers and the public functions


class _no_gc:
    """No cyclic garbage collection inside: for the fast stages of a chunk and the assembly of
    the table, whose many small objects have no cycles and are freed by their reference counts
    (the collector would only rescan them: 5–7 % of the time of a chunk). Not for the exact
    path, whose objects do make cycles."""

    def __enter__(self):
        import gc

        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc

        if self.was:
            gc.enable()


def _run_chunk(paths: list) -> tuple:
    """Load and roll up one chunk: (entries, stats); an entry per path is ("row", id) |
    ("error", id, exception) | ("invalid", problems), and ``stats["blocks"]`` the rows
    (:func:`_blocks`, positions in the chunk)."""
    from cpa.programme import Settings, facility_row
    from cpa.worksheet import read

    ch = _Chunk(paths)
    stats = {"fast": 0, "exact": 0}
    ids: dict = {}
    blocks: list = []
    import time

    try:
        with _no_gc():
            t0 = time.process_time()
            ch.read()
            t1 = time.process_time()
            ch.convert()
            t2 = time.process_time()
            if not ch.bad.all():
                ch.check()
                ch.keep_good()
            t3 = time.process_time()
            ids, blocks = ch.compute() if not ch.bad.all() else ({}, [])
            t4 = time.process_time()
        stats.update(t_read=t1 - t0, t_convert=t2 - t1, t_check=t3 - t2, t_compute=t4 - t3)
    except Exception as exc:  # noqa: BLE001 - a fault of the fast path: the exact path decides
        if STRICT:
            raise
        stats["fast_error"] = repr(exc)
        ids, blocks = {}, []
    entries = []
    done = []   # (position, row dict) of the exact path
    for i, p in enumerate(ch.paths):
        fid = ids.get(i)
        if fid is not None:
            entries.append(("row", fid))
            stats["fast"] += 1
            continue
        stats["exact"] += 1
        ws = read(p)
        if ws.errors:
            entries.append(("invalid", ws.problems))
            continue
        try:
            done.append((i, facility_row(ws, Settings())))
            entries.append(("row", ws.id))
        except Exception as exc:  # noqa: BLE001 - raised in order by programme_table_bulk
            entries.append(("error", ws.id, exc))
    stats["blocks"] = blocks + _blocks(done)
    return entries, stats


#: Re-raise faults of the fast path instead of handing the chunk to the exact path (tests).
STRICT = False


def _workers(n: int, workers: int | None) -> int:
    if workers is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cpus = os.cpu_count() or 1
        workers = min(cpus, max(1, n // MIN_PER_WORKER))
    return max(1, min(int(workers), max(n, 1)))


def _warm() -> None:
    """Import what the workers use (pandas, the exact reader, units, factors) before forking."""
    import pandas  # noqa: F401

    import cpa.options  # noqa: F401
    import cpa.programme  # noqa: F401
    import cpa.quantities  # noqa: F401
    import cpa.validate  # noqa: F401
    import cpa.worksheet  # noqa: F401
    from cpa.factors import default_factors
    from cpa.units import conversion_factor, dimension_of

    conversion_factor("kg", "t")
    dimension_of("kWh")
    default_factors()
    schema.table_lookup()


def _chunks(paths: list, w: int) -> list:
    """Contiguous chunks of at most :data:`CHUNK` files; with several workers, the last ones
    smaller and smaller (halves, then quarters, of ``w`` chunks each), so that the workers
    finish closer together."""
    n = len(paths)
    size = max(1, min(CHUNK, -(-n // w)))
    if w == 1 or n <= 2 * w * size:
        return [paths[a: a + size] for a in range(0, n, size)] or [[]]
    tail = [max(1, size // 2)] * w + [max(1, size // 4)] * (2 * w)   # sizes of the last chunks
    body = n - sum(tail)
    out = [paths[a: min(a + size, body)] for a in range(0, body, size)]
    a = body
    for k in tail:
        out.append(paths[a: a + k])
        a += k
    return out


_RETRY = "retry"   # a worker could not send a chunk's result: this process computes it


def _claim(nxt, n: int):
    """The next chunk not yet taken, or None (none left; or the counter's lock was not freed:
    a worker died holding it, and this process computes what is missing)."""
    lock = nxt.get_lock()
    if not lock.acquire(timeout=10):
        return None
    try:
        k = nxt.value
        if k >= n:
            return None
        nxt.value = k + 1
        return k
    finally:
        lock.release()


def _stop(nxt, n: int) -> None:
    """No more chunks for anyone."""
    lock = nxt.get_lock()
    if lock.acquire(timeout=10):
        nxt.value = n
        lock.release()


def _serve(chunks: list, nxt, conn) -> None:
    """A worker process: the next chunk not yet taken, until there is none; each result goes to
    the main process as ``(chunk number, result, error)`` by a thread of its own (the worker
    goes on with the next chunk meanwhile), then None. An error stops the claiming."""
    import queue
    import threading

    out: queue.SimpleQueue = queue.SimpleQueue()

    def send() -> None:
        while True:
            item = out.get()
            try:
                conn.send(item)
            except (OSError, ValueError):   # the main process is gone
                return
            except Exception:  # noqa: BLE001 - a result that cannot be pickled: recomputed there
                try:
                    conn.send((item[0], None, _RETRY))
                except Exception:  # noqa: BLE001
                    return
            if item is None:
                return

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        while (k := _claim(nxt, len(chunks))) is not None:
            try:
                out.put((k, _run_chunk(chunks[k]), None))
            except BaseException as exc:  # noqa: BLE001 - raised in order by the main process
                out.put((k, None, exc))
                _stop(nxt, len(chunks))
                break
    finally:
        out.put(None)
        sender.join()
        conn.close()


def _in_parallel(chunks: list, w: int, mp) -> list:
    """The results of :func:`_run_chunk` on every chunk, computed by this process and ``w - 1``
    forked ones, each taking the next chunk not yet taken (no pool: this process works too, and
    only the others' results travel, one pipe each). Errors are raised as computing the chunks
    in order would raise them (the first chunk's first); a chunk whose worker died, or whose
    result could not be sent, is computed here."""
    from multiprocessing.connection import wait

    try:
        ctx = mp.get_context("fork")
    except ValueError:  # pragma: no cover - no fork on this platform
        return [_run_chunk(c) for c in chunks]
    n = len(chunks)
    nxt = ctx.Value("l", 0)
    procs, live = [], []
    for _ in range(w - 1):
        r, s = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_serve, args=(chunks, nxt, s), daemon=True)
        proc.start()
        s.close()   # (this end in the worker only: its death reads as the end of the pipe here)
        procs.append(proc)
        live.append(r)
    parts: dict = {}
    errors: dict = {}

    def take(timeout) -> None:
        for conn in wait(live, timeout):
            try:
                item = conn.recv()
            except (EOFError, OSError):   # the worker is gone (done, or died)
                item = None
            if item is None:
                live.remove(conn)
                conn.close()
                continue
            k, res, err = item
            if err is None:
                parts[k] = res
            elif not (isinstance(err, str) and err == _RETRY):
                errors[k] = err

    try:
        while (k := _claim(nxt, n)) is not None:
            try:
                parts[k] = _run_chunk(chunks[k])
            except Exception as exc:  # noqa: BLE001 - raised in order below
                errors[k] = exc
                _stop(nxt, n)
                break
            take(0)   # the others' results so far (meanwhile they take more chunks)
        while live:
            take(None)
    except BaseException:
        _stop(nxt, n)
        for proc in procs:
            proc.terminate()
        raise
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():  # pragma: no cover
                proc.terminate()
                proc.join()
    for k in range(n):   # in order: the first error, else what no worker delivered
        if k in errors:
            raise errors[k]
        if k not in parts:
            parts[k] = _run_chunk(chunks[k])
    return [parts[k] for k in range(n)]


def load_many(paths, workers: int | None = None) -> Bulk:
    """Read and check many worksheets (and compute their settings-independent figures).

    Parameters
    ----------
    paths : iterable of str
        Worksheet files (``.cpa.md``; workbooks go through the exact path).
    workers : int, optional
        Worker processes. Default: the CPUs available, but one per at least
        :data:`MIN_PER_WORKER` files (a few hundred files are faster in-process).

    Returns
    -------
    Bulk
    """
    import multiprocessing as mp

    paths = [str(p) for p in paths]
    n = len(paths)
    w = _workers(n, workers)
    chunks = _chunks(paths, w)
    if w == 1:
        parts = [_run_chunk(c) for c in chunks]
    else:
        _warm()   # once here, not in every forked worker
        parts = _in_parallel(chunks, w, mp)
    entries, stats, blocks = [], {"fast": 0, "exact": 0, "workers": w}, []
    for e, s in parts:
        offset = len(entries)
        blocks += [(keys, [offset + i for i in pos], cols) for keys, pos, cols in s.pop("blocks")]
        entries += e
        for k, v in s.items():
            stats[k] = stats.get(k, 0) + v if isinstance(v, (int, float)) else v
    invalid = {p: e[1] for p, e in zip(paths, entries, strict=True) if e[0] == "invalid"}
    return Bulk(paths=paths, invalid=invalid, stats=stats, rows=entries, blocks=blocks)


def programme_table_bulk(bulk: Bulk, settings=None):
    """The programme table of the valid worksheets of ``bulk``: exactly
    ``programme_table([read(p) for p in valid paths], settings)``.

    Raises
    ------
    CPAError
        Two facilities with the same id (the message of :func:`cpa.programme.programme_table`),
        or the error a facility's roll-up stops with (the first one, in the order of the paths).
    """
    with _no_gc():
        return _table(bulk, settings)


def _table(bulk: Bulk, settings):
    import pandas as pd

    from cpa.programme import Settings, _target

    settings = settings or Settings()
    seen: dict = {}
    for p, e in zip(bulk.paths, bulk.rows, strict=True):
        if e[0] == "invalid":
            continue
        fid = e[1]
        if fid in seen:
            raise CPAError(f"two facilities have the id {fid!r}: {seen[fid]} and {p}; "
                           "give each facility its own id in its facility table")
        seen[fid] = p
    for e in bulk.rows:
        if e[0] == "error":
            raise e[2]
    if not bulk.blocks:
        return pd.DataFrame([])
    # the blocks of each set of columns, in order of their first row; the union of the columns
    # in order of first appearance, NaN where a row has no such column: what pd.DataFrame(list
    # of row dicts) builds (the same object columns, converted the same way)
    merged: dict = {}
    for keys, pos, cols in sorted(bulk.blocks, key=lambda b: b[1][0]):
        merged.setdefault(keys, []).append((pos, cols))
    columns: dict = {}
    for keys in merged:
        for k in keys:
            columns.setdefault(k, len(columns))
    n = sum(len(pos) for parts in merged.values() for pos, _ in parts)
    pieces: list = [[] for _ in columns]   # per column: (rows, values) of each block
    # rows in the order of the paths: a position's rank among the positions of all rows
    ranks = np.concatenate([np.asarray(pos, dtype=np.int64) for parts in merged.values() for pos, _ in parts])
    order = np.empty(n, dtype=np.int64)
    order[np.argsort(ranks, kind="stable")] = np.arange(n)
    at_all = iter(np.split(order, np.cumsum([len(pos) for parts in merged.values() for pos, _ in parts])[:-1]))
    for keys, parts in merged.items():
        where = {k: j for j, k in enumerate(keys)}
        for _pos, cols in parts:
            at = next(at_all)
            for j, k in enumerate(keys):
                values = cols[j]
                if k.endswith("_target"):
                    values = [_target(v, settings) for v in cols[where[k[: -len("_target")] + "_change_pct"]]]
                pieces[columns[k]].append((at, values))
    return _frame([_column(p, n) for p in pieces], list(columns))


def _column(pieces: list, n: int):
    """One column of the table from its blocks' (rows, values): ``(array, final)``. Values given
    as float arrays in every block make a float column (NaN where a row has none), bool or
    integer arrays covering every row a column of their type: what the constructor's inference
    makes of the same numbers. Anything else is an object column (NaN where a row has none),
    still to be converted as the constructor converts it."""
    kinds = {v.dtype.kind if isinstance(v, np.ndarray) else "O" for _, v in pieces}
    if kinds == {"f"} or (len(kinds) == 1 and kinds <= {"b", "i"} and sum(len(at) for at, _ in pieces) == n):
        col = np.full(n, math.nan) if kinds == {"f"} else np.empty(n, dtype=pieces[0][1].dtype)
        for at, v in pieces:
            col[at] = v
        return col, True
    col = np.full(n, math.nan, dtype=object)
    for at, v in pieces:
        col[at] = v if isinstance(v, np.ndarray) else np.fromiter(v, dtype=object, count=len(at))
    return col, False


def _frame(cols: list, names: list):
    """``pd.DataFrame(rows, columns=names)`` of the rows whose columns are ``cols`` (from
    :func:`_column`): each object column converted as the constructor converts it, without the
    round trip through rows."""
    import pandas as pd

    n = len(cols[0][0])
    try:
        from pandas.core.internals.construction import convert_object_array

        todo = [k for k, (_, final) in enumerate(cols) if not final]
        arrays = [c for c, _ in cols]
        for k, arr in zip(todo, convert_object_array([arrays[k] for k in todo], dtype=None), strict=True):
            arrays[k] = arr
        return pd.DataFrame._from_arrays(arrays, columns=pd.Index(names), index=pd.RangeIndex(n))
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another pandas
        rows = zip(*(c.astype(object).tolist() for c, _ in cols), strict=True)
        return pd.DataFrame(list(rows), columns=names)


def programme_from_paths(paths, settings=None, allow_invalid: bool = False):
    """What ``cpa programme`` needs: ``(table, invalid)``.

    ``invalid`` maps each invalid worksheet (in the order given) to its problems, exactly as
    :func:`cpa.worksheet.read` reports them. ``table`` is the programme table of the valid ones
    (:func:`programme_table_bulk`), or ``None`` when some are invalid and ``allow_invalid`` is
    false (the roll-up is then not computed, as the command stops). Raises like
    :func:`cpa.programme.programme_table` (duplicate ids, a calculation that cannot be made).
    """
    bulk = load_many(paths)
    if bulk.invalid and not allow_invalid:
        return None, bulk.invalid
    return programme_table_bulk(bulk, settings), bulk.invalid
