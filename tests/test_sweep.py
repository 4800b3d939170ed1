"""Sweeps: wandb YAML -> Optuna translation, the local backend (workers, resume, divergence),
the results file, run names, and the wandb backend with wandb mocked."""

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from tinygrad_free import sweep as S  # noqa: E402
from tinygrad_free import tracking  # noqa: E402
from tinygrad_free.sweep.recovery import machine_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

# Tiny and fast: every trial trains a 16-unit network for one epoch on 300-500 images.
TINY = """
name: {name}
method: {method}
metric: {{name: val_accuracy, goal: maximize}}
parameters:
  epochs: {{value: 1}}
  num_layers: {{value: 1}}
  hidden_size: {{value: 16}}
  batch_size: {{value: 64}}
  weight_init: {{value: xavier}}
  activation: {{values: [tanh, ReLU]}}
  optimizer: {{values: [adam, nadam, rmsprop]}}
  learning_rate: {{values: [0.001, 0.003]}}
"""


def write(tmp_path, text, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def parse(params, method="random", **top):
    return S.parse_sweep(
        {"method": method, "metric": {"name": "val_accuracy", "goal": "maximize"}, "parameters": params, **top},
        name="t",
    )


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# YAML -> Optuna search space
# ---------------------------------------------------------------------------------------------


def test_values_become_categorical_with_canonical_names():
    spec = parse(
        {"activation": {"values": ["sigmoid", "tanh", "ReLU"]}, "weight_init": {"values": ["random", "Xavier"]}}
    )
    d = spec.distributions()
    assert d["activation"] == CategoricalDistribution(("sigmoid", "tanh", "relu"))
    assert d["weight_init"] == CategoricalDistribution(("random", "xavier"))
    assert spec.params["activation"].kind == "categorical"


def test_an_optimizer_and_its_alias_are_one_value_of_a_sweep():
    assert parse({"optimizer": {"values": ["NAG", "adam"]}}).distributions()["optimizer"].choices == ("nag", "adam")
    with pytest.raises(ValueError, match="parameter 'optimizer': value 'nesterov' is listed twice"):
        parse({"optimizer": {"values": ["nag", "nesterov"]}})
    assert S.run_name({"optimizer": "nesterov"}) == S.run_name({"optimizer": "nag"})


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"architecture": {"value": "cnn"}, "num_layers": {"values": [2, 3]}},
            "parameters: num_layers applies to architecture mlp or lstm only, but the architecture is cnn",
        ),
        (
            {"kernel_size": {"value": 3}},
            "parameters: kernel_size applies to architecture cnn only, but the architecture is mlp",
        ),
        (
            {"architecture": {"values": ["mlp", "cnn"]}, "conv_channels": {"values": [[8], [16]]}},
            "conv_channels applies to architecture cnn only, but the architecture is mlp",
        ),
    ],
)
def test_a_sweep_parameter_of_another_architecture_is_refused_when_the_sweep_is_read(params, message):
    with pytest.raises(ValueError, match=message):
        parse(params)
    cnn = parse({"architecture": {"value": "cnn"}, "conv_channels": {"values": [[8], [16]]}})
    assert cnn.params["conv_channels"].choices() == [[8], [16]]


def test_value_is_a_constant_and_not_sampled():
    spec = parse({"epochs": {"value": 3}, "optimizer": {"values": ["adam", "sgd"]}})
    assert "epochs" not in spec.distributions()
    assert spec.constants() == {"epochs": 3}
    assert spec.varied == ["optimizer"]


@pytest.mark.parametrize(
    "key, spec, expected",
    [
        ("num_layers", {"min": 1, "max": 4}, IntDistribution(1, 4)),  # both ints -> int_uniform
        ("weight_decay", {"min": 0.0, "max": 0.5}, FloatDistribution(0.0, 0.5)),  # otherwise uniform
        ("num_layers", {"min": 2, "max": 6, "distribution": "int_uniform"}, IntDistribution(2, 6)),
        ("momentum", {"min": 0.1, "max": 0.9, "distribution": "uniform"}, FloatDistribution(0.1, 0.9)),
        (
            "weight_decay",
            {"min": 0.0, "max": 0.5, "distribution": "q_uniform", "q": 0.1},
            FloatDistribution(0.0, 0.5, step=0.1),
        ),
        (
            "learning_rate",
            {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"},
            FloatDistribution(1e-4, 1e-2, log=True),
        ),
        (
            "learning_rate",
            {"min": math.log(1e-4), "max": math.log(1e-2), "distribution": "log_uniform"},
            FloatDistribution(1e-4, 1e-2, log=True),
        ),  # wandb: bounds are exponents
        (
            "learning_rate",
            {"min": 1e-4, "max": 1e-2, "distribution": "q_log_uniform_values", "q": 1e-4},
            FloatDistribution(1e-4, 1e-2, log=True),
        ),  # q applied after sampling
    ],
)
def test_each_distribution_kind(key, spec, expected):
    got = parse({key: spec}).distributions()[key]
    assert type(got) is type(expected)
    assert got.low == pytest.approx(expected.low) and got.high == pytest.approx(expected.high)
    assert got.log == expected.log and got.step == expected.step


def test_suggested_values_respect_bounds_and_q():
    spec = parse(
        {
            "learning_rate": {"min": 1e-4, "max": 1e-2, "distribution": "q_log_uniform_values", "q": 1e-4},
            "num_layers": {"min": 1, "max": 3},
            "momentum": {"min": 0.5, "max": 0.9},
            "activation": {"values": ["tanh", "relu"]},
            "epochs": {"value": 2},
        }
    )
    study = optuna.create_study(sampler=S.make_sampler(spec, seed=0))
    for _ in range(30):
        p = S.suggest_params(study.ask(), spec)
        assert 1e-4 <= p["learning_rate"] <= 1e-2
        assert abs(p["learning_rate"] / 1e-4 - round(p["learning_rate"] / 1e-4)) < 1e-6
        assert p["num_layers"] in (1, 2, 3) and 0.5 <= p["momentum"] <= 0.9
        assert p["activation"] in ("tanh", "relu") and p["epochs"] == 2


def test_list_values_survive_the_round_trip():
    spec = parse({"hidden_size": {"values": [[64, 32], 128]}})
    study = optuna.create_study(sampler=S.make_sampler(spec, seed=1))
    seen = {json.dumps(S.suggest_params(study.ask(), spec)["hidden_size"]) for _ in range(20)}
    assert seen == {"[64, 32]", "128"}


def test_grid_enumerates_discrete_parameters():
    spec = parse(
        {
            "num_layers": {"min": 1, "max": 3},
            "weight_decay": {"min": 0.0, "max": 0.2, "distribution": "q_uniform", "q": 0.1},
            "optimizer": {"values": ["adam", "sgd"]},
            "epochs": {"value": 1},
        },
        method="grid",
    )
    assert spec.grid() == {"num_layers": [1, 2, 3], "weight_decay": [0.0, 0.1, 0.2], "optimizer": ["adam", "sgd"]}
    assert spec.grid_size() == 18
    assert isinstance(S.make_sampler(spec), optuna.samplers.GridSampler)


@pytest.mark.parametrize("method, cls", [("random", "RandomSampler"), ("grid", "GridSampler"), ("bayes", "TPESampler")])
def test_sampler_for_each_method(method, cls):
    spec = parse({"optimizer": {"values": ["adam", "sgd"]}}, method=method)
    assert type(S.make_sampler(spec, seed=0)).__name__ == cls


def test_pruners_from_early_terminate():
    none = parse({"optimizer": {"values": ["adam"]}})
    assert isinstance(S.make_pruner(none), optuna.pruners.NopPruner)
    hb = parse({"optimizer": {"values": ["adam"]}}, early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2})
    pruner = S.make_pruner(hb)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert pruner._min_resource == 2 and pruner._reduction_factor == 2
    # wandb's max_iter + s form: brackets at max_iter / eta**s.
    hb2 = parse({"optimizer": {"values": ["adam"]}}, early_terminate={"type": "hyperband", "max_iter": 27, "s": 2})
    assert S.make_pruner(hb2)._min_resource == 3
    med = parse({"optimizer": {"values": ["adam"]}}, early_terminate={"type": "median", "min_iter": 2})
    assert isinstance(S.make_pruner(med), optuna.pruners.MedianPruner)


@pytest.mark.parametrize(
    "params, top, message",
    [
        (
            {"optimizer": {"values": ["adam"]}},
            {"method": "hyperopt"},
            "unknown sweep method 'hyperopt'; choose one of random, grid, bayes",
        ),
        (
            {"learning_rate": {"min": 0.1, "max": 1.0, "distribution": "gaussian"}},
            {},
            "unknown distribution 'gaussian'",
        ),
        ({"learning_rate": {"min": 0.1, "max": 1.0, "distribution": "normal"}}, {}, "wandb backend only"),
        ({"learning_rate": {"min": 0.1}}, {}, "both 'min' and 'max'"),
        ({"learning_rate": {"min": 0.1, "max": 0.01}}, {}, "greater than max"),
        ({"learning_rate": {"values": [0.1], "step": 2}}, {}, "unknown key(s) ['step']"),
        ({"dropouts": {"values": [0.1]}}, {}, "unknown parameter 'dropouts'"),
        ({"activation": {"values": ["swish"]}}, {}, "choose one of identity, sigmoid, tanh, relu"),
        ({"optimizer": {"values": ["lion"]}}, {}, "unknown value 'lion'"),
        ({"weight_decay": {"min": 0.0, "max": 0.1, "distribution": "log_uniform_values"}}, {}, "needs min > 0"),
        ({"weight_decay": {"min": 0.0, "max": 0.1}}, {"method": "grid"}, "grid search needs a finite set"),
        ({"optimizer": {"values": ["adam"]}}, {"metric": {"name": "f1", "goal": "maximize"}}, "unknown metric 'f1'"),
        (
            {"optimizer": {"values": ["adam"]}},
            {"metric": {"name": "val_loss", "goal": "lowest"}},
            "unknown metric goal",
        ),
        ({"optimizer": {"values": ["adam"]}}, {"early_terminate": {"type": "asha"}}, "unknown type 'asha'"),
        ({"optimizer": {"parameters": {"x": {"value": 1}}}}, {}, "nested parameters"),
        ({"optimizer": "adam"}, {}, "expected a mapping"),
    ],
)
def test_bad_sweep_files_are_named_clearly(params, top, message):
    raw = {"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"}, "parameters": params, **top}
    with pytest.raises(ValueError) as e:
        S.parse_sweep(raw)
    assert message in str(e.value)


def test_yaml_reads_1e_minus_3_as_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as a string; the sweep must still see a number.
    path = write(
        tmp_path,
        "method: random\nparameters:\n  learning_rate: {values: [1e-3, 1e-4]}\n"
        "  weight_decay: {min: 1e-5, max: 1e-3, distribution: log_uniform_values}\n",
    )
    spec = S.load_sweep(path)
    assert spec.distributions()["learning_rate"].choices == (0.001, 0.0001)
    assert spec.distributions()["weight_decay"].low == pytest.approx(1e-5)
    assert (spec.metric, spec.goal) == ("val_accuracy", "maximize")  # no metric: the assignment's
    assert (
        S.parse_sweep({"method": "random", "metric": {"name": "val_loss"}, "parameters": {"epochs": {"value": 1}}}).goal
        == "minimize"
    )  # wandb's default goal


def test_shipped_assignment_sweep_is_the_assignments_space():
    spec = S.load_sweep(ROOT / "sweeps" / "assignment.yaml")
    assert spec.method == "random" and spec.metric == "val_accuracy" and spec.goal == "maximize"
    g = {k: d.choices for k, d in spec.distributions().items()}
    assert g == {
        "epochs": (5, 10),
        "num_layers": (3, 4, 5),
        "hidden_size": (32, 64, 128),
        "weight_decay": (0, 0.0005, 0.5),
        "learning_rate": (0.001, 0.0001),
        "optimizer": ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam"),
        "batch_size": (16, 32, 64),
        "weight_init": ("random", "xavier"),
        "activation": ("sigmoid", "tanh", "relu"),
    }
    quick = S.load_sweep(ROOT / "sweeps" / "quick.yaml")
    assert quick.early_terminate["type"] == "hyperband"
    assert max(quick.params["epochs"].choices()) <= 3


def test_overrides_and_method_replacement():
    spec = S.load_sweep(ROOT / "sweeps" / "assignment.yaml", overrides={"epochs": 1}, method="bayes")
    assert spec.constants()["epochs"] == 1 and spec.method == "bayes"
    assert isinstance(S.make_sampler(spec), optuna.samplers.TPESampler)


# ---------------------------------------------------------------------------------------------
# Configurations and run names
# ---------------------------------------------------------------------------------------------


def test_run_name_uses_the_training_cli_format():
    cfg = {
        "num_layers": 3,
        "hidden_size": 128,
        "batch_size": 16,
        "activation": "tanh",
        "optimizer": "nadam",
        "learning_rate": 1e-3,
        "weight_decay": 0.0005,
        "weight_init": "Xavier",
        "epochs": 5,
    }
    assert S.run_name(cfg) == "hl_3_sz_128_bs_16_ac_tanh_opt_nadam_lr_1e-3_wd_0.0005_init_xavier_ep_5"
    import train as train_cli

    args = train_cli.parse_args(
        [
            "--num_layers",
            "3",
            "--hidden_size",
            "128",
            "--batch_size",
            "16",
            "-a",
            "tanh",
            "-o",
            "nadam",
            "-lr",
            "0.001",
            "-w_d",
            "0.0005",
            "-w_i",
            "xavier",
            "-e",
            "5",
            "-l",
            "cross_entropy",
            "--lr_schedule",
            "constant",
        ]
    )
    assert S.run_name(cfg) == train_cli.run_name(args)
    # Options the name format does not show are appended when the sweep varies them.
    assert S.run_name({**cfg, "momentum": 0.8, "loss": "mse"}, varied=("momentum",)).endswith("_mse_mom_0.8")


def test_normalize_config_fills_defaults_and_rejects_unknown_options():
    cfg = S.normalize_config({"activation": "ReLU", "loss": "mse", "learning_rate": "3e-4"})
    assert cfg["activation"] == "relu" and cfg["loss"] == "mean_squared_error" and cfg["learning_rate"] == 3e-4
    assert set(cfg) == set(S.DEFAULTS)
    with pytest.raises(ValueError, match="unknown option.*dropouts.*may set: dataset, epochs"):
        S.normalize_config({"dropouts": 0.5})
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        S.normalize_config({"learning_rate": 0})


# ---------------------------------------------------------------------------------------------
# Results file
# ---------------------------------------------------------------------------------------------


def test_results_lines_are_whole_under_concurrent_appends(tmp_path):
    path = tmp_path / "r.jsonl"
    big = "x" * 20000  # larger than a pipe buffer: still one line

    def work(k):
        for i in range(25):
            S.append_jsonl(path, {"k": k, "i": i, "pad": big, "nan": float("nan"), "np": np.float32(0.5)})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recs = S.read_results(path)
    assert len(recs) == 100 and all(r["pad"] == big for r in recs)
    assert recs[0]["nan"] is None and recs[0]["np"] == 0.5  # strict JSON: NaN -> null
    with open(path, "a") as f:
        f.write('{"torn": ')  # a crash mid-line
    with pytest.warns(UserWarning, match="not valid JSON"):
        assert len(S.read_results(path)) == 100


# ---------------------------------------------------------------------------------------------
# Training one trial
# ---------------------------------------------------------------------------------------------


class FakeTrial:
    def __init__(self, prune_after):
        self.prune_after, self.reports = prune_after, []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return len(self.reports) >= self.prune_after


def test_pruning_callback_stops_training_and_marks_the_run_pruned():
    trial = FakeTrial(prune_after=1)
    cb = S.PruningCallback(trial, "val_accuracy", epochs=3)
    res = S.run_trial({"epochs": 3, "num_layers": 1, "hidden_size": 16}, limit=300, callbacks=[cb])
    assert res["status"] == "pruned" and res["epochs_run"] == 1 and cb.pruned_at == 1
    assert trial.reports[0][0] == 1 and 0 <= trial.reports[0][1] <= 1
    # The last epoch is reported but never pruned: the run is finished by then.
    trial = FakeTrial(prune_after=1)
    res = S.run_trial(
        {"epochs": 1, "num_layers": 1, "hidden_size": 16},
        limit=300,
        callbacks=[S.PruningCallback(trial, "val_accuracy", epochs=1)],
    )
    assert res["status"] == "completed" and len(trial.reports) == 1


def test_run_trial_summary():
    res = S.run_trial({"epochs": 2, "num_layers": 1, "hidden_size": 16, "lr_schedule": "cosine"}, limit=400)
    assert res["status"] == "completed" and res["epochs_run"] == 2 and res["train_size"] == 400
    assert res["val_accuracy"] == res["history"]["val_accuracy"][-1]
    assert res["val_accuracy_best"] == max(res["history"]["val_accuracy"])
    assert 0.1 < res["test_accuracy"] <= 1 and res["seconds"] > 0
    json.dumps(res, allow_nan=False)


def test_shift_is_a_sweepable_option_that_augments_the_training_images():
    base = {"epochs": 1, "num_layers": 1, "hidden_size": 16}
    plain, shifted = S.run_trial(base, limit=300), S.run_trial({**base, "shift": 1}, limit=300)
    again = S.run_trial({**base, "shift": 1}, limit=300)
    assert again["history"]["train_loss"] == shifted["history"]["train_loss"] != plain["history"]["train_loss"]
    assert S.run_name({**base, "shift": 1}).endswith("_shift1")
    with pytest.raises(ValueError, match="shift must be a non-negative integer"):
        S.normalize_config({"shift": -1})


# ---------------------------------------------------------------------------------------------
# Local backend
# ---------------------------------------------------------------------------------------------


def finished_trials(storage, name):
    study = optuna.load_study(study_name=name, storage=storage)
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_local_sweep_with_two_worker_processes(tmp_path):
    path = write(tmp_path, TINY.format(name="two", method="random"))
    spec = S.load_sweep(path)
    summary = S.run_local_sweep(spec, n_trials=3, workers=2, limit=500, sweep_path=path, verbose=False)
    assert summary.errors == []
    assert summary.storage == f"sqlite:///{tmp_path / 'two.db'}"
    recs = lines(tmp_path / "two.jsonl")
    assert len(recs) == 3 and summary.n_finished == 3
    # Two workers racing for the last trial must not start a fourth one.
    assert len(optuna.load_study(study_name="two", storage=summary.storage).trials) == 3
    assert {r["status"] for r in recs} == {"completed"}
    assert {r["worker"] for r in recs} <= {0, 1} and os.getpid() not in {r["pid"] for r in recs}
    for r in recs:
        assert r["run_name"].startswith("hl_1_sz_16_bs_64_ac_")
        assert r["config"]["hidden_size"] == 16 and r["limit"] == 500
        assert r["finished_at"] >= r["started_at"] and r["value"] == r["val_accuracy"]
        assert len(r["history"]["val_accuracy"]) == 1 and r["test_accuracy"] is not None
    assert summary.best["val_accuracy"] == max(r["val_accuracy"] for r in recs)


def test_cli_resumes_a_stopped_sweep(tmp_path, capsys):
    import sweep as cli

    path = write(tmp_path, TINY.format(name="resume", method="bayes"))
    db = tmp_path / "store" / "study.db"
    args = [
        str(path),
        "--backend",
        "local",
        "--storage",
        f"sqlite:///{db}",
        "--study_name",
        "resume",
        "--limit",
        "300",
        "--wandb_mode",
        "disabled",
        "--seed",
        "3",
    ]
    assert cli.main(args + ["--n_trials", "2"]) == 0
    assert "2 finished trials in study 'resume'" in capsys.readouterr().out
    results = tmp_path / "store" / "study-resume.jsonl"  # next to the study
    assert len(lines(results)) == 2
    assert cli.main(args + ["--n_trials", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 finished trials" in out and "best: hl_1_sz_16" in out
    assert len(lines(results)) == 3
    assert len(finished_trials(f"sqlite:///{db}", "resume")) == 3
    assert cli.main(args + ["--n_trials", "3"]) == 0  # already done: nothing runs
    assert len(lines(results)) == 3


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_trial_of_a_killed_process_is_failed_and_rerun(tmp_path):
    path = write(tmp_path, TINY.format(name="killed", method="random"))
    spec = S.load_sweep(path)
    storage = f"sqlite:///{tmp_path / 'killed.db'}"
    study = optuna.create_study(storage=S.open_storage(storage), study_name="killed", direction="maximize")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask()  # what a worker leaves behind when it is killed mid-trial
    params = S.suggest_params(trial, spec)
    trial.set_user_attr("machine", machine_id())
    trial.set_user_attr("pid", dead.pid)
    summary = S.run_local_sweep(spec, n_trials=1, storage=storage, limit=300, sweep_path=path, verbose=False)
    trials = optuna.load_study(study_name="killed", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].params == {k: v for k, v in params.items() if k in spec.distributions()}
    assert trials[1].system_attrs.get("failed_trial") == 0
    assert trials[1].user_attrs["pid"] == os.getpid()  # the re-run claimed the copied attributes
    assert summary.n_finished == 1 and len(lines(tmp_path / "killed.jsonl")) == 1


def test_diverged_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    path = write(
        tmp_path,
        """
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  epochs: {value: 1}
  num_layers: {value: 2}
  hidden_size: {value: 16}
  activation: {value: relu}
  optimizer: {value: sgd}
  learning_rate: {values: [1000.0, 0.01]}
""",
        name="diverge.yaml",
    )
    summary = S.run_local_sweep(S.load_sweep(path), n_trials=10, limit=500, sweep_path=path, verbose=False)
    recs = {r["config"]["learning_rate"]: r for r in lines(tmp_path / "diverge.jsonl")}
    assert set(recs) == {1000.0, 0.01}  # grid size caps n_trials
    bad, good = recs[1000.0], recs[0.01]
    assert bad["status"] == "diverged" and bad["value"] == 0.0 and bad["test_accuracy"] is None
    assert "NaN" in bad["message"]
    assert good["status"] == "completed" and good["value"] > 0
    assert summary.n_finished == 2 and summary.best["config"]["learning_rate"] == 0.01


def test_map_trials_returns_results_in_order():
    res = S.map_trials(
        [{"epochs": 1, "num_layers": 1, "hidden_size": 16, "loss": loss} for loss in ("cross_entropy", "mse")],
        limit=300,
        verbose=False,
    )
    assert [r["config"]["loss"] for r in res] == ["cross_entropy", "mean_squared_error"]
    bad = S.map_trials([{"epochs": 1, "optimizer": "nope"}], verbose=False)
    assert bad[0]["status"] == "failed" and "nope" in bad[0]["message"]


# ---------------------------------------------------------------------------------------------
# wandb backend (mocked: never the network)
# ---------------------------------------------------------------------------------------------


class FakeRun:
    def __init__(self, config):
        self.config, self.summary, self.logged, self.name, self.id = config, {}, [], None, "run-id"
        self.finished = None

    def log(self, d):
        self.logged.append(d)

    def finish(self, exit_code=0):
        self.finished = exit_code


def test_wandb_backend_with_wandb_mocked(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    path = write(tmp_path, TINY.format(name="wb", method="random"))
    calls, runs = {}, []
    choices = iter([{"activation": "ReLU", "optimizer": "adam"}, {"activation": "tanh", "optimizer": "nadam"}])

    def fake_sweep(config, project=None, entity=None):
        calls["sweep"] = (config, project, entity)
        return "abc123"

    def fake_agent(sweep_id, function=None, count=None, project=None, entity=None):
        calls["agent"] = (sweep_id, count, project)
        for _ in range(count):
            function()

    def fake_init(**kwargs):
        pick = next(choices)
        run = FakeRun(
            {
                "epochs": 1,
                "num_layers": 1,
                "hidden_size": 16,
                "batch_size": 64,
                "weight_init": "Xavier",
                "learning_rate": 0.001,
                **pick,
            }
        )
        runs.append(run)
        return run

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    monkeypatch.setattr(wandb, "agent", fake_agent)
    monkeypatch.setattr(wandb, "init", fake_init)
    small = _small_split()
    monkeypatch.setattr(S.trial, "get_data", lambda *a, **k: small)
    import sweep as cli

    assert cli.main([str(path), "--backend", "wandb", "--count", "2", "--n_trials", "2", "-wp", "proj"]) == 0
    config, project, _ = calls["sweep"]
    assert project == "proj" and config["method"] == "random" and config["run_cap"] == 2
    assert config["parameters"]["activation"] == {"values": ["tanh", "ReLU"]}
    assert calls["agent"] == ("abc123", 2, "proj")
    recs = lines(tmp_path / "abc123.jsonl")
    assert [r["run_name"] for r in recs] == [r.name for r in runs]
    assert runs[0].name.startswith("hl_1_sz_16_bs_64_ac_relu_opt_adam_lr_1e-3")
    assert all(r["backend"] == "wandb" and r["status"] == "completed" for r in recs)
    assert all(run.logged and run.summary["status"] == "completed" and run.finished == 0 for run in runs)


_SPLIT = None


def _small_split():
    global _SPLIT
    if _SPLIT is None:
        from tinygrad_free.data import Split

        full = S.get_data()
        _SPLIT = Split(
            full.x_train[:300],
            full.y_train[:300],
            full.x_val[:500],
            full.y_val[:500],
            full.x_test[:500],
            full.y_test[:500],
            full.class_names,
        )
    return _SPLIT


def test_default_backend_and_wandb_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert not tracking.wandb_logged_in()
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password x\n")
    assert tracking.wandb_logged_in()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.default_wandb_mode() == "disabled"


def test_cli_errors_are_clear(tmp_path, capsys):
    import sweep as cli

    with pytest.raises(SystemExit):
        cli.main([str(tmp_path / "missing.yaml"), "--backend", "local"])
    assert "no sweep file" in capsys.readouterr().err
    path = write(tmp_path, TINY.format(name="e", method="random"))
    with pytest.raises(SystemExit):
        cli.main([str(path), "--set", "dropouts=0.5"])
    assert "unknown option 'dropouts'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([str(path), "--backend", "local", "--sweep_id", "x"])
    assert "--backend wandb only" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_export_writes_the_workers_lines_from_the_study_alone(tmp_path, monkeypatch, capsys):
    import sweep as cli

    path = write(tmp_path, TINY.format(name="exp", method="random"))
    spec = S.load_sweep(path)
    storage = f"sqlite:///{tmp_path / 'exp.db'}"
    study = optuna.create_study(storage=S.open_storage(storage), study_name="exp", direction="maximize")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask()  # trial 0: its worker was killed before it recorded anything
    trial.set_user_attr("machine", machine_id())
    trial.set_user_attr("pid", dead.pid)
    real, calls = S.run_trial, []

    def crash_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(S.trial, "run_trial", crash_once)
    S.run_local_sweep(spec, n_trials=2, storage=storage, limit=300, sweep_path=path, verbose=False)
    local = lines(tmp_path / "exp.jsonl")
    assert [(r["trial"], r["status"]) for r in local] == [(1, "failed"), (2, "completed"), (3, "completed")]
    (tmp_path / "exp.jsonl").unlink()  # the export needs only the study
    out = tmp_path / "gathered" / "all.jsonl"
    assert cli.main([str(path), "--storage", storage, "--export", str(out)]) == 0
    assert (
        f"exported 3 trials of study 'exp' to {out} (3 from {machine_id()}); 1 unfinished or killed trials left out"
    ) in capsys.readouterr().out
    assert lines(out) == local
    assert "simulated crash" in lines(out)[0]["message"]


def test_export_errors_are_clear(tmp_path, capsys):
    import sweep as cli

    path = write(tmp_path, TINY.format(name="none", method="random"))
    with pytest.raises(SystemExit):
        cli.main([str(path), "--export", str(tmp_path / "out.jsonl")])
    assert f"no study database at sqlite:///{tmp_path / 'none.db'}" in capsys.readouterr().err
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'none.db'}", study_name="other")
    with pytest.raises(SystemExit):
        cli.main([str(path), "--export", str(tmp_path / "out.jsonl")])
    assert "holds no study 'none'; its studies: other" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([str(path), "--backend", "wandb", "--export", str(tmp_path / "out.jsonl")])
    assert "--export apply to --backend local only" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
