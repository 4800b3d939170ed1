import numpy as np

from .. import backend
from .optimizer import Optimizer, register


@register("rmsprop")
class RMSProp(Optimizer):
    """v <- beta * v + (1 - beta) * g^2; w <- w - lr * g / (sqrt(v) + eps).

    Matches torch.optim.RMSprop(alpha=beta, centered=False, momentum=0) (Hinton, lecture 6e).
    """

    defaults = dict(lr=1e-3, beta=0.9, eps=1e-8)

    def init_state(self, w):
        return {"v": np.zeros_like(w)}

    def update(self, w, g, state):
        backend.ops().rmsprop(w, g, state["v"], self.scratch(w), self.lr, self.beta, self.eps)
