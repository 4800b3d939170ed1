#!/usr/bin/env python3
"""How well the shipped configurations train: runs ``scripts/train.py --config NAME`` for the
Fashion-MNIST default and the three MNIST configurations, over several seeds, and records the
per-epoch validation accuracy, the test accuracy and the epoch times. A config name may carry
extra train.py flags after a colon, comma-separated: ``mnist_adam_relu4:--shift=0`` is that
configuration without its augmentation (the default list has those too: the plain transfer of
the Fashion-MNIST findings; and the Fashion-MNIST default with the shift, which it does not use).

    python3 benchmarks/bench_accuracy.py                 # all configs, seeds 0 1 2
    python3 benchmarks/bench_accuracy.py --seeds 0 --configs fashion_mnist_best

Writes benchmarks/results/accuracy.json and accuracy.md.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
from common import ROOT  # noqa: E402

from tinygrad_free.fileio import atomic_write_text  # noqa: E402

MNIST = ["mnist_nadam_relu5", "mnist_adam_relu4", "mnist_nadam_tanh3"]
# With and without the 1-pixel shift: the MNIST configurations use it, the Fashion-MNIST one does not.
CONFIGS = ["fashion_mnist_best", "fashion_mnist_best:--shift=1", *MNIST, *(f"{c}:--shift=0" for c in MNIST)]
EPOCH = re.compile(r"^epoch\s+(\d+).*val_acc ([0-9.]+)\s+([0-9.]+)s$")


def run(config, seed):
    C.ensure_data_env()  # ../shared/data beside the clone when TINYGRAD_FREE_DATA is unset
    env = dict(os.environ)
    name, _, extra = config.partition(":")
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "--config",
            name,
            "--seed",
            str(seed),
            "--wandb_mode",
            "disabled",
            *filter(None, extra.split(",")),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    epochs = [EPOCH.match(line).groups() for line in out.splitlines() if EPOCH.match(line)]
    return {
        "config": config,
        "seed": seed,
        "val_accuracy": [float(v) for _, v, _ in epochs],
        "epoch_seconds": [float(s) for _, _, s in epochs],
        "test_accuracy": float(out.strip().splitlines()[-1].split()[-1]),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=CONFIGS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    runs = []
    for config in args.configs:
        for seed in args.seeds:
            r = run(config, seed)
            print(
                f"{config} seed {seed}: val {r['val_accuracy'][-1]:.4f} test {r['test_accuracy']:.4f} "
                f"median epoch {statistics.median(r['epoch_seconds']):.2f}s",
                flush=True,
            )
            runs.append(r)
    rows = [
        "| config | seeds | final val acc (each seed) | test acc (each seed) | mean test | median s/epoch |",
        "|---|---|---|---|---|---|",
    ]
    for config in args.configs:
        rs = [r for r in runs if r["config"] == config]
        seeds = " ".join(str(r["seed"]) for r in rs)
        vals = " ".join(f"{r['val_accuracy'][-1]:.4f}" for r in rs)
        tests = " ".join(f"{r['test_accuracy']:.4f}" for r in rs)
        mean_test = statistics.mean(r["test_accuracy"] for r in rs)
        # the first epoch includes warm-up (page faults, BLAS buffers): leave it out of the median
        epoch = statistics.median(s for r in rs for s in (r["epoch_seconds"][1:] or r["epoch_seconds"]))
        rows.append(f"| {config} | {seeds} | {vals} | {tests} | {mean_test:.4f} | {epoch:.2f} |")
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(os.path.join(args.out, "accuracy.json"), json.dumps(runs, indent=1))
    atomic_write_text(os.path.join(args.out, "accuracy.md"), "\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
