"""Classification metrics in plain NumPy (no scikit-learn needed)."""

import numpy as np


def _labels(y):
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y


def accuracy(y_true, y_pred):
    """Fraction of matching labels. Either argument may be labels (N,) or scores/one-hot (N, C)."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"accuracy: {t.shape[0]} true labels vs {p.shape[0]} predictions")
    return float(np.mean(t == p)) if t.size else float("nan")


def confusion_matrix(y_true, y_pred, num_classes=None):
    """C[i, j] = number of samples of true class i predicted as class j."""
    t, p = _labels(y_true).astype(np.int64), _labels(y_pred).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: {t.shape[0]} true labels vs {p.shape[0]} predictions")
    k = int(num_classes if num_classes is not None else max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"confusion_matrix: labels must lie in 0..{k - 1}")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def per_class_accuracy(cm):
    """Recall of each class from a confusion matrix (NaN for a class with no samples)."""
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)
