"""The CNN and regularised-MLP recipes end to end: the builders, the configuration options that
choose them (architecture, conv_channels, kernel_size, batch_norm, dropout), run names,
scripts/train.py --config fashion_mnist_cnn, a CNN sweep trial and the report page comparing
the networks. Training runs use a data folder of a few hundred real images and one epoch."""

import gzip
import json
import struct

import numpy as np
import pytest

from scripts import sweep as sweep_script
from scripts import train as train_script
from tinygrad_free import config as C
from tinygrad_free import nn
from tinygrad_free import report as R
from tinygrad_free.data import load_split
from tinygrad_free.data.idx import read_idx
from tinygrad_free.recipes import build_cnn, build_mlp, load_config
from tinygrad_free.report import command as report_command
from tinygrad_free.sweep import read_results
from tinygrad_free.training_run import build_run

N_TRAIN, N_TEST = 300, 100
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A data folder holding the first 300 training and 100 test images of both real data sets."""
    import os

    real = os.environ["TINYGRAD_FREE_DATA"]
    root = tmp_path_factory.mktemp("tiny_data")
    for name in ("fashion-mnist", "mnist"):
        (root / name).mkdir()
        for stem, n in zip(FILES, (N_TRAIN, N_TRAIN, N_TEST, N_TEST)):
            arr = read_idx(f"{real}/{name}/{stem}.gz")[:n]
            header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (root / name / f"{stem}.gz").write_bytes(gzip.compress(header + arr.tobytes(), mtime=0))
    return root


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def test_default_cnn_is_conv_bn_relu_pool_twice_then_dropout_and_dense_with_50378_parameters():
    model = build_cnn(rng=0)
    kinds = [type(layer).__name__ for layer in model]
    block = ["Conv2D", "BatchNorm", "ReLU", "MaxPool2D"]
    assert kinds == block + block + ["Flatten", "Dropout", "Dense"]
    # conv 1 (1*32*9 + 32), its BatchNorm (2*32), conv 2 (32*64*9 + 64), its BatchNorm, Dense 64*7*7 -> 10
    expected = (1 * 32 * 9 + 32) + 2 * 32 + (32 * 64 * 9 + 64) + 2 * 64 + (64 * 7 * 7 * 10 + 10)
    assert model.num_parameters() == expected == 50_378
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert model(x).shape == (3, 10) and model(x).dtype == np.float32


def test_cnn_without_batch_norm_fuses_the_activation_and_keeps_same_padding():
    model = build_cnn(conv_channels=[8, 16, 16], kernel_size=5, batch_norm=False, dropout=0.0, rng=0)
    kinds = [type(layer).__name__ for layer in model]
    assert kinds == ["Conv2D", "MaxPool2D"] * 3 + ["Flatten", "Dense"]
    convs = [layer for layer in model if isinstance(layer, nn.Conv2D)]
    assert all(c.get_config()["padding"] == [2, 2] and c.get_config()["activation"] == "relu" for c in convs)
    assert model[-1].W.data.shape == (16 * 3 * 3, 10)  # 28 -> 14 -> 7 -> 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"conv_channels": []}, "conv_channels must be a non-empty list"),
        ({"conv_channels": [8, 0]}, "conv_channels must be a positive integer"),
        ({"conv_channels": [4] * 5}, "too small for another 2x2 pooling; use at most 4 conv_channels"),
        ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\)"),
        ({"input_shape": (28, 28)}, "input_shape must be"),
    ],
)
def test_build_cnn_names_the_bad_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_cnn(**kwargs)


def test_regularised_mlp_is_dense_batchnorm_activation_dropout_per_hidden_layer():
    model = build_mlp(784, 2, 512, "relu", batch_norm=True, dropout=0.3, rng=0)
    kinds = [type(layer).__name__ for layer in model]
    assert kinds == ["Dense", "BatchNorm", "ReLU", "Dropout"] * 2 + ["Dense"]
    assert model.num_parameters() == (784 * 512 + 512) + 2 * 512 + (512 * 512 + 512) + 2 * 512 + (512 * 10 + 10)
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    assert model(x).shape == (4, 10)


def test_mlp_without_the_new_options_has_the_plain_layers_and_weights():
    plain, same = build_mlp(16, 2, 8, rng=3), build_mlp(16, 2, 8, rng=3, batch_norm=False, dropout=0.0)
    assert all(np.array_equal(a.data, b.data) for a, b in zip(plain.parameters(), same.parameters()))
    assert [type(layer).__name__ for layer in same] == ["Dense"] * 3


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, message",
    [
        ({"architecture": "rnn"}, "architecture: unknown value 'rnn'; choose one of mlp, cnn"),
        ({"conv_channels": [16, 32]}, "conv_channels applies to architecture cnn only, but the architecture is mlp"),
        ({"kernel_size": 5}, "kernel_size applies to architecture cnn only"),
        ({"architecture": "cnn", "hidden_size": 64}, "hidden_size applies to architecture mlp or lstm only"),
        ({"architecture": "cnn", "kernel_size": 4}, "kernel_size must be a positive odd integer"),
        ({"architecture": "cnn", "conv_channels": 32}, "conv_channels must be a non-empty list"),
        ({"batch_norm": "maybe"}, "batch_norm must be true or false"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_network_options_are_refused_with_what_is_allowed(config, message):
    with pytest.raises(ValueError, match=message):
        C.normalize_config(config)


def test_network_options_are_canonicalised():
    cfg = C.normalize_config({"architecture": "CNN", "conv_channels": ["8", 16], "batch_norm": "True"})
    assert (cfg["architecture"], cfg["conv_channels"], cfg["batch_norm"], cfg["dropout"]) == ("cnn", [8, 16], True, 0)


def test_run_names_show_the_network_options_only_when_not_default():
    plain = C.trial_run_name({})
    assert plain.startswith("hl_3_sz_128_") and "cnn" not in plain and "_bn" not in plain and "_do" not in plain
    cnn = C.trial_run_name({"architecture": "cnn", "batch_norm": True, "dropout": 0.3})
    assert cnn.startswith("cnn_32-64_bs_32_") and cnn.endswith("_bn_do0.3")
    assert C.trial_run_name({"architecture": "cnn", "conv_channels": [8], "kernel_size": 5}).startswith("cnn_8_k5_bs")
    mlp = C.trial_run_name({"hidden_size": [64, 32], "num_layers": 2, "dropout": 0.5})
    assert mlp.startswith("hl_2_sz_64-32_") and mlp.endswith("_do0.5")


def test_a_cnn_run_reshapes_the_images_once_and_shifts_them_as_the_flat_rows():
    data = load_split("fashion_mnist", seed=0)
    run = build_run(C.normalize_config({"architecture": "cnn", "shift": 1}), data, limit=64, progress=False)
    assert run.x_train.shape == (64, 1, 28, 28) and run.data.x_test.shape == (len(data.x_test), 1, 28, 28)
    assert np.shares_memory(run.data.x_val, data.x_val)  # a view of the loaded arrays, not a copy
    shifted = run.augment(run.x_train, np.random.default_rng(5)).copy()
    flat = run.augment(data.x_train[:64], np.random.default_rng(5))
    assert shifted.shape == (64, 1, 28, 28) and np.array_equal(shifted.reshape(64, -1), flat)
    assert run.model(run.x_train[:2]).shape == (2, 10)


def test_flip_then_shift_is_the_runs_augment_and_shows_in_its_name():
    data = load_split("fashion_mnist", seed=0)
    cfg = C.normalize_config({"architecture": "cnn", "shift": 1, "flip": "true"})
    run = build_run(cfg, data, limit=8, progress=False)
    assert [type(t).__name__ for t in run.augment.transforms] == ["RandomFlip", "RandomShift"]
    assert C.trial_run_name(cfg).endswith("_shift1_flip")
    assert type(build_run(C.normalize_config({"flip": True}), data, limit=8, progress=False).augment).__name__ == (
        "RandomFlip"
    )
    with pytest.raises(ValueError, match="flip must be true or false, got 'maybe'"):
        C.normalize_config({"flip": "maybe"})
    args = train_script.parse_args(["--config", "fashion_mnist_cnn", "--no-flip"])
    assert args.flip is False and "_flip" not in C.run_name(args)


# --------------------------------------------------------------------------------------------
# scripts/train.py
# --------------------------------------------------------------------------------------------


def test_the_cnn_recipes_parse_to_a_cnn_with_their_options():
    args = train_script.parse_args(["--config", "fashion_mnist_cnn"])
    assert (args.architecture, args.conv_channels, args.batch_norm, args.dropout) == ("cnn", [32, 64, 96], True, 0.3)
    assert args.num_layers is None and C.run_name(args).startswith("cnn_32-64-96_bs_64_ac_relu_opt_adam")
    assert C.run_name(args) == C.trial_run_name({k: getattr(args, k) for k in load_config("fashion_mnist_cnn")})
    assert train_script.parse_args(["--config", "mnist_cnn"]).dataset == "mnist"
    mlp = train_script.parse_args(["--config", "fashion_mnist_mlp_regularized"])
    assert (mlp.architecture, mlp.hidden_size, mlp.batch_norm, mlp.dropout) == ("mlp", 512, True, 0.3)
    flags = train_script.parse_args(["--architecture", "cnn", "--conv_channels", "8", "16", "--no-batch_norm"])
    assert (flags.conv_channels, flags.batch_norm, flags.dropout) == ([8, 16], False, 0.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--conv_channels", "16"], "conv_channels applies to architecture cnn only"),
        (["--config", "fashion_mnist_cnn", "-nhl", "2"], "num_layers applies to architecture mlp or lstm only"),
        (["--architecture", "rnn"], "invalid choice 'rnn'"),
        (["--config", "fashion_mnist_cnn", "--kernel_size", "4"], "kernel_size must be a positive odd integer"),
    ],
)
def test_train_script_refuses_options_of_the_other_architecture(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        train_script.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--conv_channels", "32", "64"],
            "conv_channels applies to architecture cnn only, but the architecture is mlp "
            "(whose network is set by num_layers, hidden_size, activation and batch_norm)",
        ),
        (["--kernel_size", "3"], "kernel_size applies to architecture cnn only, but the architecture is mlp"),
        (
            ["--config", "fashion_mnist_cnn", "-sz", "128"],
            "hidden_size applies to architecture mlp or lstm only, but the architecture is cnn "
            "(whose network is set by activation, conv_channels, kernel_size and batch_norm)",
        ),
        (["--config", "fashion_mnist_cnn", "--num_layers", "3"], "num_layers applies to architecture mlp or lstm only"),
        (["--architecture", "mlp", "--kernel_size", "3"], "kernel_size applies to architecture cnn only"),
    ],
)
def test_train_script_refuses_a_given_option_of_the_other_architecture_even_at_its_default(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        train_script.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_recipes_options_of_the_other_architecture_are_dropped_when_a_flag_changes_the_architecture():
    args = train_script.parse_args(["--config", "fashion_mnist_cnn", "--architecture", "mlp", "-nhl", "2", "-sz", "64"])
    assert (args.architecture, args.num_layers, args.hidden_size) == ("mlp", 2, 64)
    assert args.conv_channels is None and args.kernel_size is None
    assert C.run_name(args).startswith("hl_2_sz_64_bs_64_ac_relu_opt_adam") and "cnn" not in C.run_name(args)
    cnn = train_script.parse_args(["--architecture", "cnn"])
    assert cnn.num_layers is None and cnn.hidden_size is None and cnn.conv_channels == [32, 64]


@pytest.mark.parametrize(
    "config, message",
    [
        ({"kernel_size": 3}, "kernel_size applies to architecture cnn only, but the architecture is mlp"),
        ({"conv_channels": [32, 64]}, "conv_channels applies to architecture cnn only"),
        ({"architecture": "cnn", "num_layers": 3}, "num_layers applies to architecture mlp or lstm only"),
        ({"architecture": "cnn", "hidden_size": 128, "num_layers": 3}, "num_layers, hidden_size apply to archi"),
    ],
)
def test_normalize_config_refuses_a_present_option_of_the_other_architecture_even_at_its_default(config, message):
    with pytest.raises(ValueError, match=message):
        C.normalize_config(config)


def test_a_checked_configuration_has_none_for_the_other_architectures_options_and_checks_again():
    for arch, unused in (("mlp", ("conv_channels", "kernel_size")), ("cnn", ("num_layers", "hidden_size"))):
        cfg = C.normalize_config({"architecture": arch})
        assert all(cfg[k] is None for k in unused)
        assert C.normalize_config(cfg) == cfg and C.trial_run_name(cfg) == C.run_name(cfg)


def test_train_script_refuses_a_recipe_that_sets_an_option_of_the_other_architecture(tmp_path, capsys):
    path = tmp_path / "cnn_with_layers.yaml"
    path.write_text("architecture: cnn\nnum_layers: 3\n")
    with pytest.raises(SystemExit):
        train_script.parse_args(["--config", str(path)])
    assert f"config {path}: num_layers applies to architecture mlp or lstm only" in capsys.readouterr().err


def test_train_script_refuses_a_recipe_with_a_bad_network_option(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("architecture: cnn\nconv_channels: [32, -1]\n")
    with pytest.raises(SystemExit):
        train_script.parse_args(["--config", str(path)])
    assert f"config {path}: conv_channels must be a non-empty list of positive integers" in capsys.readouterr().err


def test_train_script_trains_the_cnn_recipe_and_appends_its_results_line(tiny_data, tmp_path, capsys):
    results = tmp_path / "runs.jsonl"
    argv = ["--config", "fashion_mnist_cnn", "-e", "1", "--data_dir", str(tiny_data), "--wandb_mode", "disabled"]
    assert train_script.main([*argv, "--results", str(results), "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "Conv2D(1, 32" in "\n".join(lines) and lines[-1].startswith("test_accuracy: ")
    (record,) = read_results(results)
    assert set(R.RUN_KEYS) <= set(record) and record["recipe"] == "fashion_mnist_cnn"
    assert (
        record["config"]["architecture"] == "cnn"
        and record["parameters"] == build_cnn(conv_channels=[32, 64, 96]).num_parameters()
    )
    cm = np.array(record["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == N_TEST
    assert record["test_accuracy"] == pytest.approx(float(lines[-1].split()[-1]), abs=1e-4)
    assert record["test_accuracy"] == pytest.approx(np.trace(cm) / N_TEST)
    assert len(record["epoch_seconds"]) == record["epochs_run"] == 1 and record["train_size"] == N_TRAIN * 9 // 10


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------


def test_a_cnn_sweep_trial_runs_end_to_end(tiny_data, tmp_path):
    results = tmp_path / "cnn.jsonl"
    argv = ["sweeps/cnn.yaml", "--backend", "local", "--n_trials", "1", "--set", "epochs=1", "--limit", "100"]
    argv += ["--data_dir", str(tiny_data), "--storage", f"sqlite:///{tmp_path / 'cnn.db'}"]
    assert sweep_script.main([*argv, "--results", str(results), "--wandb_mode", "disabled", "-q"]) == 0
    (record,) = read_results(results)
    assert record["status"] == "completed" and record["config"]["architecture"] == "cnn"
    assert record["config"]["conv_channels"] in ([16, 32], [32, 64], [32, 64, 128])
    assert record["train_size"] == 100 and 0 <= record["test_accuracy"] <= 1


# --------------------------------------------------------------------------------------------
# The report page
# --------------------------------------------------------------------------------------------


def fake_run(recipe, architecture, seed, accuracy, confusion, seconds):
    cfg = C.normalize_config({"architecture": architecture})
    return {
        "run_name": C.run_name(cfg),
        "recipe": recipe,
        "config": cfg,
        "dataset": "fashion_mnist",
        "seed": seed,
        "parameters": 100,
        "test_accuracy": accuracy,
        "epoch_seconds": seconds,
        "confusion": confusion,
        "class_names": ["a", "b"],
    }


def test_runs_are_grouped_by_configuration_with_the_mean_over_seeds():
    runs = [
        fake_run("cnn", "cnn", 0, 0.9, [[5, 1], [0, 4]], [2.0, 4.0]),
        fake_run("mlp", "mlp", 0, 0.7, [[4, 2], [1, 3]], [1.0]),
        fake_run("cnn", "cnn", 1, 0.8, [[4, 2], [0, 4]], [3.0, 900.0]),  # one epoch stalled
    ]
    cnn, mlp = R.group_runs(runs)
    assert (cnn["label"], cnn["architecture"], cnn["runs"], cnn["seeds"]) == ("cnn", "cnn", 2, [0, 1])
    assert cnn["test_accuracy"] == pytest.approx(0.85) and cnn["test_accuracy_std"] == pytest.approx(0.05)
    assert cnn["epoch_seconds"] == pytest.approx(3.5) and cnn["confusion"].tolist() == [[9, 3], [0, 8]]
    assert mlp["runs"] == 1 and mlp["test_accuracy_std"] == 0
    columns, rows = R.architecture_table([mlp, cnn])
    assert [r[0] for r in rows] == ["cnn", "mlp"] and rows[0][columns.index("test accuracy %")] == "85.00 ± 5.00"


def test_a_run_line_without_the_results_keys_is_refused():
    with pytest.raises(ValueError, match=r"run 1 \(x\) lacks \['recipe'.*expected lines of scripts/train.py --results"):
        R.group_runs([{"run_name": "x"}])


def test_report_architectures_writes_the_page_with_a_table_and_the_confusion_figure(tmp_path):
    runs = tmp_path / "runs.jsonl"
    lines = [
        fake_run("fashion_mnist_cnn", "cnn", 0, 0.91, [[5, 1], [0, 4]], [2.0]),
        fake_run("fashion_mnist_mlp_regularized", "mlp", 0, 0.89, [[4, 2], [1, 3]], [1.0]),
    ]
    runs.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "report"
    assert (
        report_command.main(["architectures", "--out", str(out), "--runs", str(runs), "--wandb_mode", "disabled"]) == 0
    )
    text = (out / "report.md").read_text()
    assert "## Architectures compared" in text and "| fashion_mnist_cnn | cnn | fashion_mnist |" in text
    assert "91.00 ± 0.00" in text and (out / "architectures_confusion.png").stat().st_size > 0


def test_report_architectures_without_a_runs_file_says_how_to_make_one(tmp_path):
    with pytest.raises(SystemExit, match="no results file"):
        report_command.main(["architectures", "--out", str(tmp_path), "--runs", str(tmp_path / "none.jsonl")])


def test_report_confusion_feeds_a_saved_cnn_images(tiny_data, tmp_path):
    path = str(tmp_path / "cnn.npz")
    build_cnn(conv_channels=[4], rng=0).save(path)
    argv = ["confusion", "--out", str(tmp_path / "report"), "--model", path, "--data_dir", str(tiny_data)]
    assert report_command.main([*argv, "--wandb_mode", "disabled"]) == 0
    assert f"on the {N_TEST} test images" in (tmp_path / "report" / "report.md").read_text()
