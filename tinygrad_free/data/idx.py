"""Reading the files: IDX (gzipped or not) parsed by hand, keras's ``mnist.npz`` without pickle,
and the checks that a set of images and labels is whole."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from .sources import NPZ_KEYS

_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}


_IDX_KIND = {1: "labels", 3: "images"}


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


def read_idx(path, ndim: int | None = None) -> np.ndarray:
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
        raise ValueError(f"{path}: truncated IDX header: {len(raw)} bytes, need at least 4")
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
            f"{path}: unsupported number of dimensions {nd} (magic 0x{magic:08x}); expected 1 (labels) or 3 (images)"
        )
    if ndim is not None and nd != ndim:
        raise ValueError(
            f"{path}: expected an IDX {_IDX_KIND[ndim]} file (magic "
            f"0x{_IDX_MAGIC[ndim]:08x}) but found {_IDX_KIND[nd]} (magic "
            f"0x{magic:08x}); are the file names swapped?"
        )
    header = 4 + 4 * nd
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header: {len(raw)} bytes, need {header} for {nd} dimension(s)")
    dims = struct.unpack(f">{nd}I", raw[4:header])
    expected = math.prod(dims)
    payload = len(raw) - header
    shape = "x".join(map(str, dims))
    if payload < expected:
        raise ValueError(
            f"{path}: truncated payload: header says {shape} = {expected} bytes but the file holds only {payload}"
        )
    if payload > expected:
        raise ValueError(
            f"{path}: {payload - expected} unexpected trailing bytes after the {shape} = {expected} byte payload"
        )
    # Copy so callers get an ordinary writable array, as they would from keras.
    return np.frombuffer(raw, np.uint8, count=expected, offset=header).reshape(dims).copy()


def _check_split(images, labels, img_path, lbl_path, num_classes):
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise ValueError(
            f"image/label count mismatch: {img_path} holds {len(images)} "
            f"images but {lbl_path} holds {len(labels)} labels"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise ValueError(f"{lbl_path}: label {int(labels.max())} out of range 0..{num_classes - 1}")


def load_idx_set(files: dict[str, str], num_classes: int):
    """``((x_train, y_train), (x_test, y_test))`` from the four IDX files ``files`` (keyed by the roles
    of :data:`IDX_FILES`), each split's images and labels checked to match and the labels to be
    below ``num_classes``; a bad file raises :class:`ValueError` naming it."""
    arrays = {role: read_idx(p, ndim=3 if role.endswith("images") else 1) for role, p in files.items()}
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


def load_npz(path: str, num_classes: int):
    """``((x_train, y_train), (x_test, y_test))`` from a keras ``mnist.npz`` (the arrays of
    :data:`NPZ_KEYS`, read without pickle), checked as :func:`load_idx_set` checks its files."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):  # a bare .npy array, not an archive
            raise ValueError("holds a single .npy array, not an npz archive")
        with loaded as npz:
            arrays = {k: npz[k] for k in NPZ_KEYS if k in npz.files}
    except (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile) as e:
        # ValueError covers object arrays refused by allow_pickle=False and
        # files that are neither zip nor .npy.
        raise ValueError(
            f"{path}: cannot read npz file ({type(e).__name__}: {e}); the file "
            "is damaged or not a keras mnist.npz, delete it and fetch it again"
        ) from e
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)}; expected {', '.join(NPZ_KEYS)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(f"{path}: x_{split} is {x.dtype} with shape {x.shape}, expected uint8 (N, 28, 28)")
        if y.ndim != 1 or y.dtype.kind not in "ui":
            raise ValueError(f"{path}: y_{split} is {y.dtype} with shape {y.shape}, expected 1-D integer labels")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"{path}: y_{split} holds labels outside 0..{num_classes - 1}")
        arrays[f"y_{split}"] = y.astype(np.uint8, copy=False)
        _check_split(x, arrays[f"y_{split}"], f"{path}[x_{split}]", f"{path}[y_{split}]", num_classes)
    return (
        (arrays["x_train"], arrays["y_train"]),
        (arrays["x_test"], arrays["y_test"]),
    )
