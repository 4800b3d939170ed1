"""The sweep command: scripts/sweep.py's parsed options turned into a local (Optuna) or wandb
sweep, or an export of a shared study, reported as the script prints it."""

import sys

from .. import sweep as S
from .. import tracking


def export(parser, args, spec):
    """--export: the study's finished trials, from every machine, to one results file."""
    study_name = args.study_name or spec.name
    storage = args.storage or S.default_storage(args.sweep_file, study_name)
    try:
        out = S.export_results(storage, study_name, args.export, metric=spec.metric)
    except ValueError as e:
        parser.error(str(e))
    machines = ", ".join(f"{n} from {m}" for m, n in sorted(out["machines"].items())) or "none"
    print(
        f"exported {out['records']} trials of study {study_name!r} to {args.export} ({machines}); "
        f"{out['skipped']} unfinished or killed trials left out"
    )
    return 0


def run(parser, args):
    """Run, resume, join or export the sweep ``args.sweep_file`` as scripts/sweep.py's options say.

    Misuse (a missing file, an option of the other backend, a missing database driver, an
    unknown study) ends in ``parser.error``, which names it; returns the exit code: 0 when every
    worker finished, 1 when one reported an error, 130 when interrupted (finished trials are kept).
    """
    try:
        spec = S.load_sweep(args.sweep_file, overrides=dict(args.overrides), method=args.method)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    # --storage and --export only mean something to the local backend.
    backend = args.backend or ("local" if args.storage or args.export or not tracking.wandb_logged_in() else "wandb")
    if backend == "wandb":
        if args.storage or args.study_name or args.export:
            parser.error("--storage/--study_name/--export apply to --backend local only")
        sweep_id = S.run_wandb_sweep(
            spec,
            sweep_id=args.sweep_id,
            count=args.count,
            n_trials=args.n_trials,
            workers=args.workers,
            project=args.wandb_project,
            entity=args.wandb_entity,
            results=args.results,
            limit=args.limit,
            data_dir=args.data_dir,
            sweep_path=args.sweep_file,
        )
        print(f"wandb sweep {sweep_id} done on this machine")
        return 0
    if args.sweep_id or args.count:
        parser.error("--sweep_id/--count apply to --backend wandb only; use --n_trials and --storage")
    if args.storage:
        try:
            S.resolve_storage_url(args.storage)
        except ImportError as e:
            parser.error(str(e))
    if args.export:
        return export(parser, args, spec)
    mode = args.wandb_mode or tracking.default_wandb_mode()
    try:
        summary = S.run_local_sweep(
            spec,
            n_trials=args.n_trials,
            workers=args.workers,
            storage=args.storage,
            study_name=args.study_name,
            results=args.results,
            limit=args.limit,
            data_dir=args.data_dir,
            seed=args.seed,
            wandb_mode=mode,
            wandb_project=args.wandb_project,
            wandb_entity=args.wandb_entity,
            sweep_path=args.sweep_file,
            verbose=not args.quiet,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are kept; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"\n{summary.n_finished} finished trials in study {summary.study_name!r} ({summary.seconds:.1f}s this run)")
    best = summary.best
    if best:
        test = best.get("test_accuracy")
        print(
            f"best: {best['run_name']}  {spec.metric} {best[spec.metric]:.4f}  "
            f"test_accuracy {test if test is None else f'{test:.4f}'}"
        )
    print(f"results: {summary.results}\nstudy:   {S.display_url(summary.storage)}")
    if mode == "offline":
        print("wandb runs were logged offline: upload them with `wandb sync --sync-all`")
    for err in summary.errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if summary.errors else 0
