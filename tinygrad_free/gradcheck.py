"""Check a hand-written backward against central finite differences.

Use it on every layer you write::

    from tinygrad_free import gradcheck
    gradcheck(MyLayer(dtype=np.float64), x)           # raises with the worst mismatch

What can be checked:

* a ``Module``: ``gradcheck(module, x)``. The scalar is L = sum(R * module(x)) for a fixed random
  R, so dL/dy = R goes into ``backward``; the inputs and every parameter are checked.
* a loss (``CrossEntropyLoss()``, ``MSELoss()``): ``gradcheck(loss, logits, labels)``; the
  logits are checked (labels are not differentiable).
* a function in the thinc style: ``fn(*inputs) -> (y, backprop)`` with ``backprop(dy)``
  returning dL/dinput for each input (a tuple, or one array for one input).
"""
from dataclasses import dataclass, field

import numpy as np


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with finite differences."""


@dataclass
class TensorReport:
    name: str
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple
    analytic: float
    numeric: float
    checked: int
    ok: bool


@dataclass
class GradcheckReport:
    tensors: list = field(default_factory=list)

    @property
    def ok(self):
        return all(t.ok for t in self.tensors)

    @property
    def worst(self):
        return max(self.tensors, key=lambda t: (not t.ok, t.max_abs_err))

    def __str__(self):
        rows = [f"{'tensor':<16}{'checked':>9}{'max abs err':>14}{'max rel err':>14}  ok"]
        rows += [f"{t.name:<16}{t.checked:>9}{t.max_abs_err:>14.3e}{t.max_rel_err:>14.3e}  {t.ok}"
                 for t in self.tensors]
        return "\n".join(rows)


def _as_float64_inputs(inputs):
    for i, x in enumerate(inputs):
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.dtype != np.float64:
            raise ValueError(f"gradcheck input {i} is {x.dtype}: finite differences need float64 "
                             "(build the layer with dtype=np.float64 and pass float64 inputs)")


def gradcheck(fn_or_module, *inputs, eps=1e-6, atol=1e-6, rtol=1e-4, max_checks=None, seed=0, raise_on_fail=True):
    """Compare the analytic gradient of every input and parameter with central differences.

    Parameters
    ----------
    fn_or_module : Module, Loss, or callable ``fn(*inputs) -> (y, backprop)``
    *inputs : arrays (float64 for the differentiable ones)
    eps : float
        Step of the central difference (f(x + eps) - f(x - eps)) / (2 eps).
    atol, rtol : float
        An element passes when |analytic - numeric| <= atol + rtol * |numeric|.
    max_checks : int or None
        Check at most this many randomly chosen elements per tensor (None: all of them).
    seed : int
        Seeds the projection R and the element sample.
    raise_on_fail : bool
        Raise :class:`GradcheckError` naming the worst tensor and index; otherwise just report.

    Returns
    -------
    GradcheckReport
    """
    from .nn.loss import Loss
    from .nn.module import Module

    _as_float64_inputs(inputs)
    rng = np.random.default_rng(seed)
    inputs = [np.array(x, copy=True) if isinstance(x, np.ndarray) else x for x in inputs]

    if isinstance(fn_or_module, Loss):
        loss = fn_or_module

        def scalar():
            return loss.forward(inputs[0], *inputs[1:])

        scalar()
        analytic = [("input0", inputs[0], loss.backward())]
    elif isinstance(fn_or_module, Module):
        module = fn_or_module.train()
        params = module.named_parameters()
        for _, p in params:
            if p.data.dtype != np.float64:
                raise ValueError(f"gradcheck: parameter {p.name} is {p.data.dtype}; build the module with float64")
        y = module.forward(*inputs)
        R = rng.standard_normal(y.shape)

        def scalar():
            return float(np.sum(R * module.forward(*inputs)))

        module.zero_grad()
        module.forward(*inputs)
        dx = module.backward(R.copy())
        analytic = [("input0", inputs[0], dx)] + [(name, p.data, p.grad.copy()) for name, p in params]
    elif callable(fn_or_module):
        fn = fn_or_module
        y, backprop = fn(*inputs)
        R = rng.standard_normal(np.shape(y))

        def scalar():
            return float(np.sum(R * fn(*inputs)[0]))

        grads = backprop(R.copy())
        grads = grads if isinstance(grads, (tuple, list)) else (grads,)
        analytic = [(f"input{i}", x, gx) for i, (x, gx) in enumerate(zip(inputs, grads))
                    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and gx is not None]
    else:
        raise TypeError(f"gradcheck takes a Module, a Loss or a callable, got {type(fn_or_module).__name__}")

    report = GradcheckReport()
    for name, array, grad in analytic:
        if np.shape(grad) != array.shape:
            raise GradcheckError(f"gradient of {name} has shape {np.shape(grad)}, expected {array.shape}")
        flat = array.reshape(-1)          # a view: perturbing it perturbs the tensor in place
        idx = np.arange(flat.size)
        if max_checks is not None and flat.size > max_checks:
            idx = rng.choice(flat.size, max_checks, replace=False)
        numeric = np.empty(idx.size)
        for j, i in enumerate(idx):
            orig = flat[i]
            flat[i] = orig + eps
            fp = scalar()
            flat[i] = orig - eps
            fm = scalar()
            flat[i] = orig
            numeric[j] = (fp - fm) / (2 * eps)
        a = np.asarray(grad, dtype=np.float64).reshape(-1)[idx]
        err = np.abs(a - numeric)
        tol = atol + rtol * np.abs(numeric)
        k = int(np.argmax(err - tol)) if idx.size else 0
        rel = err / np.maximum(np.abs(numeric), 1e-12)
        report.tensors.append(TensorReport(
            name=name, max_abs_err=float(err.max(initial=0.0)), max_rel_err=float(rel.max(initial=0.0)),
            worst_index=np.unravel_index(int(idx[k]), array.shape) if idx.size else (),
            analytic=float(a[k]) if idx.size else 0.0, numeric=float(numeric[k]) if idx.size else 0.0,
            checked=int(idx.size), ok=bool(np.all(err <= tol))))
    if raise_on_fail and not report.ok:
        w = report.worst
        raise GradcheckError(f"gradient mismatch in {w.name} at index {tuple(int(i) for i in w.worst_index)}: "
                             f"analytic {w.analytic:.8g} vs numeric {w.numeric:.8g} "
                             f"(abs err {w.max_abs_err:.3g})\n{report}")
    return report
