from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .optimizer import Optimizer, register

if TYPE_CHECKING:
    from .._typing import Array


@register("momentum")
class Momentum(Optimizer):
    r"""Heavy-ball momentum: u <- beta * u + g; w <- w - lr * u (beta = ``momentum``).

    $$
    u \leftarrow \beta u + g, \qquad w \leftarrow w - \text{lr} \, u
    $$

    Matches torch.optim.SGD(momentum=beta, dampening=0, nesterov=False).

    Other Parameters
    ----------------
    lr : float
        The learning rate (default 1e-2); a schedule multiplies it, see ``optim.schedule``.
    momentum : float in [0, 1)
        $\beta$ (default 0.9).
    weight_decay : float
        Coupled L2 decay on weight matrices, added to the gradient (default 0).
    """

    defaults = dict(lr=1e-2, momentum=0.9)
    momentum: float
    nesterov = False

    def init_state(self, w: Array) -> dict[str, Array]:
        return {"u": np.zeros_like(w)}

    def update(self, w: Array, g: Array, state: dict[str, Array]) -> None:
        backend.ops().momentum(w, g, state["u"], self.scratch(w), self.lr, self.momentum, self.nesterov)
