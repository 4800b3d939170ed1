"""Check a hand-written backward against central finite differences.

Use it on every layer you write::

    from tinygrad_free import gradcheck
    gradcheck(MyLayer(dtype=np.float64), x)           # raises with the worst mismatch

What can be checked:

* a ``Module``: ``gradcheck(module, x)`` or ``gradcheck(module, x1, x2)``. The scalar is
  L = sum(R * module(x)) for a fixed random R (one per output), so dL/dy = R goes into
  ``backward``; every input and every parameter is checked.
* a loss (``CrossEntropyLoss()``, ``MSELoss()``): ``gradcheck(loss, logits, labels)``; the
  logits are checked (labels are not differentiable).
* a function in the thinc style: ``fn(*inputs) -> (y, backprop)`` with ``backprop(dy)``
  returning dL/dinput for each input (a tuple, or one array for one input); the parameters it
  accumulates into are checked too when given as ``params=`` (or when ``fn`` is a module's
  ``begin_update``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .nn.loss import Loss
    from .nn.module import Module
    from .nn.parameter import Parameter

    NamedParams = Iterable[Parameter | tuple[str, Parameter]]


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with finite differences."""


@dataclass
class TensorReport:
    name: str
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple[int | np.integer[Any], ...]  # np.unravel_index gives numpy ints
    analytic: float
    numeric: float
    checked: int
    ok: bool


@dataclass
class GradcheckReport:
    tensors: list[TensorReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tensors)

    @property
    def worst(self) -> TensorReport:
        return max(self.tensors, key=lambda t: (not t.ok, t.max_abs_err))

    def __str__(self) -> str:
        rows = [f"{'tensor':<16}{'checked':>9}{'max abs err':>14}{'max rel err':>14}  ok"]
        rows += [
            f"{t.name:<16}{t.checked:>9}{t.max_abs_err:>14.3e}{t.max_rel_err:>14.3e}  {t.ok}" for t in self.tensors
        ]
        return "\n".join(rows)


def _as_float64_inputs(inputs: Sequence[Any]) -> None:
    for i, x in enumerate(inputs):
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.dtype != np.float64:
            raise ValueError(
                f"gradcheck input {i} is {x.dtype}: finite differences need float64 "
                "(build the layer with dtype=np.float64 and pass float64 inputs)"
            )


def _differentiable(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def _projection(y: Any, rng: np.random.Generator) -> tuple[Any, Callable[[Any], float]]:
    """A fixed random R for L = sum(R * y), one per output; (R, L-of-outputs function)."""
    if isinstance(y, tuple):
        Rs = tuple(rng.standard_normal(np.shape(v)) for v in y)
        return Rs, lambda out: float(sum(np.sum(R * v) for R, v in zip(Rs, out)))
    R = rng.standard_normal(np.shape(y))
    return R, lambda out: float(np.sum(R * out))


def _copy(R: Any) -> Any:
    return tuple(r.copy() for r in R) if isinstance(R, tuple) else R.copy()


def _per_input(grads: Any, n: int) -> Sequence[Any]:
    grads = grads if isinstance(grads, (tuple, list)) else (grads,)
    if len(grads) != n:
        raise GradcheckError(f"backward returned {len(grads)} gradient(s) for {n} input(s)")
    return grads


def _deterministic(module: Module, scalar: Callable[[], float]) -> None:
    """Refuse a module whose output changes between two calls on the same input: its numeric
    gradient would be noise, not a gradient."""
    if scalar() == scalar():
        return
    random = [
        f"{type(m).__name__}"
        for m in module.modules()
        if m.training and any(isinstance(v, np.random.Generator) for v in vars(m).values())
    ]
    which = f" ({', '.join(random)} in training mode draws anew each call)" if random else ""
    raise GradcheckError(
        f"gradcheck: {type(module).__name__} gives different outputs for the same input{which}, so "
        "finite differences measure its randomness, not its gradient; check it in eval mode "
        "(model.eval(): Dropout is then the identity) or with the random layers' p=0"
    )


def gradcheck(
    fn_or_module: Module | Loss | Callable[..., tuple[Any, Callable[..., Any]]],
    *inputs: Any,
    params: NamedParams | None = None,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
    max_checks: int | None = None,
    seed: int = 0,
    raise_on_fail: bool = True,
) -> GradcheckReport:
    """Compare the analytic gradient of every input and parameter with central differences.

    Parameters
    ----------
    fn_or_module : Module, Loss, or callable ``fn(*inputs) -> (y, backprop)``
        A Module may take several inputs and return several outputs (a tuple); each output gets
        its own projection R. A Module's parameters are all checked.
    *inputs : arrays (float64 for the differentiable ones; integer arrays pass through unchecked)
    params : list of Parameter or (name, Parameter), optional
        For the function form: the parameters its backprop accumulates into, checked too. When
        ``fn`` is a module's ``begin_update``, that module's parameters are taken by default.
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
    from .nn.context import no_grad
    from .nn.loss import Loss
    from .nn.module import Module
    from .nn.parameter import Parameter

    _as_float64_inputs(inputs)
    rng = np.random.default_rng(seed)
    inputs = tuple(np.array(x, copy=True) if isinstance(x, np.ndarray) else x for x in inputs)

    def named(ps: NamedParams) -> list[tuple[str, Parameter]]:
        out = [
            item if isinstance(item, tuple) else (getattr(item, "name", "") or f"param{i}", item)
            for i, item in enumerate(ps)
        ]
        for name, p in out:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"gradcheck: params must be Parameters or (name, Parameter) pairs (model.parameters(), "
                    f"model.named_parameters()), got {type(p).__name__} for {name!r}"
                )
            if p.data.dtype != np.float64:
                raise ValueError(f"gradcheck: parameter {name} is {p.data.dtype}; build the module with float64")
        return out

    if isinstance(fn_or_module, Loss):
        loss = fn_or_module
        _, backprop = loss.begin_update(inputs[0], *inputs[1:])

        def scalar() -> float:
            with no_grad():
                return float(loss.forward(inputs[0], *inputs[1:]))

        analytic = [("input0", inputs[0], backprop())]
    elif isinstance(fn_or_module, Module):
        module = fn_or_module  # in the mode it is in, as torch.autograd.gradcheck
        ps = named(module.named_parameters())
        module.zero_grad()
        y, backprop = module.begin_update(*inputs)
        R, project = _projection(y, rng)
        grads = _per_input(backprop(_copy(R)), len(inputs))

        def scalar() -> float:
            with no_grad():
                return project(module.forward(*inputs))

        _deterministic(module, scalar)
        analytic = [(f"input{i}", x, gx) for i, (x, gx) in enumerate(zip(inputs, grads)) if _differentiable(x)]
        analytic += [(name, p.data, p.grad.copy()) for name, p in ps]
    elif callable(fn_or_module):
        fn = fn_or_module
        owner = getattr(fn, "__self__", None)
        if params is None and isinstance(owner, Module):
            params = owner.named_parameters()
        ps = named(params or [])
        for _, p in ps:
            p.zero_grad()
        y, backprop = fn(*inputs)
        R, project = _projection(y, rng)

        def scalar() -> float:
            return project(fn(*inputs)[0])

        grads = _per_input(backprop(_copy(R)), len(inputs))
        analytic = [
            (f"input{i}", x, gx)
            for i, (x, gx) in enumerate(zip(inputs, grads))
            if _differentiable(x) and gx is not None
        ]
        analytic += [(name, p.data, p.grad.copy()) for name, p in ps]
    else:
        raise TypeError(f"gradcheck takes a Module, a Loss or a callable, got {type(fn_or_module).__name__}")

    report = GradcheckReport()
    for name, array, grad in analytic:
        if np.shape(grad) != array.shape:
            raise GradcheckError(f"gradient of {name} has shape {np.shape(grad)}, expected {array.shape}")
        flat = array.reshape(-1)  # a view: perturbing it perturbs the tensor in place
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
        report.tensors.append(
            TensorReport(
                name=name,
                max_abs_err=float(err.max(initial=0.0)),
                max_rel_err=float(rel.max(initial=0.0)),
                worst_index=np.unravel_index(int(idx[k]), array.shape) if idx.size else (),
                analytic=float(a[k]) if idx.size else 0.0,
                numeric=float(numeric[k]) if idx.size else 0.0,
                checked=int(idx.size),
                ok=bool(np.all(err <= tol)),
            )
        )
    if raise_on_fail and not report.ok:
        w = report.worst
        raise GradcheckError(
            f"gradient mismatch in {w.name} at index {tuple(int(i) for i in w.worst_index)}: "
            f"analytic {w.analytic:.8g} vs numeric {w.numeric:.8g} "
            f"(abs err {w.max_abs_err:.3g})\n{report}"
        )
    return report
