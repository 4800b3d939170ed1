"""Module: the unit of a network. A subclass writes ``forward`` and ``backward``; this base
class finds its parameters and children, names them, and saves and loads their values."""
import json
from collections import OrderedDict

import numpy as np

from ..fileio import atomic_open
from .parameter import Parameter

# Every Module subclass, by class name, so nn.load can rebuild an architecture from JSON.
MODULES = {}


class Module:
    """Base class of every layer and container.

    A subclass implements

    * ``forward(x) -> y``, caching (in training mode) whatever ``backward`` needs, and
    * ``backward(grad_y) -> grad_x``, which ADDS dL/dparam into each ``Parameter.grad`` and
      returns dL/dx. It must never recompute the forward pass.

    Attributes that are :class:`Parameter` or :class:`Module` instances are registered in
    assignment order, as in PyTorch, which fixes the order of ``named_parameters()``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        MODULES[cls.__name__] = cls

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, key, value):
        d = self.__dict__
        if "_params" not in d:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before assigning attributes")
        if not isinstance(value, (Parameter, Module)) and key not in d["_params"] and key not in d["_modules"]:
            object.__setattr__(self, key, value)     # the per-step caches (x, y) take this path
            return
        self._params.pop(key, None)
        self._modules.pop(key, None)
        if isinstance(value, Parameter):
            if not value.name:
                value.name = key
            self._params[key] = value
        elif isinstance(value, Module):
            self._modules[key] = value
        object.__setattr__(self, key, value)

    # --- computation -------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def backward(self, grad_out):
        raise NotImplementedError(f"{type(self).__name__} must implement backward(grad_out)")

    def __call__(self, x):
        return self.forward(x)

    # --- parameters --------------------------------------------------------------------------
    def _walk(self, prefix=""):
        for key, p in self._params.items():
            yield prefix + key, p
        for key, m in self._modules.items():
            yield from m._walk(f"{prefix}{key}.")

    def named_parameters(self):
        """``(dotted_name, Parameter)`` pairs in layer order (``0.W``, ``0.b``, ``2.W``, ...).

        Also stamps each Parameter's ``name`` with its dotted name, so a plain
        ``parameters()`` list handed to an optimizer still carries unique names.
        A parameter shared by two layers is listed once, under its first name.
        """
        seen = set()
        out = []
        for name, p in self._walk():
            if id(p) in seen:
                continue
            seen.add(id(p))
            p.name = name
            out.append((name, p))
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def children(self):
        return list(self._modules.values())

    def train(self, mode=True):
        """Training mode: forward caches what backward needs. Returns self."""
        object.__setattr__(self, "training", bool(mode))
        for m in self._modules.values():
            m.train(mode)
        return self

    def eval(self):
        """Inference mode: forward caches nothing, so backward is unavailable."""
        return self.train(False)

    # --- state -------------------------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter's value, keyed by dotted name."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy values into the existing parameter arrays (never re-binding them).

        ``strict`` requires exactly the same keys; shapes must always match.
        """
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict mismatch for {type(self).__name__}: missing {missing}, unexpected {unexpected}")
        for name, p in own.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != p.data.shape:
                raise ValueError(f"parameter {name!r}: expected shape {p.data.shape}, got {value.shape}")
            p.data[...] = value

    # --- architecture and files --------------------------------------------------------------
    def get_config(self):
        """Constructor arguments as JSON-able values, so ``nn.load`` can rebuild the module."""
        raise NotImplementedError(
            f"{type(self).__name__} has no get_config(); implement it to use save()/nn.load, "
            "or save state_dict() yourself")

    @classmethod
    def from_config(cls, config):
        """The inverse of ``get_config``: a new module built from its constructor arguments."""
        return cls(**config)

    def to_spec(self):
        return {"class": type(self).__name__, "config": self.get_config()}

    def save(self, path):
        """Write architecture (JSON) and weights to one ``.npz``, atomically.

        The file is written next to ``path`` under a temporary name and renamed into place,
        so a crash never leaves a half-written model.
        """
        arrays = {f"param/{k}": v for k, v in self.state_dict().items()}
        arrays["architecture"] = np.array(json.dumps(self.to_spec()))
        atomic_savez(path, arrays)

    # --- display -----------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + f"\n)  # {self.num_parameters():,} parameters"


def atomic_savez(path, arrays):
    """``np.savez`` written atomically (see ``fileio.atomic_open``)."""
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def from_spec(spec):
    """Rebuild a module from ``{"class": name, "config": {...}}``."""
    name = spec["class"]
    if name not in MODULES:
        raise ValueError(f"unknown module class {name!r}: import the module that defines it before loading; "
                         f"known: {sorted(MODULES)}")
    return MODULES[name].from_config(spec["config"])


def load(path):
    """Load a model written by ``Module.save``. Reads with ``allow_pickle=False``."""
    with np.load(path, allow_pickle=False) as f:
        if "architecture" not in f:
            raise ValueError(f"{path}: not a tinygrad_free model file (no 'architecture' entry)")
        model = from_spec(json.loads(str(f["architecture"])))
        state = {k[len("param/"):]: f[k] for k in f.files if k.startswith("param/")}
    model.load_state_dict(state)
    return model
