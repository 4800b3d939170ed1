"""A configuration made concrete: the model, optimizer, trainer and data of one training run.

:func:`build_run` is what ``scripts/train.py`` and every sweep trial call, so a run means the same
thing whichever started it. Configurations come checked (:mod:`tinygrad_free.config`); this
module only builds, from the option table (:mod:`tinygrad_free.options`).

``architecture`` ``mlp`` is :func:`tinygrad_free.recipes.build_mlp` (from ``num_layers`` and
``hidden_size``), ``cnn`` :func:`tinygrad_free.recipes.build_cnn` (from ``conv_channels`` and
``kernel_size``), both with ``batch_norm`` and ``dropout``; ``lstm`` is
:func:`tinygrad_free.recipes.build_lstm` (from ``num_layers``, ``hidden_size`` and ``dropout``);
``vit`` is :func:`tinygrad_free.recipes.build_vit` (from ``stem``, ``patch_size``, ``d_model``,
``depth``, ``heads``, ``mlp_ratio``, ``pooling`` and ``dropout``). A CNN and a ViT are fed
``(N, 1, 28, 28)`` images, an LSTM ``(N, 28, 28)`` sequences (each image as 28 steps of 28
pixels): :func:`build_run` reshapes the data set's flat rows for them (a view, no copy).
``label_smoothing`` reaches the cross-entropy loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import nn, optim
from .augment import Compose, RandomFlip, RandomShift
from .options import DEFAULTS, HYPER, as_dict
from .recipes import build_cnn, build_lstm, build_mlp, build_vit
from .train import Trainer


def optimizer_kwargs(config):
    """The keyword arguments of ``optim.create`` for ``config``: the learning rate, the weight
    decay (None: 0) and those hyperparameters of :data:`~tinygrad_free.options.HYPER` that are set
    (not None) and that the chosen optimizer has (``momentum`` reaches momentum and nag only)."""
    c = as_dict(config)
    allowed = optim.get(c["optimizer"]).defaults
    kw = {"lr": c["learning_rate"], "weight_decay": c.get("weight_decay") or 0.0}
    for option, key in HYPER.items():
        value = c.get(option)
        if value is not None and key in allowed:
            kw[key] = value
    return kw


def input_shape(config, features):
    """The shape of one input of ``config``'s network, for images of ``features`` pixels:
    ``(features,)`` for an MLP, ``(1, side, side)`` for a CNN or a ViT (square one-channel images),
    ``(side, side)`` for an LSTM (the image's rows as steps)."""
    arch = as_dict(config).get("architecture")
    if arch not in ("cnn", "vit", "lstm"):
        return (int(features),)
    side = math.isqrt(int(features))
    if side * side != features:
        raise ValueError(f"architecture {arch} takes square images; rows of {features} values are not one")
    return (side, side) if arch == "lstm" else (1, side, side)


def build_model(config, input_size, num_classes):
    """The network of ``config``, seeded by its ``seed`` (None: 0).

    ``architecture`` ``mlp`` (or None): :func:`tinygrad_free.recipes.build_mlp` (``hidden_size``
    may be a list of widths, then ``num_layers`` is not used); ``cnn``:
    :func:`tinygrad_free.recipes.build_cnn`; ``lstm``: :func:`tinygrad_free.recipes.build_lstm`;
    ``vit``: :func:`tinygrad_free.recipes.build_vit`.
    ``input_size`` is the features of a row (int) or
    the shape of one input (:func:`input_shape`). ``batch_norm`` and ``dropout`` (None: off)
    reach either builder.
    """
    c = as_dict(config)
    seed = c.get("seed") if c.get("seed") is not None else 0
    shape = (input_size,) if isinstance(input_size, (int, np.integer)) else tuple(input_size)
    regularise = {"batch_norm": bool(c.get("batch_norm")), "dropout": c.get("dropout") or 0.0}
    if c.get("architecture") == "vit":
        if len(shape) == 1:
            shape = input_shape(c, shape[0])
        return build_vit(
            shape,
            num_classes,
            **{k: c.get(k) or DEFAULTS[k] for k in ("stem", "patch_size", "d_model", "depth", "heads", "mlp_ratio")},
            pooling=c.get("pooling") or DEFAULTS["pooling"],
            dropout=regularise["dropout"],
            activation=c["activation"],
            weight_init=c["weight_init"],
            rng=seed,
        )
    if c.get("architecture") == "lstm":
        if len(shape) == 1:
            shape = input_shape(c, shape[0])
        if isinstance(c["hidden_size"], list):
            raise ValueError(f"architecture lstm takes one hidden_size (the LSTM's units), got {c['hidden_size']}")
        return build_lstm(
            shape,
            num_classes,
            c["hidden_size"],
            c["num_layers"],
            dropout=regularise["dropout"],
            weight_init=c["weight_init"],
            rng=seed,
        )
    if c.get("architecture") == "cnn":
        if len(shape) == 1:
            shape = input_shape(c, shape[0])
        return build_cnn(
            shape,
            num_classes,
            c.get("conv_channels") or DEFAULTS["conv_channels"],
            c.get("kernel_size") or DEFAULTS["kernel_size"],
            activation=c["activation"],
            weight_init=c["weight_init"],
            rng=seed,
            **regularise,
        )
    widths = c["hidden_size"]
    return build_mlp(
        int(np.prod(shape)),
        None if isinstance(widths, list) else c["num_layers"],
        widths,
        c["activation"],
        c["weight_init"],
        num_classes=num_classes,
        rng=seed,
        **regularise,
    )


def loss_of(config):
    """The loss of ``config``: ``loss`` by name, with ``label_smoothing`` (cross-entropy only)."""
    c = as_dict(config)
    smoothing = c.get("label_smoothing") or 0.0
    loss = nn.get_loss(c["loss"])
    if smoothing:
        if not isinstance(loss, nn.CrossEntropyLoss):
            raise ValueError(f"label_smoothing applies to the cross_entropy loss, not {c['loss']}; leave it at 0")
        loss = nn.CrossEntropyLoss(label_smoothing=smoothing)
    return loss


@dataclass
class TrainingRun:
    """A configuration made concrete, ready for :meth:`fit`.

    Attributes
    ----------
    config : dict
    data : tinygrad_free.data.Split
        Validation and test sets come from here, shaped as the model takes them
        (``(N, 1, 28, 28)`` for a CNN, ``(N, 28, 28)`` for an LSTM).
    x_train, y_train : ndarray
        The training set (the first ``limit`` images when a limit was given).
    model, optimizer, trainer
    augment : RandomShift, RandomFlip, Compose or None
    """

    config: dict
    data: Any
    x_train: np.ndarray
    y_train: np.ndarray
    model: Any
    optimizer: Any
    trainer: Trainer
    augment: RandomShift | RandomFlip | Compose | None

    def fit(self):
        """Train for the configured epochs with the configured schedule; returns the History."""
        c, seed = self.config, self.config.get("seed") if self.config.get("seed") is not None else 0
        return self.trainer.fit(
            self.x_train,
            self.y_train,
            epochs=c["epochs"],
            batch_size=c["batch_size"],
            validation_data=(self.data.x_val, self.data.y_val),
            seed=seed,
            lr_schedule=c.get("lr_schedule") or "constant",
            augment=self.augment,
        )


def build_run(config, data, *, limit=None, callbacks=(), threads="auto", progress=None):
    """Turn a configuration into a model, an optimizer and a trainer on ``data``.

    Parameters
    ----------
    config : mapping or namespace
        A complete configuration with canonical names (:func:`tinygrad_free.config.normalize_config`
        or :func:`tinygrad_free.config.command_line_options`, where None means "not set": the
        optimizer's own default, seed 0, no weight decay, a constant rate, no shift).
    data : tinygrad_free.data.Split
    limit : int, optional
        Train on the first ``limit`` training images only (validation and test stay whole).
    callbacks : sequence of Callback
    threads : "auto", int or None
        :class:`tinygrad_free.train.Trainer`'s.
    progress : bool, optional
        The trainer's progress bar (default: its own).

    Returns
    -------
    TrainingRun
        Whose :meth:`TrainingRun.fit` trains it: the weights are seeded by ``seed``, the batches
        shuffled by it, the training images mirrored left-right with probability 1/2 when ``flip``
        is set, then shifted by up to ``shift`` pixels (zero fill).
        Its ``data`` is ``data`` with the images reshaped to the model's input (views): evaluate
        on ``run.data.x_test``.
    """
    c = as_dict(config)
    shape = input_shape(c, data.x_train[0].size)
    if data.x_train.shape[1:] != shape:  # the one place a CNN's or LSTM's images get their shape
        data = replace(data, **{k: getattr(data, k).reshape(-1, *shape) for k in ("x_train", "x_val", "x_test")})
    x_train, y_train = data.x_train, data.y_train
    if limit:
        x_train, y_train = x_train[: int(limit)], y_train[: int(limit)]
    model = build_model(c, shape, len(data.class_names))
    opt = optim.create(c["optimizer"], model.parameters(), **optimizer_kwargs(c))
    trainer = Trainer(model, loss_of(c), opt, list(callbacks), progress=progress, threads=threads)
    side = math.isqrt(x_train[0].size)
    transforms = [RandomFlip(0.5, (side, side))] if c.get("flip") else []
    transforms += [RandomShift(c["shift"], (side, side))] if c.get("shift") else []
    augment = transforms[0] if len(transforms) == 1 else Compose(transforms) if transforms else None
    return TrainingRun(c, data, x_train, y_train, model, opt, trainer, augment)


__all__ = ["TrainingRun", "build_run", "build_model", "input_shape", "loss_of", "optimizer_kwargs"]
