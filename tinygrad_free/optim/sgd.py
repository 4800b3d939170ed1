from .. import backend
from .optimizer import Optimizer, register


@register("sgd")
class SGD(Optimizer):
    """Plain stochastic gradient descent: w <- w - lr * g. Matches torch.optim.SGD(momentum=0)."""

    defaults = dict(lr=1e-2)

    def update(self, w, g, state):
        backend.ops().sgd(w, g, self.scratch(w), self.lr)
