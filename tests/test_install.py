"""A plain (non-editable) install works from any folder: the package is built into a wheel,
installed into a folder of its own, and used from a folder outside the repository, with the
repository nowhere on the path. There every import of every README snippet succeeds, the
README's ``Trainer`` snippet trains as written, and a tiny local sweep runs."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What a wheel is built from (copied, so the build leaves nothing in the checkout).
SOURCES = ("tinygrad_free", "setup.cfg", "pyproject.toml", "README.md")

CHECK = textwrap.dedent("""
    import ast, os, re, sys
    import tinygrad_free
    assert tinygrad_free.__file__.startswith(os.environ["SITE"]), tinygrad_free.__file__
    for name in ("models", "scripts"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise AssertionError(f"{name} is importable: the repository is on the path")

    blocks = re.findall(r"```python\\n(.*?)```", open(os.environ["README"]).read(), flags=re.S)
    imports = 0
    for i, block in enumerate(blocks):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), f"README block {i}", "exec"), {})
                imports += 1
    print("imports", imports)

    trainer_block = next(b for b in blocks if "Trainer(" in b and "load_split" in b)
    exec(compile(trainer_block, "README Trainer snippet", "exec"), {"__name__": "readme"})

    from tinygrad_free.recipes import available, load_config
    assert "fashion_mnist_best" in available() and load_config("fashion_mnist_best")["optimizer"] == "nadam"

    from tinygrad_free.sweep import parse_sweep, run_local_sweep
    spec = parse_sweep({"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"},
                        "parameters": {"epochs": {"value": 1}, "num_layers": {"value": 1},
                                       "hidden_size": {"value": 16}, "activation": {"values": ["relu", "tanh"]}}},
                       name="tiny")
    summary = run_local_sweep(spec, n_trials=2, limit=300, storage="sqlite:///tiny.db", verbose=False)
    assert summary.n_finished == 2 and not summary.errors, summary
    print("sweep", summary.n_finished, summary.best["run_name"])
""")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package as ``pip install`` leaves it: a wheel built from a copy of the sources,
    installed with ``--target`` into a folder of its own."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
        else:
            shutil.copy(path, src / name)

    def pip(*args):
        out = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True, timeout=300)
        if out.returncode != 0 and "No module named pip" in out.stderr:
            pytest.skip("pip is not available")
        assert out.returncode == 0, out.stderr

    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src))
    wheels = list((tmp / "dist").glob("tinygrad_free-*.whl"))
    assert len(wheels) == 1, wheels
    pip("install", "--no-deps", "--target", str(tmp / "site"), str(wheels[0]))
    return tmp / "site"


def test_the_wheel_ships_the_recipes_and_no_repository_modules(installed):
    assert sorted(p.name for p in (installed / "tinygrad_free" / "recipes").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "tinygrad_free" / "recipes").glob("*.yaml")
    )
    assert not (installed / "models").exists() and not (installed / "scripts").exists()


def test_readme_imports_trainer_snippet_and_a_sweep_run_from_another_folder(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    # The numpy backend: a fresh install has no numba cache, and compiling it is not what is tested.
    env.update(
        PYTHONPATH=str(installed),
        SITE=str(installed),
        README=str(ROOT / "README.md"),
        TINYGRAD_FREE_BACKEND="numpy",
        WANDB_MODE="disabled",
        MPLBACKEND="Agg",
    )
    out = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert int(re.search(r"^imports (\d+)$", out.stdout, re.M).group(1)) >= 8
    assert re.search(r"^\(\d\.\d+, 0\.\d+\)$", out.stdout, re.M), out.stdout  # the snippet's evaluate() printout
    assert re.search(r"^sweep 2 hl_1_sz_16_", out.stdout, re.M), out.stdout
