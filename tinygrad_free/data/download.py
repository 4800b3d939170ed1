"""Downloading a dataset into the keras cache layout (with keras's ``get_file``, pooch or
urllib, whichever is installed), every file checked against its sha256 before it is kept."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable

from . import sources
from .folders import keras_datasets_dir, load_from_keras_cache
from .sources import Miss

# One logger for the whole loader, as before it was split into modules.
log = logging.getLogger("tinygrad_free.data")


_DOWNLOAD_TIMEOUT = 60.0  # seconds per network operation


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _keras_get_file() -> Callable | None:
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
                f"sha256 mismatch for {url}: got {actual}, expected {sha256}; the file was rejected and not cached"
            )
        os.replace(got, dest)


def download_dataset(name: str, num_classes: int):
    """Download the files of dataset ``name`` missing from the keras cache (each checked against its
    sha256 in :data:`SOURCES`), then load it from there: ``(((x_train, y_train), (x_test, y_test)),
    where)``. A failed download raises :class:`Miss` naming the URL and the fetcher."""
    source = sources.SOURCES[name]
    datasets = keras_datasets_dir()
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
            raise Miss(f"{url} via {fetcher_name}: {type(e).__name__}: {e}") from e
    return load_from_keras_cache(name, num_classes)
