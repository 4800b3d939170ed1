"""scripts/train.py: the assignment's flags, its defaults, bad values, and an end-to-end run."""

import subprocess
import sys

import pytest

from scripts import train as train_script
from tinygrad_free import recipes
from tinygrad_free.recipes import load_config

SCRIPT = train_script.__file__


def parse(*argv):
    return train_script.parse_args(list(argv))


def test_defaults_are_the_best_configuration_file():
    args, best = parse(), load_config("fashion_mnist_best")
    for key, value in best.items():
        assert getattr(args, key) == (value.lower() if isinstance(value, str) else value), key


@pytest.mark.parametrize(
    "flag, values",
    [
        ("-d", ["mnist", "fashion_mnist"]),
        ("-l", ["mean_squared_error", "cross_entropy"]),
        ("-o", ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "nesterov", "eve"]),
        ("-w_i", ["random", "Xavier", "xavier", "he"]),
        ("-a", ["identity", "sigmoid", "tanh", "ReLU", "relu"]),
    ],
)
def test_every_choice_parses_case_insensitively(flag, values):
    for value in values:
        assert getattr(
            parse(flag, value),
            {"-d": "dataset", "-l": "loss", "-o": "optimizer", "-w_i": "weight_init", "-a": "activation"}[flag],
        ) == {"nesterov": "nag"}.get(value.lower(), value.lower())  # an alias gives its canonical name


def test_short_and_long_forms_set_the_same_options():
    short = parse(
        "-wp",
        "p",
        "-we",
        "e",
        "-e",
        "3",
        "-b",
        "16",
        "-lr",
        "0.01",
        "-m",
        "0.5",
        "-beta",
        "0.8",
        "-beta1",
        "0.7",
        "-beta2",
        "0.99",
        "-eps",
        "1e-6",
        "-w_d",
        "0.0005",
        "-nhl",
        "4",
        "-sz",
        "64",
    )
    long = parse(
        "--wandb_project",
        "p",
        "--wandb_entity",
        "e",
        "--epochs",
        "3",
        "--batch_size",
        "16",
        "--learning_rate",
        "0.01",
        "--momentum",
        "0.5",
        "--beta",
        "0.8",
        "--beta1",
        "0.7",
        "--beta2",
        "0.99",
        "--epsilon",
        "1e-6",
        "--weight_decay",
        "0.0005",
        "--num_layers",
        "4",
        "--hidden_size",
        "64",
    )
    assert vars(short) == vars(long)
    assert (short.epochs, short.batch_size, short.num_layers, short.hidden_size) == (3, 16, 4, 64)


def test_the_parser_takes_every_flag_it_took_with_the_same_spelling():
    flags = {s: a.dest for a in train_script.build_parser()._actions for s in a.option_strings}
    assignment = "-wp -we -d -e -b -l -o -lr -m -beta -beta1 -beta2 -eps -w_d -w_i -nhl -sz -a".split()
    dests = "wandb_project wandb_entity dataset epochs batch_size loss optimizer learning_rate momentum beta beta1 "
    dests += "beta2 epsilon weight_decay weight_init num_layers hidden_size activation"
    assert {flag: flags[flag] for flag in assignment} == dict(zip(assignment, dests.split()))
    assert all(flags[f"--{dest}"] == dest for dest in dests.split())
    others = "config lr_schedule shift flip seed architecture conv_channels kernel_size batch_norm dropout threads "
    others += (
        "data_dir results save backup plugin wandb_mode limit stem patch_size d_model depth heads mlp_ratio pooling "
    )
    others += "label_smoothing"
    assert all(flags[f"--{dest}"] == dest for dest in others.split())
    assert flags["--no-flip"] == "flip" and flags["--no-batch_norm"] == "batch_norm"
    assert len(flags) == len(assignment) + len(dests.split()) + len(others.split()) + 4  # -h, --help, two --no-


@pytest.mark.parametrize(
    "argv",
    [
        ["-o", "adagrad"],
        ["-a", "swish"],
        ["-l", "hinge"],
        ["-d", "cifar10"],
        ["-w_i", "orthogonal"],
        ["-b", "0"],
        ["-e", "-1"],
        ["-sz", "-5"],
        ["-nhl", "-1"],
        ["-lr", "0"],
        ["-lr", "-0.1"],
        ["-w_d", "-1"],
        ["-beta1", "1.5"],
        ["--wandb_mode", "sometimes"],
        ["--config", "no_such_config"],
        ["--threads", "0"],
        ["--threads", "two"],
    ],
)
def test_bad_flags_exit_with_argparse_code_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_run_name_tells_the_config():
    name = train_script.run_name(parse("-nhl", "3", "-b", "16", "-a", "tanh", "-o", "nadam", "-lr", "1e-3"))
    assert name.startswith("hl_3_sz_") and "_bs_16_ac_tanh_opt_nadam_lr_1e-3" in name


def test_shift_flag_sets_the_augmentation_and_names_the_run():
    assert parse().shift == 0 and parse("--shift", "2").shift == 2
    assert train_script.run_name(parse("--shift", "1")).endswith("_shift1")
    assert "shift" not in train_script.run_name(parse("--shift", "0"))
    for bad in ("-1", "1.5"):
        with pytest.raises(SystemExit):
            parse("--shift", bad)


def test_optimizer_gets_only_its_own_hyperparameters():
    kw = train_script.optimizer_kwargs(parse("-o", "rmsprop", "-beta", "0.8", "-beta1", "0.5", "-m", "0.3"))
    assert kw["beta"] == 0.8 and "beta1" not in kw and "momentum" not in kw


@pytest.mark.parametrize("argv, expected", [([], "auto"), (["--threads", "2"], 2), (["--threads=1"], 1)])
def test_threads_flag_sets_the_trainers_threads_and_auto_without_it(argv, expected, monkeypatch):
    from tinygrad_free import training_run
    from tinygrad_free.train import Trainer

    seen = []

    class Spy(Trainer):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("threads"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(training_run, "Trainer", Spy)  # build_run makes every trainer
    code = train_script.main(["-e", "1", "-nhl", "1", "-sz", "8", "--limit", "500", "--wandb_mode", "disabled", *argv])
    assert code == 0 and seen == [expected]


def test_end_to_end_one_epoch_on_a_subset_prints_test_accuracy_last(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "-e",
            "1",
            "-nhl",
            "1",
            "-sz",
            "32",
            "--limit",
            "3000",
            "--wandb_mode",
            "disabled",
            "--save",
            str(tmp_path / "best.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert any(line.startswith("epoch   1") for line in lines)
    assert lines[-1].startswith("test_accuracy: ")
    assert 0.6 < float(lines[-1].split()[-1]) <= 1.0
    assert (tmp_path / "best.npz").exists()


def test_diverging_configuration_reports_diverged(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "-e",
            "2",
            "-nhl",
            "1",
            "-sz",
            "16",
            "-o",
            "sgd",
            "-lr",
            "10000",
            "-a",
            "identity",
            "--limit",
            "1000",
            "--wandb_mode",
            "disabled",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "diverged" in out.stdout and out.stdout.strip().splitlines()[-1] == "test_accuracy: nan"


#: The recipes beyond the assignment's space (a CNN, a wider regularised MLP, more epochs).
BEYOND_THE_ASSIGNMENT = (
    "fashion_mnist_cnn",
    "mnist_cnn",
    "fashion_mnist_mlp_regularized",
    "mnist_lstm",
    "fashion_mnist_vit",
    "mnist_vit",
)


@pytest.mark.parametrize("config", recipes.available())
def test_every_shipped_config_parses_completely(config):
    args = parse("--config", config)
    assert args.dataset in ("mnist", "fashion_mnist") and args.architecture in ("mlp", "cnn", "lstm", "vit")
    if config not in BEYOND_THE_ASSIGNMENT:
        assert args.architecture == "mlp" and args.epochs <= 10
        assert args.num_layers <= 5 and args.hidden_size <= 128  # the assignment's space


def test_wandb_online_without_credentials_falls_back_to_offline(monkeypatch, tmp_path, capsys):
    from tinygrad_free import tracking

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.resolve_mode("online") == "offline"
    assert tracking.resolve_mode(None) == "offline"
    assert "wandb sync" in capsys.readouterr().out
    assert tracking.resolve_mode("disabled") == "disabled"
