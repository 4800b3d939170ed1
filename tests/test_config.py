"""tinygrad_free.config is the one place a configuration is read: the same names are accepted and
resolved alike by scripts/train.py and by sweeps (from the registries of init, nn and optim), and
the same configuration builds the same model, optimizer and training run from either."""

import numpy as np
import pytest

from scripts import train as train_script
from tinygrad_free import config as C
from tinygrad_free import init, nn, optim, training_run
from tinygrad_free.data import Split
from tinygrad_free.optim import schedule

FLAGS = {
    "loss": "-l",
    "activation": "-a",
    "weight_init": "-w_i",
    "lr_schedule": "--lr_schedule",
    "optimizer": "-o",
    "dataset": "-d",
}


@pytest.mark.parametrize(
    "option, registry",
    [
        ("loss", nn.loss.LOSSES),
        ("activation", nn.activation.CODES),
        ("weight_init", init.INITIALIZERS),
        ("lr_schedule", schedule.SCHEDULES),
        ("optimizer", optim.OPTIMIZERS),
    ],
)
def test_the_alias_table_is_built_from_the_librarys_registries(option, registry):
    table = C.aliases()[option]
    assert set(table) == set(registry.aliases())
    for name, canonical in table.items():
        assert registry.get(canonical) is registry.get(name) and canonical in registry.names()


@pytest.mark.parametrize("option", sorted(FLAGS))
def test_train_script_and_sweeps_resolve_every_name_alike(option):
    for name in C.aliases()[option]:
        for spelling in (name, name.upper()):
            from_flag = getattr(train_script.parse_args([FLAGS[option], spelling]), option)
            assert C.check_value(option, spelling) == from_flag, (option, spelling)


@pytest.mark.parametrize(
    "option, alias, canonical",
    [
        ("weight_init", "kaiming", "he"),
        ("weight_init", "Glorot", "xavier"),
        ("activation", "linear", "identity"),
        ("loss", "MSE", "mean_squared_error"),
        ("dataset", "fashion-mnist", "fashion_mnist"),
    ],
)
def test_a_sweep_takes_the_aliases_the_script_takes(option, alias, canonical):
    assert C.normalize_config({option: alias})[option] == canonical


def test_an_unknown_name_lists_the_canonical_names():
    with pytest.raises(
        ValueError,
        match=r"weight_init: unknown value 'orthogonal'; choose one of random, xavier, he "
        r"\(any case\)",
    ):
        C.check_value("weight_init", "orthogonal")


def test_optimizer_kwargs_keep_only_what_the_optimizer_has_and_what_is_set():
    base = {
        "optimizer": "rmsprop",
        "learning_rate": 0.01,
        "weight_decay": None,
        "beta": 0.8,
        "beta1": 0.5,
        "momentum": None,
    }
    assert training_run.optimizer_kwargs(base) == {"lr": 0.01, "weight_decay": 0.0, "beta": 0.8}
    assert training_run.optimizer_kwargs({**base, "optimizer": "momentum", "momentum": 0.7}) == {
        "lr": 0.01,
        "weight_decay": 0.0,
        "momentum": 0.7,
    }


def _tiny_split(rng):
    x = rng.random((40, 16), dtype=np.float32)
    y = rng.integers(0, 3, 40)
    return Split(x[:24], y[:24], x[24:32], y[24:32], x[32:], y[32:], ("a", "b", "c"))


def test_the_script_and_a_sweep_trial_build_the_same_run(rng):
    data = _tiny_split(rng)
    argv = [
        "-nhl",
        "2",
        "-sz",
        "8",
        "-a",
        "tanh",
        "-o",
        "adam",
        "-lr",
        "0.01",
        "-w_i",
        "he",
        "-e",
        "2",
        "-b",
        "8",
        "--lr_schedule",
        "cosine",
        "--shift",
        "1",
        "--seed",
        "3",
    ]
    args = train_script.parse_args(argv)
    trial = C.normalize_config({k: getattr(args, k) for k in C.DEFAULTS})
    runs = [training_run.build_run(cfg, data, limit=20, progress=False) for cfg in (args, trial)]
    a, b = ([p.data.copy() for p in r.model.parameters()] for r in runs)
    assert [x.shape for x in a] == [(16, 8), (8,), (8, 8), (8,), (8, 3), (3,)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert type(runs[0].optimizer) is type(runs[1].optimizer) is optim.Adam
    assert runs[0].optimizer.lr == runs[1].optimizer.lr == 0.01
    assert len(runs[0].x_train) == 20 and runs[0].augment.max_shift == runs[1].augment.max_shift == 1
    histories = [r.fit() for r in runs]
    assert histories[0].history["train_loss"] == histories[1].history["train_loss"]
    assert C.run_name(args) == C.trial_run_name(trial)


def test_hidden_size_may_list_the_widths():
    model = training_run.build_model(C.normalize_config({"hidden_size": [8, 4], "num_layers": 2}), 16, 3)
    assert [p.data.shape for p in model.parameters()][::2] == [(16, 8), (8, 4), (4, 3)]


def test_the_thread_variables_are_listed_once_and_the_script_leaves_them_to_the_policy():
    from tinygrad_free import threads
    from tinygrad_free.sweep import THREAD_VARIABLES

    assert THREAD_VARIABLES is threads.THREAD_VARIABLES
    assert not hasattr(train_script, "BLAS_THREAD_VARIABLES")


def test_the_option_table_is_consistent():
    from tinygrad_free import options as O

    assert list(C.DEFAULTS) == list(O.OPTIONS) and set(O.RUN_NAME_ORDER) == {n for n, o in O.OPTIONS.items() if o.tag}
    for name, o in O.OPTIONS.items():
        assert f"--{name}" in o.flags and o.unset in O.UNSET and set(o.architectures) <= set(O.ARCHITECTURES), name
        assert o.check(o.default, name) == o.default, name
    assert C.REQUIRED == (
        "dataset",
        "epochs",
        "batch_size",
        "loss",
        "optimizer",
        "learning_rate",
        "weight_init",
        "num_layers",
        "hidden_size",
        "activation",
    )
    assert C.HYPER == {"momentum": "momentum", "beta": "beta", "beta1": "beta1", "beta2": "beta2", "epsilon": "eps"}
    assert C.ARCHITECTURE_OPTIONS == {
        "mlp": ("num_layers", "hidden_size", "activation", "batch_norm"),
        "cnn": ("activation", "conv_channels", "kernel_size", "batch_norm"),
        "lstm": ("num_layers", "hidden_size"),
        "vit": ("activation", "stem", "patch_size", "d_model", "depth", "heads", "mlp_ratio", "pooling"),
    }


def test_an_option_added_to_the_table_reaches_the_flags_checks_sweeps_run_names_and_optimizer(monkeypatch, capsys):
    """Adding an option is one entry in tinygrad_free/options.py: here NAdam's momentum_decay."""
    from tinygrad_free import options as O

    option = O.Option(
        "momentum_decay",
        ("-md", "--momentum_decay"),
        O.non_negative,
        0.0,
        unset="library",
        hyperparameter="momentum_decay",
        short="md",
    )
    # The table's derived views are built at import; an edit of the file rebuilds them, a test patches them.
    monkeypatch.setitem(O.OPTIONS, option.name, option)
    monkeypatch.setitem(O.DEFAULTS, option.name, option.default)
    monkeypatch.setitem(O.HYPER, option.name, option.hyperparameter)
    args = train_script.parse_args(["-o", "nadam", "-md", "0.004"])
    assert args.momentum_decay == 0.004 and training_run.optimizer_kwargs(args)["momentum_decay"] == 0.004
    assert "--momentum_decay MOMENTUM_DECAY" in train_script.build_parser().format_help()
    assert train_script.parse_args([]).momentum_decay is None  # unset: NAdam's own default
    train_script.parse_args(["-o", "adam", "--momentum_decay", "0.004"])
    assert "-md/--momentum_decay 0.004 is ignored: optimizer adam has no momentum_decay" in capsys.readouterr().err
    with pytest.raises(ValueError, match="momentum_decay must be non-negative, got -1"):
        C.normalize_config({"momentum_decay": -1})
    assert C.trial_run_name({"momentum_decay": "4e-3"}, varied=("momentum_decay",)).endswith("_md_0.004")
    pytest.importorskip("optuna")
    from tinygrad_free import sweep as S

    spec = S.parse_sweep({"method": "grid", "parameters": {"momentum_decay": {"values": [0, "4e-3"]}}})
    assert spec.grid() == {"momentum_decay": [0.0, 0.004]}
