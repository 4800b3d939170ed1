"""Every Python snippet in the README runs as written, in order, in one namespace (as a reader
pasting them into one session would)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_snippets():
    assert len(python_blocks()) >= 5


def test_every_python_snippet_in_the_readme_runs_as_written(tmp_path, monkeypatch):
    from tinygrad_free.nn import classes
    from tinygrad_free.optim import OPTIMIZERS

    monkeypatch.chdir(tmp_path)  # the snippets write model files
    # The snippets register an example optimizer and classes: keep them out of the other tests.
    saved = [(r, r.snapshot()) for r in (OPTIMIZERS, classes.SHORT_NAMES)]
    known = dict(classes._CLASSES)
    try:
        _run_blocks()
    finally:
        for registry, snapshot in saved:
            registry.restore(snapshot)
        classes._CLASSES.clear()
        classes._CLASSES.update(known)


def _run_blocks():
    namespace = {"__name__": "readme"}
    for i, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as e:  # name the block: the traceback alone points into exec
            pytest.fail(f"README python block {i} failed: {type(e).__name__}: {e}\n--- block ---\n{block}")
