"""The type hints of the public API hold: mypy, configured in setup.cfg (``[mypy]``: the files it
checks and how strictly), finds no error in them, and it does flag a misuse of that API, so the
check is live. mypy keeps its cache in ``.mypy_cache`` (a rerun takes a second or two)."""

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[1]


def _mypy(monkeypatch, *args):
    # setup.cfg's `files` are relative to the repository root: run from there.
    monkeypatch.chdir(ROOT)
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(ROOT / "setup.cfg"), "--cache-dir", str(ROOT / ".mypy_cache"), *args]
    )
    return stdout, stderr, status


def test_the_annotated_modules_type_check_clean(monkeypatch):
    stdout, stderr, status = _mypy(monkeypatch)
    errors = [line for line in stdout.splitlines() if ": error:" in line or ": note:" in line]
    assert status == 0, f"mypy found {len(errors)} problem(s) in the annotated modules:\n" + "\n".join(
        errors or [stdout, stderr]
    )


def test_mypy_flags_a_misuse_of_the_public_api(monkeypatch, tmp_path):
    misuse = tmp_path / "misuse.py"
    misuse.write_text(
        textwrap.dedent("""
        import numpy as np
        from tinygrad_free import nn, optim

        model = nn.Sequential(nn.Dense(784, "128"), nn.ReLU())
        opt = optim.Adam(model.parameters(), lr=1e-3)
        opt.step(loss="high")
        w: str = model.parameters()[0].data
    """)
    )
    stdout, _, status = _mypy(monkeypatch, str(misuse))
    assert status == 1, stdout
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert any(":5:" in e and '"Dense"' in e for e in errors), stdout  # out_features: int, got str
    assert any(":7:" in e and '"step"' in e for e in errors), stdout  # loss: float | None
    assert any(":8:" in e and "ndarray" in e for e in errors), stdout  # Parameter.data is an array
