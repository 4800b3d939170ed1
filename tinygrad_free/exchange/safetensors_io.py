"""The safetensors format, read and written with NumPy alone (huggingface/safetensors: README).

A file is an 8-byte little-endian header length N, N bytes of JSON
``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {str: str}}``
(padded with spaces to a multiple of 8 bytes), then the tensors' raw little-endian bytes, one
after another. ``model.save("m.safetensors")`` writes the model's ``state_dict()`` this way, its
architecture (the JSON of ``nn.load``) in the metadata; the ``safetensors`` package, PyTorch's
``safetensors.torch.load_file`` and the Hugging Face tools read it, and ``nn.load`` reads it back.
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..fileio import atomic_open

if TYPE_CHECKING:
    from .._typing import Array

DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
CODES = {np.dtype(t): code for code, t in DTYPES.items()}
#: The safetensors library refuses larger headers.
MAX_HEADER = 100_000_000


def write(
    path: str | os.PathLike[str], tensors: Mapping[str, Array], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (name -> array) and ``metadata`` (str -> str) as a safetensors file, atomically."""
    header: dict[str, object] = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TypeError(f"safetensors metadata maps strings to strings; not so for {bad}")
        header["__metadata__"] = dict(metadata)
    blobs, offset = [], 0
    for name, value in tensors.items():
        a = np.asarray(value)
        if a.dtype not in CODES or name == "__metadata__":
            what = f"dtype {a.dtype}" if name != "__metadata__" else "a reserved name"
            raise TypeError(f"safetensors: tensor {name!r} has {what}; supported dtypes: {sorted(DTYPES)}")
        data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": CODES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with atomic_open(path) as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def is_safetensors(head: bytes) -> bool:
    """Whether a file starting with ``head`` (at least 9 bytes) looks like safetensors."""
    return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= MAX_HEADER


def read(path: str | os.PathLike[str]) -> tuple[OrderedDict[str, Array], dict[str, str]]:
    """``(tensors in file order, metadata)`` of a safetensors file; arrays in native byte order."""
    with open(path, "rb") as f:
        data = f.read()

    def bad(why: str) -> ValueError:
        return ValueError(f"{os.fspath(path)}: not a valid safetensors file ({why})")

    if len(data) < 8:
        raise bad("shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER, len(data) - 8):
        raise bad(f"header length {n} exceeds the file")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    buffer = memoryview(data)[8 + n :]
    tensors: list[tuple[int, str, Array]] = []
    end_of_data = 0
    for name, info in header.items():
        try:
            dtype = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"tensor {name!r} has an unreadable or unsupported entry {info!r}") from None
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(buffer) or end - begin != count * dtype.itemsize:
            raise bad(f"tensor {name!r}: offsets {[begin, end]} do not hold shape {shape} of {info['dtype']}")
        array = np.frombuffer(buffer, dtype, count, begin).reshape(shape)
        tensors.append((begin, name, array.astype(array.dtype.newbyteorder("="))))
        end_of_data = max(end_of_data, end)
    if end_of_data != len(buffer):
        raise bad(f"{len(buffer) - end_of_data} bytes after the last tensor")
    return OrderedDict((name, a) for _, name, a in sorted(tensors, key=lambda t: t[0])), dict(metadata)
