"""The package stands on its own: nothing in tinygrad_free/ imports the repository's scripts/ or
models/ or edits sys.path (read from the code's syntax tree, so a docstring that mentions them
does not count), no module is over 500 lines (one concept per file), modules import only from
their layer or below, the configuration layer has no import circle (not even inside a function),
a module's underscore names are its own, and each package face lists in ``__all__`` exactly the
public names it re-exports."""

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


#: Folders of the package whose own files the private-name checks below skip (none today).
PRIVATE_NAMES_SKIP: tuple[str, ...] = ()

#: Private names still imported from another module, each waiting for its owner's change (keyed
#: by file and ``module.name``, valued by why it waits). The check fails as soon as one is gone,
#: so an entry is removed with the import it excuses.
PENDING_PRIVATE_IMPORTS: dict[tuple[str, str], str] = {}


def is_private(name):
    """An underscore name, not a dunder (``_clean``, ``_Miss``; not ``__version__``)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(parts):
    """Whether the dotted ``parts`` name a module or package inside the repository."""
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _private_module_misuse(target, package):
    """The first private module of the dotted ``target`` that ``package`` (the importing file's
    package, as parts) is not inside, or None: a package's private helper module (``nn/_checks``,
    ``_typing``) serves the modules of that package only."""
    for i, part in enumerate(target):
        if is_private(part) and list(package[:i]) != list(target[:i]):
            return ".".join(target[: i + 1])
    return None


def private_imports(source, module):
    """``(line, "module.name")`` of every private name of another module that ``source`` (the
    module ``module``, dotted parts, ``__init__`` for a package) takes: ``from .x import _y``,
    ``from . import _helper`` outside the helper's package, ``import tinygrad_free.x._y``, and
    ``m._y`` where ``m`` was imported as a module of the package (at the top or in a function)."""
    package = module[:-1]
    found, modules = [], {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] != "tinygrad_free":
                    continue
                if bad := _private_module_misuse(parts, package):
                    found.append((node.lineno, bad))
                modules[a.asname or parts[0]] = parts if a.asname else parts[:1]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = list(package[: len(package) - (node.level - 1)]) + (
                    node.module.split(".") if node.module else []
                )
            elif node.module and node.module.split(".")[0] == "tinygrad_free":
                target = node.module.split(".")
            else:
                continue
            if bad := _private_module_misuse(target, package):
                found.append((node.lineno, bad))
            for a in node.names:
                full = [*target, a.name]
                if _is_module(full):
                    if bad := _private_module_misuse(full, package):
                        found.append((node.lineno, bad))
                    modules[a.asname or a.name] = full
                elif is_private(a.name):
                    found.append((node.lineno, ".".join(full)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in modules:
                # Walk down the imported modules; the first name that is not a module is an attribute.
                parts = list(modules[value.id])
                for name in chain:
                    if not _is_module([*parts, name]):
                        if name == node.attr:
                            found.append((node.lineno, ".".join([*parts, name])))
                        break
                    parts.append(name)
    return sorted(set(found))


def _module_parts(path):
    """The dotted parts of the module at ``path`` (``__init__`` last for a package's face)."""
    return list(path.relative_to(ROOT).with_suffix("").parts)


LOCAL, DENSE = ["tinygrad_free", "sweep", "local"], ["tinygrad_free", "nn", "dense"]


@pytest.mark.parametrize(
    "module, source, expected",
    [
        (LOCAL, "from .trial import _clean, run_trial\n", [(1, "tinygrad_free.sweep.trial._clean")]),
        (LOCAL, "from .spec import (\n    METHODS,\n    _decode,\n)\n", [(1, "tinygrad_free.sweep.spec._decode")]),
        (LOCAL, "def f():\n    from ..report.figures import _figure\n", [(2, "tinygrad_free.report.figures._figure")]),
        (LOCAL, "from .. import sweep as S\nS._clean(1)\n", [(2, "tinygrad_free.sweep._clean")]),
        (LOCAL, "from . import trial\nx = trial._DATA_CACHE\n", [(2, "tinygrad_free.sweep.trial._DATA_CACHE")]),
        (
            LOCAL,
            "import tinygrad_free.sweep.recovery\ntinygrad_free.sweep.recovery._pid_alive(1)\n",
            [(2, "tinygrad_free.sweep.recovery._pid_alive")],
        ),
        (LOCAL, "from tinygrad_free.sweep.locks import _FileLock\n", [(1, "tinygrad_free.sweep.locks._FileLock")]),
        (LOCAL, "from ..nn import _checks as check\n", [(1, "tinygrad_free.nn._checks")]),
        (LOCAL, "from ..nn._checks import positive\n", [(1, "tinygrad_free.nn._checks")]),
        (DENSE, "from . import _checks as check\ncheck._helper(1)\n", [(2, "tinygrad_free.nn._checks._helper")]),
        # Allowed: a package's private helper module in its own package (and below it), a public
        # module under a private alias, dunders, and private attributes of anything but a module.
        (DENSE, "from . import _checks as check\nfrom ._checks import positive\ncheck.positive(1)\n", []),
        (LOCAL, "from . import trial as _trial\n_trial.run_trial(1)\nimport os\nos._exit(0)\n", []),
        (LOCAL, "from .. import __version__\nfrom .._typing import Array\nself._x = other._y\n", []),
    ],
)
def test_the_private_name_check_finds_another_modules_underscore_names(module, source, expected):
    assert private_imports(source, module) == expected


def test_a_modules_underscore_names_are_its_own():
    """A name another module of the package uses is public (no underscore, a docstring); a
    package's private helper module (``nn/_checks.py``, ``_typing.py``) serves the modules of its
    own package only; package faces re-export public names only. kernels/ is skipped (see
    :data:`PRIVATE_NAMES_SKIP`)."""
    found = set()
    for path in package_files():
        if path.relative_to(PACKAGE).parts[0] in PRIVATE_NAMES_SKIP:
            continue
        found |= {
            (str(path.relative_to(ROOT)), line, name)
            for line, name in private_imports(path.read_text(), _module_parts(path))
        }
    pending = {(file, name) for file, _, name in found if (file, name) in PENDING_PRIVATE_IMPORTS}
    assert set(PENDING_PRIVATE_IMPORTS) <= pending, (
        f"fixed meanwhile; remove from PENDING_PRIVATE_IMPORTS: {sorted(set(PENDING_PRIVATE_IMPORTS) - pending)}"
    )
    bad = sorted(f"{file}:{line}: {name}" for file, line, name in found if (file, name) not in pending)
    assert bad == [], "make these names public where they are defined (no underscore, a docstring), or move them"


def face_names(source):
    """``(declared, exported)`` of a package face: the names of its ``__all__``, and the public names
    it binds at the top from the package (``from .x import y``, ``from . import x``, relative or
    absolute) or defines itself (functions, classes, assignments); third-party imports are not
    its API."""
    declared, exported = None, set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "tinygrad_free"):
            exported |= {a.asname or a.name for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            exported.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Name) and t.id == "__all__":
                    declared = list(ast.literal_eval(node.value))
                elif isinstance(t, ast.Name):
                    exported.add(t.id)
    return declared, {name for name in exported if not name.startswith("_")}


def test_the_face_check_reads_all_and_the_public_names_a_face_binds():
    source = (
        "import yaml\nfrom pathlib import Path\nfrom .. import nn\nfrom .local import _worker, run as go\n"
        "from tinygrad_free.config import DEFAULTS\nLIMIT: int = 3\n_cache = {}\n__version__ = '1'\n"
        "def available():\n    pass\n__all__ = ['go', 'nn']\n"
    )
    assert face_names(source) == (["go", "nn"], {"nn", "go", "DEFAULTS", "LIMIT", "available"})


@pytest.mark.parametrize(
    "face",
    sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("__init__.py") if p.parent.name not in PRIVATE_NAMES_SKIP),
)
def test_a_package_face_lists_exactly_the_public_names_it_re_exports(face):
    """``__all__`` of each package ``__init__.py`` holds public names only, each once and each
    importable, and every public name the face takes from the package is listed (a face re-exports
    the public API and nothing off the record). kernels/ is skipped (see :data:`PRIVATE_NAMES_SKIP`)."""
    import importlib

    declared, exported = face_names((ROOT / face).read_text())
    assert declared is not None, f"{face} has no __all__"
    assert [n for n in declared if is_private(n)] == [], "a package face re-exports public names only"
    assert sorted(n for n in set(declared) if declared.count(n) > 1) == []
    module = importlib.import_module(".".join(Path(face).parent.parts))
    assert [n for n in declared if not hasattr(module, n)] == []
    assert sorted(exported - set(declared)) == [], f"list these in {face}'s __all__ or stop re-exporting them"
