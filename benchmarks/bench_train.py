#!/usr/bin/env python3
"""Seconds per training epoch of the reference network: tinygrad_free against PyTorch and Keras/JAX.

The network is the 784-128-128-128-10 tanh MLP, float32, softmax cross-entropy, Adam (lr 1e-3),
trained on the 54,000 Fashion-MNIST training images of ``data.load_split`` at batch 16 and 64.
Implementations:

* ``ours-numba``: tinygrad_free, numba backend, ``Trainer.fit`` (kernels.warmup() is timed
  separately: the numba compile or cache-load time, never part of an epoch);
* ``ours-numpy``: the same with the plain-NumPy backend;
* ``torch``: PyTorch CPU, a plain loop (randperm, index, zero_grad, forward, loss, backward,
  step) with torch.nn.CrossEntropyLoss and torch.optim.Adam;
* ``keras``: Keras 3 on JAX, ``model.fit`` with epoch times from a callback; its first epoch
  includes XLA compilation and is reported separately, never in the median.

PyTorch and Keras are optional: when not installed they are skipped with one line.

Method. Every measurement runs in its own fresh subprocess (one implementation, one batch
size: no shared thread pools, every library starts clean), which trains 1 warm-up epoch and
then ``--epochs`` timed epochs. The implementations are alternated in rounds (round 1: ours-numba,
ours-numpy, torch, keras, GEMM floor, at each thread setting in turn; round 2: the same; ...)
so drift on a shared machine hits every implementation and every thread setting alike.
Reported: the median of all timed epochs per implementation and batch size, and ratios
ours / theirs (ours = the numba path) from the medians of the same run.

Every comparison runs once per thread setting (``--threads``, default 1 and 2) with the same
thread count for every implementation: OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS in the subprocess,
torch.set_num_threads, XLA_FLAGS=--xla_cpu_multi_thread_eigen=..., and, because recent XLA
CPU runtimes size their thread pool from the CPUs the process may use (the Eigen flag alone
does not stop JAX from using both cores), the subprocess's CPU affinity restricted to
``threads`` CPUs (``--affinity``; default: every implementation alike). The measured CPU
utilisation (process CPU time / wall time per epoch) is recorded to show what each really used.

...and once per OpenBLAS environment (``--openblas-env``): ``as_set`` passes the environment as
it is, ``unset`` removes OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (OPENBLAS_CORETYPE=Haswell
halves float32 GEMM speed on AVX-512 machines). The core type numpy's OpenBLAS really uses
(threadpoolctl's ``architecture``) is recorded for every subprocess. When neither variable is
set, the two settings are the same and the comparison runs once.

The GEMM-only floor: the matrix products of one training step (forward x @ W for the 4
layers, dW = x.T @ dz for the 4 layers, dx = dz @ W.T for the 3 non-input layers) timed with
numpy's BLAS in a subprocess of the same setting (each GEMM in a tight loop into a preallocated
output; the best repeat of each, the fastest round: a floor is what the GEMMs can do, and the
medians are recorded too), times the steps per epoch; reported with the fraction of it our epoch
time reaches (floor / ours).

    python benchmarks/bench_train.py                 # full: 3 rounds x 2 epochs, batch 16 and 64,
                                                     # threads 1 and 2, OpenBLAS env as set and unset
    python benchmarks/bench_train.py --quick         # smoke test: 5,000 images, 1 round, batch 64
    python benchmarks/bench_train.py --network convnet --threads 1 2 --rounds 2 --openblas-env as_set
                                                     # Keras's mnist_convnet instead of the MLP (batch
                                                     # 128, 20,000 images, no floor; convnet.md)
    python benchmarks/bench_train.py --network lstm --threads 1 2 --rounds 3 --openblas-env as_set
                                                     # the mnist_lstm network (batch 128, 20,000
                                                     # images, no floor; lstm.md; issue 27)

Writes benchmarks/results/train.json, train.md and train.png (``--quick``: train_quick.*).
train.json, the raw per-run dump, is not kept in git; ``--replot`` redraws train.md and
train.png from a local one without measuring anything.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
from bench_train_networks import NETWORKS  # noqa: E402
from bench_train_render import markdown, plot  # noqa: E402
from bench_train_summary import FLOOR, IMPLS, OPTIONAL, describe_run, summarize  # noqa: E402
from bench_train_workers import worker_main  # noqa: E402


# =====================================================================================================
# The parent: settings x rounds x batch sizes x implementations, then the summary.
# =====================================================================================================
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke test: 5,000 images, 1 round, batch 64 only (writes train_quick.*)"
    )
    p.add_argument("--rounds", type=int, default=None, help="rounds of alternated runs (default 3, quick 1)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per run, after 1 warm-up epoch (default 2)")
    p.add_argument(
        "--network",
        choices=sorted(NETWORKS),
        default="mlp",
        help="mlp: the reference MLP (default); convnet: Keras's mnist_convnet; lstm: the mnist_lstm "
        "network (both: batch 128, 20,000 images per epoch, no GEMM floor, results named convnet.* / lstm.*)",
    )
    p.add_argument(
        "--batches", type=int, nargs="+", default=None, help="batch sizes (default 16 64, quick 64; convnet 128)"
    )
    p.add_argument(
        "--threads",
        type=_thread_setting,
        nargs="+",
        default=[1, 2, "auto"],
        help="thread counts, one whole comparison per count; auto: no thread variables, "
        "each library's default (default: 1 2 auto)",
    )
    p.add_argument(
        "--openblas-env",
        choices=("as_set", "unset", "both"),
        default="both",
        help="OpenBLAS variables as set, with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed, or both",
    )
    p.add_argument(
        "--affinity",
        choices=("all", "jax", "none"),
        default="all",
        help="restrict the CPU affinity of the subprocess to --threads CPUs: for every "
        "implementation (all, default), only Keras/JAX (jax), or never (none)",
    )
    p.add_argument(
        "--impls",
        nargs="+",
        choices=list(IMPLS),
        default=None,
        help="implementations to run (default all; ours-baseline only with --baseline)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="DIR",
        help="a checkout of an earlier commit (e.g. `git worktree add /tmp/before REF`): adds "
        "ours-baseline, its numba path, alternated with the others in the same run",
    )
    p.add_argument("--no-floor", action="store_true", help="skip the GEMM-only floor")
    p.add_argument(
        "--limit", type=int, default=None, help="train on the first N images (default all 54,000; quick 5,000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3600, help="seconds one subprocess may take")
    p.add_argument("--out", default=str(C.RESULTS), help="output directory")
    p.add_argument("--name", default=None, help="output file stem (default train, quick: train_quick)")
    p.add_argument(
        "--replot",
        action="store_true",
        help="redraw the .md and .png from the .json of an earlier run (not kept in git), measuring nothing",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is None:
        for key in ("rounds", "epochs"):
            if getattr(args, key) is not None and getattr(args, key) < 1:
                p.error(f"--{key} must be >= 1")
        if any(t != "auto" and t < 1 for t in args.threads):
            p.error("--threads must be >= 1 or auto")
        if args.baseline and not (Path(args.baseline) / "tinygrad_free" / "__init__.py").is_file():
            p.error(
                f"--baseline {args.baseline}: not a checkout of this project (no tinygrad_free/__init__.py "
                "in it); make one with `git worktree add DIR COMMIT`"
            )
    return args


def _thread_setting(text):
    """--threads: a count, or "auto" (no thread variables: each library's default, ours measured)."""
    return "auto" if text == "auto" else int(text)


def openblas_settings(mode):
    """[(label, same_as)]: the OpenBLAS environments to run (one when as-set equals unset)."""
    wanted = ["as_set", "unset"] if mode == "both" else [mode]
    if len(wanted) == 2 and not any(C.openblas_vars().values()):
        return [("as_set", ["unset"])]
    return [(w, []) for w in wanted]


def run_one(spec, env, cpus, timeout, tmpdir):
    out = Path(tmpdir) / f"{spec['impl']}-{spec['batch']}-{spec['round']}-{spec['threads']}-{spec['openblas']}.json"
    spec = dict(spec, out=str(out))
    t0 = time.perf_counter()
    try:
        proc = C.run_python([str(Path(__file__).resolve()), "--worker", json.dumps(spec)], env, cpus, timeout)
    except subprocess.TimeoutExpired:
        return {
            "impl": spec["impl"],
            "batch": spec["batch"],
            "round": spec["round"],
            "error": f"timed out after {timeout:g} s (--timeout)",
        }
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        return {
            "impl": spec["impl"],
            "batch": spec["batch"],
            "round": spec["round"],
            "error": f"exit code {proc.returncode}: {tail}",
        }
    result = json.loads(out.read_text())
    result["subprocess_s"] = time.perf_counter() - t0
    return result


def _commit(checkout):
    """The commit a --baseline checkout is at (recorded instead of its path)."""
    if not checkout:
        return None
    proc = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or None


def main(argv=None):
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    quick, not_mlp = args.quick, args.network != "mlp"
    rounds = args.rounds or (1 if quick else 3)
    batches = args.batches or ([128] if not_mlp else [64] if quick else [16, 64])
    limit = args.limit or (5000 if quick else 20000 if not_mlp else None)
    stem = args.network if not_mlp else "train"
    name = args.name or (stem + "_quick" if quick else stem)
    if not_mlp:
        args.no_floor = True  # the floor is the MLP's GEMMs
    if args.replot:
        return C.replot(
            args.out, name, markdown, plot, command="python3 benchmarks/bench_train.py" + (" --quick" if quick else "")
        )
    warmup_epochs = 1
    data_dir = C.ensure_data_env()

    if args.impls is None:
        args.impls = [k for k in IMPLS if k != "ours-baseline" or args.baseline]
    impls = []
    for impl in args.impls:
        if impl == "ours-baseline" and not args.baseline:
            print("skipped: ours-baseline needs --baseline DIR", flush=True)
            continue
        missing = [m for m in OPTIONAL.get(impl, ()) if not C.installed(m)]
        if missing:
            print(f"skipped: {IMPLS[impl]}: {' and '.join(missing)} not installed", flush=True)
        else:
            impls.append(impl)

    import numpy as np

    from tinygrad_free.data import load_split

    split = load_split("fashion_mnist")
    x, y = split.x_train, split.y_train
    if limit:
        x, y = x[:limit], y[:limit]
    n_train = len(x)

    settings = [(ob, same, t) for ob, same in openblas_settings(args.openblas_env) for t in args.threads]
    meta = {
        "command": C.command_line(argv),
        "quick": quick,
        "rounds": rounds,
        "timed_epochs_per_run": args.epochs,
        "warmup_epochs_per_run": warmup_epochs,
        "batches": batches,
        "threads": args.threads,
        "openblas_env_mode": args.openblas_env,
        "affinity": args.affinity,
        "n_train": n_train,
        "data_dir": C.repo_relative(data_dir),
        "network": NETWORKS[args.network],
        "network_key": args.network,
        "implementations": {k: IMPLS[k] for k in impls},
        "baseline_commit": _commit(args.baseline),
        "skipped": sorted(set(args.impls) - set(impls)),
        "openblas_vars_in_parent_env": C.openblas_vars(),
        "seed": args.seed,
        **C.machine_info(),
    }
    ob_text = ", ".join(
        ob + (f" (= {', '.join(same)}: neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE is set)" if same else "")
        for ob, same in openblas_settings(args.openblas_env)
    )
    print(
        f"{n_train} training images; batches {batches}; {rounds} round(s) x {args.epochs} timed epoch(s) "
        f"after {warmup_epochs} warm-up; threads {args.threads}; OpenBLAS env: {ob_text}",
        flush=True,
    )

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data_path = Path(tmp) / "train.npz"
        np.savez(data_path, x=np.ascontiguousarray(x, np.float32), y=y.astype(np.int64))
        del x, y, split
        # Rounds outermost: every round runs each setting (thread count, OpenBLAS environment) and
        # in it each implementation, so the machine's drift over the run hits all of them alike.
        runs_of = [[] for _ in settings]
        seconds_of = [0.0 for _ in settings]
        for rnd in range(1, rounds + 1):
            for k, (ob, _same, threads) in enumerate(settings):
                env = C.worker_env(threads, ob)
                cpus = C.cpu_set(threads) if args.affinity != "none" else None
                applies = "every implementation" if args.affinity == "all" else args.affinity
                print(
                    f"\n== round {rnd}, OpenBLAS env {ob}, threads {threads}: "
                    f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE')} OPENBLAS_L2_SIZE={env.get('OPENBLAS_L2_SIZE')}; "
                    f"affinity {cpus if cpus else 'all CPUs'} ({applies})",
                    flush=True,
                )
                t_setting = time.perf_counter()
                for batch in batches:
                    for impl in impls + ([] if args.no_floor else [FLOOR]):
                        spec = {
                            "impl": impl,
                            "batch": batch,
                            "round": rnd,
                            "epochs": args.epochs,
                            "warmup_epochs": warmup_epochs,
                            "threads": threads,
                            "openblas": ob,
                            "seed": args.seed,
                            "network": args.network,
                            "data": str(data_path),
                            "limit": None,
                            "floor_repeats": 15 if not quick else 7,
                            "source": str(Path(args.baseline).resolve()) if impl == "ours-baseline" else None,
                        }
                        use_cpus = cpus if (args.affinity == "all" or impl == "keras") else None
                        r = run_one(spec, env, use_cpus, args.timeout, tmp)
                        runs_of[k].append(r)
                        print(f"[r{rnd} b{batch:<3d}] {impl:11s} {describe_run(r, warmup_epochs)}", flush=True)
                seconds_of[k] += time.perf_counter() - t_setting
        for k, (ob, same, threads) in enumerate(settings):
            env = C.worker_env(threads, ob)
            cpus = C.cpu_set(threads) if args.affinity != "none" else None
            runs = runs_of[k]
            setting = {
                "openblas_env": ob,
                "same_as": same,
                "threads": threads,
                "openblas_vars": C.openblas_vars(env),
                "affinity_cpus": cpus,
                "affinity_applies_to": args.affinity,
                "seconds": seconds_of[k],
                "runs": runs,
            }
            setting.update(summarize(runs, impls, batches, warmup_epochs, n_train, args.network))
            results.append(setting)

    result = {"meta": meta, "settings": results}
    C.write_report(args.out, name, result, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
