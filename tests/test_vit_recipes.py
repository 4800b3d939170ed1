"""The Vision Transformer recipes end to end: build_vit (both stems, both poolings, the errors),
the options that choose it (architecture vit, stem, patch_size, d_model, depth, heads, mlp_ratio,
pooling) and label_smoothing, run names, the shipped YAML recipes, and scripts/train.py training a
ViT recipe for an epoch on a few hundred real images."""

import gzip
import struct

import numpy as np
import pytest

from scripts import train as train_script
from tinygrad_free import config as C
from tinygrad_free import nn
from tinygrad_free.data.idx import read_idx
from tinygrad_free.recipes import build_vit, load_config
from tinygrad_free.training_run import build_model, loss_of

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The first 300 training and 100 test images of both real data sets."""
    import os

    real = os.environ["TINYGRAD_FREE_DATA"]
    root = tmp_path_factory.mktemp("tiny_data")
    for name in ("fashion-mnist", "mnist"):
        (root / name).mkdir()
        for stem, n in zip(FILES, (300, 300, 100, 100)):
            arr = read_idx(f"{real}/{name}/{stem}.gz")[:n]
            header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (root / name / f"{stem}.gz").write_bytes(gzip.compress(header + arr.tobytes(), mtime=0))
    return root


def test_the_patch_stem_vit_is_patches_tokens_positions_encoders_norm_pool_head():
    model = build_vit(stem="patch", patch_size=7, d_model=16, depth=2, heads=2, mlp_ratio=3, rng=0)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2D", "Reshape", "Permute", "PositionalEmbedding"] + ["TransformerEncoderLayer"] * 2 + [
        "LayerNorm",
        "Mean",
        "Dense",
    ]
    assert model[0].kernel_size == (7, 7) and model[0].stride == (7, 7) and model[3].max_len == 16
    assert model[4].linear1.out_features == 48 and model[4].norm_first
    assert model(np.zeros((3, 1, 28, 28), np.float32)).shape == (3, 10)


def test_the_conv_stem_and_class_token_pooling():
    model = build_vit(stem="conv", d_model=8, depth=1, heads=2, pooling="cls", rng=0)
    kinds = [type(m).__name__ for m in model]
    assert kinds[:2] == ["Conv2D", "Conv2D"] and "ClassToken" in kinds and kinds[-2] == "SelectToken"
    (positions,) = [m for m in model if isinstance(m, nn.PositionalEmbedding)]
    assert positions.max_len == 50  # 7x7 tokens and the class token
    assert model(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 5}, "patch_size 5 must divide the image's height and width"),
        ({"d_model": 10, "heads": 4}, r"d_model \(10\) must be divisible by heads \(4\)"),
        ({"stem": "pixels"}, "stem must be one of patch, conv"),
        ({"pooling": "max"}, "pooling must be one of mean, cls"),
        ({"mlp_ratio": 0}, "mlp_ratio must be a positive number"),
        ({"dropout": 1.0}, "dropout must be a probability"),
    ],
)
def test_build_vit_names_the_bad_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_vit(**kwargs)


def test_vit_options_are_checked_refused_for_other_architectures_and_shown_in_run_names():
    cfg = C.normalize_config({"architecture": "vit", "d_model": "32", "pooling": "CLS", "label_smoothing": 0.1})
    assert (cfg["d_model"], cfg["pooling"], cfg["label_smoothing"], cfg["conv_channels"]) == (32, "cls", 0.1, None)
    name = C.trial_run_name(cfg)
    assert name.startswith("vit_p4_d32_L4_h4_mlp2_cls_") and name.endswith("_ls0.1")
    with pytest.raises(ValueError, match="depth applies to architecture vit only"):
        C.normalize_config({"architecture": "cnn", "depth": 2})
    with pytest.raises(ValueError, match="batch_norm applies to architecture mlp or cnn only"):
        C.normalize_config({"architecture": "vit", "batch_norm": True})


def test_the_vit_recipes_build_their_networks_and_losses():
    for name, stem in (("fashion_mnist_vit", "conv"), ("mnist_vit", "patch")):
        cfg = C.normalize_config(load_config(name))
        model = build_model(cfg, 784, 10)
        assert isinstance(model[0], nn.Conv2D) and cfg["stem"] == stem
        assert sum(isinstance(m, nn.TransformerEncoderLayer) for m in model) == 4
        loss = loss_of(cfg)
        assert isinstance(loss, nn.CrossEntropyLoss) and loss.label_smoothing == 0.1
    with pytest.raises(ValueError, match="label_smoothing applies to the cross_entropy loss"):
        loss_of({"loss": "mean_squared_error", "label_smoothing": 0.1})


def test_train_script_trains_the_vit_recipe_for_an_epoch(tiny_data, capsys):
    argv = ["--config", "mnist_vit", "-e", "1", "--data_dir", str(tiny_data), "--wandb_mode", "disabled"]
    assert train_script.main([*argv, "--threads", "1", "--depth", "1", "--d_model", "16"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "TransformerEncoderLayer(16, nhead=4" in "\n".join(lines) and lines[-1].startswith("test_accuracy: ")
