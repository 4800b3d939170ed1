from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .optimizer import Optimizer, register

if TYPE_CHECKING:
    from .._typing import Array


@register("nadam")
class NAdam(Optimizer):
    """Nesterov-accelerated Adam.

    m, v, mh, vh as in Adam. By default Dozat (2016), as taught in the course:

        w <- w - lr / (sqrt(vh) + eps) * (b1 * mh + (1 - b1) * g / (1 - b1^t))

    With ``momentum_decay=psi > 0``, torch.optim.NAdam's momentum schedule instead
    (psi = 0.004 matches torch exactly): mu_t = b1 (1 - 0.5 * 0.96^(t psi)), P_t = prod_{i<=t} mu_i,

        w <- w - lr / (sqrt(vh) + eps) * ((1 - mu_t) / (1 - P_t) * g + mu_{t+1} / (1 - P_t mu_{t+1}) * m)

    Both are w <- w - lr * (cm m + cg g) / (sqrt(vh) + eps); only cm and cg differ.
    """

    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, momentum_decay=0.0)
    beta1: float
    beta2: float
    eps: float
    momentum_decay: float

    def init_state(self, w: Array) -> dict[str, Array]:
        return {"m": np.zeros_like(w), "v": np.zeros_like(w)}

    def _mu(self, t: int) -> float:
        return self.beta1 * (1 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def _mu_product(self, t: int) -> float:
        """P_t = mu_1 ... mu_t, multiplied in step order as torch keeps its running product (a
        function of t alone, so each parameter's own step count gives its own P_t)."""
        key = (self.beta1, self.momentum_decay)
        cache: list[float] = self.__dict__.get("_products", [1.0])
        if self.__dict__.get("_products_key") != key:
            cache = [1.0]
        while len(cache) <= t:
            cache.append(cache[-1] * self._mu(len(cache)))
        self.__dict__["_products"], self.__dict__["_products_key"] = cache, key
        return cache[t]

    def update(self, w: Array, g: Array, state: dict[str, Array]) -> None:
        b1, t = self.beta1, self.t
        if self.momentum_decay:
            mu, mu_next, prod = self._mu(t), self._mu(t + 1), self._mu_product(t)
            cg, cm = (1 - mu) / (1 - prod), mu_next / (1 - prod * mu_next)
        else:
            bc1 = 1 - b1**t
            cg, cm = (1 - b1) / bc1, b1 / bc1
        backend.ops().nadam(
            w, g, state["m"], state["v"], self.scratch(w), self.lr, b1, self.beta2, self.eps, 1 - self.beta2**t, cm, cg
        )
