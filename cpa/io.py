"""Safe output: write to a temporary file beside the target, then move it into place.

cpa never modifies an input and never leaves a half-written output. An existing file is
replaced only when the caller says so (``force=True``, the CLI's ``--force``), except inside an
output folder that cpa itself manages (``cpa report --out``).
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager

from cpa.errors import CPAError


class OutputExistsError(CPAError, FileExistsError):
    def __init__(self, path: str):
        super().__init__(path)
        self.path = path

    def __str__(self) -> str:
        return f"{self.path} exists: cpa does not overwrite a file unless asked (use --force)"


_FSYNC = True


@contextmanager
def staging():
    """Within: files written with :func:`atomic_write` are not flushed to disk one by one
    (``fsync``). For a private build folder whose files are moved into place together at the
    end (``cpa report``): each file is still written under a temporary name and renamed, so
    none is ever seen half-written, and the report does not wait for the disk 250 times.
    Processes forked within inherit it."""
    global _FSYNC
    old, _FSYNC = _FSYNC, False
    try:
        yield
    finally:
        _FSYNC = old


def atomic_write(path: str, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; refuse to replace an existing file unless ``force``."""
    path = os.fspath(path)
    if os.path.exists(path) and not force:
        raise OutputExistsError(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cpa-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if _FSYNC:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str, text: str, force: bool = False) -> None:
    atomic_write(path, text.encode("utf-8"), force=force)


_UNSAFE = re.compile(r"[^\w\-.]+", re.UNICODE)


def safe_name(text: str, fallback: str = "facility") -> str:
    """A file name from user text: no separators, no '..', no control characters, ≤ 80 chars."""
    import unicodedata

    s = unicodedata.normalize("NFC", str(text))
    s = "".join(ch for ch in s if unicodedata.category(ch)[0] != "C")
    s = _UNSAFE.sub("_", s).strip("._")
    s = re.sub(r"\.{2,}", ".", s)
    return s[:80] or fallback
