"""Benchmark every hot kernel: the numba twin against the NumPy one.

Shapes are those of the reference network 784-128-128-128-10 at batch 16/64/256, in float32 and
float64: bias + activation and the activation/bias gradients on (B, 128) hidden layers and the
(B, 10) output, each whole layer forward and backward (GEMMs included), the fused losses on
(B, 10) logits, the augmentation's image shift on (B, 28, 28), the optimizer kernels on the
network's packed parameter buffer, and the layers of Keras's mnist_convnet at batch 128 (each
3x3 convolution forward and backward, each 2x2 max pooling forward and backward). Each timing is
the median over many repeats of the per-call time of a timeit-style loop (the two backends are
timed alternately so that noise on a shared machine hits both alike), with one BLAS and one
numba thread; then the optimizer kernels' parallel twins on all of numba's threads against the
serial ones. Also reported: the per-call cost at the smallest shapes (dispatch overhead), the
kernel time of one training step, and the numba compile time (``kernels.warmup()``; cold = empty
numba cache, in a fresh process).

    python benchmarks/bench_kernels.py            # full run
    python benchmarks/bench_kernels.py --quick    # fewer repeats, batch 16/64 only

Writes benchmarks/results/kernels.json and benchmarks/results/kernels.md.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C  # noqa: E402
from bench_kernels_cases import BACKENDS, CONVNET_BATCH, LAYERS, make_cases, make_convnet_cases  # noqa: E402
from bench_kernels_render import markdown  # noqa: E402

from tinygrad_free import kernels  # noqa: E402
from tinygrad_free.kernels import dense  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, batch 16 and 64 only")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default 16 64 256)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=None, help="timing repeats per case (default 41, quick 11)")
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds each repeat should last at least (default 2e-3, quick 5e-4)",
    )
    p.add_argument(
        "--no-cold-compile",
        action="store_true",
        help="skip measuring the cold compile time (a fresh process with an empty numba cache)",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="output directory")
    return p.parse_args(argv)


# --- timing ---------------------------------------------------------------------------------------
def _loop(fn, args, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn(*args)
    return time.perf_counter() - t0


def calibrate(fn, args, min_time):
    """Calls per repeat so that a repeat lasts at least ``min_time`` (as timeit.autorange)."""
    number = 1
    while True:
        if _loop(fn, args, number) >= min_time:
            return number
        number *= 2


def time_pair(cases, repeats, min_time):
    """Median microseconds per call of each (fn, args) in ``cases``, timed alternately."""
    numbers = [calibrate(fn, args, min_time) for fn, args in cases]
    samples = [[] for _ in cases]
    for _ in range(repeats):
        for k, (fn, args) in enumerate(cases):
            samples[k].append(_loop(fn, args, numbers[k]) / numbers[k])
    return [statistics.median(s) * 1e6 for s in samples]


# --- the cases --------------------------------------------------------------------------------------
def n_params(layers=LAYERS):
    weights = sum(a * b for a, b in zip(layers[:-1], layers[1:]))
    return weights + sum(layers[1:]), weights


def make_optimizer_cases(dtype, rng, n=None, n_decay=None):
    """Optimizer kernels on the packed parameter buffer (independent of the batch size)."""
    if n is None:
        n, n_decay = n_params()

    def state():
        # every backend gets its own copy of the same values, so both follow the same trajectory
        base = np.abs(rng.standard_normal(n)).astype(dtype) * dtype.type(1e-2)
        return {be: base.copy() for be, _ in BACKENDS}

    w, g, u, m, v = (state() for _ in range(5))
    tmp = {be: np.empty((2, n), dtype) for be, _ in BACKENDS}
    hp = dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8)
    specs = [
        ("sgd", "", lambda be: (w[be], g[be], tmp[be], hp["lr"])),
        ("momentum", "heavy-ball", lambda be: (w[be], g[be], u[be], tmp[be], hp["lr"], 0.9, False)),
        ("momentum", "nesterov", lambda be: (w[be], g[be], u[be], tmp[be], hp["lr"], 0.9, True)),
        ("rmsprop", "", lambda be: (w[be], g[be], v[be], tmp[be], hp["lr"], 0.9, hp["eps"])),
        (
            "adam",
            "",
            lambda be: (
                w[be],
                g[be],
                m[be],
                v[be],
                tmp[be],
                hp["lr"],
                hp["b1"],
                hp["b2"],
                hp["eps"],
                1 - 0.9**10,
                1 - 0.999**10,
            ),
        ),
        (
            "nadam",
            "",
            lambda be: (
                w[be],
                g[be],
                m[be],
                v[be],
                tmp[be],
                hp["lr"],
                hp["b1"],
                hp["b2"],
                hp["eps"],
                1 - 0.999**10,
                0.9 / (1 - 0.9**10),
                0.1 / (1 - 0.9**10),
            ),
        ),
        ("weight_decay", f"n_decay={n_decay}", lambda be: (g[be], w[be], 5e-4, n_decay, np.empty_like(g[be]))),
    ]
    return [
        (kernel, variant, (n,), {be: (getattr(ops, kernel), make(be)) for be, ops in BACKENDS})
        for kernel, variant, make in specs
    ]


def overhead_cases(dtype):
    """Each kernel at its smallest shape: the per-call cost (Python + dispatch) with ~no work."""
    z, b = np.full((1, 1), 0.5, dtype), np.zeros(1, dtype)
    y, gy = np.full((1, 1), 0.5, dtype), np.ones((1, 1), dtype)
    lg, lb = np.zeros((1, 2), dtype), np.zeros(1, np.uint8)
    w, g, m, v, t = (np.full(1, 0.5, dtype) for _ in range(5))
    tmp = np.empty((2, 1), dtype)
    specs = {
        "bias_act": lambda ops: (ops.bias_act, (z, b, dense.TANH)),
        "act_grad": lambda ops: (ops.act_grad, (y, gy, dense.TANH, t.reshape(1, 1))),
        "dense_grad": lambda ops: (ops.dense_grad, (y, gy, dense.TANH, np.empty_like(y), b.copy())),
        "dense_forward": lambda ops: (ops.dense_forward, (z, z, b, dense.TANH, np.empty_like(z))),
        "dense_backward": lambda ops: (
            ops.dense_backward,
            (z, z, y, gy, dense.TANH, np.empty_like(y), np.empty_like(z), 0.0, b.copy(), np.empty_like(z)),
        ),
        "softmax_cross_entropy": lambda ops: (ops.softmax_cross_entropy, (lg, lb, np.empty_like(lg))),
        "softmax_squared_error": lambda ops: (ops.softmax_squared_error, (lg, lb, np.empty_like(lg))),
        "sgd": lambda ops: (ops.sgd, (w, g, tmp, 1e-3)),
        "momentum": lambda ops: (ops.momentum, (w, g, m, tmp, 1e-3, 0.9, False)),
        "rmsprop": lambda ops: (ops.rmsprop, (w, g, v, tmp, 1e-3, 0.9, 1e-8)),
        "adam": lambda ops: (ops.adam, (w, g, m, v, tmp, 1e-3, 0.9, 0.999, 1e-8, 0.5, 0.5)),
        "nadam": lambda ops: (ops.nadam, (w, g, m, v, tmp, 1e-3, 0.9, 0.999, 1e-8, 0.5, 1.0, 0.5)),
        "weight_decay": lambda ops: (ops.weight_decay, (g, w, 1e-4, 1, np.empty_like(g))),
        "shift_images": lambda ops: (
            ops.shift_images,
            (z.reshape(1, 1, 1), np.zeros((1, 2), np.int64), np.empty((1, 1, 1), dtype)),
        ),
    }
    return [(kernel, "", (1,), {be: make(ops) for be, ops in BACKENDS}) for kernel, make in specs.items()]


def dispatch_floor():
    """A jitted function that does nothing, called with the arguments of bias_act: numba's floor."""
    from numba import njit

    @njit
    def noop(z, b, code):
        return None

    z, b = np.zeros((16, 128), np.float32), np.zeros(128, np.float32)
    noop(z, b, 2)

    def wrapped(z, b, code):
        noop(z, b, code)
        return z

    return [("numba no-op (z, b, code)", noop, (z, b, 2)), ("python wrapper + no-op", wrapped, (z, b, 2))]


# --- compile time ----------------------------------------------------------------------------------
def cold_compile_seconds():
    """kernels.warmup() in a fresh process with an empty numba cache directory."""
    code = (
        "import time; t = time.perf_counter(); import tinygrad_free.kernels as k; "
        "t_import = time.perf_counter() - t; print(t_import, k.warmup())"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        t_import, t_warm = map(float, out.stdout.split()[-2:])
        # and a second fresh process that finds the cache filled
        out2 = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        _, t_cached = map(float, out2.stdout.split()[-2:])
    return {"cold_warmup_s": t_warm, "cached_warmup_s": t_cached, "import_s": t_import}


# --- main --------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    # One BLAS thread: the kernels are compared on one core, and with the numba kernels calling
    # MKL while NumPy calls its OpenBLAS, two 2-thread pools spinning on two cores make each
    # other's GEMMs up to 40x slower (measured here: 1.7 ms for a 36 us product).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    # ... and one numba thread, so the optimizer rows are the serial kernels; their parallel
    # twins get a section of their own.
    import numba

    numba_threads = numba.get_num_threads()
    numba.set_num_threads(1)
    quick = args.quick
    batches = args.batches or ([16, 64] if quick else [16, 64, 256])
    repeats = args.repeats or (11 if quick else 41)
    min_time = args.min_time or (5e-4 if quick else 2e-3)
    dtypes = [np.dtype(d) for d in args.dtypes]

    compile_info = {"warmup_in_process_s": kernels.warmup(tuple(dtypes))}
    if not args.no_cold_compile:
        compile_info.update(cold_compile_seconds())
    print("compile:", {k: round(v, 3) for k, v in compile_info.items()}, flush=True)

    rng = np.random.default_rng(0)
    rows = []

    def run(kind, batch, dtype, cases):
        for kernel, variant, shape, impls in cases:
            t_np, t_nb = time_pair([impls["numpy"], impls["numba"]], repeats, min_time)
            row = {
                "section": kind,
                "kernel": kernel,
                "variant": variant,
                "batch": batch,
                "shape": list(shape),
                "dtype": str(dtype),
                "numpy_us": t_np,
                "numba_us": t_nb,
                "speedup": t_np / t_nb,
            }
            rows.append(row)
            print(
                f"{kind:9s} {kernel:22s} {variant:12s} {str(shape):12s} {str(dtype):8s} "
                f"numpy {t_np:9.2f} us  numba {t_nb:9.2f} us  x{t_np / t_nb:6.2f}",
                flush=True,
            )

    for dtype in dtypes:
        run("overhead", None, dtype, overhead_cases(dtype))
    for dtype in dtypes:
        for batch in batches:
            run("batch", batch, dtype, make_cases(batch, dtype, rng))
        run("optimizer", None, dtype, make_optimizer_cases(dtype, rng))
        run("convnet", CONVNET_BATCH, dtype, make_convnet_cases(dtype, rng))

    # The optimizer kernels' parallel twins (kernels.parallel) against the serial kernels, on the
    # float32 buffer; what Trainer(threads="auto") runs when numba and BLAS have two threads.
    parallel_rows = []
    if numba_threads > 1 and kernels.parallel.layer_ok():
        for kernel, variant, shape, impls in make_optimizer_cases(np.dtype(np.float32), rng):
            fn, fargs = impls["numba"]
            if not hasattr(fn, "parallel"):
                continue
            with kernels.parallel.num_threads(numba_threads):
                t_1, t_n = time_pair([(fn.serial, fargs), (fn.parallel, fargs)], repeats, min_time)
            parallel_rows.append(
                {
                    "kernel": kernel,
                    "variant": variant,
                    "shape": list(shape),
                    "dtype": "float32",
                    "threads": numba_threads,
                    "serial_us": t_1,
                    "parallel_us": t_n,
                    "speedup": t_1 / t_n,
                }
            )
            print(
                f"parallel  {kernel:22s} {variant:12s} {str(shape):12s} 1 thread {t_1:9.2f} us  "
                f"{numba_threads} threads {t_n:9.2f} us  x{t_1 / t_n:6.2f}",
                flush=True,
            )
        layer = numba.threading_layer()
    else:
        layer = None
        print("parallel: skipped (numba has one thread, or only its workqueue layer)", flush=True)

    floor = []
    for label, fn, fargs in dispatch_floor():
        (t,) = time_pair([(fn, fargs)], repeats, min_time)
        floor.append({"call": label, "us": t})
        print(f"dispatch floor: {label:28s} {t * 1e3:7.0f} ns", flush=True)

    # kernel time of one training step of the reference net (tanh hidden layers, cross-entropy, Adam + L2)
    def pick(section, kernel, variant, batch, dtype, shape=None):
        for r in rows:
            if (r["section"], r["kernel"], r["variant"], r["batch"], r["dtype"]) == (
                section,
                kernel,
                variant,
                batch,
                str(dtype),
            ) and (shape is None or r["shape"] == list(shape)):
                return r
        raise KeyError((section, kernel, variant, batch, dtype))

    steps = []
    n_hidden = len(LAYERS) - 2
    for dtype in dtypes:
        for batch in batches:
            parts = [
                (n_hidden, pick("batch", "bias_act", "tanh", batch, dtype)),
                (1, pick("batch", "bias_act", "identity", batch, dtype)),
                (n_hidden, pick("batch", "dense_grad", "tanh", batch, dtype)),
                (1, pick("batch", "softmax_cross_entropy", "", batch, dtype)),
                (1, pick("optimizer", "weight_decay", f"n_decay={n_params()[1]}", None, dtype)),
                (1, pick("optimizer", "adam", "", None, dtype)),
            ]
            first, hidden_, last = (
                f"{a}x{b} {t}"
                for a, b, t in (
                    (LAYERS[0], LAYERS[1], "tanh"),
                    (LAYERS[1], LAYERS[1], "tanh"),
                    (LAYERS[-2], LAYERS[-1], "identity"),
                )
            )
            whole = (
                [(1, pick("batch", kind, first, batch, dtype)) for kind in ("dense_forward", "dense_backward")]
                + [
                    (n_hidden - 1, pick("batch", kind, hidden_, batch, dtype))
                    for kind in ("dense_forward", "dense_backward")
                ]
                + [(1, pick("batch", kind, last, batch, dtype)) for kind in ("dense_forward", "dense_backward")]
                + parts[3:]
            )
            for label, ks in (("activations, losses, optimizer", parts), ("whole layers incl. GEMMs", whole)):
                t_np = sum(k * r["numpy_us"] for k, r in ks)
                t_nb = sum(k * r["numba_us"] for k, r in ks)
                steps.append(
                    {
                        "batch": batch,
                        "dtype": str(dtype),
                        "kernels": label,
                        "calls": sum(k for k, _ in ks),
                        "numpy_us": t_np,
                        "numba_us": t_nb,
                        "speedup": t_np / t_nb,
                    }
                )

    meta = {
        "quick": quick,
        "numba_threading_layer": layer,
        "repeats": repeats,
        "min_time_s": min_time,
        "batches": batches,
        "layers": list(LAYERS),
        "n_params": n_params()[0],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "gemm": kernels.blas.describe(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.uname().processor,
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    result = {
        "meta": meta,
        "compile": compile_info,
        "dispatch_floor": floor,
        "train_step_kernels": steps,
        "results": rows,
        "parallel": parallel_rows,
    }
    C.write_report(args.out, "kernels", result, markdown)
    return result


if __name__ == "__main__":
    main()
