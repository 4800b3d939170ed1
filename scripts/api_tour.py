#!/usr/bin/env python3
"""The README's API tour, runnable: one training step of a small MLP, save and load, and the smallest
layer of docs/guides/custom-layer.md checked against finite differences."""

import os
import sys
import tempfile

import numpy as np

from tinygrad_free import gradcheck, nn, optim


def main():
    rng = np.random.default_rng(0)
    x = rng.random((64, 784), dtype=np.float32)
    y = rng.integers(0, 10, 64)

    model = nn.Sequential(
        nn.Dense(784, 128, init="xavier"),
        nn.Tanh(),
        nn.Dense(128, 128, init="xavier", activation="relu"),
        nn.Dense(128, 10, init="xavier"),
    )
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    for step in range(5):
        logits = model(x)
        loss = loss_fn(logits, y)
        model.backward(loss_fn.backward())
        opt.step(loss=loss)
        opt.zero_grad()
        print(f"step {step}: loss {loss:.4f}")

    print(model)
    print([name for name, _ in model.named_parameters()])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        model.save(path)
        same = nn.load(path)
        assert np.array_equal(same(x), model(x))
        print("save/load round trip: identical predictions")

    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(np.array([2.0]), decay=False)

        def forward(self, x):
            self.x = x
            return x * self.s.data

        def backward(self, grad_out):
            self.s.grad += np.sum(grad_out * self.x, keepdims=True).reshape(1)
            return grad_out * self.s.data

    report = gradcheck(nn.Sequential(nn.Dense(3, 2, dtype=np.float64), Scale()), rng.standard_normal((4, 3)))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
