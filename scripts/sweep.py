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

from tinygrad_free.cli import positive_int, writable_file  # noqa: E402
from tinygrad_free.sweep import parse_assignment as assignment  # noqa: E402
from tinygrad_free import sweep, tracking  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("sweep_file", help="wandb sweep YAML, e.g. sweeps/assignment.yaml")
    a("--backend", choices=("local", "wandb"), default=None,
      help="local (Optuna) or wandb; default: local with --storage or --export, else wandb when logged in")
    a("--n_trials", type=positive_int, default=None,
      help="local: total finished trials the study should hold (default: run_cap, grid size, else 20); "
           "wandb: run_cap of a new sweep")
    a("--workers", type=positive_int, default=1, help="trials (or wandb agents) run at once on this machine")
    a("--storage", default=None, help="Optuna storage URL (default: sqlite:///<sweep folder>/<study>.db)")
    a("--study_name", default=None, help="Optuna study name (default: the sweep's name)")
    a("--results", type=writable_file, default=None, help="results JSONL (default: next to the study)")
    a("--export", default=None, metavar="JSONL",
      help="local: run nothing; write every finished trial of the study (from any machine) to this results "
           "file, replacing it")
    a("--method", choices=sweep.METHODS, default=None, help="override the file's method")
    a("--set", dest="overrides", type=assignment, action="append", default=[], metavar="KEY=VALUE",
      help="fix a parameter for this run, e.g. --set epochs=1 (repeatable)")
    a("--limit", type=positive_int, default=None, help="train every trial on the first N training images")
    a("--data_dir", default=None, help="folder with fashion-mnist/ and mnist/")
    a("--seed", type=int, default=0, help="sampler seed (mixed with the worker index)")
    a("--sweep_id", default=None, help="wandb: join this sweep instead of creating one")
    a("--count", type=positive_int, default=None, help="wandb: runs per agent (default: until the sweep ends)")
    a("-wp", "--wandb_project", default="tinygrad_free")
    a("-we", "--wandb_entity", default=None)
    a("--wandb_mode", choices=("online", "offline", "disabled"), default=None,
      help="local backend: how each trial logs to wandb (default: online when logged in, else offline)")
    a("-q", "--quiet", action="store_true", help="no line per trial")
    return p


def export(parser, args, spec):
    """--export: the study's finished trials, from every machine, to one results file."""
    study_name = args.study_name or spec.name
    storage = args.storage or sweep.default_storage(args.sweep_file, study_name)
    try:
        out = sweep.export_results(storage, study_name, args.export, metric=spec.metric)
    except ValueError as e:
        parser.error(str(e))
    machines = ", ".join(f"{n} from {m}" for m, n in sorted(out["machines"].items())) or "none"
    print(f"exported {out['records']} trials of study {study_name!r} to {args.export} ({machines}); "
          f"{out['skipped']} unfinished or killed trials left out")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        spec = sweep.load_sweep(args.sweep_file, overrides=dict(args.overrides), method=args.method)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    # --storage and --export only mean something to the local backend.
    backend = args.backend or ("local" if args.storage or args.export or not tracking.wandb_logged_in()
                               else "wandb")
    if backend == "wandb":
        if args.storage or args.study_name or args.export:
            parser.error("--storage/--study_name/--export apply to --backend local only")
        sweep_id = sweep.run_wandb_sweep(spec, sweep_id=args.sweep_id, count=args.count, n_trials=args.n_trials,
                                         workers=args.workers, project=args.wandb_project,
                                         entity=args.wandb_entity, results=args.results, limit=args.limit,
                                         data_dir=args.data_dir, sweep_path=args.sweep_file)
        print(f"wandb sweep {sweep_id} done on this machine")
        return 0
    if args.sweep_id or args.count:
        parser.error("--sweep_id/--count apply to --backend wandb only; use --n_trials and --storage")
    if args.storage:
        try:
            sweep.resolve_storage_url(args.storage)
        except ImportError as e:
            parser.error(str(e))
    if args.export:
        return export(parser, args, spec)
    mode = args.wandb_mode or tracking.default_wandb_mode()
    try:
        summary = sweep.run_local_sweep(spec, n_trials=args.n_trials, workers=args.workers, storage=args.storage,
                                        study_name=args.study_name, results=args.results, limit=args.limit,
                                        data_dir=args.data_dir, seed=args.seed, wandb_mode=mode,
                                        wandb_project=args.wandb_project, wandb_entity=args.wandb_entity,
                                        sweep_path=args.sweep_file, verbose=not args.quiet)
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are kept; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"\n{summary.n_finished} finished trials in study {summary.study_name!r} "
          f"({summary.seconds:.1f}s this run)")
    best = summary.best
    if best:
        test = best.get("test_accuracy")
        print(f"best: {best['run_name']}  {spec.metric} {best[spec.metric]:.4f}  "
              f"test_accuracy {test if test is None else f'{test:.4f}'}")
    print(f"results: {summary.results}\nstudy:   {sweep.display_url(summary.storage)}")
    if mode == "offline":
        print("wandb runs were logged offline: upload them with `wandb sync --sync-all`")
    for err in summary.errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
