"""A small convolutional network for 28x28 images: convolution blocks, then one linear layer."""

import numpy as np

from .. import nn
from .dropout import check_dropout, dropout_seed


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"build_cnn: {name} must be a positive integer, got {value!r}")
    return int(value)


def build_cnn(
    input_shape=(1, 28, 28),
    num_classes=10,
    conv_channels=(32, 64),
    kernel_size=3,
    batch_norm=True,
    dropout=0.3,
    activation="relu",
    weight_init="xavier",
    dtype=np.float32,
    rng=None,
):
    """A CNN in the VGG pattern: one block per entry of ``conv_channels``, then a linear classifier.

    Each block is ``Conv2D(k, padding=k // 2) -> [BatchNorm] -> activation -> MaxPool2D(2)``:
    the convolution keeps the height and width ("same" padding), the pooling halves them
    (rounded down). Without BatchNorm the activation is fused into the convolution. After the
    last block: ``Flatten -> [Dropout] -> Dense`` to ``num_classes`` logits. With the defaults
    on 28x28 images (28 -> 14 -> 7) it has 50,378 parameters: 320 + 64 (conv 1 and its
    BatchNorm), 18,496 + 128 (conv 2), 31,370 (Dense 3136 -> 10). The equivalent PyTorch
    network is ``Conv2d(1, 32, 3, padding=1), BatchNorm2d(32), ReLU(), MaxPool2d(2), ...,
    Flatten(), Dropout(0.3), Linear(3136, 10)``.

    Parameters
    ----------
    input_shape : (channels, height, width)
        One image, as the network takes it: inputs are ``(N, *input_shape)`` arrays.
    num_classes : int
        Outputs (logits).
    conv_channels : sequence of int
        Output channels of each convolution block (one 2x2 max pooling per block).
    kernel_size : int
        Odd size of every convolution's square kernel (odd, so that ``k // 2`` padding keeps the size).
    batch_norm : bool, default True
        A ``BatchNorm`` between each convolution and its activation.
    dropout : float, default 0.3
        Probability of the ``Dropout`` before the output layer (0: none).
    activation : str
        A name of ``nn.activation.CODES`` (any case).
    weight_init : str
        A name of ``tinygrad_free.init.INITIALIZERS``, for the convolutions and the output layer.
    dtype : numpy dtype
    rng : int, Generator or None
        Seeds the weights and the Dropout layer's masks.

    Returns
    -------
    nn.Sequential

    Raises
    ------
    ValueError
        For an empty or non-positive ``conv_channels``, an even ``kernel_size``, a bad
        ``dropout``, or an image too small to be halved once per block.
    """
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    if len(shape) != 3:
        raise ValueError(f"build_cnn: input_shape must be (channels, height, width), got {input_shape!r}")
    channels, height, width = (_positive_int(n, "input_shape") for n in shape)
    if isinstance(conv_channels, (int, np.integer)) or not conv_channels:
        raise ValueError(f"build_cnn: conv_channels must be a non-empty list of positive ints, got {conv_channels!r}")
    conv_channels = [_positive_int(c, "conv_channels") for c in conv_channels]
    k = _positive_int(kernel_size, "kernel_size")
    if k % 2 == 0:
        raise ValueError(f"build_cnn: kernel_size must be odd (padding k // 2 keeps the size), got {k}")
    dropout = check_dropout(dropout, "build_cnn")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    layers = []
    for block, out in enumerate(conv_channels, 1):
        if min(height, width) < 2:
            raise ValueError(
                f"build_cnn: a {shape[1]}x{shape[2]} image is {height}x{width} before block {block}, too small "
                f"for another 2x2 pooling; use at most {block - 1} conv_channels"
            )
        fused = None if batch_norm else activation
        layers.append(
            nn.Conv2D(channels, out, k, padding=k // 2, activation=fused, init=weight_init, dtype=dtype, rng=rng)
        )
        if batch_norm:
            layers += [nn.BatchNorm(out, dtype=dtype), nn.activation.get(activation)]
        layers.append(nn.MaxPool2D(2))
        channels, height, width = out, height // 2, width // 2
    layers.append(nn.Flatten())
    if dropout:
        layers.append(nn.Dropout(dropout, rng=dropout_seed(rng)))
    layers.append(nn.Dense(channels * height * width, num_classes, init=weight_init, dtype=dtype, rng=rng))
    return nn.Sequential(*layers)
