from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .optimizer import Optimizer, register

if TYPE_CHECKING:
    from .._typing import Array


@register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015). Matches torch.optim.Adam (L2 weight decay, not AdamW).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    mh = m / (1 - b1^t);  vh = v / (1 - b2^t);  w <- w - lr * mh / (sqrt(vh) + eps)
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
