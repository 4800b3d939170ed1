from .momentum import Momentum
from .optimizer import register


@register("nag", "nesterov")
class NAG(Momentum):
    """Nesterov accelerated gradient: u <- beta * u + g; w <- w - lr * (g + beta * u).

    The look-ahead written at the current point (Sutskever et al. 2013's reformulation);
    matches torch.optim.SGD(momentum=beta, nesterov=True).
    """

    nesterov = True
