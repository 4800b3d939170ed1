"""Tests for tinygrad_free.data: IDX parsing, dataset search order, download
verification and preprocessing.

Nothing here touches the internet: every test runs with HOME and KERAS_HOME
in a temporary folder, ``TINYGRAD_FREE_NO_DOWNLOAD=1`` and a Debian folder
that does not exist; the download tests talk to an ``http.server`` on
127.0.0.1 only.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import http.server
import os
import pathlib
import struct
import sys
import threading
import types

import numpy as np
import pytest

from tinygrad_free import data

# Captured at import time, before any fixture monkeypatches the environment.
_REAL_DATA_ENV = os.environ.get("TINYGRAD_FREE_DATA")
_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Where the project's machines keep the data: beside the clone (as tests/conftest.py).
_DEFAULT_REAL_DATA = _REPO_ROOT.parent / "shared" / "data"
# The autouse fixture replaces data.sources.SOURCES; keep the shipped values to test.
_SHIPPED_SOURCES = copy.deepcopy(data.SOURCES)

FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


# --------------------------------------------------------------------------
# Fixture helpers
# --------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray, dtype_code: int = 0x08) -> bytes:
    """Serialise a uint8 array in IDX format."""
    header = struct.pack(">BBBB", 0, 0, dtype_code, arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def make_arrays(n_train=30, n_test=20, seed=0):
    """Small random dataset shaped like MNIST: ((xtr, ytr), (xte, yte))."""
    rng = np.random.default_rng(seed)
    return (
        (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8)),
        (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8)),
    )


def idx_set_files(arrays, gz=True) -> dict[str, bytes]:
    """File name -> content for the four IDX files of ``arrays``."""
    (xtr, ytr), (xte, yte) = arrays
    out = {}
    for stem, arr in zip(FASHION_FILES, (xtr, ytr, xte, yte)):
        raw = idx_bytes(arr)
        # mtime=0 keeps the bytes (and hence the sha256) reproducible.
        out[stem + ".gz" if gz else stem] = gzip.compress(raw, mtime=0) if gz else raw
    return out


def write_idx_set(folder, arrays=None, gz=True, seed=0, **kw):
    """Write the four IDX files into ``folder``; return the arrays written."""
    arrays = arrays if arrays is not None else make_arrays(seed=seed, **kw)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, content in idx_set_files(arrays, gz).items():
        (folder / fname).write_bytes(content)
    return arrays


def write_mnist_npz(path, arrays=None, seed=0):
    arrays = arrays if arrays is not None else make_arrays(seed=seed)
    (xtr, ytr), (xte, yte) = arrays
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return arrays


def assert_same(loaded, arrays):
    (xtr, ytr), (xte, yte), _names = loaded
    (exp_xtr, exp_ytr), (exp_xte, exp_yte) = arrays
    for got, exp in ((xtr, exp_xtr), (ytr, exp_ytr), (xte, exp_xte), (yte, exp_yte)):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, exp)


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def resolve_real_data_dir():
    if _REAL_DATA_ENV:
        candidates = [pathlib.Path(_REAL_DATA_ENV), _REPO_ROOT / _REAL_DATA_ENV]
    else:
        candidates = [pathlib.Path(_DEFAULT_REAL_DATA)]
    for c in candidates:
        if (c / "fashion-mnist").is_dir() and (c / "mnist").is_dir():
            return c.resolve()
    return None


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Keep every test away from the real ~/.keras, Debian folder and network."""
    home = tmp_path / "home"
    keras_home = tmp_path / "keras-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv("TINYGRAD_FREE_NO_DOWNLOAD", "1")
    monkeypatch.delenv("TINYGRAD_FREE_DATA", raising=False)
    monkeypatch.setattr(data.sources, "DEBIAN_DIR", str(tmp_path / "no-debian"))
    # Any real download attempt would have to go through SOURCES; point it
    # at a closed local port so a bug cannot reach the internet.
    monkeypatch.setattr(
        data.sources, "SOURCES", {k: dict(v, base_url="http://127.0.0.1:9/") for k, v in data.sources.SOURCES.items()}
    )
    return types.SimpleNamespace(tmp=tmp_path, keras_datasets=keras_home / "datasets")


@pytest.fixture(scope="session")
def real_data_dir():
    found = resolve_real_data_dir()
    if found is None:
        msg = f"real Fashion-MNIST/MNIST files not found (TINYGRAD_FREE_DATA={_REAL_DATA_ENV!r})"
        if _REAL_DATA_ENV:
            pytest.fail(msg)  # explicitly configured, so a missing folder is an error
        pytest.skip(msg + f"; set TINYGRAD_FREE_DATA or provide {_DEFAULT_REAL_DATA}")
    return found


@pytest.fixture(scope="session")
def real_sets(real_data_dir, tmp_path_factory):
    """Both real datasets, loaded once per session through the public API."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYGRAD_FREE_NO_DOWNLOAD", "1")
        mp.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras")))
        mp.setattr(data.sources, "DEBIAN_DIR", str(tmp_path_factory.mktemp("debian")))
        return {name: data.load_dataset(name, data_dir=real_data_dir) for name in ("fashion_mnist", "mnist")}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(monkeypatch):
    """A local HTTP server; fill ``server.files`` (name -> bytes) to serve."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.files, server.requests = {}, []
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/data/"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def serve_dataset(monkeypatch, server, name, files: dict[str, bytes], served=None):
    """Publish ``files`` on ``server`` and point SOURCES[name] at them.

    ``served`` optionally overrides what the server sends for some files
    while SOURCES keeps the hashes of ``files`` (to simulate corruption).
    """
    for fname, content in {**files, **(served or {})}.items():
        server.files["data/" + fname] = content
    monkeypatch.setitem(
        data.sources.SOURCES,
        name,
        {
            "base_url": server.base_url,
            "cache_subdir": "fashion-mnist" if name == "fashion_mnist" else "",
            "files": {fname: sha256(content) for fname, content in files.items()},
        },
    )
    monkeypatch.delenv("TINYGRAD_FREE_NO_DOWNLOAD")


@pytest.fixture
def use_fetcher(monkeypatch):
    """Force one download backend: 'pooch', 'urllib' or 'keras' (a fake)."""
    calls = []

    def fake_get_file(
        fname, origin, file_hash=None, hash_algorithm="auto", cache_dir=None, cache_subdir="datasets", **kw
    ):
        # Mimics keras.utils.get_file closely enough: downloads to
        # cache_dir/cache_subdir/fname and returns the path. Like old keras
        # versions it does not itself reject a bad hash, so the loader's own
        # check is what is under test.
        calls.append(dict(fname=fname, origin=origin, file_hash=file_hash, hash_algorithm=hash_algorithm))
        folder = os.path.join(cache_dir, cache_subdir)
        os.makedirs(folder, exist_ok=True)
        return data.download._fetch_urllib(origin, folder, fname, file_hash)

    def select(which):
        pooch = pytest.importorskip("pooch") if which == "pooch" else None
        monkeypatch.setattr(
            data.download, "_keras_get_file", (lambda: fake_get_file) if which == "keras" else (lambda: None)
        )
        monkeypatch.setattr(data.download, "_pooch_module", lambda: pooch)
        return calls

    return select


def leftovers(folder: pathlib.Path):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# --------------------------------------------------------------------------
# Real files
# --------------------------------------------------------------------------


def test_real_fashion_mnist_has_keras_shapes_dtypes_order_and_balanced_classes(real_sets):
    (xtr, ytr), (xte, yte), names = real_sets["fashion_mnist"]
    assert (xtr.shape, xtr.dtype, ytr.shape, ytr.dtype) == ((60000, 28, 28), np.uint8, (60000,), np.uint8)
    assert (xte.shape, xte.dtype, yte.shape, yte.dtype) == ((10000, 28, 28), np.uint8, (10000,), np.uint8)
    np.testing.assert_array_equal(np.bincount(ytr, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yte, minlength=10), [1000] * 10)
    # Same sample order as keras.datasets.fashion_mnist.load_data().
    np.testing.assert_array_equal(ytr[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    np.testing.assert_array_equal(yte[:10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])
    assert names == data.CLASS_NAMES["fashion_mnist"]
    assert names[9] == "Ankle boot" and names[0] == "T-shirt/top" and len(names) == 10
    assert xtr.flags.writeable and xtr.flags.c_contiguous


def test_real_mnist_has_keras_shapes_and_known_label_counts(real_sets):
    (xtr, ytr), (xte, yte), names = real_sets["mnist"]
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert {a.dtype for a in (xtr, ytr, xte, yte)} == {np.dtype(np.uint8)}
    np.testing.assert_array_equal(
        np.bincount(ytr, minlength=10), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    np.testing.assert_array_equal(
        np.bincount(yte, minlength=10), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    np.testing.assert_array_equal(ytr[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    assert names == tuple("0123456789")


def test_real_data_is_found_through_env_var_without_data_dir(real_data_dir, real_sets, monkeypatch):
    monkeypatch.setenv("TINYGRAD_FREE_DATA", str(real_data_dir))
    loaded = data.load_dataset("MNIST")
    assert_same(loaded, real_sets["mnist"][:2])


def test_read_idx_reads_gz_and_uncompressed_copies_identically(real_data_dir, tmp_path):
    gz_path = real_data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    raw_path = tmp_path / "t10k-labels-idx1-ubyte"
    raw_path.write_bytes(gzip.decompress(gz_path.read_bytes()))
    from_gz, from_raw = data.read_idx(gz_path), data.read_idx(raw_path, ndim=1)
    assert from_gz.shape == (10000,) and from_gz.dtype == np.uint8
    np.testing.assert_array_equal(from_gz, from_raw)


def test_truncated_and_corrupted_copies_of_real_files_are_rejected(real_data_dir, tmp_path):
    gz = (real_data_dir / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    raw = gzip.decompress(gz)

    truncated_raw = tmp_path / "t10k-images-idx3-ubyte"
    truncated_raw.write_bytes(raw[:-784])  # one image short
    with pytest.raises(ValueError, match="truncated payload") as e:
        data.read_idx(truncated_raw)
    assert str(truncated_raw) in str(e.value)

    truncated_gz = tmp_path / "half.gz"
    truncated_gz.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ValueError, match="corrupt gzip") as e:
        data.read_idx(truncated_gz)
    assert str(truncated_gz) in str(e.value)


# --------------------------------------------------------------------------
# IDX reader on generated files
# --------------------------------------------------------------------------


def _labels():
    return np.arange(10, dtype=np.uint8)


def _images():
    return np.arange(2 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(2, 28, 28)


def _flip_middle(b: bytes) -> bytes:
    mid = len(b) // 2
    return b[:mid] + bytes(x ^ 0xFF for x in b[mid : mid + 8]) + b[mid + 8 :]


CORRUPTIONS = {
    # name: (file content, expected ndim or None, regex the message must match)
    "bad_magic": (b"\x12\x34" + idx_bytes(_labels())[2:], None, "bad magic number 0x12340801"),
    "png_instead_of_idx": (b"\x89PNG\r\n\x1a\n" + bytes(20), None, "bad magic number"),
    "wrong_dtype_byte": (idx_bytes(_labels(), dtype_code=0x0D), None, "element type 0x0d"),
    "unsupported_ndim": (struct.pack(">BBBBII", 0, 0, 8, 2, 2, 2) + bytes(4), None, "number of dimensions 2"),
    "labels_where_images_expected": (idx_bytes(_labels()), 3, "expected an IDX images file"),
    "empty_file": (b"", None, "truncated IDX header"),
    "header_cut_in_dims": (idx_bytes(_images())[:10], None, "truncated IDX header"),
    "truncated_payload": (idx_bytes(_images())[:-1], None, "truncated payload.*2x28x28 = 1568"),
    "trailing_bytes": (idx_bytes(_labels()) + b"\x00\x00", None, "2 unexpected trailing bytes"),
    "corrupt_gzip_stream": (_flip_middle(gzip.compress(idx_bytes(_images()), mtime=0)), None, "corrupt gzip"),
    "truncated_gzip": (gzip.compress(idx_bytes(_images()), mtime=0)[:-20], None, "corrupt gzip"),
    "gzip_of_truncated_idx": (gzip.compress(idx_bytes(_images())[:-100], mtime=0), None, "truncated payload"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_read_idx_rejects_corrupt_file_naming_it_and_the_problem(case, tmp_path):
    content, ndim, pattern = CORRUPTIONS[case]
    path = tmp_path / f"{case}-idx-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=pattern) as e:
        data.read_idx(path, ndim=ndim)
    assert str(path) in str(e.value)


def test_read_idx_detects_compression_from_content_not_name(tmp_path):
    raw_named_gz = tmp_path / "labels.gz"
    raw_named_gz.write_bytes(idx_bytes(_labels()))
    gz_named_raw = tmp_path / "images"
    gz_named_raw.write_bytes(gzip.compress(idx_bytes(_images())))
    np.testing.assert_array_equal(data.read_idx(raw_named_gz), _labels())
    np.testing.assert_array_equal(data.read_idx(gz_named_raw, ndim=3), _images())


def test_image_label_count_mismatch_is_rejected_naming_both_files(tmp_path):
    (xtr, ytr), test = make_arrays()
    write_idx_set(tmp_path, ((xtr, ytr[:-1]), test))
    with pytest.raises(ValueError, match="count mismatch") as e:
        data.load_dataset("fashion_mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "30 images" in msg and "29 labels" in msg


def test_label_out_of_range_is_rejected(tmp_path):
    (xtr, ytr), test = make_arrays()
    ytr = ytr.copy()
    ytr[3] = 10
    write_idx_set(tmp_path, ((xtr, ytr), test))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: label 10 out of range 0..9"):
        data.load_dataset("fashion_mnist", data_dir=tmp_path)


def test_images_that_are_not_28x28_are_rejected(tmp_path):
    rng = np.random.default_rng(0)
    arrays = (
        (rng.integers(0, 256, (4, 32, 32), dtype=np.uint8), np.zeros(4, np.uint8)),
        (rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), np.zeros(2, np.uint8)),
    )
    write_idx_set(tmp_path, arrays)
    with pytest.raises(ValueError, match="32x32, expected 28x28"):
        data.load_dataset("mnist", data_dir=tmp_path)


def test_corrupt_mnist_npz_in_keras_cache_is_rejected_naming_it(isolated):
    npz = isolated.keras_datasets / "mnist.npz"
    npz.parent.mkdir(parents=True)
    npz.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match="cannot read npz") as e:
        data.load_dataset("mnist")
    assert str(npz) in str(e.value)


def test_bare_npy_instead_of_npz_is_rejected(isolated):
    npz = isolated.keras_datasets / "mnist.npz"
    npz.parent.mkdir(parents=True)
    with open(npz, "wb") as f:
        np.save(f, np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="not an npz archive") as e:
        data.load_dataset("mnist")
    assert str(npz) in str(e.value)


def test_mnist_npz_missing_arrays_is_rejected(isolated):
    npz = isolated.keras_datasets / "mnist.npz"
    npz.parent.mkdir(parents=True)
    np.savez(npz, x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing array.*y_train, x_test, y_test"):
        data.load_dataset("mnist")


# --------------------------------------------------------------------------
# Search order
# --------------------------------------------------------------------------


def test_data_dir_beats_env_var(isolated, monkeypatch):
    mine = write_idx_set(isolated.tmp / "mine" / "fashion-mnist", seed=1)
    write_idx_set(isolated.tmp / "env" / "fashion-mnist", seed=2)
    monkeypatch.setenv("TINYGRAD_FREE_DATA", str(isolated.tmp / "env"))
    assert_same(data.load_dataset("fashion_mnist", data_dir=isolated.tmp / "mine"), mine)


def test_env_var_beats_keras_cache(isolated, monkeypatch):
    env = write_idx_set(isolated.tmp / "env" / "mnist", seed=1)
    write_mnist_npz(isolated.keras_datasets / "mnist.npz", seed=2)
    monkeypatch.setenv("TINYGRAD_FREE_DATA", str(isolated.tmp / "env"))
    assert_same(data.load_dataset("mnist"), env)


def test_keras_cache_fashion_gz_files_are_read_without_keras(isolated, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # any `import keras` would fail
    cached = write_idx_set(isolated.keras_datasets / "fashion-mnist", seed=3)
    write_idx_set(isolated.tmp / "no-debian", seed=4)  # lower priority
    monkeypatch.setattr(data.sources, "DEBIAN_DIR", str(isolated.tmp / "no-debian"))
    assert_same(data.load_dataset("fashion-mnist"), cached)


def test_keras_cache_mnist_npz_is_read_without_keras(isolated, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    cached = write_mnist_npz(isolated.keras_datasets / "mnist.npz", seed=5)
    loaded = data.load_dataset("mnist")
    assert_same(loaded, cached)
    assert loaded[2] == tuple("0123456789")


def test_keras_home_unset_falls_back_to_home_dot_keras(isolated, monkeypatch):
    monkeypatch.delenv("KERAS_HOME")
    cached = write_mnist_npz(isolated.tmp / "home" / ".keras" / "datasets" / "mnist.npz", seed=6)
    assert_same(data.load_dataset("mnist"), cached)


def test_debian_folder_is_used_for_fashion_mnist(isolated, monkeypatch):
    deb = write_idx_set(isolated.tmp / "usr-share-datasets" / "fashion-mnist", seed=7)
    monkeypatch.setattr(data.sources, "DEBIAN_DIR", str(isolated.tmp / "usr-share-datasets" / "fashion-mnist"))
    assert_same(data.load_dataset("fashion_mnist"), deb)


def test_debian_folder_is_not_used_for_mnist(isolated, monkeypatch):
    write_idx_set(isolated.tmp / "deb", seed=8)
    monkeypatch.setattr(data.sources, "DEBIAN_DIR", str(isolated.tmp / "deb"))
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset("mnist")
    assert "Debian" not in str(e.value)


def test_data_dir_may_hold_the_four_uncompressed_files_directly(isolated):
    flat = write_idx_set(isolated.tmp / "flat", gz=False, seed=9)
    assert_same(data.load_dataset("mnist", data_dir=str(isolated.tmp / "flat")), flat)


def test_data_dir_with_fashion_underscore_subfolder_and_mnist_npz(isolated):
    fashion = write_idx_set(isolated.tmp / "d" / "fashion_mnist", seed=10)
    mnist = write_mnist_npz(isolated.tmp / "d" / "mnist.npz", seed=11)
    assert_same(data.load_dataset("fashion_mnist", data_dir=isolated.tmp / "d"), fashion)
    assert_same(data.load_dataset("mnist", data_dir=isolated.tmp / "d"), mnist)


def test_incomplete_location_is_skipped_and_its_missing_file_reported(isolated, monkeypatch):
    partial = isolated.tmp / "partial" / "fashion-mnist"
    write_idx_set(partial, seed=12)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    env = write_idx_set(isolated.tmp / "env" / "fashion-mnist", seed=13)
    monkeypatch.setenv("TINYGRAD_FREE_DATA", str(isolated.tmp / "env"))
    assert_same(data.load_dataset("fashion_mnist", data_dir=isolated.tmp / "partial"), env)

    monkeypatch.delenv("TINYGRAD_FREE_DATA")
    with pytest.raises(data.DatasetNotFoundError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        data.load_dataset("fashion_mnist", data_dir=isolated.tmp / "partial")


def test_corrupt_file_in_first_complete_location_raises_instead_of_falling_through(isolated, monkeypatch):
    bad = isolated.tmp / "bad" / "fashion-mnist"
    write_idx_set(bad, seed=14)
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")
    write_idx_set(isolated.tmp / "env" / "fashion-mnist", seed=15)
    monkeypatch.setenv("TINYGRAD_FREE_DATA", str(isolated.tmp / "env"))
    with pytest.raises(ValueError, match="corrupt gzip") as e:
        data.load_dataset("fashion_mnist", data_dir=isolated.tmp / "bad")
    assert "train-labels-idx1-ubyte.gz" in str(e.value)


def test_nothing_found_raises_one_error_listing_every_place_and_the_fixes(isolated, monkeypatch):
    monkeypatch.setenv("TINYGRAD_FREE_DATA", str(isolated.tmp / "env-nowhere"))
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset("fashion_mnist", data_dir=isolated.tmp / "dir-nowhere")
    err = e.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    labels = [label for label, _ in err.attempts]
    assert labels[:4] == ["data_dir argument", "$TINYGRAD_FREE_DATA", "keras cache", "Debian package folder"]
    assert labels[4].startswith("download into")
    assert len(err.attempts) == 5
    for place in (
        "dir-nowhere",
        "env-nowhere",
        str(isolated.keras_datasets / "fashion-mnist"),
        str(isolated.tmp / "no-debian"),
    ):
        assert place in msg
    assert "does not exist" in msg
    assert "disabled by TINYGRAD_FREE_NO_DOWNLOAD=1" in msg
    # ... and how to fix it.
    assert "set TINYGRAD_FREE_DATA" in msg and "data_dir=" in msg and "allow the download" in msg


def test_nothing_found_reports_unset_options(isolated):
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset("mnist")
    assert e.value.attempts[0] == ("data_dir argument", "not given")
    assert e.value.attempts[1] == ("$TINYGRAD_FREE_DATA", "not set")
    assert "mnist.npz" in str(e.value)


@pytest.mark.parametrize(
    "alias,key",
    [
        ("fashion_mnist", "fashion_mnist"),
        ("Fashion-MNIST", "fashion_mnist"),
        ("FASHION_MNIST", "fashion_mnist"),
        ("MNIST", "mnist"),
    ],
)
def test_dataset_names_are_case_insensitive_and_accept_dash(alias, key, isolated):
    write_idx_set(isolated.tmp / "d" / "fashion-mnist", seed=16)
    write_idx_set(isolated.tmp / "d" / "mnist", seed=17)
    assert data.load_dataset(alias, data_dir=isolated.tmp / "d")[2] == data.CLASS_NAMES[key]


def test_unknown_dataset_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'.*'fashion_mnist', 'mnist'"):
        data.load_dataset("cifar10")


# --------------------------------------------------------------------------
# Download (local HTTP server only)
# --------------------------------------------------------------------------


def test_download_via_pooch_fills_keras_cache_then_reads_it_offline(isolated, monkeypatch, http_server, use_fetcher):
    use_fetcher("pooch")
    arrays = make_arrays(seed=20)
    files = idx_set_files(arrays)
    serve_dataset(monkeypatch, http_server, "fashion_mnist", files)

    assert_same(data.load_dataset("fashion_mnist"), arrays)
    cache = isolated.keras_datasets / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)  # no temp files left
    for fname, content in files.items():
        assert (cache / fname).read_bytes() == content
    assert len(http_server.requests) == 4

    http_server.files.clear()  # the second load must not need the network
    assert_same(data.load_dataset("fashion_mnist"), arrays)
    assert len(http_server.requests) == 4


def test_download_via_urllib_when_neither_keras_nor_pooch_is_available(
    isolated, monkeypatch, http_server, use_fetcher, tmp_path
):
    use_fetcher("urllib")
    arrays = make_arrays(seed=21)
    npz = write_mnist_npz(tmp_path / "src" / "mnist.npz", arrays)
    content = (tmp_path / "src" / "mnist.npz").read_bytes()
    serve_dataset(monkeypatch, http_server, "mnist", {"mnist.npz": content})

    assert_same(data.load_dataset("mnist"), npz)
    assert (isolated.keras_datasets / "mnist.npz").read_bytes() == content
    assert leftovers(isolated.keras_datasets) == ["mnist.npz"]


def test_download_uses_keras_get_file_with_sha256_when_keras_works(isolated, monkeypatch, http_server, use_fetcher):
    calls = use_fetcher("keras")
    arrays = make_arrays(seed=22)
    files = idx_set_files(arrays)
    serve_dataset(monkeypatch, http_server, "fashion_mnist", files)
    assert_same(data.load_dataset("fashion_mnist"), arrays)
    assert sorted(c["fname"] for c in calls) == sorted(files)
    for c in calls:
        assert c["file_hash"] == sha256(files[c["fname"]]) and c["hash_algorithm"] == "sha256"
        assert c["origin"] == http_server.base_url + c["fname"]
    assert sorted(leftovers(isolated.keras_datasets / "fashion-mnist")) == sorted(files)


@pytest.mark.parametrize("fetcher", ["pooch", "urllib", "keras"])
def test_download_with_wrong_sha256_is_rejected_and_not_cached(
    fetcher, isolated, monkeypatch, http_server, use_fetcher
):
    use_fetcher(fetcher)
    files = idx_set_files(make_arrays(seed=23))
    bad_name = "train-images-idx3-ubyte.gz"
    serve_dataset(monkeypatch, http_server, "fashion_mnist", files, served={bad_name: _flip_middle(files[bad_name])})

    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_dataset("fashion_mnist")
    msg = str(e.value)
    assert bad_name in msg and http_server.base_url in msg
    assert "sha256" in msg.lower() or "hash" in msg.lower()
    cache = isolated.keras_datasets / "fashion-mnist"
    assert bad_name not in leftovers(cache)
    assert not [n for n in leftovers(cache) if n.startswith(".download")]
    # Files that did verify are kept, so a retry only fetches what is missing.
    for name in leftovers(cache):
        assert (cache / name).read_bytes() == files[name]


def test_download_reports_http_errors(isolated, monkeypatch, http_server, use_fetcher):
    use_fetcher("urllib")
    serve_dataset(monkeypatch, http_server, "mnist", {"mnist.npz": b"x"})
    http_server.files.clear()
    with pytest.raises(data.DatasetNotFoundError, match="404") as e:
        data.load_dataset("mnist")
    assert http_server.base_url + "mnist.npz" in str(e.value)
    assert leftovers(isolated.keras_datasets) == []


def test_no_download_env_var_keeps_loader_off_the_network(isolated, monkeypatch, http_server, use_fetcher):
    use_fetcher("urllib")
    serve_dataset(monkeypatch, http_server, "mnist", {"mnist.npz": b"x"})
    monkeypatch.setenv("TINYGRAD_FREE_NO_DOWNLOAD", "1")
    with pytest.raises(data.DatasetNotFoundError, match="disabled by TINYGRAD_FREE_NO_DOWNLOAD=1"):
        data.load_dataset("mnist")
    assert http_server.requests == []


def test_keras_is_skipped_when_its_import_or_backend_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    assert data.download._keras_get_file() is None

    broken = types.ModuleType("keras")

    def no_backend():
        raise RuntimeError("no backend")

    broken.backend = types.SimpleNamespace(backend=no_backend)
    monkeypatch.setitem(sys.modules, "keras", broken)
    assert data.download._keras_get_file() is None


def test_shipped_sources_pin_the_keras_urls_and_hashes():
    fashion, mnist = _SHIPPED_SOURCES["fashion_mnist"], _SHIPPED_SOURCES["mnist"]
    assert fashion["base_url"] == mnist["base_url"] == "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
    assert sorted(fashion["files"]) == sorted(f + ".gz" for f in FASHION_FILES)
    assert mnist["files"] == {"mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"}
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in fashion["files"].values())


def test_shipped_fashion_hashes_match_the_debian_copies_once_their_gzip_header_is_restored(real_data_dir):
    # Debian strips the gzip FNAME/MTIME header fields; the deflate stream is
    # the upstream one, so restoring the header must reproduce the pinned hash.
    mtimes = {"train-labels-idx1-ubyte": 1504176606, "t10k-labels-idx1-ubyte": 1504176627}
    for stem, mtime in mtimes.items():
        body = (real_data_dir / "fashion-mnist" / (stem + ".gz")).read_bytes()
        assert body[:4] == b"\x1f\x8b\x08\x00"  # no FNAME flag
        upstream = b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03" + stem.encode() + b"\x00" + body[10:]
        assert sha256(upstream) == _SHIPPED_SOURCES["fashion_mnist"]["files"][stem + ".gz"]


# --------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------


def test_flatten_and_scale_gives_rows_in_unit_interval_matching_division_by_255():
    x = np.arange(3 * 28 * 28).astype(np.uint8).reshape(3, 28, 28)
    out = data.flatten_and_scale(x)
    assert out.shape == (3, 784) and out.dtype == np.float32 and out.flags.c_contiguous
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_array_equal(out, x.reshape(3, -1).astype(np.float32) / 255)
    out64 = data.flatten_and_scale(x, dtype=np.float64)
    assert out64.dtype == np.float64
    np.testing.assert_array_equal(out64, x.reshape(3, -1) / 255.0)


def test_flatten_and_scale_rejects_integer_dtype_and_already_scaled_input():
    x = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(TypeError, match="floating"):
        data.flatten_and_scale(x, dtype=np.int32)
    with pytest.raises(TypeError, match="uint8"):
        data.flatten_and_scale(x.astype(np.float32))


def test_train_val_split_is_54000_6000_partition_reproducible_from_seed():
    x = np.arange(60000)
    y = (x % 10).astype(np.uint8)
    xtr, ytr, xva, yva = data.train_val_split(x, y)
    assert (len(xtr), len(ytr), len(xva), len(yva)) == (54000, 54000, 6000, 6000)
    assert np.intersect1d(xtr, xva).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([xtr, xva])), x)
    np.testing.assert_array_equal(ytr, xtr % 10)  # pairs stay together
    again = data.train_val_split(x, y, seed=0)
    np.testing.assert_array_equal(again[2], xva)
    other = data.train_val_split(x, y, seed=1)
    assert not np.array_equal(other[2], xva)


def test_train_val_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(np.zeros(10), np.zeros(10), val_fraction=1.0)
    with pytest.raises(ValueError, match="different lengths"):
        data.train_val_split(np.zeros(10), np.zeros(9))


def test_load_split_on_real_fashion_mnist(real_data_dir):
    s = data.load_split("fashion_mnist", data_dir=real_data_dir)
    assert s.x_train.shape == (54000, 784) and s.x_val.shape == (6000, 784) and s.x_test.shape == (10000, 784)
    assert s.x_train.dtype == s.x_val.dtype == s.x_test.dtype == np.float32
    assert s.y_train.dtype == s.y_val.dtype == s.y_test.dtype == np.int64
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (54000, 6000, 10000)
    assert 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0
    assert s.class_names == data.CLASS_NAMES["fashion_mnist"]
    assert np.bincount(s.y_train, minlength=10).sum() + np.bincount(s.y_val, minlength=10).sum() == 60000


def test_load_split_float64_and_seed(isolated):
    write_idx_set(isolated.tmp / "d" / "mnist", make_arrays(n_train=100, n_test=10, seed=30))
    a = data.load_split("mnist", data_dir=isolated.tmp / "d", dtype=np.float64, seed=3)
    b = data.load_split("mnist", data_dir=isolated.tmp / "d", dtype=np.float64, seed=3)
    assert a.x_train.dtype == np.float64 and a.x_train.shape == (90, 784) and a.x_val.shape == (10, 784)
    np.testing.assert_array_equal(a.x_val, b.x_val)


def test_one_hot_encodes_and_rejects_out_of_range_labels():
    y = np.array([0, 3, 9], dtype=np.uint8)
    out = data.one_hot(y)
    assert out.shape == (3, 10) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(1), y)
    np.testing.assert_array_equal(out.sum(1), 1)
    assert data.one_hot(np.array([[1, 2]]), num_classes=3, dtype=np.float64).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="out of range 0..9; first is 10 at flat index 1"):
        data.one_hot(np.array([1, 10, 11]))
    with pytest.raises(ValueError, match="first is -1"):
        data.one_hot(np.array([-1, 2]))
    with pytest.raises(TypeError, match="integers"):
        data.one_hot(np.array([1.0]))


# --------------------------------------------------------------------------
# Mini-batches
# --------------------------------------------------------------------------


def _epoch(it):
    return [(xb.copy(), yb.copy()) for xb, yb in it]


def test_batch_iterator_covers_every_sample_once_per_epoch_and_reshuffles():
    n = 1003
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    y = np.arange(n)
    it = data.BatchIterator(x, y, batch_size=100, seed=7)
    assert len(it) == 11
    orders = []
    for _ in range(3):
        batches = _epoch(it)
        assert [len(yb) for _, yb in batches] == [100] * 10 + [3]
        order = np.concatenate([yb for _, yb in batches])
        np.testing.assert_array_equal(np.sort(order), y)  # each sample exactly once
        for xb, yb in batches:
            np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], y)
    assert it.epoch == 3


def test_batch_iterator_is_reproducible_from_seed():
    x, y = np.arange(50)[:, None], np.arange(50)
    a = data.BatchIterator(x, y, 8, seed=1)
    b = data.BatchIterator(x, y, 8, seed=1)
    c = data.BatchIterator(x, y, 8, seed=2)
    for _ in range(3):
        ea, eb, ec = _epoch(a), _epoch(b), _epoch(c)
        for (_xa, ya), (_xb, yb) in zip(ea, eb):
            np.testing.assert_array_equal(ya, yb)
        assert not np.array_equal(np.concatenate([t[1] for t in ea]), np.concatenate([t[1] for t in ec]))
    # Any epoch can be replayed on its own, and matches the function form.
    replay = np.concatenate([yb for _, yb in a.iter_epoch(1)])
    fn = np.concatenate([yb for _, yb in data.iterate_minibatches(x, y, 8, seed=1, epoch=1)])
    b2 = data.BatchIterator(x, y, 8, seed=1)
    _epoch(b2)
    np.testing.assert_array_equal(replay, np.concatenate([yb for _, yb in b2]))
    np.testing.assert_array_equal(replay, fn)


def test_batch_iterator_drop_last_and_no_shuffle():
    x, y = np.arange(10)[:, None], np.arange(10)
    it = data.BatchIterator(x, y, 4, shuffle=False, drop_last=True)
    assert len(it) == 2
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in it]), np.arange(8))
    assert len(data.BatchIterator(x, y, 4)) == 3
    assert len(data.BatchIterator(x, y, 20, drop_last=True)) == 0
    assert _epoch(data.BatchIterator(x, y, 20, drop_last=True)) == []


def test_batch_iterator_reuse_buffers_yields_same_batches_into_overwritten_buffers():
    x = np.arange(23 * 3, dtype=np.float32).reshape(23, 3)
    y = np.arange(23, dtype=np.int64)
    fresh = _epoch(data.BatchIterator(x, y, 5, seed=4))
    reused_it = data.BatchIterator(x, y, 5, seed=4, reuse_buffers=True)
    seen = []
    for (xb, yb), (fx, fy) in zip(reused_it, fresh):
        np.testing.assert_array_equal(xb, fx)
        np.testing.assert_array_equal(yb, fy)
        seen.append(xb)
    assert len(seen) == len(fresh) == 5
    # Documented behaviour: every yielded array is a view of the same buffer.
    assert all(np.shares_memory(seen[0], s) for s in seen[1:])


def test_batch_iterator_rejects_bad_batch_size_and_mismatched_lengths():
    x, y = np.zeros((4, 2)), np.zeros(4)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="batch_size must be positive"):
            data.BatchIterator(x, y, bad)
        with pytest.raises(ValueError, match="batch_size must be positive"):
            next(data.iterate_minibatches(x, y, bad))
    with pytest.raises(TypeError, match="batch_size must be an int"):
        data.BatchIterator(x, y, 2.5)
    with pytest.raises(ValueError, match="different lengths"):
        data.BatchIterator(x, np.zeros(3), 2)
