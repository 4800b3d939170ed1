"""argparse types shared by the command-line scripts: each rejects bad input with a message
that says what is allowed, and argparse turns it into exit code 2. Also ``--plugin``: a user's
module imported before the options are resolved. (The training options' flags and their checks
come from the option table, :func:`tinygrad_free.options.add_arguments`.)"""

import argparse
import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_int(text):
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def writable_file(text):
    """A path a file can be written to now (``callbacks.check_writable``): checked when the
    options are parsed, so a bad ``--save`` fails before any data is loaded or trained on."""
    from .callbacks import check_writable

    try:
        check_writable(text)
    except OSError as e:
        raise argparse.ArgumentTypeError(e.strerror or str(e)) from None
    return text


def _import_module(name):
    """``importlib.import_module(name)``, also finding a top-level module or package of the current
    folder when ``sys.path`` does not (as ``python -m`` would), without adding the folder to
    ``sys.path``: the spec is found in the current folder alone and the module imported from it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        top = name.split(".")[0]
        if e.name != top or top in sys.modules:
            raise
        spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
        if spec is None:
            raise
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[top]
        raise
    return importlib.import_module(name)  # a submodule (pkg.mod) is found through the package's __path__


def load_plugin(name):
    """Import a user's module, given as a ``.py`` path or a module name (importable from the
    current folder or ``sys.path``), so what it registers (``@optim.register("eve2")``) exists
    before the options naming it are checked. Raises ``ValueError`` naming the plugin."""
    if name.endswith(".py") or os.sep in name or os.path.isfile(name):
        path = os.path.abspath(name)
        if not os.path.isfile(path):
            raise ValueError(f"plugin {name}: no such file")
        # A private module name: two plugins both called opt.py in different folders must not collide.
        module_name = "tinygrad_free_plugin_" + re.sub(r"\W", "_", path)
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as e:
            del sys.modules[module_name]
            if not isinstance(e, Exception):
                raise
            raise ValueError(f"plugin {name} raised {type(e).__name__} while importing: {e}") from e
        return module
    try:
        return _import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise ValueError(
                f"plugin {name}: no module named {e.name!r}; give a .py path or a module "
                "importable from the current folder"
            ) from None
        raise ValueError(f"plugin {name} raised ModuleNotFoundError while importing: {e}") from e
    except Exception as e:
        raise ValueError(f"plugin {name} raised {type(e).__name__} while importing: {e}") from e


PLUGIN_HELP = (
    "import this .py file or module first, so the optimizers it registers with "
    "@optim.register(name) can be chosen with -o (repeatable)"
)


def add_plugin_option(parser):
    parser.add_argument("--plugin", action="append", default=[], metavar="PATH_OR_MODULE", help=PLUGIN_HELP)


def load_plugins(argv=None):
    """Import every ``--plugin`` in ``argv`` (default ``sys.argv[1:]``) before the full parser
    is built, since the plugins extend the choices it checks. Returns the plugins' names."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_plugin_option(pre)
    known, _ = pre.parse_known_args(argv)
    for name in known.plugin:
        load_plugin(name)
    return known.plugin
