from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .optimizer import Optimizer, register

if TYPE_CHECKING:
    from .._typing import Array


@register("adam")
class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015). Matches torch.optim.Adam (L2 weight decay, not AdamW).

    $$
    \begin{aligned}
    m &\leftarrow \beta_1 m + (1 - \beta_1) \, g, & v &\leftarrow \beta_2 v + (1 - \beta_2) \, g^2, \\
    \hat m &= m / (1 - \beta_1^t), & \hat v &= v / (1 - \beta_2^t), \\
    w &\leftarrow w - \text{lr} \, \hat m / (\sqrt{\hat v} + \epsilon)
    \end{aligned}
    $$

    Other Parameters
    ----------------
    lr : float
        The learning rate (default 1e-3); a schedule multiplies it, see ``optim.schedule``.
    beta1 : float in [0, 1)
        $\beta_1$, the decay of the gradients' average (default 0.9).
    beta2 : float in [0, 1)
        $\beta_2$, the decay of the squared gradients' average (default 0.999).
    eps : float
        $\epsilon$ (default 1e-8).
    weight_decay : float
        Coupled L2 decay on weight matrices, added to the gradient (default 0).
    """

    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    beta1: float
    beta2: float
    eps: float

    def init_state(self, w: Array) -> dict[str, Array]:
        return {"m": np.zeros_like(w), "v": np.zeros_like(w)}

    def update(self, w: Array, g: Array, state: dict[str, Array]) -> None:
        b1, b2 = self.beta1, self.beta2
        backend.ops().adam(
            w, g, state["m"], state["v"], self.scratch(w), self.lr, b1, b2, self.eps, 1 - b1**self.t, 1 - b2**self.t
        )
