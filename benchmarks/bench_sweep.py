#!/usr/bin/env python3
"""How long the assignment sweep takes, how good it gets, and random search vs TPE.

1. ``sweeps/assignment.yaml`` with ``method: random``: ``--n_trials`` (100) trials on
   ``--workers`` (2) processes, timed from start to the last trial's end (process start-up,
   data loading and kernel compilation included). Reports the best validation accuracy and the
   test accuracy of that run's final model.
2. The same space and budget with ``method: bayes`` (Optuna's TPE). Both arms' best-so-far
   validation accuracy goes on one plot, with the number of trials each needed to come within
   0.5 points of the best value either arm found.

Writes ``bench_sweep.json``, ``bench_sweep.md`` and ``random_vs_tpe.png`` into ``--out``
(default benchmarks/results/), and keeps the studies and results files there too. The per-trial
results (``bench_sweep-<tag>-random.jsonl``, ``-bayes.jsonl``) are not kept in git;
bench_sweep.json holds what the page and the figure need, and ``--replot`` redraws them from it.

    python benchmarks/bench_sweep.py                                   # the full benchmark
    python benchmarks/bench_sweep.py --n_trials 4 --limit 2000 --set epochs=1 --tag smoke
    python benchmarks/bench_sweep.py --replot                          # page and figure from bench_sweep.json
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C  # noqa: E402

from tinygrad_free import sweep as S  # noqa: E402
from tinygrad_free import tracking  # noqa: E402
from tinygrad_free.cli import positive_int  # noqa: E402
from tinygrad_free.sweep import parse_assignment as assignment  # noqa: E402

WITHIN = 0.005  # "within 0.5 points" of the best validation accuracy


def best_so_far(records, metric="val_accuracy"):
    """Best value after each finished trial, in the order trials finished (diverged count as 0)."""
    done = sorted(
        (r for r in records if r.get("status") in ("completed", "diverged", "pruned")),
        key=lambda r: r.get("finished_at") or 0,
    )
    out, best = [], float("-inf")
    for r in done:
        v = r.get(metric) if r["status"] != "diverged" else r.get("value")
        if v is not None and r["status"] != "pruned":
            best = max(best, v)
        out.append(best if best > float("-inf") else None)
    return out


def trials_to_reach(curve, target):
    """1-based number of finished trials after which ``curve`` reaches ``target`` (None: never)."""
    for i, v in enumerate(curve, 1):
        if v is not None and v >= target - 1e-12:
            return i
    return None


def run_arm(method, args, tag, storage):
    spec = S.load_sweep(ROOT / "sweeps" / "assignment.yaml", overrides=dict(args.overrides), method=method)
    name = f"{tag}-{method}"
    results = os.path.join(args.out, f"bench_sweep-{name}.jsonl")
    print(f"== {method}: {args.n_trials} trials, {args.workers} worker(s)", flush=True)
    summary = S.run_local_sweep(
        spec,
        n_trials=args.n_trials,
        workers=args.workers,
        storage=storage,
        study_name=name,
        results=results,
        limit=args.limit,
        data_dir=args.data_dir,
        seed=args.seed,
        wandb_mode=args.wandb_mode,
        verbose=not args.quiet,
    )
    records = [r for r in S.read_results(results) if r.get("study") == name]
    best = S.best_record(records)
    statuses = {}
    for r in records:
        statuses[r.get("status")] = statuses.get(r.get("status"), 0) + 1
    secs = sorted(r["seconds"] for r in records if r.get("seconds"))
    return {
        "study": name,
        "results": C.repo_relative(results),
        "wall_seconds": round(summary.seconds, 1),
        "n_finished": summary.n_finished,
        "statuses": statuses,
        "median_trial_seconds": round(secs[len(secs) // 2], 2) if secs else None,
        "best_val_accuracy": best and best["val_accuracy"],
        "best_test_accuracy": best and best.get("test_accuracy"),
        "best_run": best and best.get("run_name"),
        "best_config": best and best.get("params"),
        "best_so_far": best_so_far(records),
        "errors": summary.errors,
    }


def plot(arms, target, path):
    from tinygrad_free.report import new_figure, save_figure

    fig = new_figure((8, 4.5))
    ax = fig.add_subplot()
    for method, arm in arms.items():
        curve = [v for v in arm["best_so_far"]]
        ax.step(
            range(1, len(curve) + 1),
            [float("nan") if v is None else v for v in curve],
            where="post",
            label=f"{'TPE (bayes)' if method == 'bayes' else 'random'}: best {arm['best_val_accuracy']:.4f}"
            + (f", within 0.5 pt after {arm['trials_to_within']} trials" if arm.get("trials_to_within") else ""),
        )
    ax.axhline(target, color="0.4", ls="--", lw=1, label=f"best of both - 0.5 points ({target:.4f})")
    ax.set_xlabel("finished trials")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("random search vs TPE on sweeps/assignment.yaml")
    finite = [v for arm in arms.values() for v in arm["best_so_far"] if v is not None]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 0.02), max(finite) + 0.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def markdown(report):
    c = report["config"]
    lines = [
        f"# Sweep benchmark ({report['tag']})",
        "",
        f"Machine: {report['machine']['cpus']} CPU(s), {report['machine']['platform']}, "
        f"Python {report['machine']['python']}. Space: `sweeps/assignment.yaml`"
        + (f" with {c['overrides']}" if c["overrides"] else "")
        + (f", trained on the first {c['limit']} images" if c["limit"] else "")
        + ".",
        "",
        "| search | trials | workers | wall time | best val acc | its test acc | trials to within 0.5 pt | "
        "median trial | statuses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, arm in report["arms"].items():
        lines.append(
            f"| {'TPE (bayes)' if method == 'bayes' else 'random'} | {arm['n_finished']} | {c['workers']} | "
            f"{arm['wall_seconds'] / 60:.1f} min | {arm['best_val_accuracy']:.4f} | "
            f"{(arm['best_test_accuracy'] or float('nan')):.4f} | {arm.get('trials_to_within')} | "
            f"{arm['median_trial_seconds']} s | " + ", ".join(f"{n} {s}" for s, n in arm["statuses"].items()) + " |"
        )
    lines += ["", f"Best run (random): `{report['arms']['random']['best_run']}`."]
    if "bayes" in report["arms"]:
        lines.append(f"Best run (TPE): `{report['arms']['bayes']['best_run']}`.")
    lines += [
        "",
        f"Target for 'within 0.5 points': {report['target']:.4f}.",
        "",
        "![random vs TPE](random_vs_tpe.png)",
        "",
        f"Per-trial results: `bench_sweep-{report['tag']}-random.jsonl` and `-bayes.jsonl` beside this file, "
        f"not kept in git; `python3 benchmarks/bench_sweep.py --tag {report['tag']}` runs the sweeps again "
        "(the report's sweep figures are drawn from the random one).",
    ]
    return "\n".join(lines) + "\n"


def replot(out):
    """bench_sweep.md and random_vs_tpe.png again from ``out``/bench_sweep.json (no sweep is run)."""
    path = os.path.join(out, "bench_sweep.json")
    if not os.path.isfile(path):
        raise SystemExit(
            f"error: no {path} to redraw from; `python3 benchmarks/bench_sweep.py` runs the sweeps and writes it"
        )
    with open(path) as f:
        report = json.load(f)
    png = plot(report["arms"], report["target"], os.path.join(out, "random_vs_tpe.png"))
    md = markdown(report)
    S.atomic_write_text(os.path.join(out, "bench_sweep.md"), md)
    print(md)
    print(f"redrew {out}/bench_sweep.md, {os.path.basename(png)} from {path}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n_trials", type=positive_int, default=100)
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument("--limit", type=positive_int, default=None, help="train on the first N images (smoke runs)")
    p.add_argument(
        "--set",
        dest="overrides",
        type=assignment,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a parameter, e.g. --set epochs=1 (smoke runs)",
    )
    p.add_argument("--skip_tpe", action="store_true", help="only the random sweep")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"), help="names the studies (default: now)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default=None)
    p.add_argument(
        "--wandb_mode",
        choices=tracking.WANDB_MODES,
        default="disabled",
        help="per-trial wandb logging (default disabled: time the sweep, not the logging)",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument(
        "--replot",
        action="store_true",
        help="redraw bench_sweep.md and random_vs_tpe.png from --out's bench_sweep.json, running nothing",
    )
    args = p.parse_args(argv)
    if args.replot:
        return replot(args.out)
    os.makedirs(args.out, exist_ok=True)
    storage = f"sqlite:///{os.path.abspath(os.path.join(args.out, 'bench_sweep.db'))}"
    arms = {"random": run_arm("random", args, args.tag, storage)}
    if not args.skip_tpe:
        arms["bayes"] = run_arm("bayes", args, args.tag, storage)
    best = max(a["best_val_accuracy"] for a in arms.values() if a["best_val_accuracy"] is not None)
    target = best - WITHIN
    for arm in arms.values():
        arm["trials_to_within"] = trials_to_reach(arm["best_so_far"], target)
    import numpy

    report = {
        "tag": args.tag,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
        },
        "config": {
            "n_trials": args.n_trials,
            "workers": args.workers,
            "limit": args.limit,
            "overrides": dict(args.overrides),
            "seed": args.seed,
            "wandb_mode": args.wandb_mode,
        },
        "target": target,
        "arms": arms,
        "random_under_15_minutes": arms["random"]["wall_seconds"] < 900,
    }
    png = plot(arms, target, os.path.join(args.out, "random_vs_tpe.png"))
    S.atomic_write_text(os.path.join(args.out, "bench_sweep.json"), json.dumps(S.json_safe(report), indent=1) + "\n")
    md = markdown(report)
    S.atomic_write_text(os.path.join(args.out, "bench_sweep.md"), md)
    print(md)
    print(f"wrote {args.out}/bench_sweep.json, bench_sweep.md, {os.path.basename(png)}")
    return 1 if any(a["errors"] for a in arms.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
