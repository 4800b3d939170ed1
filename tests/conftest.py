import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # scripts/ (and the models/ alias) live beside the package, not inside it

# The real datasets live in ../shared/data beside the clone (CI exports the same path).
os.environ.setdefault("TINYGRAD_FREE_DATA", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("TINYGRAD_FREE_NO_DOWNLOAD", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["numpy", "numba"])
def each_backend(request):
    """Run a test once per kernel backend."""
    from tinygrad_free import use_backend

    with use_backend(request.param):
        yield request.param


@pytest.fixture
def losses_of_steps():
    """``losses_of_steps(model, x, labels, steps=30)``: the cross-entropy before each of ``steps``
    Adam steps (lr 1e-2) of a hand-written loop, for the "a network of these layers learns" tests."""

    def run(model, x, labels, steps=30):
        from tinygrad_free import nn, optim

        loss_fn = nn.CrossEntropyLoss()
        opt = optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(steps):
            losses.append(loss_fn(model(x), labels))
            model.backward(loss_fn.backward())
            opt.step()
            opt.zero_grad()
        return losses

    return run
