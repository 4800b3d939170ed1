"""Report figures (each a non-empty PNG from a small results file), the findings computed from
the data, and the report CLI end to end on tiny budgets."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from tinygrad_free import report as R  # noqa: E402
from tinygrad_free import sweep as S  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
PNG = b"\x89PNG\r\n\x1a\n"


def synthetic_records(n=60, seed=0):
    """A sweep with known structure: sgd is worse, sigmoid + random init stays at chance,
    relu + sgd sometimes diverges, and a few runs are pruned or failed."""
    rng = np.random.default_rng(seed)
    recs, t = [], 1_700_000_000.0
    for i in range(n):
        p = {
            "activation": str(rng.choice(["sigmoid", "tanh", "relu"])),
            "weight_init": str(rng.choice(["random", "xavier"])),
            "optimizer": str(rng.choice(["sgd", "adam", "nadam"])),
            "learning_rate": float(rng.choice([1e-3, 1e-4])),
            "num_layers": int(rng.choice([3, 4, 5])),
            "hidden_size": int(rng.choice([32, 64, 128])),
            "epochs": 2,
        }
        acc = (
            0.86
            - (0.10 if p["optimizer"] == "sgd" else 0)
            - (0.03 if p["learning_rate"] == 1e-4 else 0)
            + rng.normal(0, 0.01)
        )
        if p["activation"] == "sigmoid" and p["weight_init"] == "random":
            acc = 0.1 + rng.normal(0, 0.003)
        status = "completed"
        if p["optimizer"] == "sgd" and p["activation"] == "relu" and rng.random() < 0.5:
            status = "diverged"
        elif i % 17 == 5:
            status = "pruned"
        elif i == 7:
            status = "failed"
        start = t
        t += float(rng.uniform(5, 30))
        done = status in ("completed", "pruned")
        recs.append(
            {
                "study": "syn",
                "trial": i,
                "run_name": S.run_name(p),
                "status": status,
                "metric": "val_accuracy",
                "value": 0.0 if status == "diverged" else (acc if done else None),
                "val_accuracy": acc if done else None,
                "val_accuracy_best": acc if done else None,
                "test_accuracy": acc - 0.01 if done else None,
                "params": p,
                "config": S.normalize_config(p),
                "history": {"epoch": [1, 2], "val_accuracy": [acc - 0.05, acc], "val_loss": [0.6, 0.5]},
                "started_at": start,
                "finished_at": t,
                "seconds": t - start,
            }
        )
    return recs


@pytest.fixture(scope="module")
def records():
    return synthetic_records()


@pytest.fixture
def results_file(tmp_path, records):
    path = tmp_path / "syn.jsonl"
    for r in records:
        S.append_jsonl(path, r)
    return path


def assert_png(path, min_bytes=5000):
    data = Path(path).read_bytes()
    assert data[:8] == PNG and len(data) > min_bytes, path


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def test_sweep_figures_from_a_results_file(tmp_path, results_file):
    records = R.read_results(results_file)
    assert_png(R.plot_sweep_timeline(records, tmp_path / "timeline.png"))
    assert_png(R.plot_parallel_coordinates(records, tmp_path / "parallel.png"))
    assert_png(R.plot_param_importance(records, tmp_path / "importance.png"))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["importance.png", "parallel.png", "timeline.png"]
    assert not list(tmp_path.glob(".tmp-*")), "figures are renamed into place"


def test_figures_survive_degenerate_inputs(tmp_path):
    failed = [{"status": "failed", "params": {"optimizer": "adam"}}]
    for fn in (R.plot_sweep_timeline, R.plot_parallel_coordinates, R.plot_param_importance):
        assert_png(fn(failed, tmp_path / f"{fn.__name__}.png"), min_bytes=1000)
    assert "No completed runs" in " ".join(R.sweep_findings(failed))


def test_class_samples_grid(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(40, 28, 28), dtype=np.uint8)
    y = np.arange(40) % 10
    assert_png(R.plot_class_samples(x, y, [f"class {i}" for i in range(10)], tmp_path / "s.png", title="t"))
    flat = x.reshape(40, 784)[:9]  # class 9 missing: still drawn, labelled
    assert_png(R.plot_class_samples(flat, y[:9], [str(i) for i in range(10)], tmp_path / "s2.png"))


def test_confusion_figures_and_most_confused_pairs(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    pred = y.copy()
    pred[(y == 6) & (rng.random(2000) < 0.4)] = 0  # shirts called T-shirts
    pred[(y == 4) & (rng.random(2000) < 0.2)] = 2  # coats called pullovers
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (y, pred), 1)
    pairs = R.most_confused_pairs(cm, 3)
    assert [(i, j) for i, j, _ in pairs] == [(6, 0), (4, 2)]
    x = rng.random((2000, 784), dtype=np.float32)
    names = [f"c{i}" for i in range(10)]
    assert_png(R.plot_confusion(y, pred, names, tmp_path / "cm.png"), min_bytes=20000)
    assert_png(R.plot_confused_pairs(x, y, pred, names, tmp_path / "pairs.png", n_pairs=2, n_examples=3))


def synthetic_loss_runs(ce_gain=0.05, seeds=3):
    rng = np.random.default_rng(1)
    runs = []
    for label, base in (("tanh/adam/3x64", 0.80), ("relu/nadam/4x128", 0.82)):
        for loss in ("cross_entropy", "mean_squared_error"):
            for seed in range(seeds):
                top = base + (ce_gain if loss == "cross_entropy" else 0) + rng.normal(0, 0.002)
                acc = list(top - 0.1 * np.exp(-np.arange(4)))
                runs.append(
                    {
                        "label": label,
                        "loss": loss,
                        "seed": seed,
                        "status": "completed",
                        "history": {"val_accuracy": acc, "val_loss": list(1.0 / (np.arange(4) + 1))},
                    }
                )
    return runs


def test_loss_comparison_figure_and_conclusion(tmp_path):
    runs = synthetic_loss_runs()
    assert_png(R.plot_loss_comparison(runs, tmp_path / "losses.png"))
    text = R.loss_conclusion(runs)
    assert text.startswith("Cross-entropy ends with a clearly higher validation accuracy") and "+5.0 points" in text
    tie = R.loss_conclusion(synthetic_loss_runs(ce_gain=0.0))
    assert "within the seed-to-seed spread" in tie
    final, first = R.loss_summary(runs)
    assert final["tanh/adam/3x64"]["cross_entropy"][2] == 3


def test_table_png_and_markdown(tmp_path):
    cols, rows = ["#", "configuration", "MNIST test acc"], [[1, "hl_3_sz_128", 0.98123], [2, "a|b", None]]
    assert_png(R.plot_table(cols, rows, tmp_path / "t.png", title="MNIST"), min_bytes=2000)
    md = R.markdown_table(cols, rows)
    assert md.splitlines()[:3] == [
        "| # | configuration | MNIST test acc |",
        "|---|---|---|",
        "| 1 | hl_3_sz_128 | 0.9812 |",
    ]
    assert "a\\|b" in md


def test_figures_are_logged_to_an_active_wandb_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    logged = []
    monkeypatch.setattr(wandb, "run", object(), raising=False)
    monkeypatch.setattr(wandb, "log", lambda d: logged.append(d))
    monkeypatch.setattr(wandb, "Image", lambda p: ("image", p))
    path = R.plot_table(["a"], [[1]], tmp_path / "tbl.png")
    assert logged == [{"tbl": ("image", path)}]
    monkeypatch.setattr(wandb, "run", None)
    R.plot_table(["a"], [[1]], tmp_path / "tbl2.png")
    assert len(logged) == 1


# ---------------------------------------------------------------------------------------------
# Findings: computed from the data
# ---------------------------------------------------------------------------------------------


def test_findings_name_what_the_data_shows(records):
    text = "\n".join(R.sweep_findings(records))
    best = max((r for r in records if r["status"] == "completed"), key=lambda r: r["val_accuracy"])
    assert f"Best run: `{best['run_name']}`" in text
    assert "optimizer=sgd hurts" in text
    assert "activation=sigmoid together with weight_init=random fails" in text
    assert "runs diverged; over-represented among them: optimizer=sgd" in text
    assert "ended near chance" in text
    # Without the failing combination sigmoid itself is fine, and the text says so.
    sig = next(line for line in R.sweep_findings(records) if line.startswith("activation=sigmoid hurts"))
    assert "most of the damage comes from that combination" in sig


def test_findings_change_with_the_data(records):
    flipped = json.loads(json.dumps(records))
    for r in flipped:  # now adam is the bad optimizer
        if r["status"] in ("completed", "diverged"):
            r["status"] = "completed"
            r["val_accuracy"] = 0.3 if r["params"]["optimizer"] == "adam" else 0.85
    text = "\n".join(R.sweep_findings(flipped))
    assert "optimizer=adam hurts" in text and "optimizer=sgd hurts" not in text


def loss_sweep(records):
    """The synthetic sweep as a val_loss sweep: each run's loss is 1 - its accuracy, so the
    same runs are good and bad, but lower is better now."""
    out = json.loads(json.dumps(records))
    for r in out:
        r["metric"] = "val_loss"
        acc = r.pop("val_accuracy")
        r["val_loss"] = None if acc is None else 1.0 - acc
        if r["status"] == "diverged":
            r["value"] = float("inf")  # what the sweep gives a diverged run of a minimized metric
    return out


def test_loss_sweep_findings_speak_of_the_loss_not_of_accuracy(records):
    lines = R.sweep_findings(loss_sweep(records), "val_loss")
    assert lines == R.sweep_findings(loss_sweep(records), "val_loss", "minimize")  # the name's direction
    text = "\n".join(lines)
    assert "val_accuracy" not in text and not re.search(r"val_loss [0-9.]+%", text)
    best = min((r for r in loss_sweep(records) if r["status"] == "completed"), key=lambda r: r["val_loss"])
    assert f"Best run: `{best['run_name']}` with val_loss {best['val_loss']:.4g}" in text
    # the failing pair is named with the loss, in plain numbers, and the bad values are "higher"
    pair = next(line for line in lines if "together with" in line)
    assert pair.startswith("activation=sigmoid together with weight_init=random fails: mean val_loss 0.9")
    assert "%" not in pair
    sgd = next(line for line in lines if line.startswith("optimizer=sgd hurts"))
    assert "mean val_loss" in sgd and "higher" in sgd and "lower" not in sgd and "%" not in sgd


def test_the_metric_direction_comes_from_the_goal_the_records_or_the_name(records):
    assert R.metric_goal("val_accuracy") == "maximize" and R.metric_goal("train_loss") == "minimize"
    assert R.metric_goal("val_loss", [{"metric": "val_loss", "goal": "maximize"}]) == "maximize"
    assert R.metric_goal("val_loss", goal="maximize") == "maximize"
    with pytest.raises(ValueError, match="unknown metric goal 'lowest'; choose one of maximize, minimize"):
        R.metric_goal("val_loss", goal="lowest")
    with pytest.raises(ValueError, match="cannot tell whether metric 'f1' is better high or low; pass goal="):
        R.metric_goal("f1")
    # An explicit goal wins over the name: maximizing a loss puts the worst runs first.
    worst = max((r for r in loss_sweep(records) if r["status"] == "completed"), key=lambda r: r["val_loss"])
    assert R.top_runs_table(loss_sweep(records), "val_loss", goal="maximize")[1][0][1] == worst["run_name"]


def test_top_runs_of_a_loss_sweep_are_its_lowest(records):
    columns, rows = R.top_runs_table(loss_sweep(records), "val_loss")
    values = [row[2] for row in rows]
    assert columns[2] == "val_loss" and values == sorted(values)
    assert values[0] == round(min(r["val_loss"] for r in loss_sweep(records) if r["status"] == "completed"), 4)


def test_param_effects_and_optuna_importance(records):
    rows = R.analysis_rows(records)
    assert all(r[2]["status"] in ("completed", "diverged") for r in rows)
    eff = R.param_effects(rows)
    assert set(eff) == {"activation", "weight_init", "optimizer", "learning_rate", "num_layers", "hidden_size"}
    assert all(0 <= e["eta2"] <= 1 for e in eff.values())
    assert eff["optimizer"]["correlation"]["optimizer=sgd"] < 0
    name, imp = R.optuna_importance(rows)
    assert "Optuna" in name and set(imp) == set(eff)


def test_transfer_configs_are_good_and_different(records):
    chosen = R.choose_transfer_configs(records, k=3)
    assert len(chosen) == 3
    best = max((r for r in records if r["status"] == "completed"), key=lambda r: r["val_accuracy"])
    assert chosen[0][0] is best and chosen[0][1].startswith("best on Fashion-MNIST")
    cfgs = [c["config"] for c, _ in chosen]
    for a in range(3):
        for b in range(a + 1, 3):
            assert sum(cfgs[a][k] != cfgs[b][k] for k in R.TRANSFER_KEYS) >= 2


def test_transfer_configs_of_a_loss_sweep_start_from_the_lowest_loss(records):
    losses = loss_sweep(records)
    lowest = min((r for r in losses if r["status"] == "completed"), key=lambda r: r["val_loss"])
    for chosen in (
        R.choose_transfer_configs(losses, k=3, metric="val_loss"),
        R.choose_transfer_configs(losses, k=3, metric="val_loss", goal="minimize"),
    ):
        assert chosen[0][0] is lowest and chosen[0][1] == f"best on Fashion-MNIST (val_loss {lowest['val_loss']:.4f})"
        # going down the ranking means going up in loss
        ranks = [int(why.split()[1]) for _, why in chosen[1:]]
        assert ranks == sorted(ranks)
        assert all(r["val_loss"] >= lowest["val_loss"] for r, _ in chosen)
    with pytest.raises(ValueError, match="unknown metric goal 'down'"):
        R.choose_transfer_configs(losses, metric="val_loss", goal="down")


def test_sweep_figures_of_a_loss_sweep(tmp_path, records):
    losses = loss_sweep(records)
    assert_png(R.plot_sweep_timeline(losses, tmp_path / "timeline.png", "val_loss"))
    assert_png(R.plot_parallel_coordinates(losses, tmp_path / "parallel.png", "val_loss"))
    assert_png(R.plot_param_importance(losses, tmp_path / "importance.png", "val_loss", optuna_importance_too=False))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_sweep_section(tmp_path, results_file, capsys):
    import report as cli

    out = tmp_path / "rep"
    assert cli.main(["sweep", "--out", str(out), "--results", str(results_file), "--wandb_mode", "disabled"]) == 0
    for name in ("sweep_timeline.png", "sweep_parallel.png", "sweep_importance.png"):
        assert_png(out / name)
    md = (out / "report.md").read_text()
    assert "## Hyperparameter sweep" in md and "![parallel coordinates](sweep_parallel.png)" in md
    assert "### Findings" in md and "| rank | run |" in md
    assert "optimizer=sgd hurts" in capsys.readouterr().out


def test_cli_sweep_section_of_a_loss_sweep_ranks_low_first_and_names_no_machine_path(tmp_path, records, capsys):
    import report as cli

    results = tmp_path / "loss.jsonl"
    for r in loss_sweep(records):
        S.append_jsonl(results, r)
    out = tmp_path / "rep"
    assert (
        cli.main(
            [
                "sweep",
                "--out",
                str(out),
                "--results",
                str(results),
                "--wandb_mode",
                "disabled",
                "--no_optuna_importance",
            ]
        )
        == 0
    )
    md = (out / "report.md").read_text()
    assert "runs from `loss.jsonl`" in md and str(tmp_path) not in md
    lowest = min((r for r in loss_sweep(records) if r["status"] == "completed"), key=lambda r: r["val_loss"])
    assert f"| 1 | {lowest['run_name']} | {lowest['val_loss']:.4g} |" in md
    assert "mean val_loss" in md and "val_accuracy" not in md
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--out", str(out), "--results", str(results), "--goal", "lowest"])
    assert "invalid choice: 'lowest' (choose from 'maximize', 'minimize')" in capsys.readouterr().err


def test_cli_training_sections_on_a_tiny_budget(tmp_path, capsys):
    """samples, confusion, losses and mnist end to end: 1 epoch, 200 images, 16 units."""
    import report as cli
    from tinygrad_free.recipes import build_mlp

    results = tmp_path / "sweep.jsonl"
    for i, (act, opt) in enumerate([("tanh", "adam"), ("relu", "nadam"), ("sigmoid", "rmsprop"), ("tanh", "sgd")]):
        cfg = S.normalize_config({"epochs": 1, "num_layers": 1, "hidden_size": 16, "activation": act, "optimizer": opt})
        S.append_jsonl(
            results,
            {
                "status": "completed",
                "metric": "val_accuracy",
                "val_accuracy": 0.8 - 0.01 * i,
                "test_accuracy": 0.79 - 0.01 * i,
                "config": cfg,
                "params": cfg,
                "run_name": S.run_name(cfg),
            },
        )
    model = build_mlp(784, 1, 16, "tanh", "xavier", rng=0)
    model.save(tmp_path / "m.npz")
    out = tmp_path / "rep"
    common = ["--out", str(out), "--wandb_mode", "disabled"]
    assert cli.main(["samples", *common]) == 0
    assert cli.main(["confusion", *common, "--model", str(tmp_path / "m.npz")]) == 0
    assert cli.main(["losses", *common, "--results", str(results), "--top", "1", "--seeds", "2", "--limit", "200"]) == 0
    assert cli.main(["mnist", *common, "--results", str(results), "--limit", "200"]) == 0
    for name in (
        "samples_fashion_mnist.png",
        "samples_mnist.png",
        "confusion.png",
        "confused_pairs.png",
        "losses.png",
        "mnist_table.png",
    ):
        assert_png(out / name)
    md = (out / "report.md").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads == [
        "## Sample images",
        "## Confusion matrix of the best model",
        "## Cross-entropy vs squared error",
        "## Transfer to MNIST",
    ]
    assert "**Conclusion.**" in md and "MNIST test acc" in (out / "mnist_table.md").read_text()
    runs = json.loads((out / "data" / "losses.json").read_text())
    assert sorted((r["loss"], r["seed"]) for r in runs) == [
        ("cross_entropy", 0),
        ("cross_entropy", 1),
        ("mean_squared_error", 0),
        ("mean_squared_error", 1),
    ]
    mnist = json.loads((out / "data" / "mnist.json").read_text())
    assert len(mnist) == 3 and all(m["config"]["dataset"] == "mnist" for m in mnist)
    assert all(0 <= m["result"]["test_accuracy"] <= 1 for m in mnist)


def test_cli_errors(tmp_path, capsys):
    import report as cli

    with pytest.raises(SystemExit, match="no results file"):
        cli.main(["sweep", "--out", str(tmp_path), "--results", str(tmp_path / "none.jsonl")])
    # the benchmark's raw sweep results are not in git: the error names the command that makes them
    with pytest.raises(SystemExit, match=r"`python3 benchmarks/bench_sweep.py --tag assignment` regenerates"):
        cli.main(["sweep", "--out", str(tmp_path), "--results", str(tmp_path / "bench_sweep-assignment-random.jsonl")])
    with pytest.raises(SystemExit, match="scripts/train.py --save"):
        cli.main(
            ["confusion", "--out", str(tmp_path), "--model", str(tmp_path / "none.npz"), "--wandb_mode", "disabled"]
        )
    with pytest.raises(SystemExit):
        cli.main(["nonsense", "--out", str(tmp_path)])
