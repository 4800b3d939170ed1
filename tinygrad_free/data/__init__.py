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

One concept per module: :mod:`.sources` (the datasets, their folders, URLs and hashes),
:mod:`.idx` (reading the files), :mod:`.folders` (a set from one folder or the keras cache),
:mod:`.download`, :mod:`.locate` (the search order above), :mod:`.preprocess` (scaling,
splitting, one-hot), :mod:`.checks` (input validation), :mod:`.batches` (mini-batches) and
:mod:`.split` (the assignment's split). Everything is importable from here as before.
"""

from .batches import BatchIterator, iterate_minibatches
from .checks import as_samples, check_finite
from .idx import read_idx
from .locate import load_dataset
from .preprocess import flatten_and_scale, one_hot, train_val_split
from .sources import CLASS_NAMES, DEBIAN_DIR, ENV_DATA, ENV_NO_DOWNLOAD, IDX_FILES, SOURCES, DatasetNotFoundError
from .split import Split, load_split

__all__ = [
    "CLASS_NAMES",
    "DEBIAN_DIR",
    "ENV_DATA",
    "ENV_NO_DOWNLOAD",
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
