#!/usr/bin/env python3
"""Seconds per epoch of a shipped recipe as a user runs it (``scripts/train.py --config RECIPE``),
this checkout against another one (``--baseline``), alternated.

Each run is a fresh subprocess of ``scripts/train.py --config RECIPE --epochs E --wandb_mode
disabled`` (plus ``--threads N``; ``auto`` passes none: the Trainer's measured policy), with
``PYTHONPATH`` set to the checkout it measures, so the baseline runs its own library, kernels,
recipe and script. The time is the one the script prints for the epoch (training and the
validation pass, the numba compile excluded). Rounds alternate the checkouts within each thread
setting (round 1: this, baseline at 1 thread, then at 2, ...), so drift hits both alike; the table
gives the medians and the per-round ratios this / baseline.

    python benchmarks/bench_recipe_epoch.py --baseline ../wt-c0914bd --recipe fashion_mnist_cnn \\
        --threads 1 2 auto --rounds 2

The baseline checkout's numba cache must be warm (``PYTHONPATH=<it> python -c "from
tinygrad_free import kernels; kernels.warmup()"``), or its first run pays the compile.
Writes benchmarks/results/recipe_epoch_<recipe>.json and .md.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

EPOCH_LINE = re.compile(r"^epoch\s+\d+\s.*?([0-9.]+)s\s*$", re.MULTILINE)


def _threads(text):
    if text == "auto" or (text.isdigit() and int(text) > 0):
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f"a thread count is a positive integer or 'auto', got {text!r}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="another checkout of the repository (a git worktree)")
    p.add_argument("--recipe", default="fashion_mnist_cnn")
    p.add_argument("--threads", nargs="+", type=_threads, default=[1, 2, "auto"], help="positive ints or auto")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default=str(C.RESULTS))
    return p.parse_args(argv)


def epoch_seconds(checkout, args, threads, workdir):
    """The epochs' seconds printed by ``checkout``'s scripts/train.py, or an error string."""
    env = C.worker_env(threads)
    env["PYTHONPATH"] = str(checkout)  # that checkout's library, not this one's
    cmd = [str(Path(checkout) / "scripts" / "train.py"), "--config", args.recipe, "--epochs", str(args.epochs)]
    cmd += ["--wandb_mode", "disabled"] + ([] if threads == "auto" else ["--threads", str(threads)])
    try:
        proc = subprocess.run(
            [sys.executable, *cmd], env=env, cwd=workdir, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {args.timeout:g} s"
    found = [float(s) for s in EPOCH_LINE.findall(proc.stdout)]
    if proc.returncode != 0 or not found:
        return f"exit {proc.returncode}: " + " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
    return found


def markdown(result):
    lines = [
        f"Recipe `{result['recipe']}`, seconds per epoch (`scripts/train.py`, {result['epochs']} epoch(s) per run), "
        f"this checkout against `{result['baseline']}` (commit {result['baseline_commit']}), alternated, "
        f"{result['rounds']} rounds; {result['machine']['cpu_model']}, {result['machine']['date'][:10]}.",
        "",
        "| threads | this | baseline | this / baseline | per round |",
        "|---|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        if row.get("error"):
            lines.append(f"| {row['threads']} | | | | {row['error']} |")
            continue
        per_round = ", ".join(f"{r:.3f}" for r in row["round_ratios"])
        lines.append(
            f"| {row['threads']} | {row['this']:.2f} | {row['baseline']:.2f} | **{row['ratio']:.3f}** | {per_round} |"
        )
    return "\n".join(lines) + "\n"


def _commit(checkout):
    out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main(argv=None):
    args = parse_args(argv)
    C.ensure_data_env()
    checkouts = {"this": C.ROOT, "baseline": Path(args.baseline).resolve()}
    times = {(t, who): [] for t in args.threads for who in checkouts}
    errors = {}
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(args.rounds):
            for t in args.threads:
                for who, checkout in checkouts.items():
                    got = epoch_seconds(checkout, args, t, workdir)
                    if isinstance(got, str):
                        errors[t] = f"{who}: {got}"
                    else:
                        times[(t, who)].append(statistics.median(got))
                    print(f"round {r + 1} threads {t} {who}: {got}", flush=True)
    rows = []
    for t in args.threads:
        if t in errors:
            rows.append({"threads": t, "error": errors[t]})
            continue
        mine, base = times[(t, "this")], times[(t, "baseline")]
        ratios = [a / b for a, b in zip(mine, base)]
        rows.append(
            {
                "threads": t,
                "this": statistics.median(mine),
                "baseline": statistics.median(base),
                "ratio": statistics.median(mine) / statistics.median(base),
                "round_ratios": ratios,
                "this_seconds": mine,
                "baseline_seconds": base,
            }
        )
    result = {
        "command": C.command_line(argv),
        "recipe": args.recipe,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "baseline": C.repo_relative(checkouts["baseline"]),
        "baseline_commit": _commit(checkouts["baseline"]),
        "this_commit": _commit(C.ROOT),
        "machine": C.machine_info(),
        "rows": rows,
    }
    C.write_report(args.out, f"recipe_epoch_{args.recipe}", result, markdown)


if __name__ == "__main__":
    main()
