from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .optimizer import Optimizer, register

if TYPE_CHECKING:
    from .._typing import Array


@register("nadam")
class NAdam(Optimizer):
    r"""Nesterov-accelerated Adam.

    $m$, $v$, $\hat m$, $\hat v$ as in Adam. By default Dozat (2016), as taught in the course:

    $$
    w \leftarrow w - \frac{\text{lr}}{\sqrt{\hat v} + \epsilon}
    \Big(\beta_1 \hat m + \frac{(1 - \beta_1) \, g}{1 - \beta_1^t}\Big)
    $$

    With ``momentum_decay=psi > 0``, torch.optim.NAdam's momentum schedule instead
    ($\psi = 0.004$ matches torch exactly): $\mu_t = \beta_1 (1 - 0.5 \cdot 0.96^{t \psi})$,
    $P_t = \prod_{i \le t} \mu_i$,

    $$
    w \leftarrow w - \frac{\text{lr}}{\sqrt{\hat v} + \epsilon}
    \Big(\frac{1 - \mu_t}{1 - P_t} \, g + \frac{\mu_{t+1}}{1 - P_t \mu_{t+1}} \, m\Big)
    $$

    Both are $w \leftarrow w - \text{lr} \, (c_m m + c_g g) / (\sqrt{\hat v} + \epsilon)$; only
    $c_m$ and $c_g$ differ.

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
    momentum_decay : float
        $\psi$: 0 (the default) for Dozat's rule, 0.004 for torch's.
    weight_decay : float
        Coupled L2 decay on weight matrices, added to the gradient (default 0).
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
