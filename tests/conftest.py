import os
import shutil

import pytest

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data")
ROOT = os.path.dirname(HERE)


@pytest.fixture
def mini_path():
    return os.path.join(DATA, "mini.cpa.md")


@pytest.fixture
def mini_text(mini_path):
    with open(mini_path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture
def write_ws(tmp_path):
    """Write worksheet text to a temporary file and return its path."""

    def _write(text, name="ws.cpa.md"):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8") if isinstance(text, str) else p.write_bytes(text)
        return str(p)

    return _write


@pytest.fixture
def examples_dir():
    return os.path.join(ROOT, "examples")


@pytest.fixture
def copy_examples(tmp_path, examples_dir):
    dst = tmp_path / "examples"
    shutil.copytree(examples_dir, dst)
    return str(dst)
