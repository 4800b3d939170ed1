"""tinygrad_free: a small, fast neural-network framework with hand-written gradients."""

from . import init, nn, optim
from .backend import get_backend, set_backend, use_backend
from .gradcheck import GradcheckError, gradcheck

__version__ = "0.1.0"
__all__ = ["nn", "optim", "init", "gradcheck", "GradcheckError", "get_backend", "set_backend", "use_backend"]
