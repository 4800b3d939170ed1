from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .optimizer import Optimizer, register

if TYPE_CHECKING:
    from .._typing import Array


@register("rmsprop")
class RMSProp(Optimizer):
    r"""v <- beta * v + (1 - beta) * g^2; w <- w - lr * g / (sqrt(v) + eps).

    $$
    v \leftarrow \beta v + (1 - \beta) \, g^2, \qquad w \leftarrow w - \text{lr} \, g / (\sqrt{v} + \epsilon)
    $$

    Matches torch.optim.RMSprop(alpha=beta, centered=False, momentum=0) (Hinton, lecture 6e).

    Other Parameters
    ----------------
    lr : float
        The learning rate (default 1e-3); a schedule multiplies it, see ``optim.schedule``.
    beta : float in [0, 1)
        The decay $\beta$ of the squared gradients' average (default 0.9).
    eps : float
        $\epsilon$ (default 1e-8).
    weight_decay : float
        Coupled L2 decay on weight matrices, added to the gradient (default 0).
    """

    defaults = dict(lr=1e-3, beta=0.9, eps=1e-8)
    beta: float
    eps: float

    def init_state(self, w: Array) -> dict[str, Array]:
        return {"v": np.zeros_like(w)}

    def update(self, w: Array, g: Array, state: dict[str, Array]) -> None:
        backend.ops().rmsprop(w, g, state["v"], self.scratch(w), self.lr, self.beta, self.eps)
