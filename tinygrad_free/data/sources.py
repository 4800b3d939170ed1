"""The datasets this loader knows: their names and classes, the folder names they are kept
under, where they are downloaded from (with every file's sha256), and the errors that say a
place did not hold one."""

from __future__ import annotations

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


#: How messages name each dataset.
DISPLAY_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}


#: Folder names under TINYGRAD_FREE_DATA / data_dir. The first one is the
#: canonical name (the one the keras cache and ../shared/data use); the
#: underscore spelling is accepted because it is the Python-side name.
SUBDIRS = {
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


#: The arrays of a keras ``mnist.npz``.
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


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


class DatasetNotFoundError(FileNotFoundError):
    """No location held the requested dataset and it could not be downloaded.

    Attributes
    ----------
    name : str
        Canonical dataset name (``"fashion_mnist"`` or ``"mnist"``).
    attempts : list of (str, str)
        Every place tried, in order, with the reason it failed.
    """

    def __init__(self, message: str, name: str | None = None, attempts: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.name = name
        self.attempts = list(attempts or [])

    def __str__(self) -> str:
        # OSError.__str__ would prefix an errno; the message is self-contained.
        return self.args[0]


class Miss(Exception):
    """A location does not hold the dataset (the reason is the message)."""


def canonical_name(name: str) -> str:
    """The dataset's key in :data:`CLASS_NAMES` (``"Fashion-MNIST"`` -> ``"fashion_mnist"``), or a
    :class:`ValueError` listing the known ones."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in CLASS_NAMES:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of: "
            + ", ".join(repr(k) for k in CLASS_NAMES)
            + " (or 'fashion-mnist')"
        )
    return key
