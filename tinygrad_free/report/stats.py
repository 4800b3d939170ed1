"""Whether runs differ by more than their noise: a group of runs' (mean, standard deviation, count)
of a metric, and the test that two such groups differ clearly (used by the sweep's findings and
the loss comparison)."""

from __future__ import annotations

import math

import numpy as np


def mean_std_n(values):
    """``(mean, std, n)`` of ``values``: the sample standard deviation (``ddof=1``), 0.0 for one value."""
    v = np.asarray(values, float)
    return (float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


def gap_is_clear(a, b, min_gap):
    """Means (mean, std, n) ``a`` and ``b`` differ by at least ``min_gap`` and by two standard errors."""
    (m1, s1, n1), (m2, s2, n2) = a, b
    se = math.sqrt(s1**2 / max(n1, 1) + s2**2 / max(n2, 1))
    return abs(m1 - m2) >= max(min_gap, 2 * se)
