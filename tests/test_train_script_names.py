"""scripts/train.py accepts every name the library accepts, says when a flag has no effect,
refuses a negative seed, and imports --plugin modules before it checks -o."""

import subprocess
import sys

import pytest

from scripts import train as train_script
from tinygrad_free import config as C
from tinygrad_free import init, nn, optim
from tinygrad_free import report as R
from tinygrad_free.optim import OPTIMIZERS, schedule


def parse(*argv):
    return train_script.parse_args(list(argv))


@pytest.mark.parametrize(
    "flag, dest, table",
    [
        ("-l", "loss", nn.loss.LOSSES),
        ("-a", "activation", nn.activation.CODES),
        ("-w_i", "weight_init", init.INITIALIZERS),
        ("--lr_schedule", "lr_schedule", schedule.SCHEDULES),
    ],
)
def test_every_name_of_the_librarys_tables_is_accepted_in_any_case(flag, dest, table):
    for name in table.aliases():
        for spelling in (name, name.upper()):
            chosen = getattr(parse(flag, spelling), dest)
            assert table.get(chosen) is table.get(name) and chosen in table.names()


@pytest.mark.parametrize(
    "argv, dest, expected",
    [
        (["-a", "linear"], "activation", "identity"),
        (["-l", "MSE"], "loss", "mean_squared_error"),
        (["-l", "crossentropy"], "loss", "cross_entropy"),
        (["-w_i", "Glorot"], "weight_init", "xavier"),
        (["-w_i", "kaiming"], "weight_init", "he"),
    ],
)
def test_aliases_resolve_to_the_name_run_names_use(argv, dest, expected):
    args = parse(*argv)
    assert getattr(args, dest) == expected
    assert train_script.run_name(args).endswith("_mse") == (expected == "mean_squared_error")


def test_nesterov_and_nag_give_one_optimizer_name_in_the_run_name():
    nesterov, nag = parse("-o", "nesterov"), parse("-o", "NAG")
    assert nesterov.optimizer == nag.optimizer == "nag"
    assert train_script.run_name(nesterov) == train_script.run_name(nag) and "_opt_nag_" in train_script.run_name(nag)
    assert C.trial_run_name({"optimizer": "nesterov"}) == C.trial_run_name({"optimizer": "nag"})


def test_every_registered_optimizer_name_resolves_to_the_name_it_was_registered_under():
    for name in optim.available():
        assert parse("-o", name).optimizer == optim.get(name).name
        assert C.check_value("optimizer", name.upper()) == optim.get(name).name


def test_the_report_groups_runs_of_an_optimizer_alias_with_its_canonical_name():
    lines = []
    for seed, flag in enumerate(["nesterov", "nag"]):
        args = parse("-o", flag, "--seed", str(seed))
        config = {k: getattr(args, k) for k in C.DEFAULTS}
        lines.append(
            {
                "run_name": train_script.run_name(args),
                "recipe": args.config,
                "config": config,
                "dataset": args.dataset,
                "seed": seed,
                "test_accuracy": 0.8,
                "epoch_seconds": [1.0],
                "confusion": [[1, 0], [0, 1]],
            }
        )
    (group,) = R.group_runs(lines)
    assert group["runs"] == 2 and group["seeds"] == [0, 1] and "_opt_nag_" in group["run_name"]


def test_an_unknown_name_lists_every_accepted_one(capsys):
    with pytest.raises(SystemExit):
        parse("-a", "swish")
    assert (
        "invalid choice 'swish' (choose from identity, linear, sigmoid, tanh, relu, gelu, gelu_tanh)"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "argv, warnings",
    [
        (
            ["-o", "sgd", "-m", "0.9"],
            ["warning: -m/--momentum 0.9 is ignored: optimizer sgd has no momentum; it is used by momentum, nag"],
        ),
        (
            ["-o", "momentum", "-beta1", "0.8", "-eps", "1e-6"],
            [
                "warning: -beta1/--beta1 0.8 is ignored: optimizer momentum has no beta1; "
                "it is used by adam, adamw, eve, nadam",
                "warning: -eps/--epsilon 1e-06 is ignored: optimizer momentum has no eps; "
                "it is used by adam, adamw, eve, nadam, rmsprop",
            ],
        ),
        (["-o", "nesterov", "-m", "0.5"], []),
        (["-o", "sgd"], []),  # the config's momentum, beta1, ... are not the user's flags
    ],
)
def test_optimizer_flags_the_optimizer_ignores_are_warned_about_on_stderr(argv, warnings, capsys):
    parse(*argv)
    captured = capsys.readouterr()
    assert captured.err.splitlines() == warnings
    assert captured.out == ""


def test_a_negative_seed_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        parse("--seed", "-1")
    assert e.value.code == 2
    assert "argument --seed: must be a non-negative integer, got -1" in capsys.readouterr().err


PLUGIN = '''
from tinygrad_free import optim
from tinygrad_free.optim.sgd import SGD


@optim.register("{name}")
class HalfStepSGD(SGD):
    """SGD at half the learning rate (a user's optimizer outside the package)."""

    def update(self, w, g, state):
        w -= 0.5 * self.lr * g
'''


@pytest.fixture
def plugin_file(tmp_path):
    name = "halfsgd"
    path = tmp_path / "my_optimizers.py"
    path.write_text(PLUGIN.format(name=name))
    yield name, path
    if name in OPTIMIZERS:
        OPTIMIZERS.remove(name)
    for key in [k for k, m in sys.modules.items() if getattr(m, "__file__", None) == str(path)]:
        del sys.modules[key]


def test_a_plugin_file_registers_an_optimizer_that_o_then_accepts(plugin_file, capsys):
    name, path = plugin_file
    with pytest.raises(SystemExit):
        parse("-o", name)
    assert f"invalid choice '{name}'" in capsys.readouterr().err
    args = parse("--plugin", str(path), "-o", name.upper(), "-lr", "0.1")
    assert args.optimizer == name and args.plugin == [str(path)]
    model = nn.Sequential(nn.Dense(2, 2))
    opt = optim.create(args.optimizer, model.parameters(), **train_script.optimizer_kwargs(args))
    assert type(opt).__name__ == "HalfStepSGD" and opt.lr == 0.1


def test_a_plugin_module_name_is_imported_from_the_current_folder(plugin_file, monkeypatch):
    name, path = plugin_file
    monkeypatch.chdir(path.parent)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(path.parent))])
    assert parse("--plugin", path.stem, "-o", name).optimizer == name


@pytest.mark.parametrize(
    "source, match",
    [
        (None, "plugin {path}: no such file"),
        ("1 / 0\n", "plugin {path} raised ZeroDivisionError while importing: division by zero"),
    ],
)
def test_a_broken_plugin_is_named_with_its_error(tmp_path, source, match, capsys):
    path = tmp_path / "broken.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(SystemExit) as e:
        parse("--plugin", str(path))
    assert e.value.code == 2
    assert match.format(path=path) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--plugin", "no_such_module_here")
    assert "plugin no_such_module_here: no module named 'no_such_module_here'" in capsys.readouterr().err


def test_a_plugin_optimizer_trains_from_the_command_line(plugin_file):
    name, path = plugin_file
    out = subprocess.run(
        [
            sys.executable,
            train_script.__file__,
            "--plugin",
            str(path),
            "-o",
            name,
            "-e",
            "1",
            "-nhl",
            "1",
            "-sz",
            "16",
            "--limit",
            "500",
            "--wandb_mode",
            "disabled",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert f"_opt_{name}_" in out.stdout and out.stdout.strip().splitlines()[-1].startswith("test_accuracy: ")
