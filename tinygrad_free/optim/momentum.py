import numpy as np

from .. import backend
from .optimizer import Optimizer, register


@register("momentum")
class Momentum(Optimizer):
    """Heavy-ball momentum: u <- beta * u + g; w <- w - lr * u (beta = ``momentum``).

    Matches torch.optim.SGD(momentum=beta, dampening=0, nesterov=False).
    """

    defaults = dict(lr=1e-2, momentum=0.9)
    nesterov = False

    def init_state(self, w):
        return {"u": np.zeros_like(w)}

    def update(self, w, g, state):
        backend.ops().momentum(w, g, state["u"], self.scratch(w), self.lr, self.momentum, self.nesterov)

