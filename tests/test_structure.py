"""The package stands on its own: nothing in tinygrad_free/ imports the repository's scripts/ or
models/ or edits sys.path (read from the code's syntax tree, so a docstring that mentions them
does not count), no module is over 500 lines (one concept per file), modules import only from
their layer or below, and the configuration layer has no import circle (not even inside a function)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tinygrad_free"
MAX_LINES = 500
#: Top-level modules of the repository that the package must not need (they are not installed).
REPOSITORY_ONLY = ("scripts", "models")


def repository_imports(source):
    """``(line, module)`` of every absolute import of :data:`REPOSITORY_ONLY` in ``source``
    (``import models``, ``from scripts.train import x``, ``importlib.import_module("models")``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in REPOSITORY_ONLY]
    return found


def _is_sys_path(node):
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def sys_path_edits(source):
    """Lines of ``source`` that change ``sys.path``: a call of one of its methods
    (``sys.path.insert(...)``, ``.append``, ...), an assignment to it or to an item of it,
    ``from sys import path``, or ``site.addsitedir``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            site = isinstance(node.func.value, ast.Name) and node.func.value.id == "site"
            if _is_sys_path(node.func.value) or (node.func.attr == "addsitedir" and site):
                lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if _is_sys_path(t) or (isinstance(t, ast.Subscript) and _is_sys_path(t.value)):
                    lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "path" for a in node.names):
            lines.append(node.lineno)
    return lines


def package_files():
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import models\n", [(1, "models")]),
        ("from scripts.train import main\n", [(1, "scripts.train")]),
        ("import os, models.x as m\n", [(1, "models.x")]),
        ("import importlib\nimportlib.import_module('scripts')\n", [(2, "scripts")]),
        ("from . import models\nfrom .recipes import build_mlp\n'''import models'''\n", []),
    ],
)
def test_the_import_check_finds_imports_of_the_repository_not_mentions(source, expected):
    assert repository_imports(source) == expected


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import sys\nsys.path.insert(0, 'x')\n", [2]),
        ("import sys\nsys.path.append('x')\n", [2]),
        ("import sys\nsys.path = ['x']\n", [2]),
        ("import sys\nsys.path[:0] = ['x']\n", [2]),
        ("import sys\nsys.path += ['x']\n", [2]),
        ("from sys import path\n", [1]),
        ("import site\nsite.addsitedir('x')\n", [2]),
        ("import sys\n'''sys.path.insert(0, x)'''\nif 'x' in sys.path:\n    pass\n", []),
    ],
)
def test_the_sys_path_check_finds_edits_not_reads(source, expected):
    assert sys_path_edits(source) == expected


def test_the_package_imports_nothing_from_scripts_or_models():
    bad = {str(p.relative_to(ROOT)): repository_imports(p.read_text()) for p in package_files()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_nothing_in_the_package_edits_sys_path():
    bad = {str(p.relative_to(ROOT)): sys_path_edits(p.read_text()) for p in package_files()}
    assert {k: v for k, v in bad.items() if v} == {}


@pytest.mark.parametrize("folder", ["tinygrad_free", "benchmarks", "scripts"])
def test_no_module_is_over_500_lines(folder):
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these into one concept per file (at most {MAX_LINES} lines): {long}"


def test_models_is_a_thin_alias_of_the_packages_recipes():
    import models
    from tinygrad_free import recipes

    assert models.build_mlp is recipes.build_mlp and models.load_config is recipes.load_config
    assert not list((ROOT / "models").glob("*.yaml")), "recipes live in tinygrad_free/recipes/ (package data)"
    assert "fashion_mnist_best" in recipes.available()


def test_a_recipe_is_one_yaml_file_found_by_its_name(tmp_path, monkeypatch):
    from tinygrad_free import recipes

    monkeypatch.setattr(recipes, "CONFIG_DIR", tmp_path)
    (tmp_path / "tiny_mlp.yaml").write_text("dataset: mnist\nnum_layers: 1\n")
    assert recipes.available() == ["tiny_mlp"]
    assert recipes.load_config("tiny_mlp") == {"dataset": "mnist", "num_layers": 1}
    with pytest.raises(FileNotFoundError, match=r"no config 'other'; known configs: \['tiny_mlp'\]"):
        recipes.load_config("other")


#: The layers of the package, bottom first: a module may import from its own layer and the
#: layers below it, never from a layer above (README "Architecture"). Keys are the package's
#: top-level modules and subpackages.
LAYERS = (
    ("foundations", ("kernels", "fileio", "fpenv", "metrics", "tracking", "_typing", "registry")),
    ("backend", ("backend", "init", "threads")),
    ("model and data", ("nn", "data", "augment", "exchange")),
    ("optimizers and recipes", ("optim", "gradcheck", "recipes", "onnx")),
    ("training", ("train", "callbacks")),
    ("configuration", ("options", "config", "training_run", "train_cli", "cli")),
    ("experiments", ("sweep", "report")),
)


def package_imports(path):
    """The top-level units of the package that the file ``path`` (inside tinygrad_free/) imports."""
    rel = path.relative_to(PACKAGE).parts
    folder = list(rel[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tinygrad_free.")}
            continue
        if node.level:
            base = folder[: len(folder) - (node.level - 1)]
            parts = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "tinygrad_free":
            parts = node.module.split(".")[1:]
        else:
            continue
        found |= {parts[0]} if parts else {a.name for a in node.names}
    unit = rel[0].removesuffix(".py")
    return unit, found - {unit}


def test_every_module_imports_only_from_its_layer_or_below():
    rank = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}
    names = [name for name, _ in LAYERS]
    unplaced, upward = set(), []
    for path in package_files():
        unit, imported = package_imports(path)
        if unit == "__init__":  # the package's own namespace re-exports from every layer
            continue
        if unit not in rank:
            unplaced.add(unit)
            continue
        upward += [
            f"{path.relative_to(ROOT)} ({names[rank[unit]]}) imports {other} ({names[rank[other]]})"
            for other in sorted(imported)
            if other in rank and rank[other] > rank[unit]
        ]
    assert not unplaced, f"place {sorted(unplaced)} in a layer of LAYERS here and in README 'Architecture'"
    assert upward == []


def sibling_imports(source, package=("tinygrad_free",)):
    """The modules of ``package`` (a dotted path, as parts) that ``source`` imports anywhere: at
    the top or inside a function (an import put in a function to break a circle still closes it
    when the function runs). ``from . import x`` counts as module ``x``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.split(".")[0] == package[0] and "." in a.name}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = list(package[: len(package) - (node.level - 1)]) + (
                    node.module.split(".") if node.module else []
                )
            elif node.module and node.module.split(".")[0] == package[0]:
                parts = node.module.split(".")
            else:
                continue
            if parts[: len(package)] != list(package):
                continue
            rest = parts[len(package) :]
            found |= {rest[0]} if rest else {a.name for a in node.names}
    return found


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from .config import DEFAULTS\n", {"config"}),
        ("def f():\n    from .config import check_value\n", {"config"}),
        ("from . import config as C, options\n", {"config", "options"}),
        ("import tinygrad_free.training_run\nfrom tinygrad_free.config import run_name\n", {"training_run", "config"}),
        ("from ..config import DEFAULTS\nimport numpy\n'from .options import x'\n", set()),
    ],
)
def test_the_circle_check_sees_imports_inside_functions_too(source, expected):
    assert sibling_imports(source) == expected


def test_the_configuration_modules_import_one_another_one_way_only():
    """config checks configurations by the option table, training_run builds runs from checked
    ones: neither needs the other, and no module of the layer needs one that needs it."""
    units = dict(LAYERS)["configuration"]
    imports = {unit: sibling_imports((PACKAGE / f"{unit}.py").read_text()) & set(units) for unit in units}
    circles = sorted(f"{a} <-> {b}" for a in units for b in imports[a] if a in imports[b] and a < b)
    assert circles == []
    assert "config" not in imports["training_run"] and "training_run" not in imports["config"]
