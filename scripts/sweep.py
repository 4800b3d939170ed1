#!/usr/bin/env python3
"""Run a hyperparameter sweep from a wandb sweep YAML, on wandb or locally with Optuna.

Offline (no account needed), 2 trials at a time, study in sweeps/assignment.db, one JSON line
per trial in sweeps/assignment.jsonl:

    python scripts/sweep.py sweeps/assignment.yaml --backend local --n_trials 100 --workers 2

Run the same command again (or on another machine with --storage pointing at one database) to
resume or join the sweep: --n_trials is the total of finished trials the study should hold.
Machines share a sweep through PostgreSQL (pip install ".[sweep,postgres]" on each), and any of
them gathers every machine's trials into one results file for scripts/report.py:

    python scripts/sweep.py sweeps/assignment.yaml --storage postgresql://USER:PASSWORD@HOST/DB --workers 2
    python scripts/sweep.py sweeps/assignment.yaml --storage postgresql://USER:PASSWORD@HOST/DB \
        --export sweeps/assignment.jsonl

With a wandb login the default backend is wandb (wandb.sweep + wandb.agent):

    python scripts/sweep.py sweeps/assignment.yaml --backend wandb --count 50
    python scripts/sweep.py sweeps/assignment.yaml --backend wandb --sweep_id ENTITY/PROJECT/ID
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinygrad_free import sweep, tracking  # noqa: E402
from tinygrad_free.cli import positive_int, writable_file  # noqa: E402
from tinygrad_free.sweep import command  # noqa: E402
from tinygrad_free.sweep import parse_assignment as assignment  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("sweep_file", help="wandb sweep YAML, e.g. sweeps/assignment.yaml")
    a(
        "--backend",
        choices=("local", "wandb"),
        default=None,
        help="local (Optuna) or wandb; default: local with --storage or --export, else wandb when logged in",
    )
    a(
        "--n_trials",
        type=positive_int,
        default=None,
        help="local: total finished trials the study should hold (default: run_cap, grid size, else 20); "
        "wandb: run_cap of a new sweep",
    )
    a("--workers", type=positive_int, default=1, help="trials (or wandb agents) run at once on this machine")
    a("--storage", default=None, help="Optuna storage URL (default: sqlite:///<sweep folder>/<study>.db)")
    a("--study_name", default=None, help="Optuna study name (default: the sweep's name)")
    a("--results", type=writable_file, default=None, help="results JSONL (default: next to the study)")
    a(
        "--export",
        default=None,
        metavar="JSONL",
        help="local: run nothing; write every finished trial of the study (from any machine) to this results "
        "file, replacing it",
    )
    a("--method", choices=sweep.METHODS, default=None, help="override the file's method")
    a(
        "--set",
        dest="overrides",
        type=assignment,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a parameter for this run, e.g. --set epochs=1 (repeatable)",
    )
    a("--limit", type=positive_int, default=None, help="train every trial on the first N training images")
    a("--data_dir", default=None, help="folder with fashion-mnist/ and mnist/")
    a("--seed", type=int, default=0, help="sampler seed (mixed with the worker index)")
    a("--sweep_id", default=None, help="wandb: join this sweep instead of creating one")
    a("--count", type=positive_int, default=None, help="wandb: runs per agent (default: until the sweep ends)")
    a("-wp", "--wandb_project", default="tinygrad_free")
    a("-we", "--wandb_entity", default=None)
    a(
        "--wandb_mode",
        choices=tracking.WANDB_MODES,
        default=None,
        help="local backend: how each trial logs to wandb (default: online when logged in, else offline)",
    )
    a("-q", "--quiet", action="store_true", help="no line per trial")
    return p


def main(argv=None):
    parser = build_parser()
    return command.run(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
