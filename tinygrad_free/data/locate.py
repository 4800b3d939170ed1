"""The search order: ``data_dir``, ``TINYGRAD_FREE_DATA``, the keras cache, Debian's folder, then a
download; the first place holding a complete set wins, and a damaged file there is an error."""

from __future__ import annotations

import logging
import os

from . import sources
from .download import download_dataset
from .folders import (
    find_idx_set,
    keras_cache_target,
    keras_datasets_dir,
    load_from_data_root,
    load_from_keras_cache,
)
from .idx import load_idx_set
from .sources import (
    CLASS_NAMES,
    DISPLAY_NAMES,
    ENV_DATA,
    ENV_NO_DOWNLOAD,
    IDX_FILES,
    DatasetNotFoundError,
    Miss,
    canonical_name,
)

# One logger for the whole loader, as before it was split into modules.
log = logging.getLogger("tinygrad_free.data")


def _downloads_disabled() -> bool:
    value = os.environ.get(ENV_NO_DOWNLOAD, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def load_dataset(name: str, data_dir=None):
    """Load Fashion-MNIST or MNIST exactly as ``keras.datasets`` would.

    Parameters
    ----------
    name : {"fashion_mnist", "fashion-mnist", "mnist"}
        Dataset name, case-insensitive.
    data_dir : str or os.PathLike, optional
        A folder holding ``fashion-mnist/`` and ``mnist/`` sub-folders, or
        directly the four IDX files of the requested set (``.gz`` or raw; for
        MNIST a keras ``mnist.npz`` also works). Searched first. Note that a
        folder holding bare files is taken to be the requested set: it cannot
        tell MNIST files from Fashion-MNIST ones.

    Returns
    -------
    (x_train, y_train) : tuple of numpy.ndarray
        uint8 images ``(60000, 28, 28)`` and uint8 labels ``(60000,)``.
    (x_test, y_test) : tuple of numpy.ndarray
        uint8 images ``(10000, 28, 28)`` and uint8 labels ``(10000,)``.
    class_names : tuple of str
        The ten class names, indexed by label.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or if the first location holding all files
        has a corrupt, truncated or inconsistent one (the message names it).
    DatasetNotFoundError
        If no location holds the dataset and downloading is disabled or
        fails. The message lists every place tried and how to fix it.

    Notes
    -----
    See the module docstring for the search order. Downloads go to the keras
    cache layout and are verified against :data:`sources.SOURCES`. Set
    ``TINYGRAD_FREE_NO_DOWNLOAD=1`` to forbid network access.
    """
    key = canonical_name(name)
    num_classes = len(CLASS_NAMES[key])
    env_root = os.environ.get(ENV_DATA)

    def given(value, what):
        def loader():
            if not value:
                raise Miss(what)
            return load_from_data_root(os.fspath(value), key, num_classes)

        return loader

    def debian():
        try:
            return load_idx_set(find_idx_set(sources.DEBIAN_DIR), num_classes), sources.DEBIAN_DIR
        except Miss as miss:
            raise Miss(f"{miss} (apt-get install dataset-fashion-mnist)") from None

    def download():
        if _downloads_disabled():
            raise Miss(f"disabled by {ENV_NO_DOWNLOAD}={os.environ[ENV_NO_DOWNLOAD]}")
        return download_dataset(key, num_classes)

    steps = [
        ("data_dir argument", given(data_dir, "not given")),
        (f"${ENV_DATA}", given(env_root, "not set")),
        ("keras cache", lambda: load_from_keras_cache(key, num_classes)),
    ]
    if key == "fashion_mnist":  # Debian packages only Fashion-MNIST
        steps.append(("Debian package folder", debian))
    steps.append((f"download into {keras_cache_target(key)}", download))

    attempts: list[tuple[str, str]] = []
    for label, loader in steps:
        try:
            (train, test), where = loader()
        except Miss as miss:
            attempts.append((label, str(miss)))
            continue
        log.info("loaded %s from %s", key, where)
        return train, test, CLASS_NAMES[key]
    raise DatasetNotFoundError(_not_found_message(key, attempts), key, attempts)


def _not_found_message(key: str, attempts: list[tuple[str, str]]) -> str:
    lines = [f"Could not find the {DISPLAY_NAMES[key]} dataset ({key!r}). Places tried, in order:"]
    lines += [f"  {i}. {label}: {reason}" for i, (label, reason) in enumerate(attempts, 1)]
    stems = ", ".join(IDX_FILES.values())
    lines += [
        "Fix it in one of these ways:",
        f"  - set {ENV_DATA} to a folder with fashion-mnist/ and mnist/ sub-folders,"
        f" each holding {stems} (.gz or uncompressed);",
        "  - pass data_dir= to load_dataset()/load_split() (a folder laid out as above,"
        " or the folder holding the four files itself);",
        f"  - allow the download: unset {ENV_NO_DOWNLOAD} and make"
        f" {sources.SOURCES[key]['base_url']} reachable (files go to {keras_datasets_dir()}).",
    ]
    return "\n".join(lines)
