"""Dataset loading and preprocessing for Fashion-MNIST and MNIST.

The loader returns exactly what ``keras.datasets.<name>.load_data()`` returns
(uint8 images of shape ``(N, 28, 28)`` and uint8 labels ``0..9``) without
needing keras, so the project runs on machines with no deep-learning framework
and no internet access.

Files are looked up in this order; the first place that holds a complete set
wins:

1. the ``data_dir`` argument;
2. the ``TINYGRAD_FREE_DATA`` environment variable;
3. the keras cache (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``), read
   directly without importing keras;
4. Debian's ``dataset-fashion-mnist`` package folder (:data:`DEBIAN_DIR`,
   Fashion-MNIST only);
5. a download into the keras cache layout, every file checked against the
   sha256 in :data:`SOURCES` (disable with ``TINYGRAD_FREE_NO_DOWNLOAD=1``).

A place "holds a set" as soon as all of its files exist; from then on a
corrupt or truncated file raises :class:`ValueError` naming that file instead
of silently falling through to the next place, because a damaged copy is
something the user needs to know about and fix.

If nothing works, :class:`DatasetNotFoundError` lists every place tried and
why it failed.

No pickle is used anywhere: IDX files are parsed by hand and ``.npz`` files
are opened with ``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import operator
import os
import shutil
import struct
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "DEBIAN_DIR",
    "SOURCES",
    "IDX_FILES",
    "BatchIterator",
    "as_samples",
    "check_finite",
    "DatasetNotFoundError",
    "Split",
    "flatten_and_scale",
    "iterate_minibatches",
    "load_dataset",
    "load_split",
    "one_hot",
    "read_idx",
    "train_val_split",
]

log = logging.getLogger(__name__)

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(d) for d in range(10)),
}

_DISPLAY_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}

# Folder names under TINYGRAD_FREE_DATA / data_dir. The first one is the
# canonical name (the one the keras cache and ../shared/data use); the
# underscore spelling is accepted because it is the Python-side name.
_SUBDIRS = {
    "fashion_mnist": ("fashion-mnist", "fashion_mnist"),
    "mnist": ("mnist",),
}

#: Stem of the four standard IDX files, keyed by role.
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

ENV_DATA = "TINYGRAD_FREE_DATA"
ENV_NO_DOWNLOAD = "TINYGRAD_FREE_NO_DOWNLOAD"

#: Where ``apt-get install dataset-fashion-mnist`` puts the four gz files.
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

#: Download sources: base URL, sub-folder of ``<keras home>/datasets`` the
#: files go to (keras's own layout), and the sha256 of every file.
#:
#: The Fashion-MNIST hashes are those of the original Zalando files, which
#: keras mirrors byte for byte (same sizes: 26421880, 29515, 4422102, 5148).
#: Debian's copies (also in ../shared/data/fashion-mnist) have different
#: hashes only because their gzip header lacks the original file name and
#: time stamp; their deflate streams are identical (re-adding the header
#: reproduces these hashes exactly), so hashing the Debian copies would
#: wrongly reject every genuine download.
SOURCES: dict[str, dict] = {
    "fashion_mnist": {
        "base_url": KERAS_BASE_URL,
        "cache_subdir": "fashion-mnist",
        "files": {
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        },
    },
    "mnist": {
        "base_url": KERAS_BASE_URL,
        "cache_subdir": "",
        "files": {
            "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        },
    },
}

_DOWNLOAD_TIMEOUT = 60.0  # seconds per network operation

_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}
_IDX_KIND = {1: "labels", 3: "images"}


class DatasetNotFoundError(FileNotFoundError):
    """No location held the requested dataset and it could not be downloaded.

    Attributes
    ----------
    name : str
        Canonical dataset name (``"fashion_mnist"`` or ``"mnist"``).
    attempts : list of (str, str)
        Every place tried, in order, with the reason it failed.
    """

    def __init__(self, message: str, name: Optional[str] = None,
                 attempts: Optional[list[tuple[str, str]]] = None):
        super().__init__(message)
        self.name = name
        self.attempts = list(attempts or [])

    def __str__(self) -> str:
        # OSError.__str__ would prefix an errno; the message is self-contained.
        return self.args[0]


class _Miss(Exception):
    """A location does not hold the dataset (the reason is the message)."""


# --------------------------------------------------------------------------
# IDX / npz readers
# --------------------------------------------------------------------------


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    # Sniff the gzip magic instead of trusting the extension, so a raw file
    # that was saved as ``.gz`` (or the other way round) still loads.
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(
            f"{path}: corrupt gzip stream ({type(e).__name__}: {e}); "
            "the file is damaged or incomplete, delete it and fetch it again"
        ) from e


def read_idx(path, ndim: Optional[int] = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip-compressed or raw).

    Parameters
    ----------
    path : str or os.PathLike
        File to read. Compression is detected from the content, not the name.
    ndim : {None, 1, 3}, optional
        Required number of dimensions: 1 for a label file (magic
        ``0x00000801``), 3 for an image file (magic ``0x00000803``).
        ``None`` accepts either.

    Returns
    -------
    numpy.ndarray
        A writable uint8 array with the shape stored in the header.

    Raises
    ------
    ValueError
        If the gzip stream is corrupt, the magic number is wrong, the element
        type is not unsigned byte (``0x08``), the number of dimensions is not
        the expected one, or the payload is not exactly the product of the
        dimensions long. The message names the file and the problem.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(
            f"{path}: truncated IDX header: {len(raw)} bytes, need at least 4"
        )
    (magic,) = struct.unpack(">I", raw[:4])
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: bad magic number 0x{magic:08x}; expected 0x00000801 "
            "(labels) or 0x00000803 (images). Not an IDX file?"
        )
    dtype_code, nd = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(
            f"{path}: unsupported IDX element type 0x{dtype_code:02x} "
            f"(magic 0x{magic:08x}); only 0x08 (unsigned byte) is supported"
        )
    if nd not in _IDX_MAGIC:
        raise ValueError(
            f"{path}: unsupported number of dimensions {nd} (magic "
            f"0x{magic:08x}); expected 1 (labels) or 3 (images)"
        )
    if ndim is not None and nd != ndim:
        raise ValueError(
            f"{path}: expected an IDX {_IDX_KIND[ndim]} file (magic "
            f"0x{_IDX_MAGIC[ndim]:08x}) but found {_IDX_KIND[nd]} (magic "
            f"0x{magic:08x}); are the file names swapped?"
        )
    header = 4 + 4 * nd
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX header: {len(raw)} bytes, need {header} "
            f"for {nd} dimension(s)"
        )
    dims = struct.unpack(f">{nd}I", raw[4:header])
    expected = math.prod(dims)
    payload = len(raw) - header
    shape = "x".join(map(str, dims))
    if payload < expected:
        raise ValueError(
            f"{path}: truncated payload: header says {shape} = {expected} "
            f"bytes but the file holds only {payload}"
        )
    if payload > expected:
        raise ValueError(
            f"{path}: {payload - expected} unexpected trailing bytes after "
            f"the {shape} = {expected} byte payload"
        )
    # Copy so callers get an ordinary writable array, as they would from keras.
    return np.frombuffer(raw, np.uint8, count=expected, offset=header).reshape(dims).copy()


def _check_split(images, labels, img_path, lbl_path, num_classes):
    if images.shape[1:] != (28, 28):
        raise ValueError(
            f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, "
            "expected 28x28"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"image/label count mismatch: {img_path} holds {len(images)} "
            f"images but {lbl_path} holds {len(labels)} labels"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise ValueError(
            f"{lbl_path}: label {int(labels.max())} out of range "
            f"0..{num_classes - 1}"
        )


def _load_idx_set(files: dict[str, str], num_classes: int):
    arrays = {
        role: read_idx(p, ndim=3 if role.endswith("images") else 1)
        for role, p in files.items()
    }
    for split in ("train", "test"):
        _check_split(
            arrays[f"{split}_images"],
            arrays[f"{split}_labels"],
            files[f"{split}_images"],
            files[f"{split}_labels"],
            num_classes,
        )
    return (
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
    )


def _load_npz(path: str, num_classes: int):
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):  # a bare .npy array, not an archive
            raise ValueError("holds a single .npy array, not an npz archive")
        with loaded as npz:
            arrays = {k: npz[k] for k in _NPZ_KEYS if k in npz.files}
    except (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile) as e:
        # ValueError covers object arrays refused by allow_pickle=False and
        # files that are neither zip nor .npy.
        raise ValueError(
            f"{path}: cannot read npz file ({type(e).__name__}: {e}); the file "
            "is damaged or not a keras mnist.npz, delete it and fetch it again"
        ) from e
    missing = [k for k in _NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"{path}: missing array(s) {', '.join(missing)}; expected "
            f"{', '.join(_NPZ_KEYS)}"
        )
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(
                f"{path}: x_{split} is {x.dtype} with shape {x.shape}, "
                "expected uint8 (N, 28, 28)"
            )
        if y.ndim != 1 or y.dtype.kind not in "ui":
            raise ValueError(
                f"{path}: y_{split} is {y.dtype} with shape {y.shape}, "
                "expected 1-D integer labels"
            )
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(
                f"{path}: y_{split} holds labels outside 0..{num_classes - 1}"
            )
        arrays[f"y_{split}"] = y.astype(np.uint8, copy=False)
        _check_split(x, arrays[f"y_{split}"], f"{path}[x_{split}]",
                     f"{path}[y_{split}]", num_classes)
    return (
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
    )


# --------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in CLASS_NAMES:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of: "
            + ", ".join(repr(k) for k in CLASS_NAMES)
            + " (or 'fashion-mnist')"
        )
    return key


def _find_idx_set(folder: str) -> dict[str, str]:
    """Paths of the four IDX files in ``folder`` or raise :class:`_Miss`."""
    if not os.path.isdir(folder):
        raise _Miss(f"{folder}: " + ("not a folder" if os.path.exists(folder) else "does not exist"))
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
        raise _Miss(f"{folder}: missing {', '.join(missing)}")
    return found


def _find_npz(path: str) -> str:
    if not os.path.isfile(path):
        raise _Miss(f"{path}: does not exist")
    return path


def _load_from_data_root(root: str, name: str, num_classes: int):
    """Load from a folder with per-dataset sub-folders or the files directly."""
    reasons = []
    for folder in [os.path.join(root, sub) for sub in _SUBDIRS[name]] + [root]:
        try:
            files = _find_idx_set(folder)
        except _Miss as miss:
            reasons.append(str(miss))
            continue
        return _load_idx_set(files, num_classes), folder
    if name == "mnist":
        npz = os.path.join(root, "mnist.npz")
        if os.path.isfile(npz):
            return _load_npz(npz, num_classes), npz
        reasons.append(f"{npz}: does not exist")
    raise _Miss("; ".join(reasons))


def _keras_datasets_dir() -> str:
    # Same rule keras uses, so files downloaded by keras are found and ours
    # are where keras would look for them.
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def _keras_cache_target(name: str) -> str:
    """Folder (Fashion-MNIST) or file (MNIST) in the keras cache."""
    base = _keras_datasets_dir()
    if name == "mnist":
        return os.path.join(base, "mnist.npz")
    return os.path.join(base, SOURCES[name]["cache_subdir"] or _SUBDIRS[name][0])


def _load_from_keras_cache(name: str, num_classes: int):
    target = _keras_cache_target(name)
    if name == "mnist":
        return _load_npz(_find_npz(target), num_classes), target
    return _load_idx_set(_find_idx_set(target), num_classes), target


def _downloads_disabled() -> bool:
    value = os.environ.get(ENV_NO_DOWNLOAD, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


# --------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _keras_get_file() -> Optional[Callable]:
    """``keras.utils.get_file`` if keras imports and has a working backend."""
    try:
        import keras  # noqa: PLC0415 - optional, heavy, may be broken

        # Importing keras 3 already loads the backend, but a half-installed
        # backend can still fail on first use; a tiny op proves it works.
        keras.backend.backend()
        if hasattr(keras, "ops"):
            keras.ops.convert_to_numpy(keras.ops.zeros((1,)))
        return keras.utils.get_file
    except Exception:  # any failure just means "no keras", never fatal
        return None


def _pooch_module():
    try:
        import pooch  # noqa: PLC0415 - optional dependency

        return pooch
    except Exception:
        return None


def _fetch_keras(get_file, url: str, tmpdir: str, fname: str, sha256: str) -> str:
    return get_file(
        fname=fname,
        origin=url,
        file_hash=sha256,
        hash_algorithm="sha256",
        cache_dir=tmpdir,
        cache_subdir="",
    )


def _fetch_pooch(pooch, url: str, tmpdir: str, fname: str, sha256: str) -> str:
    return pooch.retrieve(
        url,
        known_hash=f"sha256:{sha256}",
        path=tmpdir,
        fname=fname,
        progressbar=False,
    )


def _fetch_urllib(url: str, tmpdir: str, fname: str, sha256: str) -> str:
    path = os.path.join(tmpdir, fname)
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response, open(path, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)
    return path


def _select_fetcher() -> tuple[str, Callable[[str, str, str, str], str]]:
    get_file = _keras_get_file()
    if get_file is not None:
        return "keras", lambda *a: _fetch_keras(get_file, *a)
    pooch = _pooch_module()
    if pooch is not None:
        return "pooch", lambda *a: _fetch_pooch(pooch, *a)
    return "urllib", _fetch_urllib


def _download_verified(url: str, dest: str, sha256: str, fetch) -> None:
    """Download ``url`` to ``dest`` only if its sha256 matches.

    Every fetcher writes into a private temporary folder next to ``dest``;
    the file is hashed here (whatever the fetcher already checked) and moved
    into place with an atomic ``os.replace``. A bad or partial download
    therefore never appears under the final name, where the next run would
    pick it up as a cache hit.
    """
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmpdir:
        got = fetch(url, tmpdir, os.path.basename(dest), sha256)
        actual = _sha256(got)
        if actual != sha256:
            raise ValueError(
                f"sha256 mismatch for {url}: got {actual}, expected {sha256}; "
                "the file was rejected and not cached"
            )
        os.replace(got, dest)


def _download(name: str, num_classes: int):
    source = SOURCES[name]
    datasets = _keras_datasets_dir()
    folder = os.path.join(datasets, source["cache_subdir"])
    fetcher_name, fetch = _select_fetcher()
    for fname, sha256 in source["files"].items():
        dest = os.path.join(folder, fname)
        if os.path.isfile(dest) and _sha256(dest) == sha256:
            continue
        url = source["base_url"] + fname
        log.info("downloading %s with %s into %s", url, fetcher_name, dest)
        try:
            _download_verified(url, dest, sha256, fetch)
        except Exception as e:  # network, HTTP, hash: all reported the same way
            raise _Miss(f"{url} via {fetcher_name}: {type(e).__name__}: {e}") from e
    return _load_from_keras_cache(name, num_classes)


# --------------------------------------------------------------------------
# Public loader
# --------------------------------------------------------------------------


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
    cache layout and are verified against :data:`SOURCES`. Set
    ``TINYGRAD_FREE_NO_DOWNLOAD=1`` to forbid network access.
    """
    key = _canonical_name(name)
    num_classes = len(CLASS_NAMES[key])
    env_root = os.environ.get(ENV_DATA)

    def given(value, what):
        def loader():
            if not value:
                raise _Miss(what)
            return _load_from_data_root(os.fspath(value), key, num_classes)
        return loader

    def debian():
        try:
            return _load_idx_set(_find_idx_set(DEBIAN_DIR), num_classes), DEBIAN_DIR
        except _Miss as miss:
            raise _Miss(f"{miss} (apt-get install dataset-fashion-mnist)") from None

    def download():
        if _downloads_disabled():
            raise _Miss(f"disabled by {ENV_NO_DOWNLOAD}={os.environ[ENV_NO_DOWNLOAD]}")
        return _download(key, num_classes)

    steps = [
        ("data_dir argument", given(data_dir, "not given")),
        (f"${ENV_DATA}", given(env_root, "not set")),
        ("keras cache", lambda: _load_from_keras_cache(key, num_classes)),
    ]
    if key == "fashion_mnist":  # Debian packages only Fashion-MNIST
        steps.append(("Debian package folder", debian))
    steps.append((f"download into {_keras_cache_target(key)}", download))

    attempts: list[tuple[str, str]] = []
    for label, loader in steps:
        try:
            (train, test), where = loader()
        except _Miss as miss:
            attempts.append((label, str(miss)))
            continue
        log.info("loaded %s from %s", key, where)
        return train, test, CLASS_NAMES[key]
    raise DatasetNotFoundError(_not_found_message(key, attempts), key, attempts)


def _not_found_message(key: str, attempts: list[tuple[str, str]]) -> str:
    lines = [f"Could not find the {_DISPLAY_NAMES[key]} dataset ({key!r}). Places tried, in order:"]
    lines += [f"  {i}. {label}: {reason}" for i, (label, reason) in enumerate(attempts, 1)]
    stems = ", ".join(IDX_FILES.values())
    lines += [
        "Fix it in one of these ways:",
        f"  - set {ENV_DATA} to a folder with fashion-mnist/ and mnist/ sub-folders,"
        f" each holding {stems} (.gz or uncompressed);",
        "  - pass data_dir= to load_dataset()/load_split() (a folder laid out as above,"
        " or the folder holding the four files itself);",
        f"  - allow the download: unset {ENV_NO_DOWNLOAD} and make"
        f" {SOURCES[key]['base_url']} reachable (files go to {_keras_datasets_dir()}).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------


def flatten_and_scale(x, dtype=np.float32) -> np.ndarray:
    """Flatten images to rows and scale uint8 pixels to ``[0, 1]``.

    Parameters
    ----------
    x : numpy.ndarray
        uint8 array of shape ``(N, H, W)`` (or already ``(N, H*W)``).
    dtype : numpy float dtype, default ``np.float32``
        Output precision; ``np.float64`` on request.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(N, H*W)`` equal to ``x / 255``.

    Raises
    ------
    TypeError
        If ``dtype`` is not a floating type or ``x`` is not uint8 (scaling
        data that is already scaled would silently divide by 255 twice).
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating type such as float32 or float64, got {dtype}")
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {x.dtype}; is the data already scaled?")
    if x.ndim < 2:
        raise ValueError(f"expected an array of images (N, H, W), got shape {x.shape}")
    out = x.reshape(len(x), -1).astype(dtype)
    # Division, not multiplication by 1/255, so the values match the usual
    # ``x.astype("float32") / 255`` bit for bit.
    np.divide(out, dtype.type(255), out=out)
    return out


def train_val_split(x, y, val_fraction: float = 0.1, seed: int = 0):
    """Split off a seeded random validation set.

    Parameters
    ----------
    x, y : numpy.ndarray
        Samples and labels with the same length.
    val_fraction : float, default 0.1
        Share of samples for validation, ``0 <= val_fraction < 1``; the
        count is rounded to the nearest integer (60000 -> 54000 / 6000).
    seed : int, default 0
        Seed for :func:`numpy.random.default_rng`; the same seed gives the
        same split.

    Returns
    -------
    x_train, y_train, x_val, y_val : numpy.ndarray
        New arrays. Each part keeps the original order of its samples.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} vs {len(y)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(x)
    n_val = int(round(n * val_fraction))
    perm = np.random.default_rng(seed).permutation(n)
    # Sorting keeps memory access sequential and makes each part depend only
    # on which samples it holds; shuffling is the batch iterator's job.
    val_idx = np.sort(perm[:n_val])
    train_idx = np.sort(perm[n_val:])
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def one_hot(y, num_classes: int = 10, dtype=np.float32) -> np.ndarray:
    """One-hot encode integer labels.

    Parameters
    ----------
    y : array_like of int
        Labels in ``0 .. num_classes-1``, any shape.
    num_classes : int, default 10
    dtype : numpy dtype, default ``np.float32``

    Returns
    -------
    numpy.ndarray
        Shape ``y.shape + (num_classes,)``.

    Raises
    ------
    ValueError
        If a label lies outside ``0 .. num_classes-1`` (the message shows the
        first offending value and its position).
    TypeError
        If the labels are not integers.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "ui":
        raise TypeError(f"labels must be integers, got {y.dtype}")
    flat = y.reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{bad.size} label(s) out of range 0..{num_classes - 1}; first is "
            f"{int(flat[i])} at flat index {i}"
        )
    out = np.zeros((flat.size, num_classes), dtype=dtype)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(y.shape + (num_classes,))


# --------------------------------------------------------------------------
# Checking data before training
# --------------------------------------------------------------------------


def as_samples(x, y, what="the training data", dtype=np.float32, names=("x", "y")):
    """``x, y`` as arrays of samples and labels, checked before any training starts.

    Array-likes (lists, tuples) are converted once, as Keras's ``fit`` does: ``x`` to ``dtype``
    (the model's), ``y`` with NumPy's inferred type. NumPy arrays pass through uncopied (a
    large float64 array is not silently copied; the first layer asks for a conversion).

    Raises
    ------
    ValueError
        If either cannot be converted, ``x`` has no sample axis and feature axis, there are no
        samples, or ``x`` and ``y`` have different lengths; the message names ``what`` and calls
        the arrays by ``names``.
    """
    xn, yn = names
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x, dtype=dtype)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{what}: {xn} could not be converted to a {np.dtype(dtype)} array ({e}); "
                             "pass a numpy array of shape (samples, features)") from None
    if not isinstance(y, np.ndarray):
        try:
            y = np.asarray(y)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{what}: {yn} could not be converted to an array ({e}); "
                             "pass integer labels of shape (samples,)") from None
    if x.ndim and len(x) == 0:
        raise ValueError(f"{what} is empty ({xn} has shape {x.shape}): training needs at least one sample")
    if x.ndim < 2:
        hint = f"; for a single feature use {xn}.reshape(-1, 1)" if x.ndim == 1 else ""
        raise ValueError(f"{what}: {xn} must have one row per sample, shape (samples, features), "
                         f"got shape {x.shape}{hint}")
    if y.ndim not in (1, 2):
        raise ValueError(f"{what}: {yn} must be integer labels of shape (samples,) or one-hot of shape "
                         f"(samples, classes), got shape {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{what}: {xn} and {yn} have different lengths: {len(x)} samples but {len(y)} labels")
    return x, y


def check_finite(x, what="the training data"):
    """Raise if the float array ``x`` holds NaN or inf.

    Cheap: a min and a max over the array (NaN propagates through both, inf shows in one), no
    temporary array; only a failing check looks for the offending rows.
    """
    if x.dtype.kind not in "fc" or x.size == 0:
        return
    with np.errstate(invalid="ignore"):
        if np.isfinite(x.min()) and np.isfinite(x.max()):
            return
    bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
    raise ValueError(f"{what} contains NaN or inf in {bad.size} of {len(x)} samples (first: index {int(bad[0])}); "
                     "the data is bad, not the learning rate: fix or drop those samples before training")


# --------------------------------------------------------------------------
# Mini-batches
# --------------------------------------------------------------------------


def _check_batch_args(x, y, batch_size):
    if isinstance(batch_size, bool):
        raise TypeError("batch_size must be an int, got bool")
    try:
        batch_size = operator.index(batch_size)
    except TypeError:
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}") from None
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)} vs {len(y)}")
    return batch_size


def _epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    # A seed sequence over (seed, epoch) gives independent, reproducible
    # streams per epoch without carrying RNG state between epochs, so any
    # epoch can be replayed on its own.
    return np.random.default_rng([seed, epoch]).permutation(n)


def iterate_minibatches(x, y, batch_size: int, shuffle: bool = True, seed: int = 0,
                        epoch: int = 0, drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(xb, yb)`` mini-batches for one epoch.

    Parameters
    ----------
    x, y : numpy.ndarray
        Samples and labels with the same length.
    batch_size : int
        Positive batch size.
    shuffle : bool, default True
        Visit samples in a random order derived from ``(seed, epoch)``.
    seed : int, default 0
        Non-negative seed.
    epoch : int, default 0
        Epoch number; different epochs give different orders.
    drop_last : bool, default False
        Skip the final batch if it is smaller than ``batch_size``.

    Yields
    ------
    xb, yb : numpy.ndarray
        Fresh copies (safe to keep).
    """
    batch_size = _check_batch_args(x, y, batch_size)
    for idx in _batch_indices(len(x), batch_size, shuffle, seed, epoch, drop_last):
        yield x[idx], y[idx]


def _batch_indices(n, batch_size, shuffle, seed, epoch, drop_last):
    """The index array of each batch of one epoch."""
    order = _epoch_order(n, shuffle, seed, epoch)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


class BatchIterator:
    """Re-iterable mini-batch source that reshuffles every epoch.

    Each ``iter()`` call runs the next epoch: epoch ``e`` visits the samples
    in the order ``default_rng([seed, e]).permutation(N)``, so two iterators
    built with the same seed produce the same batches epoch by epoch.

    Parameters
    ----------
    x, y : numpy.ndarray
        Samples and labels with the same length.
    batch_size : int
        Positive batch size.
    shuffle : bool, default True
        If False, every epoch visits samples in their stored order.
    seed : int, default 0
        Non-negative seed.
    drop_last : bool, default False
        Skip a final batch smaller than ``batch_size``.
    reuse_buffers : bool, default False
        If True, gather each batch into two preallocated buffers with
        :func:`numpy.take` instead of allocating new arrays. Faster, but the
        arrays yielded are **overwritten by the next batch**: use them before
        advancing and copy anything you want to keep.
    transform : callable, optional
        Applied to every batch of samples as ``transform(xb, rng)`` (for
        example :class:`tinygrad_free.augment.RandomShift`); ``rng`` is a
        generator seeded from ``(seed, epoch)``, so augmented epochs are
        reproducible too. The labels pass through unchanged.

    Attributes
    ----------
    epoch : int
        Number of the epoch the next ``iter()`` call will run.

    Examples
    --------
    >>> it = BatchIterator(np.zeros((10, 3)), np.arange(10), batch_size=4)
    >>> len(it), [len(yb) for _, yb in it]
    (3, [4, 4, 2])
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, *, reuse_buffers: bool = False, transform=None):
        self.batch_size = _check_batch_args(x, y, batch_size)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be a callable (xb, rng) -> xb, got {type(transform).__name__}")
        self.x, self.y = x, y
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.reuse_buffers = reuse_buffers
        self.transform = transform
        self.epoch = 0
        self._xbuf = self._ybuf = None

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iter_epoch(epoch)

    def iter_epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the batches of a given epoch without advancing :attr:`epoch`."""
        if self.transform is not None:
            # A stream of its own (the third key), so augmenting leaves the batch order as it was.
            rng = np.random.default_rng([self.seed, epoch, 1])
            for xb, yb in self._gather(epoch):
                xt = self.transform(xb, rng)
                # Without reuse_buffers every batch is the caller's to keep, and a transform
                # may return a buffer of its own that the next batch overwrites.
                yield (xt if self.reuse_buffers or xt is xb else xt.copy()), yb
        else:
            yield from self._gather(epoch)

    def _gather(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not self.reuse_buffers:
            yield from iterate_minibatches(self.x, self.y, self.batch_size, self.shuffle,
                                           self.seed, epoch, self.drop_last)
            return
        x, y, bs = self.x, self.y, self.batch_size
        if self._xbuf is None:
            self._xbuf = np.empty((bs,) + x.shape[1:], dtype=x.dtype)
            self._ybuf = np.empty((bs,) + y.shape[1:], dtype=y.dtype)
        for idx in _batch_indices(len(x), bs, self.shuffle, self.seed, epoch, self.drop_last):
            m = len(idx)
            # mode="clip" skips numpy's bounds-check buffering; the indices
            # come from a permutation of range(N), so they are valid.
            xb = np.take(x, idx, axis=0, out=self._xbuf[:m], mode="clip")
            yb = np.take(y, idx, axis=0, out=self._ybuf[:m], mode="clip")
            yield xb, yb


# --------------------------------------------------------------------------
# Convenience
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Train / validation / test arrays ready for training.

    Images are flattened to ``(N, 784)`` and scaled to ``[0, 1]``; labels
    are ``int64``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_split(name: str, data_dir=None, val_fraction: float = 0.1, seed: int = 0,
               dtype=np.float32) -> Split:
    """Load a dataset and split it the assignment's way.

    Parameters
    ----------
    name : str
        See :func:`load_dataset`.
    data_dir : str or os.PathLike, optional
        See :func:`load_dataset`.
    val_fraction : float, default 0.1
        Share of the training set held out for validation (60000 -> 54000
        train / 6000 validation).
    seed : int, default 0
        Seed of the train/validation split.
    dtype : numpy float dtype, default ``np.float32``
        Precision of the image arrays.

    Returns
    -------
    Split
    """
    (x_train, y_train), (x_test, y_test), class_names = load_dataset(name, data_dir)
    x_tr, y_tr, x_val, y_val = train_val_split(x_train, y_train, val_fraction, seed)
    return Split(
        x_train=flatten_and_scale(x_tr, dtype),
        y_train=y_tr.astype(np.int64),
        x_val=flatten_and_scale(x_val, dtype),
        y_val=y_val.astype(np.int64),
        x_test=flatten_and_scale(x_test, dtype),
        y_test=y_test.astype(np.int64),
        class_names=class_names,
    )
