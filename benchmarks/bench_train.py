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
ours-numpy, torch, keras, GEMM floor; round 2: the same; ...) so drift on a shared machine hits
all of them alike. Reported: the median of all timed epochs per implementation and batch size,
and ratios ours / theirs (ours = the numba path) from the medians of the same run.

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

Writes benchmarks/results/train.json, train.md and train.png (``--quick``: train_quick.*).
train.json, the raw per-run dump, is not kept in git; ``--replot`` redraws train.md and
train.png from a local one without measuring anything.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

IMPLS = {
    "ours-numba": "tinygrad_free (numba)",
    "ours-numpy": "tinygrad_free (numpy)",
    "torch": "PyTorch CPU (plain loop)",
    "keras": "Keras 3 / JAX (model.fit)",
    "ours-baseline": "tinygrad_free (numba), the --baseline checkout",
}
FLOOR = "gemm-floor"
OURS = "ours-numba"
OPTIONAL = {"torch": ("torch",), "keras": ("keras", "jax")}

# (label, batch, implementation compared, largest allowed ours / it)
TARGETS = [
    ("Batch 64: tinygrad_free <= 0.75x Keras/JAX", 64, "keras", 0.75),
    ("Batch 64: tinygrad_free <= 0.35x PyTorch", 64, "torch", 0.35),
    ("Batch 16: tinygrad_free <= 0.7x Keras/JAX", 16, "keras", 0.70),
    ("Batch 16: tinygrad_free <= 0.25x PyTorch", 16, "torch", 0.25),
]
NUMBA_SPEEDUP = 1.5     # the numba path >= 1.5x faster than our NumPy path, batch 16 and 64
SAME_LOSS_RTOL = 1e-3   # indicative "same result" check on the per-epoch training loss


# =====================================================================================================
# Workers: each runs in its own subprocess, trains, and writes one JSON file.
# =====================================================================================================
def _epochs_total(spec):
    return spec["warmup_epochs"] + spec["epochs"]


def worker_ours(spec, x, y):
    import numpy as np
    from tinygrad_free import backend, kernels, nn, optim
    from tinygrad_free.callbacks import Callback
    from tinygrad_free.train import Trainer
    from models import build_mlp

    name = "numpy" if spec["impl"] == "ours-numpy" else "numba"
    backend.set_backend(name)
    compile_s = kernels.warmup() if name == "numba" else 0.0

    class Clock(Callback):
        def on_train_begin(self, trainer):
            self.marks = [(time.perf_counter(), time.process_time())]

        def on_epoch_end(self, trainer, logs):
            self.marks.append((time.perf_counter(), time.process_time()))

    clock = Clock()
    model = build_mlp(784, 3, 128, activation="tanh", weight_init="xavier", num_classes=10, dtype=np.float32,
                      rng=spec["seed"])
    opt = optim.Adam(model.parameters(), lr=1e-3)
    # A fixed setting is fixed for us too; "auto" is the Trainer's default, the measured policy.
    trainer = Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=[clock], progress=False,
                      threads=spec["threads"])
    hist = trainer.fit(x, y, epochs=_epochs_total(spec), batch_size=spec["batch"], seed=spec["seed"])
    if hist.status != "completed":
        raise RuntimeError(f"training did not complete: {hist.status} {hist.message}")
    wall = hist.history["train_seconds"]
    cpu = [c1 - c0 for (_, c0), (_, c1) in zip(clock.marks[:-1], clock.marks[1:])]
    loop_wall = [w1 - w0 for (w0, _), (w1, _) in zip(clock.marks[:-1], clock.marks[1:])]
    return {"epoch_wall_s": wall, "epoch_cpu_s": cpu, "epoch_loop_wall_s": loop_wall,
            "train_loss": hist.history["train_loss"], "compile_s": compile_s,
            "trainer_warmup_s": hist.compile_seconds, "backend": backend.get_backend(),
            "gemm": kernels.blas.describe() if name == "numba" else "numpy matmul"}


def worker_torch(spec, x, y):
    import torch
    threads = spec["threads"]
    if threads != "auto":           # "auto": torch's own default
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass
    torch.manual_seed(spec["seed"])
    nn = torch.nn
    model = nn.Sequential(nn.Linear(784, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(),
                          nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    n, bs = len(X), spec["batch"]
    wall, cpu, last_loss = [], [], []
    model.train()
    for _ in range(_epochs_total(spec)):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = torch.randperm(n)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb, yb = X[idx], Y[idx]
            opt.zero_grad()
            loss = crit(model(xb), yb)
            loss.backward()
            opt.step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        last_loss.append(float(loss))
    return {"epoch_wall_s": wall, "epoch_cpu_s": cpu, "last_batch_loss": last_loss,
            "torch_num_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads()}


def worker_keras(spec, x, y):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras backend is {keras.backend.backend()!r}, expected 'jax'")
    keras.utils.set_random_seed(spec["seed"])

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.wall, self.cpu, self.loss = [], [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            loss = float((logs or {}).get("loss", float("nan")))   # waits for the last step to finish
            self.wall.append(time.perf_counter() - self.t0)
            self.cpu.append(time.process_time() - self.c0)
            self.loss.append(loss)

    layers = keras.layers
    model = keras.Sequential([keras.Input((784,)), layers.Dense(128, activation="tanh"),
                              layers.Dense(128, activation="tanh"), layers.Dense(128, activation="tanh"),
                              layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clock = Clock()
    model.fit(x, y, batch_size=spec["batch"], epochs=_epochs_total(spec), shuffle=True, verbose=0,
              callbacks=[clock])
    return {"epoch_wall_s": clock.wall, "epoch_cpu_s": clock.cpu, "train_loss": clock.loss,
            "jax_devices": [str(d) for d in jax.devices()], "xla_flags": os.environ.get("XLA_FLAGS", "")}


def gemm_cases(batch, rng, matmul=None):
    """The matrix products of one training step of the reference network, as zero-argument calls
    writing into preallocated outputs (as the framework does): (name, flops, fn). ``matmul(a, b,
    out)`` defaults to numpy's."""
    import numpy as np
    matmul = matmul or np.matmul
    sizes = C.LAYERS
    f32 = np.float32
    xs = [rng.standard_normal((batch, a)).astype(f32) for a in sizes[:-1]]       # each layer's input
    ws = [(rng.standard_normal((a, b)) * 0.05).astype(f32) for a, b in zip(sizes[:-1], sizes[1:])]
    zs = [np.empty((batch, b), f32) for b in sizes[1:]]
    dzs = [rng.standard_normal((batch, b)).astype(f32) for b in sizes[1:]]
    dws = [np.empty_like(w) for w in ws]
    dxs = [np.empty((batch, a), f32) for a in sizes[:-1]]
    cases = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        cases.append((f"fwd {batch}x{a} @ {a}x{b}", 2 * batch * a * b,
                      lambda i=i: matmul(xs[i], ws[i], out=zs[i])))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        cases.append((f"dW {a}x{batch} @ {batch}x{b}", 2 * batch * a * b,
                      lambda i=i: matmul(xs[i].T, dzs[i], out=dws[i])))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == 0:
            continue                                    # the input layer's dx is never computed
        cases.append((f"dx {batch}x{b} @ {b}x{a}", 2 * batch * a * b,
                      lambda i=i: matmul(dzs[i], ws[i].T, out=dxs[i])))
    return cases


def worker_floor(spec, x, y):
    import numpy as np
    rng = np.random.default_rng(spec["seed"])
    cases = gemm_cases(spec["batch"], rng)
    fns = [fn for _, _, fn in cases]

    def whole_step():
        for fn in fns:
            fn()
    # each GEMM alone (tight loop), and the 11 in sequence as a step does them. A floor is the
    # best the GEMMs can do, so it uses the best repeat of each (the median is kept too: with 2
    # threads on a busy machine OpenBLAS can stall for milliseconds, which the median shows).
    medians, samples = C.time_alternating(fns + [whole_step], repeats=spec["floor_repeats"], min_time=0.02)
    best = [min(s) for s in samples]
    steps = math.ceil(len(x) / spec["batch"])
    step_s, step_median_s = sum(best[:-1]), sum(medians[:-1])
    gemms = [{"gemm": name, "flops": fl, "us_best": b * 1e6, "us_median": m * 1e6, "gflops_best": fl / b / 1e9}
             for (name, fl, _), b, m in zip(cases, best[:-1], medians[:-1])]
    out = {"epoch_wall_s": [step_s * steps], "step_s": step_s, "step_median_s": step_median_s,
           "epoch_median_based_s": step_median_s * steps, "step_in_sequence_s": best[-1],
           "step_in_sequence_median_s": medians[-1], "steps_per_epoch": steps, "gemms": gemms}
    # The same products through the GEMM the numba kernels call (kernels.blas), one jitted call each.
    from tinygrad_free.kernels import blas
    if blas.AVAILABLE:
        from numba import njit

        @njit
        def jitted(a, b, c):
            blas.gemm(a, b, c, 0.0)
        kcases = gemm_cases(spec["batch"], np.random.default_rng(spec["seed"]),
                            matmul=lambda a, b, out: jitted(a, b, out))
        for _, _, fn in kcases:
            fn()                                       # compile outside the timing
        _, ksamples = C.time_alternating([fn for _, _, fn in kcases], repeats=spec["floor_repeats"], min_time=0.02)
        out.update(kernels_gemm=blas.describe(), kernels_step_s=sum(min(s) for s in ksamples))
    return out


WORKERS = {"ours-numba": worker_ours, "ours-numpy": worker_ours, "ours-baseline": worker_ours, "torch": worker_torch, "keras": worker_keras,
           FLOOR: worker_floor}


def worker_main(spec_json):
    spec = json.loads(spec_json)
    t0 = time.perf_counter()
    if spec.get("source"):          # --baseline: that checkout's package (and models/) come first
        sys.path.insert(0, spec["source"])
    import numpy as np
    with np.load(spec["data"]) as data:
        x, y = data["x"], data["y"]
    n = spec.get("limit")
    if n:
        x, y = x[:n], y[:n]
    result = {"impl": spec["impl"], "batch": spec["batch"], "round": spec["round"], "n_train": len(x),
              "pid": os.getpid(), "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else None, "env": {k: os.environ.get(k) for k in C.THREAD_VARS + C.OPENBLAS_VARS + ("XLA_FLAGS",)}}
    try:
        result.update(WORKERS[spec["impl"]](spec, x, y))
    except ImportError as e:
        result["skipped"] = f"{type(e).__name__}: {e}"
    blas = C.blas_info()
    result["numpy_openblas"] = blas.get("numpy_openblas")
    result["thread_pools"] = blas.get("pools")
    result["process_s"] = time.perf_counter() - t0
    C.write_json(spec["out"], result, atomic=False)
    return 0


# =====================================================================================================
# The parent: settings x rounds x batch sizes x implementations, then the summary.
# =====================================================================================================
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 5,000 images, 1 round, batch 64 only (writes train_quick.*)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of alternated runs (default 3, quick 1)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per run, after 1 warm-up epoch (default 2)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default 16 64, quick 64)")
    p.add_argument("--threads", type=_thread_setting, nargs="+", default=[1, 2, "auto"],
                   help="thread counts, one whole comparison per count; auto: no thread variables, "
                        "each library's default (default: 1 2 auto)")
    p.add_argument("--openblas-env", choices=("as_set", "unset", "both"), default="both",
                   help="OpenBLAS variables as set, with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed, or both")
    p.add_argument("--affinity", choices=("all", "jax", "none"), default="all",
                   help="restrict the CPU affinity of the subprocess to --threads CPUs: for every "
                        "implementation (all, default), only Keras/JAX (jax), or never (none)")
    p.add_argument("--impls", nargs="+", choices=list(IMPLS), default=None,
                   help="implementations to run (default all; ours-baseline only with --baseline)")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="a checkout of an earlier commit (e.g. `git worktree add /tmp/before REF`): adds "
                        "ours-baseline, its numba path, alternated with the others in the same run")
    p.add_argument("--no-floor", action="store_true", help="skip the GEMM-only floor")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images (default all 54,000; "
                                                            "quick 5,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3600, help="seconds one subprocess may take")
    p.add_argument("--out", default=str(C.RESULTS), help="output directory")
    p.add_argument("--name", default=None, help="output file stem (default train, quick: train_quick)")
    p.add_argument("--replot", action="store_true",
                   help="redraw the .md and .png from the .json of an earlier run (not kept in git), measuring nothing")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is None:
        for key in ("rounds", "epochs"):
            if getattr(args, key) is not None and getattr(args, key) < 1:
                p.error(f"--{key} must be >= 1")
        if any(t != "auto" and t < 1 for t in args.threads):
            p.error("--threads must be >= 1 or auto")
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
        return {"impl": spec["impl"], "batch": spec["batch"], "round": spec["round"],
                "error": f"timed out after {timeout:g} s (--timeout)"}
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        return {"impl": spec["impl"], "batch": spec["batch"], "round": spec["round"],
                "error": f"exit code {proc.returncode}: {tail}"}
    result = json.loads(out.read_text())
    result["subprocess_s"] = time.perf_counter() - t0
    return result


def describe_run(r, warmup_epochs):
    if "error" in r:
        return "ERROR " + r["error"].splitlines()[-1][:200] if r["error"] else "ERROR"
    if "skipped" in r:
        return "skipped: " + r["skipped"]
    if r["impl"] == FLOOR:
        return (f"floor {r['epoch_wall_s'][0]:.3f} s/epoch ({r['step_s'] * 1e6:.0f} us/step best, "
                f"{r['step_median_s'] * 1e6:.0f} median, x {r['steps_per_epoch']} steps)")
    wall, cpu = r["epoch_wall_s"], r["epoch_cpu_s"]
    timed = wall[warmup_epochs:]
    util = [c / w for c, w in zip(cpu[warmup_epochs:], timed) if w > 0]
    extra = f" compile {r['compile_s']:.2f}s" if r.get("compile_s") else ""
    arch = (r.get("numpy_openblas") or {}).get("architecture")
    warm = " ".join(f"{t:.2f}" for t in wall[:warmup_epochs])
    return (f"epochs {' '.join(f'{t:.3f}' for t in timed)} s  (warm-up {warm}){extra}  "
            f"cpu/wall {C.fmt(C.median(util), '.2f')}  openblas {arch}")


def summarize(runs, impls, batches, warmup_epochs, n_train):
    """Medians, ratios, the floor fraction and the target checks of one setting's runs."""
    summary = {}
    for impl in impls + [FLOOR]:
        for batch in batches:
            rs = [r for r in runs if r["impl"] == impl and r["batch"] == batch and "epoch_wall_s" in r]
            if not rs:
                continue
            skip = 0 if impl == FLOOR else warmup_epochs
            timed = [t for r in rs for t in r["epoch_wall_s"][skip:]]
            util = [c / w for r in rs for c, w in zip(r.get("epoch_cpu_s", [])[skip:], r["epoch_wall_s"][skip:])
                    if w > 0]
            entry = {"epoch_s": timed, "median_s": C.median(timed), "n_epochs": len(timed),
                     "min_s": min(timed), "max_s": max(timed), "cpu_util_median": C.median(util),
                     "warmup_epoch_s": [r["epoch_wall_s"][0] for r in rs] if skip else [],
                     "openblas_architecture": sorted({str((r.get("numpy_openblas") or {}).get("architecture"))
                                                      for r in rs}),
                     "openblas_num_threads": sorted({str((r.get("numpy_openblas") or {}).get("num_threads"))
                                                     for r in rs})}
            if impl == "keras":
                entry["first_epoch_s_incl_xla_compile"] = entry.pop("warmup_epoch_s")
            if impl == OURS:
                entry["compile_s"] = [r.get("compile_s") for r in rs]
            if impl == FLOOR:
                # the floor: the fastest round (each round already the best repeat of every GEMM)
                k = min(range(len(rs)), key=lambda i: rs[i]["step_s"])
                entry.update(median_s=min(timed), statistic="min over rounds of (sum over GEMMs of the best "
                             "repeat) x steps per epoch", median_based_s=C.median(
                                 [r["epoch_median_based_s"] for r in rs]))
                entry["step_us"] = rs[k]["step_s"] * 1e6
                entry["step_median_us"] = C.median([r["step_median_s"] * 1e6 for r in rs])
                entry["step_in_sequence_us"] = rs[k]["step_in_sequence_s"] * 1e6
                entry["steps_per_epoch"] = rs[0]["steps_per_epoch"]
                entry["gemms"] = rs[k]["gemms"]
                if all("kernels_step_s" in r for r in rs):
                    entry["kernels_gemm"] = rs[0]["kernels_gemm"]
                    entry["kernels_step_us"] = min(r["kernels_step_s"] for r in rs) * 1e6
            summary.setdefault(impl, {})[str(batch)] = entry

    def med(impl, batch):
        return summary.get(impl, {}).get(str(batch), {}).get("median_s")

    ratios, floor = {}, {}
    for batch in batches:
        ours = med(OURS, batch)
        ratios[str(batch)] = {impl: (ours / med(impl, batch) if ours and med(impl, batch) else None)
                              for impl in impls}
        f = med(FLOOR, batch)
        floor[str(batch)] = {"floor_s": f,
                             "fraction_reached_numba": f / ours if f and ours else None,
                             "fraction_reached_numpy": f / med("ours-numpy", batch)
                             if f and med("ours-numpy", batch) else None}

    targets = []
    for label, batch, other, limit in TARGETS:
        r = ratios.get(str(batch), {}).get(other)
        targets.append({"target": label, "batch": batch, "value": r, "limit": limit, "kind": "ratio",
                        "met": None if r is None else bool(r <= limit)})
    for batch in (16, 64):
        r = ratios.get(str(batch), {}).get("ours-numpy")
        speedup = 1 / r if r else None
        targets.append({"target": f"Batch {batch}: numba path >= {NUMBA_SPEEDUP}x faster than the NumPy path",
                        "batch": batch, "value": speedup, "limit": NUMBA_SPEEDUP, "kind": "speedup",
                        "met": None if speedup is None else bool(speedup >= NUMBA_SPEEDUP)})
    # indicative: same seed -> same batches, so the numba and numpy runs' first-epoch losses agree
    # to float32 rounding. Later epochs drift apart as any two GEMM kernels make them (MKL vs
    # OpenBLAS here; numpy's OpenBLAS Haswell vs SkylakeX kernels drift as much), so they are
    # reported, not judged.
    first, later = [], []
    for a in runs:
        if a["impl"] != "ours-numba" or "train_loss" not in a:
            continue
        for b in runs:
            if b["impl"] == "ours-numpy" and b["batch"] == a["batch"] and b["round"] == a["round"] \
                    and "train_loss" in b:
                d = [abs(p - q) / abs(q) for p, q in zip(a["train_loss"], b["train_loss"])]
                first += d[:1]
                later += d[1:]
    worst = max(first) if first else None
    targets.append({"target": "Same result: first-epoch training loss, numba vs NumPy path (same seed), "
                              f"max relative difference <= {SAME_LOSS_RTOL:g} (indicative; the tests are the check)"
                              + (f"; later epochs drift to {max(later):.1e}" if later else ""),
                    "batch": None, "value": worst, "limit": SAME_LOSS_RTOL, "kind": "rel_diff",
                    "met": None if worst is None else bool(worst <= SAME_LOSS_RTOL)})
    return {"summary": summary, "ratios_ours_over_it": ratios, "gemm_floor": floor, "targets": targets}


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
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    batches = args.batches or ([64] if quick else [16, 64])
    limit = args.limit or (5000 if quick else None)
    name = args.name or ("train_quick" if quick else "train")
    if args.replot:
        return C.replot(args.out, name, markdown, plot,
                        command="python3 benchmarks/bench_train.py" + (" --quick" if quick else ""))
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
    meta = {"command": C.command_line(argv),
            "quick": quick, "rounds": rounds, "timed_epochs_per_run": args.epochs,
            "warmup_epochs_per_run": warmup_epochs, "batches": batches, "threads": args.threads,
            "openblas_env_mode": args.openblas_env, "affinity": args.affinity, "n_train": n_train,
            "data_dir": C.repo_relative(data_dir), "network": "-".join(map(str, C.LAYERS)) + " tanh MLP, float32, Adam lr 1e-3, "
                                                                           "softmax cross-entropy",
            "implementations": {k: IMPLS[k] for k in impls}, "baseline_commit": _commit(args.baseline), "skipped": sorted(set(args.impls) - set(impls)),
            "openblas_vars_in_parent_env": C.openblas_vars(), "seed": args.seed, **C.machine_info()}
    ob_text = ", ".join(ob + (f" (= {', '.join(same)}: neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE is set)"
                              if same else "") for ob, same in openblas_settings(args.openblas_env))
    print(f"{n_train} training images; batches {batches}; {rounds} round(s) x {args.epochs} timed epoch(s) "
          f"after {warmup_epochs} warm-up; threads {args.threads}; OpenBLAS env: {ob_text}", flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data_path = Path(tmp) / "train.npz"
        np.savez(data_path, x=np.ascontiguousarray(x, np.float32), y=y.astype(np.int64))
        del x, y, split
        for ob, same, threads in settings:
            env = C.worker_env(threads, ob)
            cpus = C.cpu_set(threads) if args.affinity != "none" else None
            label = f"OpenBLAS env {ob}, threads {threads}"
            applies = "every implementation" if args.affinity == "all" else args.affinity
            print(f"\n== {label}: OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE')} "
                  f"OPENBLAS_L2_SIZE={env.get('OPENBLAS_L2_SIZE')}; affinity {cpus if cpus else 'all CPUs'} "
                  f"({applies})", flush=True)
            runs = []
            t_setting = time.perf_counter()
            for rnd in range(1, rounds + 1):
                for batch in batches:
                    for impl in impls + ([] if args.no_floor else [FLOOR]):
                        spec = {"impl": impl, "batch": batch, "round": rnd, "epochs": args.epochs,
                                "warmup_epochs": warmup_epochs, "threads": threads, "openblas": ob,
                                "seed": args.seed, "data": str(data_path), "limit": None,
                                "floor_repeats": 15 if not quick else 7,
                                "source": str(Path(args.baseline).resolve())
                                if impl == "ours-baseline" else None}
                        use_cpus = cpus if (args.affinity == "all" or impl == "keras") else None
                        r = run_one(spec, env, use_cpus, args.timeout, tmp)
                        runs.append(r)
                        print(f"[r{rnd} b{batch:<3d}] {impl:11s} {describe_run(r, warmup_epochs)}", flush=True)
            setting = {"openblas_env": ob, "same_as": same, "threads": threads,
                       "openblas_vars": C.openblas_vars(env), "affinity_cpus": cpus,
                       "affinity_applies_to": args.affinity, "seconds": time.perf_counter() - t_setting,
                       "runs": runs}
            setting.update(summarize(runs, impls, batches, warmup_epochs, n_train))
            results.append(setting)

    result = {"meta": meta, "settings": results}
    C.write_report(args.out, name, result, markdown, plot)
    return 0


# =====================================================================================================
# Report
# =====================================================================================================
def _setting_title(s):
    ob = "as set" if s["openblas_env"] == "as_set" else "unset"
    vars_ = ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in s["openblas_vars"].items())
    same = f" (identical to {', '.join(s['same_as'])}: neither variable is set)" if s["same_as"] else ""
    t = s["threads"]
    threads = "default threads (no thread variables; ours: measured)" if t == "auto" else \
        f"{t} thread{'s' if t > 1 else ''}"
    return f"OpenBLAS env {ob}{same}, {threads} ({vars_})"


def markdown(result):
    meta = result["meta"]
    v = meta["versions"]
    lines = ["# Training speed: seconds per epoch", "",
             f"Reference network {meta['network']}; {meta['n_train']} Fashion-MNIST training images per epoch. "
             f"Each number is the median of {meta['rounds']} round(s) x {meta['timed_epochs_per_run']} timed epochs "
             f"(every run a fresh subprocess: {meta['warmup_epochs_per_run']} warm-up epoch, then the timed ones; "
             "implementations alternated within each round). Ratio = ours (tinygrad_free, numba) / it, from the "
             "medians of the same run: below 1 means we are faster."
             + (" **Quick smoke run: not a benchmark result.**" if meta["quick"] else ""), "",
             f"{meta['cpu_model']}, {meta['cpu_count']} CPUs; Python {v['python']}, NumPy {v['numpy']}, "
             f"numba {v['numba']}, PyTorch {v.get('torch')}, JAX {v.get('jax')}, Keras {v.get('keras')}; "
             f"{meta['date']}; load average at start {', '.join(f'{x:.2f}' for x in meta['loadavg_at_start'] or [])}.",
             "", f"Command: `python benchmarks/{meta['command']}`", "",
             "The raw per-run results (the `.json` of the same name beside this file) are not kept in git: the "
             "command above measures them again, and `--replot` added to it redraws this page and the `.png` "
             "from a local copy.", ""]
    if meta.get("baseline_commit"):
        lines += [f"ours-baseline: the numba path of commit {meta['baseline_commit']} (--baseline), "
                  "alternated with the others in the same run.", ""]
    if meta["skipped"]:
        lines += [f"Skipped (not installed): {', '.join(IMPLS[k] for k in meta['skipped'])}.", ""]
    batches = meta["batches"]
    for s in result["settings"]:
        lines += [f"## {_setting_title(s)}", ""]
        head = "| implementation | " + " | ".join(f"s/epoch batch {b}" for b in batches) + " | " + \
               " | ".join(f"ours/it batch {b}" for b in batches) + " |"
        lines += [head, "|---|" + "---:|" * (2 * len(batches))]
        summ, ratios = s["summary"], s["ratios_ours_over_it"]
        for impl in [k for k in IMPLS if k in summ]:
            cells = [C.fmt(summ[impl].get(str(b), {}).get("median_s")) for b in batches]
            cells += [C.fmt(ratios[str(b)].get(impl), ".2f") for b in batches]
            lines.append(f"| {IMPLS[impl]} | " + " | ".join(cells) + " |")
        if FLOOR in summ:
            cells = [C.fmt(summ[FLOOR].get(str(b), {}).get("median_s")) for b in batches]
            cells += [f"floor/ours {C.fmt(s['gemm_floor'][str(b)]['fraction_reached_numba'], '.2f')}"
                      for b in batches]
            lines.append("| GEMM-only floor (numpy BLAS) | " + " | ".join(cells) + " |")
        lines.append("")
        notes = []
        ours = summ.get(OURS, {})
        comp = [c for b in batches for c in ours.get(str(b), {}).get("compile_s", []) if c is not None]
        if comp:
            notes.append(f"tinygrad_free numba compile / cache load (`kernels.warmup()`, not in any epoch): "
                         f"first process {comp[0]:.2f} s, median {C.median(comp):.2f} s over {len(comp)} processes")
        ks = summ.get("keras", {})
        for b in batches:
            first = ks.get(str(b), {}).get("first_epoch_s_incl_xla_compile")
            if first:
                notes.append(f"Keras/JAX first epoch at batch {b} (includes XLA compilation; excluded from the "
                             f"median): {', '.join(f'{t:.2f}' for t in first)} s")
        for b in batches:
            fl = summ.get(FLOOR, {}).get(str(b))
            if fl:
                notes.append(f"GEMM floor at batch {b}: {fl['step_us']:.0f} us of GEMMs per step (best repeat of "
                             f"each GEMM, fastest round; medians: {fl['step_median_us']:.0f} us; the 11 run in "
                             f"sequence: {fl['step_in_sequence_us']:.0f} us) x {fl['steps_per_epoch']} steps; "
                             f"fraction of the floor reached: numba "
                             f"{C.fmt(s['gemm_floor'][str(b)]['fraction_reached_numba'], '.2f')}, numpy "
                             f"{C.fmt(s['gemm_floor'][str(b)]['fraction_reached_numpy'], '.2f')}")
                if "kernels_step_us" in fl:
                    notes.append(f"the same GEMMs through the numba kernels' GEMM ({fl['kernels_gemm']}) at batch "
                                 f"{b}: {fl['kernels_step_us']:.0f} us per step (best repeats, fastest round)")
        util = []
        for impl in [k for k in IMPLS if k in summ]:
            u = [summ[impl][str(b)]["cpu_util_median"] for b in batches if str(b) in summ[impl]]
            util.append(f"{IMPLS[impl]} {'/'.join(C.fmt(x, '.2f') for x in u)}")
        if util:
            notes.append(f"CPU used per wall second (median over epochs, batch {'/'.join(map(str, batches))}): "
                         + "; ".join(util))
        gemms = sorted({r["gemm"] for r in s["runs"] if r.get("impl") == OURS and r.get("gemm")})
        if gemms:
            notes.append(f"tinygrad_free (numba) GEMM, called from its kernels: {', '.join(gemms)} "
                         "(`tinygrad_free.kernels.blas`)")
        archs = sorted({a for impl in summ for b in summ[impl].values() for a in b["openblas_architecture"]})
        nthreads = sorted({a for impl in summ for b in summ[impl].values() for a in b["openblas_num_threads"]})
        notes.append(f"numpy's OpenBLAS core type in the subprocesses (threadpoolctl `architecture`): "
                     f"{', '.join(archs)}; its threads: {', '.join(nthreads)}; CPU affinity: "
                     f"{s['affinity_cpus'] if s['affinity_cpus'] else 'all CPUs'}")
        errors = [r for r in s["runs"] if "error" in r]
        if errors:
            notes.append(f"{len(errors)} run(s) failed: " + "; ".join(f"{r['impl']} b{r['batch']} r{r['round']}"
                                                                    for r in errors))
        lines += [f"- {n}" for n in notes] + ["", "Targets (issue 4):", ""]
        for t in s["targets"]:
            if t["value"] is None:
                status, val = "not measured", ""
            else:
                status = "**met**" if t["met"] else "**not met**"
                val = {"ratio": f": {t['value']:.3f}x", "speedup": f": {t['value']:.3f}x",
                       "rel_diff": f": {t['value']:.1e}"}[t["kind"]]
            lines.append(f"- {t['target']}{val} — {status}")
        lines.append("")
    return "\n".join(lines)


def plot(result, path):
    plt = C.pyplot()
    if plt is None:
        return None
    settings = result["settings"]
    batches = result["meta"]["batches"]
    names = [k for k in list(IMPLS) + [FLOOR] if any(k in s["summary"] for s in settings)]
    labels = {**IMPLS, FLOOR: "GEMM-only floor"}
    colors = {"ours-numba": "tab:blue", "ours-numpy": "tab:cyan", "ours-baseline": "tab:purple", "torch": "tab:red", "keras": "tab:orange",
              FLOOR: "tab:gray"}
    fig, axes = plt.subplots(1, len(settings), figsize=(max(6.5, 4.2 * len(settings)), 4.6), squeeze=False)
    width = 0.8 / max(1, len(names))
    for ax, s in zip(axes[0], settings):
        for k, impl in enumerate(names):
            vals = [s["summary"].get(impl, {}).get(str(b), {}).get("median_s") for b in batches]
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(batches))]
            bars = ax.bar(xs, [v or 0 for v in vals], width, color=colors[impl], label=labels[impl],
                          hatch="//" if impl == FLOOR else None)
            for bar, v in zip(bars, vals):
                if v:
                    ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{v:.3g}", ha="center",
                            va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_title(f"OpenBLAS env {s['openblas_env']}, {s['threads']} thread(s)", fontsize=9)
        ax.set_ylabel("seconds per epoch (median)")
        ax.margins(y=0.2)
    handles, texts = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, texts, fontsize=8, loc="lower center", ncol=min(len(names), 3), frameon=False)
    fig.suptitle(f"Reference MLP, {result['meta']['n_train']} images/epoch"
                 + (" (quick smoke run)" if result["meta"]["quick"] else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.11, 1, 1))
    C.save_figure(fig, path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
