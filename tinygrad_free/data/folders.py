"""A dataset read from one folder: a data root (``data_dir``, ``TINYGRAD_FREE_DATA``) or the
keras cache, each either holding a complete set or saying what it misses."""

from __future__ import annotations

import os

from . import sources
from .idx import load_idx_set, load_npz
from .sources import IDX_FILES, SUBDIRS, Miss


def find_idx_set(folder: str) -> dict[str, str]:
    """Paths of the four IDX files in ``folder`` or raise :class:`Miss`."""
    if not os.path.isdir(folder):
        raise Miss(f"{folder}: " + ("not a folder" if os.path.exists(folder) else "does not exist"))
    found, missing = {}, []
    for role, stem in IDX_FILES.items():
        # Uncompressed first: it loads faster and a user who bothered to
        # decompress presumably wants that copy used.
        for candidate in (stem, stem + ".gz"):
            p = os.path.join(folder, candidate)
            if os.path.isfile(p):
                found[role] = p
                break
        else:
            missing.append(stem + "[.gz]")
    if missing:
        raise Miss(f"{folder}: missing {', '.join(missing)}")
    return found


def _find_npz(path: str) -> str:
    if not os.path.isfile(path):
        raise Miss(f"{path}: does not exist")
    return path


def load_from_data_root(root: str, name: str, num_classes: int):
    """``(((x_train, y_train), (x_test, y_test)), where)`` from a folder with per-dataset sub-folders
    (:data:`SUBDIRS`) or the files directly, or raise :class:`Miss` with every reason."""
    reasons = []
    for folder in [os.path.join(root, sub) for sub in SUBDIRS[name]] + [root]:
        try:
            files = find_idx_set(folder)
        except Miss as miss:
            reasons.append(str(miss))
            continue
        return load_idx_set(files, num_classes), folder
    if name == "mnist":
        npz = os.path.join(root, "mnist.npz")
        if os.path.isfile(npz):
            return load_npz(npz, num_classes), npz
        reasons.append(f"{npz}: does not exist")
    raise Miss("; ".join(reasons))


def keras_datasets_dir() -> str:
    """The keras cache's ``datasets`` folder: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    # Same rule keras uses, so files downloaded by keras are found and ours
    # are where keras would look for them.
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def keras_cache_target(name: str) -> str:
    """Folder (Fashion-MNIST) or file (MNIST) in the keras cache."""
    base = keras_datasets_dir()
    if name == "mnist":
        return os.path.join(base, "mnist.npz")
    return os.path.join(base, sources.SOURCES[name]["cache_subdir"] or SUBDIRS[name][0])


def load_from_keras_cache(name: str, num_classes: int):
    """``(((x_train, y_train), (x_test, y_test)), where)`` from the keras cache, or raise :class:`Miss`."""
    target = keras_cache_target(name)
    if name == "mnist":
        return load_npz(_find_npz(target), num_classes), target
    return load_idx_set(find_idx_set(target), num_classes), target
