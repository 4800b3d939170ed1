"""bench_train.py's workers: each runs in its own subprocess (``bench_train.py --worker SPEC``),
trains one implementation at one batch size, and writes one JSON file."""

import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train_networks as networks  # noqa: E402
import common as C  # noqa: E402
from bench_train_summary import FLOOR  # noqa: E402


# =====================================================================================================
# Workers: each runs in its own subprocess, trains, and writes one JSON file.
# =====================================================================================================
def _epochs_total(spec):
    return spec["warmup_epochs"] + spec["epochs"]


def worker_ours(spec, x, y):

    from tinygrad_free import backend, kernels, nn, optim
    from tinygrad_free.callbacks import Callback
    from tinygrad_free.train import Trainer

    name = "numpy" if spec["impl"] == "ours-numpy" else "numba"
    backend.set_backend(name)
    compile_s = kernels.warmup() if name == "numba" else 0.0

    class Clock(Callback):
        def on_train_begin(self, trainer):
            self.marks = [(time.perf_counter(), time.process_time())]

        def on_epoch_end(self, trainer, logs):
            self.marks.append((time.perf_counter(), time.process_time()))

    clock = Clock()
    model = networks.ours(spec["network"], spec["seed"])
    x = networks.images(x, spec["network"])
    opt = optim.Adam(model.parameters(), lr=1e-3)
    # A fixed setting is fixed for us too; "auto" is the Trainer's default, the measured policy.
    trainer = Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=[clock], progress=False, threads=spec["threads"])
    hist = trainer.fit(x, y, epochs=_epochs_total(spec), batch_size=spec["batch"], seed=spec["seed"])
    if hist.status != "completed":
        raise RuntimeError(f"training did not complete: {hist.status} {hist.message}")
    wall = hist.history["train_seconds"]
    cpu = [c1 - c0 for (_, c0), (_, c1) in zip(clock.marks[:-1], clock.marks[1:])]
    loop_wall = [w1 - w0 for (w0, _), (w1, _) in zip(clock.marks[:-1], clock.marks[1:])]
    # What the measured policy did: blocks run at each count, explorations, switches.
    events = {}
    for event, count, _ in getattr(trainer, "thread_history", ()):
        key = f"{event} {count}"
        events[key] = events.get(key, 0) + 1
    return {
        "thread_events": events,
        "epoch_wall_s": wall,
        "epoch_cpu_s": cpu,
        "epoch_loop_wall_s": loop_wall,
        "train_loss": hist.history["train_loss"],
        "compile_s": compile_s,
        "trainer_warmup_s": hist.compile_seconds,
        "backend": backend.get_backend(),
        "gemm": kernels.blas.describe() if name == "numba" else "numpy matmul",
    }


def worker_torch(spec, x, y):
    import torch

    threads = spec["threads"]
    if threads != "auto":  # "auto": torch's own default
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass
    torch.manual_seed(spec["seed"])
    model = networks.torch_model(spec["network"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    X, Y = torch.from_numpy(networks.images(x, spec["network"])), torch.from_numpy(y)
    n, bs = len(X), spec["batch"]
    wall, cpu, last_loss = [], [], []
    model.train()
    for _ in range(_epochs_total(spec)):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = torch.randperm(n)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb, yb = X[idx], Y[idx]
            opt.zero_grad()
            loss = crit(model(xb), yb)
            loss.backward()
            opt.step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        last_loss.append(float(loss))
    return {
        "epoch_wall_s": wall,
        "epoch_cpu_s": cpu,
        "last_batch_loss": last_loss,
        "torch_num_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


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
            loss = float((logs or {}).get("loss", float("nan")))  # waits for the last step to finish
            self.wall.append(time.perf_counter() - self.t0)
            self.cpu.append(time.process_time() - self.c0)
            self.loss.append(loss)

    model = networks.keras_model(spec["network"])
    x = networks.images(x, spec["network"], layout="nhwc")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    clock = Clock()
    model.fit(x, y, batch_size=spec["batch"], epochs=_epochs_total(spec), shuffle=True, verbose=0, callbacks=[clock])
    return {
        "epoch_wall_s": clock.wall,
        "epoch_cpu_s": clock.cpu,
        "train_loss": clock.loss,
        "jax_devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def gemm_cases(batch, rng, matmul=None):
    """The matrix products of one training step of the reference network, as zero-argument calls
    writing into preallocated outputs (as the framework does): (name, flops, fn). ``matmul(a, b,
    out)`` defaults to numpy's."""
    import numpy as np

    matmul = matmul or np.matmul
    sizes = C.LAYERS
    f32 = np.float32
    xs = [rng.standard_normal((batch, a)).astype(f32) for a in sizes[:-1]]  # each layer's input
    ws = [(rng.standard_normal((a, b)) * 0.05).astype(f32) for a, b in zip(sizes[:-1], sizes[1:])]
    zs = [np.empty((batch, b), f32) for b in sizes[1:]]
    dzs = [rng.standard_normal((batch, b)).astype(f32) for b in sizes[1:]]
    dws = [np.empty_like(w) for w in ws]
    dxs = [np.empty((batch, a), f32) for a in sizes[:-1]]
    cases = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        cases.append((f"fwd {batch}x{a} @ {a}x{b}", 2 * batch * a * b, lambda i=i: matmul(xs[i], ws[i], out=zs[i])))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        cases.append(
            (f"dW {a}x{batch} @ {batch}x{b}", 2 * batch * a * b, lambda i=i: matmul(xs[i].T, dzs[i], out=dws[i]))
        )
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == 0:
            continue  # the input layer's dx is never computed
        cases.append((f"dx {batch}x{b} @ {b}x{a}", 2 * batch * a * b, lambda i=i: matmul(dzs[i], ws[i].T, out=dxs[i])))
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
    gemms = [
        {"gemm": name, "flops": fl, "us_best": b * 1e6, "us_median": m * 1e6, "gflops_best": fl / b / 1e9}
        for (name, fl, _), b, m in zip(cases, best[:-1], medians[:-1])
    ]
    out = {
        "epoch_wall_s": [step_s * steps],
        "step_s": step_s,
        "step_median_s": step_median_s,
        "epoch_median_based_s": step_median_s * steps,
        "step_in_sequence_s": best[-1],
        "step_in_sequence_median_s": medians[-1],
        "steps_per_epoch": steps,
        "gemms": gemms,
    }
    # The same products through the GEMM the numba kernels call (kernels.blas), one jitted call each.
    from tinygrad_free.kernels import blas

    if blas.AVAILABLE:
        from numba import njit

        @njit
        def jitted(a, b, c):
            blas.gemm(a, b, c, 0.0)

        kcases = gemm_cases(
            spec["batch"], np.random.default_rng(spec["seed"]), matmul=lambda a, b, out: jitted(a, b, out)
        )
        for _, _, fn in kcases:
            fn()  # compile outside the timing
        _, ksamples = C.time_alternating([fn for _, _, fn in kcases], repeats=spec["floor_repeats"], min_time=0.02)
        out.update(kernels_gemm=blas.describe(), kernels_step_s=sum(min(s) for s in ksamples))
    return out


WORKERS = {
    "ours-numba": worker_ours,
    "ours-numpy": worker_ours,
    "ours-baseline": worker_ours,
    "torch": worker_torch,
    "keras": worker_keras,
    FLOOR: worker_floor,
}


def worker_main(spec_json):
    spec = json.loads(spec_json)
    t0 = time.perf_counter()
    if spec.get("source"):  # --baseline: that checkout's package (and models/) come first
        sys.path.insert(0, spec["source"])
    import numpy as np

    with np.load(spec["data"]) as data:
        x, y = data["x"], data["y"]
    n = spec.get("limit")
    if n:
        x, y = x[:n], y[:n]
    result = {
        "impl": spec["impl"],
        "batch": spec["batch"],
        "round": spec["round"],
        "n_train": len(x),
        "pid": os.getpid(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "env": {k: os.environ.get(k) for k in C.THREAD_VARS + C.OPENBLAS_VARS + ("XLA_FLAGS",)},
    }
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
