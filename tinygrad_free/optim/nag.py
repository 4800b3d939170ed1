from .momentum import Momentum
from .optimizer import register


@register("nag", "nesterov")
class NAG(Momentum):
    r"""Nesterov accelerated gradient: u <- beta * u + g; w <- w - lr * (g + beta * u).

    $$
    u \leftarrow \beta u + g, \qquad w \leftarrow w - \text{lr} \, (g + \beta u)
    $$

    The look-ahead written at the current point (Sutskever et al. 2013's reformulation);
    matches torch.optim.SGD(momentum=beta, nesterov=True). Registered as ``nag`` and ``nesterov``.

    Other Parameters
    ----------------
    lr : float
        The learning rate (default 1e-2); a schedule multiplies it, see ``optim.schedule``.
    momentum : float in [0, 1)
        $\beta$ (default 0.9).
    weight_decay : float
        Coupled L2 decay on weight matrices, added to the gradient (default 0).
    """

    nesterov = True
