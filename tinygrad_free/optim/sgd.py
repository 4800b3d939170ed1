from __future__ import annotations

from typing import TYPE_CHECKING

from .. import backend
from .optimizer import Optimizer, register

if TYPE_CHECKING:
    from .._typing import Array


@register("sgd")
class SGD(Optimizer):
    r"""Plain stochastic gradient descent: w <- w - lr * g. Matches torch.optim.SGD(momentum=0).

    $$
    w \leftarrow w - \text{lr} \, g
    $$

    Other Parameters
    ----------------
    lr : float
        The learning rate (default 1e-2); a schedule multiplies it, see ``optim.schedule``.
    weight_decay : float
        Coupled L2 decay on weight matrices, added to the gradient (default 0).
    """

    defaults = dict(lr=1e-2)

    def update(self, w: Array, g: Array, state: dict[str, Array]) -> None:
        backend.ops().sgd(w, g, self.scratch(w), self.lr)
