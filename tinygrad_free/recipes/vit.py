"""A small Vision Transformer (Dosovitskiy et al. 2021) for 28x28 images: patches or a stem of
strided convolutions, learned positions, pre-norm Transformer encoder layers, mean or class-token
pooling, one linear layer."""

import numpy as np

from .. import nn
from .dropout import check_dropout, dropout_seed

STEMS = ("patch", "conv")
POOLINGS = ("mean", "cls")


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"build_vit: {name} must be a positive integer, got {value!r}")
    return int(value)


def build_vit(
    input_shape=(1, 28, 28),
    num_classes=10,
    stem="patch",
    patch_size=4,
    d_model=64,
    depth=4,
    heads=4,
    mlp_ratio=2.0,
    pooling="mean",
    dropout=0.0,
    activation="gelu",
    weight_init="xavier",
    dtype=np.float32,
    rng=None,
):
    """A ViT as an ``nn.Sequential``:

    * the stem makes an (N, d_model, h, w) grid of tokens: ``patch``, one ``Conv2D`` with kernel and
      stride ``patch_size`` (non-overlapping patches, ViT's patch embedding; 28x28 with patch 4 gives
      7x7 = 49 tokens, patch 7 gives 16); ``conv``, two 3x3 convolutions of stride 2 (padding 1,
      d_model / 2 then d_model channels, the activation between), 28 -> 14 -> 7: 49 tokens, a small
      convolutional stem as Xiao et al. 2021 recommend;
    * ``Reshape`` and ``Permute`` turn the grid into a sequence (N, h w, d_model), row by row;
    * ``pooling="cls"`` puts a ``ClassToken`` first; ``PositionalEmbedding`` adds learned positions;
    * ``depth`` ``TransformerEncoderLayer`` (pre-norm, ``heads`` heads, feed-forward
      ``mlp_ratio`` d_model wide, ``activation``, ``dropout``), then a final ``LayerNorm``;
    * ``Mean(1)`` over the tokens (``mean``) or ``SelectToken(0)`` (``cls``), and a ``Dense`` to
      ``num_classes`` logits.

    The PyTorch equivalent is torchvision's ``VisionTransformer`` layout with these sizes (its
    ``conv_proj``, ``class_token``, ``pos_embedding``, encoder layers and ``ln``, ``heads``).
    ``weight_init`` initialises the stem and the head; the encoder layers start as PyTorch's.
    ``rng`` seeds the weights and every dropout.
    """
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
    if len(shape) != 3:
        raise ValueError(f"build_vit: input_shape must be (channels, height, width), got {input_shape!r}")
    channels, height, width = (_positive_int(n, "input_shape") for n in shape)
    if stem not in STEMS:
        raise ValueError(f"build_vit: stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"build_vit: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    d, depth, heads = _positive_int(d_model, "d_model"), _positive_int(depth, "depth"), _positive_int(heads, "heads")
    if d % heads:
        raise ValueError(f"build_vit: d_model ({d}) must be divisible by heads ({heads})")
    if (
        isinstance(mlp_ratio, bool)
        or not isinstance(mlp_ratio, (int, float, np.integer, np.floating))
        or mlp_ratio <= 0
    ):
        raise ValueError(f"build_vit: mlp_ratio must be a positive number, got {mlp_ratio!r}")
    ff = max(1, int(round(mlp_ratio * d)))
    dropout = check_dropout(dropout, "build_vit")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    if stem == "patch":
        p = _positive_int(patch_size, "patch_size")
        if height % p or width % p:
            raise ValueError(f"build_vit: patch_size {p} must divide the image's height and width ({height}x{width})")
        layers = [nn.Conv2D(channels, d, p, stride=p, init=weight_init, dtype=dtype, rng=rng)]
        grid = (height // p, width // p)
    else:
        if d < 2:
            raise ValueError("build_vit: the conv stem needs d_model >= 2 (its first convolution has d_model / 2)")
        layers = [
            nn.Conv2D(channels, d // 2, 3, 2, 1, activation=activation, init=weight_init, dtype=dtype, rng=rng),
            nn.Conv2D(d // 2, d, 3, 2, 1, init=weight_init, dtype=dtype, rng=rng),
        ]
        grid = (((height + 1) // 2 + 1) // 2, ((width + 1) // 2 + 1) // 2)  # each conv: ceil(n / 2)
    tokens = grid[0] * grid[1]
    layers += [nn.Reshape((d, tokens)), nn.Permute((2, 1))]
    if pooling == "cls":
        layers.append(nn.ClassToken(d, dtype=dtype, rng=dropout_seed(rng)))
        tokens += 1
    layers.append(nn.PositionalEmbedding(tokens, d, dtype=dtype, rng=dropout_seed(rng)))
    layers += [
        nn.TransformerEncoderLayer(
            d, heads, ff, dropout, activation, norm_first=True, dtype=dtype, rng=dropout_seed(rng)
        )
        for _ in range(depth)
    ]
    layers += [nn.LayerNorm(d, dtype=dtype), nn.Mean(1) if pooling == "mean" else nn.SelectToken(0)]
    layers.append(nn.Dense(d, num_classes, init=weight_init, dtype=dtype, rng=rng))
    return nn.Sequential(*layers)
