"""Eve: the worked example of adding an optimizer. Nothing outside this file knows about it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from .optimizer import Optimizer, register

if TYPE_CHECKING:
    from .._typing import Array


@register("eve")
class Eve(Optimizer):
    r"""Eve (Koushik & Hayashi 2016, "Improving Stochastic Gradient Descent with Feedback", Alg. 1).

    Adam whose step is divided by $d$, a smoothed, clipped relative change of the minibatch loss
    $f$: $m$, $v$, $\hat m$, $\hat v$ as in Adam; $d_1 = 1$, $\hat f_1 = f_1$; for $t > 1$

    $$
    \begin{aligned}
    (\ell, h) &= \begin{cases} (k + 1, \; K + 1) & \text{if } f_t \ge \hat f_{t-1} \\
                 (1 / (K + 1), \; 1 / (k + 1)) & \text{otherwise} \end{cases} \\
    c &= \min(\max(\ell, f_t / \hat f_{t-1}), h), \qquad \hat f_t = c \, \hat f_{t-1} \\
    r &= |\hat f_t - \hat f_{t-1}| / \min(\hat f_t, \hat f_{t-1}), \qquad d_t = \beta_3 d_{t-1} + (1 - \beta_3) \, r \\
    w &\leftarrow w - \text{lr} \, \hat m / (d_t \sqrt{\hat v} + \epsilon)
    \end{aligned}
    $$

    $r$ always lies in $[k, K]$, so $k \le d \le K$; the first step is Adam's and $\beta_3 = 1$
    gives Adam. ``step(loss=...)`` must receive the (positive) minibatch loss.

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
    beta3 : float in [0, 1]
        $\beta_3$, the decay of $d$ (default 0.999).
    k : float in (0, 1]
        The lower clipping bound $k$ of the relative change (default 0.1).
    K : float
        The upper clipping bound $K \ge 1$ (default 10).
    weight_decay : float
        Coupled L2 decay on weight matrices, added to the gradient (default 0).
    """

    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, beta3=0.999, eps=1e-8, k=0.1, K=10.0)
    beta1: float
    beta2: float
    beta3: float
    eps: float
    k: float
    K: float
    ranges = {"beta3": (0.0, 1.0, False, False), "k": (0.0, 1.0, True, False), "K": (1.0, float("inf"), False, True)}

    def init_state(self, w: Array) -> dict[str, Array]:
        return {"m": np.zeros_like(w), "v": np.zeros_like(w)}

    def prepare(self, loss: float | None) -> None:
        if loss is None:
            raise ValueError("Eve needs the minibatch loss: call opt.step(loss=loss)")
        f = float(loss)
        if not np.isfinite(f) or f <= 0:
            raise ValueError(f"Eve needs a finite, positive loss (it divides by it), got {loss!r}")
        if self.t == 1:
            self.shared.update(f_hat=f, d=1.0)
            return
        f_prev = self.shared["f_hat"]
        lo, hi = (self.k + 1, self.K + 1) if f >= f_prev else (1 / (self.K + 1), 1 / (self.k + 1))
        f_hat = min(max(lo, f / f_prev), hi) * f_prev
        r = abs(f_hat - f_prev) / min(f_hat, f_prev)
        self.shared.update(f_hat=f_hat, d=self.beta3 * self.shared["d"] + (1 - self.beta3) * r)

    def update(self, w: Array, g: Array, state: dict[str, Array]) -> None:
        # mh / (d sqrt(vh) + eps) == (1/d) mh / (sqrt(vh) + eps/d): Adam's fused kernel with
        # lr/d and eps/d is exactly this update, so Eve needs no kernel of its own.
        b1, b2, d = self.beta1, self.beta2, self.shared["d"]
        backend.ops().adam(
            w,
            g,
            state["m"],
            state["v"],
            self.scratch(w),
            self.lr / d,
            b1,
            b2,
            self.eps / d,
            1 - b1**self.t,
            1 - b2**self.t,
        )
