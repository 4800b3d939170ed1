"""AdamW: Adam with decoupled weight decay."""

from __future__ import annotations

from .adam import Adam
from .optimizer import register


@register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``:

    w <- w (1 - lr wd)   (the weight matrices; biases and norms take no decay, as ``Parameter.decay``)
    then Adam's step on the plain gradient g: m, v, mh, vh as Adam; w <- w - lr mh / (sqrt(vh) + eps)

    ``weight_decay`` defaults to 0.01, as PyTorch's. With coupled L2 decay (``Adam``'s) the decay
    is divided by sqrt(vh) like the gradient, so weights with large gradients are barely decayed;
    decoupled, every weight shrinks by the same factor, which is what Transformers are trained with.
    """

    defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    decoupled_decay = True
