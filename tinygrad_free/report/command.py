"""The report command (``scripts/report.py``): each subcommand draws its figures and rewrites its
own section of report.md.

The assignment report's figures and numbers, as PNGs plus a report.md in one folder.

    python scripts/report.py samples   --out report
    python scripts/report.py sweep     --out report --results sweeps/assignment.jsonl
    python scripts/report.py confusion --out report --model best.npz
    python scripts/report.py losses    --out report --results sweeps/assignment.jsonl --seeds 3
    python scripts/report.py mnist     --out report --results sweeps/assignment.jsonl
    python scripts/report.py all       --out report --results sweeps/assignment.jsonl --model best.npz
    python scripts/report.py architectures --out report --runs runs.jsonl  (from train.py --results)

Each command rewrites its own section of report.md and leaves the others. Figures are logged
to wandb too when it is on (--wandb_mode; default online when logged in, else off).
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .. import report as R
from .. import sweep as S
from .. import tracking
from ..cli import positive_int


def _rel(path, out):
    return os.path.relpath(path, out)


def _shown(path):
    """``path`` as report.md names it: relative to the current folder (the repository, when run
    from its root) when inside it, else as given when relative, else its file name (a tracked
    report carries no machine's folders)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).name if os.path.isabs(path) else str(path)


def _records(path):
    if not path:
        return None
    if not os.path.exists(path):
        if os.path.basename(path).startswith("bench_sweep-"):
            # The benchmark's raw results are not kept in git; only its summary is.
            raise SystemExit(
                f"error: no results file {path!r}; the sweep benchmark's JSONL files are not kept in "
                "git: `python3 benchmarks/bench_sweep.py --tag assignment` regenerates "
                "benchmarks/results/bench_sweep-assignment-random.jsonl and -bayes.jsonl (about 8 "
                "minutes on 2 cores)"
            )
        raise SystemExit(f"error: no results file {path!r}; run scripts/sweep.py first or pass --results")
    records = S.read_results(path)
    if not records:
        raise SystemExit(f"error: {path} holds no results")
    return records


def _metric(records):
    return next((r["metric"] for r in records if r.get("metric")), "val_accuracy")


def _goal(records, metric, args):
    """--goal, else the records' or the metric's own direction (R.metric_goal)."""
    try:
        return R.metric_goal(metric, records, getattr(args, "goal", None))
    except ValueError as e:
        raise SystemExit(f"error: {e} (--goal)") from None


# --------------------------------------------------------------------------------------------


def cmd_samples(args):
    from tinygrad_free.data import load_dataset

    lines = ["## Sample images", "", "One training image of each class."]
    for name in args.datasets:
        (x, y), _, classes = load_dataset(name, args.data_dir)
        title = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}[name]
        path = R.plot_class_samples(
            x,
            y,
            classes,
            os.path.join(args.out, f"samples_{name}.png"),
            title=f"{title}: one sample per class",
            seed=args.seed,
        )
        lines += ["", f"![{title} samples]({_rel(path, args.out)})"]
        print(f"wrote {path}")
    return R.write_section(args.out, "samples", "\n".join(lines))


def cmd_sweep(args):
    records = _records(args.results)
    metric = _metric(records)
    goal = _goal(records, metric, args)
    out = args.out
    paths = {
        "timeline": R.plot_sweep_timeline(records, os.path.join(out, "sweep_timeline.png"), metric, goal=goal),
        "parallel": R.plot_parallel_coordinates(records, os.path.join(out, "sweep_parallel.png"), metric, goal=goal),
        "importance": R.plot_param_importance(
            records,
            os.path.join(out, "sweep_importance.png"),
            metric,
            optuna_importance_too=not args.no_optuna_importance,
            goal=goal,
        ),
    }
    findings = R.sweep_findings(records, metric, goal)
    columns, rows = R.top_runs_table(records, metric, goal)
    R.log_to_wandb(tables={"sweep_top_runs": (columns, rows)})
    timed = [r for r in records if r.get("started_at") and r.get("finished_at")]
    span = (max(r["finished_at"] for r in timed) - min(r["started_at"] for r in timed)) / 60 if timed else None
    lines = (
        [
            "## Hyperparameter sweep",
            "",
            f"{len(records)} runs from `{_shown(args.results)}`"
            + (f", {span:.1f} minutes from first start to last finish" if span else "")
            + ".",
            "",
            f"![{metric} over time]({_rel(paths['timeline'], out)})",
            "",
            f"![parallel coordinates]({_rel(paths['parallel'], out)})",
            "",
            f"![parameter importance]({_rel(paths['importance'], out)})",
            "",
            "### Findings",
            "",
        ]
        + [f"- {f}" for f in findings]
        + ["", "### Best runs", "", R.markdown_table(columns, rows)]
    )
    for p in paths.values():
        print(f"wrote {p}")
    print("\n".join(f"- {f}" for f in findings))
    return R.write_section(out, "sweep", "\n".join(lines))


def cmd_confusion(args):
    from tinygrad_free import nn
    from tinygrad_free.data import load_split
    from tinygrad_free.metrics import confusion_matrix, per_class_accuracy

    if not args.model or not os.path.exists(args.model):
        raise SystemExit(
            f"error: no model file {args.model!r}; save one with "
            "`python scripts/train.py --save best.npz` and pass --model best.npz"
        )
    model = nn.load(args.model)
    model.eval()
    data = load_split(args.dataset, data_dir=args.data_dir)
    x = data.x_test
    if isinstance(model, nn.Sequential) and len(model) and isinstance(model[0], nn.Conv2D):  # a CNN takes images
        x = x.reshape(len(x), model[0].in_channels, *(2 * [math.isqrt(x.shape[1] // model[0].in_channels)]))
    logits = np.concatenate([model.forward(x[i : i + 2048]) for i in range(0, len(x), 2048)])
    if logits.shape[1] != len(data.class_names):
        raise SystemExit(
            f"error: {args.model} predicts {logits.shape[1]} classes but {args.dataset} has {len(data.class_names)}"
        )
    pred = logits.argmax(axis=1)
    classes = data.class_names
    cm = confusion_matrix(data.y_test, pred, len(classes))
    acc = float(np.trace(cm) / cm.sum())
    p1 = R.plot_confusion(
        data.y_test,
        pred,
        classes,
        os.path.join(args.out, "confusion.png"),
        title=f"{os.path.basename(args.model)} on the {args.dataset} test set: accuracy {100 * acc:.2f}%",
    )
    p2 = R.plot_confused_pairs(
        data.x_test, data.y_test, pred, classes, os.path.join(args.out, "confused_pairs.png"), n_pairs=args.pairs
    )
    per_class = per_class_accuracy(cm)
    pairs = R.most_confused_pairs(cm, args.pairs)
    rows = [[classes[i], int(cm[i].sum()), round(float(per_class[i]), 4)] for i in np.argsort(per_class)]
    R.log_to_wandb(tables={"per_class_accuracy": (["class", "images", "accuracy"], rows)})
    lines = [
        "## Confusion matrix of the best model",
        "",
        f"`{_shown(args.model)}` on the {len(data.y_test)} test images: accuracy **{100 * acc:.2f}%**.",
        "",
        f"![confusion matrix]({_rel(p1, args.out)})",
        "",
        "Most confused pairs:",
        "",
    ]
    lines += [
        f"- true {classes[i]} predicted as {classes[j]}: {n} times ({100 * n / cm[i].sum():.1f}% of {classes[i]})"
        for i, j, n in pairs
    ]
    lines += [
        "",
        f"![most confused pairs]({_rel(p2, args.out)})",
        "",
        "Per-class accuracy, worst first:",
        "",
        R.markdown_table(["class", "images", "accuracy"], rows),
    ]
    print(f"wrote {p1}\nwrote {p2}\ntest accuracy {acc:.4f}")
    return R.write_section(args.out, "confusion", "\n".join(lines))


def _config_label(cfg, taken):
    label = f"{cfg['activation']}/{cfg['optimizer']}/{cfg['num_layers']}x{cfg['hidden_size']}"
    base, n = label, 2
    while label in taken:
        label, n = f"{base} ({n})", n + 1
    taken.add(label)
    return label


def _source_configs(args, k):
    """``k`` configurations: the best distinct ones of the sweep, or the named config."""
    if args.results:
        records = _records(args.results)
        metric = _metric(records)
        chosen = R.choose_transfer_configs(records, k=k, metric=metric, goal=_goal(records, metric, args))
        if not chosen:
            raise SystemExit(f"error: {args.results} has no completed runs to take configurations from")
        return [(S.normalize_config(r["config"]), why, r) for r, why in chosen]
    from tinygrad_free.recipes import load_config

    cfg = {key: v for key, v in load_config(args.config).items() if key in S.DEFAULTS}
    return [(S.normalize_config(cfg), f"config {args.config}", None)]


def cmd_losses(args):
    sources = _source_configs(args, args.top)
    taken, configs, tasks = set(), [], []
    for cfg, why, _ in sources:
        cfg = {**cfg, "dataset": "fashion_mnist"}
        if args.epochs:
            cfg["epochs"] = args.epochs
        label = _config_label(cfg, taken)
        configs.append((label, cfg, why))
        for loss in ("cross_entropy", "mean_squared_error"):
            for seed in range(args.seeds):
                tasks.append((label, loss, seed, {**cfg, "loss": loss, "seed": seed}))
    print(f"training {len(tasks)} runs ({len(configs)} configs x 2 losses x {args.seeds} seeds)")
    results = S.map_trials([t[3] for t in tasks], workers=args.workers, limit=args.limit, data_dir=args.data_dir)
    runs = [
        {
            "label": label,
            "loss": loss,
            "seed": seed,
            "status": res.get("status"),
            "history": res.get("history") or {},
            "test_accuracy": res.get("test_accuracy"),
            "run_name": S.run_name(cfg, ("seed",)),
            "config": cfg,
        }
        for (label, loss, seed, cfg), res in zip(tasks, results)
    ]
    S.atomic_write_text(os.path.join(args.out, "data", "losses.json"), json.dumps(S.json_safe(runs), indent=1))
    path = R.plot_loss_comparison(runs, os.path.join(args.out, "losses.png"))
    final, _ = R.loss_summary(runs)
    rows = []
    for label, _cfg, _ in configs:
        for loss in ("cross_entropy", "mean_squared_error"):
            m, s, n = final.get(label, {}).get(loss, (float("nan"), float("nan"), 0))
            rows.append([label, R.LOSS_LABELS[loss], f"{100 * m:.2f} ± {100 * s:.2f}", n])
    conclusion = R.loss_conclusion(runs)
    lines = [
        "## Cross-entropy vs squared error",
        "",
        f"Each configuration trained with both losses over {args.seeds} seed(s) (seed = initial weights, "
        f"validation split and batch order)"
        + (f", on the first {args.limit} training images" if args.limit else "")
        + ".",
        "",
    ]
    lines += [f"- **{label}**: `{S.run_name(cfg)}` ({why})" for label, cfg, why in configs]
    lines += [
        "",
        f"![losses]({_rel(path, args.out)})",
        "",
        R.markdown_table(["config", "loss", "final val accuracy % (mean ± std)", "seeds"], rows),
        "",
        f"**Conclusion.** {conclusion}",
    ]
    R.log_to_wandb(tables={"loss_comparison": (["config", "loss", "final val accuracy %", "seeds"], rows)})
    print(f"wrote {path}\n{conclusion}")
    return R.write_section(args.out, "losses", "\n".join(lines))


def cmd_mnist(args):
    if not args.results:
        raise SystemExit("error: mnist needs --results (the Fashion-MNIST sweep) to choose configurations from")
    sources = _source_configs(args, 3)
    configs = []
    for cfg, why, rec in sources:
        cfg = {**cfg, "dataset": "mnist"}
        if args.epochs:
            cfg["epochs"] = args.epochs
        configs.append((cfg, why, rec))
    print(f"training {len(configs)} Fashion-MNIST configurations on MNIST")
    t0 = time.perf_counter()
    results = S.map_trials([c[0] for c in configs], workers=args.workers, limit=args.limit, data_dir=args.data_dir)
    columns = [
        "#",
        "configuration",
        "Fashion-MNIST val acc",
        "Fashion-MNIST test acc",
        "MNIST val acc",
        "MNIST test acc",
    ]
    rows = []
    for i, ((cfg, _why, rec), res) in enumerate(zip(configs, results), 1):
        rows.append(
            [
                i,
                S.run_name(cfg),
                rec.get("val_accuracy"),
                rec.get("test_accuracy"),
                res.get("val_accuracy"),
                res.get("test_accuracy"),
            ]
        )
    S.atomic_write_text(
        os.path.join(args.out, "data", "mnist.json"),
        json.dumps(
            S.json_safe([{"config": c, "why": w, "result": r} for (c, w, _), r in zip(configs, results)]), indent=1
        ),
    )
    table = R.plot_table(
        columns,
        rows,
        os.path.join(args.out, "mnist_table.png"),
        title="Fashion-MNIST configurations transferred to MNIST",
    )
    R.log_to_wandb(tables={"mnist_transfer": (columns, rows)})
    md = R.markdown_table(columns, rows)
    R.atomic_write_text(os.path.join(args.out, "mnist_table.md"), md + "\n")
    lines = [
        "## Transfer to MNIST",
        "",
        "Three configurations chosen from the Fashion-MNIST sweep (best first, then the best ones that "
        "differ from those already chosen in at least two hyperparameters), retrained on MNIST"
        + (f" (first {args.limit} training images)" if args.limit else "")
        + ":",
        "",
    ]
    lines += [f"{i}. {why}" for i, (_, why, _) in enumerate(configs, 1)]
    if args.epochs:
        lines += [
            "",
            f"On MNIST every configuration ran {args.epochs} epoch(s) (--epochs); the Fashion-MNIST columns "
            "are the sweep's runs as they were.",
        ]
    lines += ["", md, "", f"![MNIST table]({_rel(table, args.out)})"]
    print(md)
    print(f"({time.perf_counter() - t0:.1f}s)")
    return R.write_section(args.out, "mnist", "\n".join(lines))


def cmd_architectures(args):
    records = [r for path in args.runs for r in _records(path)]
    try:
        groups = R.group_runs(records)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    path = R.plot_architecture_confusions(groups, os.path.join(args.out, "architectures_confusion.png"))
    R.log_to_wandb(tables={"architectures": R.architecture_table(groups)})
    print(f"wrote {path}\n" + R.markdown_table(*R.architecture_table(groups)))
    section = R.architecture_section(groups, _rel(path, args.out), [_shown(p) for p in args.runs])
    return R.write_section(args.out, "architectures", section)


COMMANDS = {
    "samples": cmd_samples,
    "sweep": cmd_sweep,
    "confusion": cmd_confusion,
    "losses": cmd_losses,
    "mnist": cmd_mnist,
    "architectures": cmd_architectures,
}


def cmd_all(args):
    ran = []
    for name in ("samples", "sweep", "confusion", "losses", "mnist"):
        if name in ("sweep", "mnist") and not args.results:
            print(f"skipping {name}: no --results")
            continue
        if name == "confusion" and not args.model:
            print("skipping confusion: no --model")
            continue
        print(f"== {name}")
        COMMANDS[name](args)
        ran.append(name)
    return R.assemble_report(args.out)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, help_text):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("--out", required=True, help="folder for the PNGs and report.md")
        s.add_argument("--data_dir", default=None, help="folder with fashion-mnist/ and mnist/")
        s.add_argument(
            "--wandb_mode",
            choices=tracking.WANDB_MODES,
            default=None,
            help="log the figures to a wandb run (default: online when logged in, else disabled)",
        )
        s.add_argument("-wp", "--wandb_project", default="tinygrad_free")
        s.add_argument("-we", "--wandb_entity", default=None)
        return s

    def training(s):
        s.add_argument("--results", default=None, help="sweep results JSONL to take configurations from")
        s.add_argument("--epochs", type=positive_int, default=None, help="override the configurations' epochs")
        s.add_argument("--limit", type=positive_int, default=None, help="train on the first N training images")
        s.add_argument("--workers", type=positive_int, default=1, help="runs at once (processes)")
        goal(s)

    def goal(s):
        s.add_argument(
            "--goal",
            choices=R.GOALS,
            default=None,
            help="whether the sweep's metric is better high or low (default: the sweep's records' "
            "goal, else maximize for accuracies and minimize for losses)",
        )

    s = add("samples", "one image per class, Fashion-MNIST and MNIST")
    s.add_argument("--datasets", nargs="+", default=["fashion_mnist", "mnist"], choices=("fashion_mnist", "mnist"))
    s.add_argument("--seed", type=int, default=0, help="which example of each class")
    s = add("sweep", "sweep figures and findings from a results JSONL")
    s.add_argument("--results", required=True)
    s.add_argument("--no_optuna_importance", action="store_true", help="skip Optuna's importance evaluator")
    goal(s)
    s = add("confusion", "confusion matrix of a saved model on the test set")
    s.add_argument("--model", required=True, help=".npz from scripts/train.py --save")
    s.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist"))
    s.add_argument("--pairs", type=positive_int, default=4, help="most confused pairs to show")
    s = add("losses", "cross-entropy vs squared error over several seeds")
    training(s)
    s.add_argument(
        "--config",
        default="fashion_mnist_best",
        help="recipe (a name in tinygrad_free/recipes/ or a YAML path) without --results",
    )
    s.add_argument("--top", type=positive_int, default=2, help="configurations taken from --results")
    s.add_argument("--seeds", type=positive_int, default=3)
    s = add("mnist", "three Fashion-MNIST configurations trained on MNIST")
    training(s)
    s = add("architectures", "networks compared: test accuracy over seeds, confusion matrices, s/epoch")
    s.add_argument("--runs", nargs="+", required=True, metavar="JSONL", help="files of scripts/train.py --results")
    s = add("all", "every section whose inputs are given")
    training(s)
    s.add_argument("--model", default=None)
    s.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist"))
    s.add_argument("--pairs", type=positive_int, default=4)
    s.add_argument("--datasets", nargs="+", default=["fashion_mnist", "mnist"], choices=("fashion_mnist", "mnist"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no_optuna_importance", action="store_true")
    s.add_argument("--config", default="fashion_mnist_best")
    s.add_argument("--top", type=positive_int, default=2)
    s.add_argument("--seeds", type=positive_int, default=3)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    mode = args.wandb_mode or ("online" if tracking.wandb_logged_in() else "disabled")
    run = tracking.start_wandb_run(
        mode, project=args.wandb_project, entity=args.wandb_entity, job_type="report", name=f"report-{args.command}"
    )
    try:
        path = (cmd_all if args.command == "all" else COMMANDS[args.command])(args)
    finally:
        if run is not None:
            run.finish()
    print(f"report: {path}")
    return 0
