"""Helpers shared by the benchmarks: paths, the data location, the environment of a benchmark
subprocess (threads, OpenBLAS variables, CPU affinity), what the machine and the libraries are,
writing and redrawing the results, and small timing/format utilities.

Results record paths relative to the repository (:func:`repo_relative`) and libraries by name
and version, never a machine's folders: they are committed (tests/test_hygiene.py checks).

Nothing here imports a deep-learning framework: the parent process of a benchmark stays
clean, and every framework is imported only inside the subprocess that measures it.
"""

import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LAYERS = (784, 128, 128, 128, 10)  # the reference network
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # what --openblas-env unset removes
VERSION_PACKAGES = (
    "numpy",
    "numba",
    "llvmlite",
    "scipy",
    "torch",
    "jax",
    "jaxlib",
    "keras",
    "threadpoolctl",
    "matplotlib",
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def repo_relative(path):
    """``path`` as a results file records it: relative to the repository (``benchmarks/...``,
    ``../shared/data`` for a folder beside the clone), never the machine's absolute folders.

    A path neither inside the repository nor beside it is recorded by its last component, marked
    ``<outside the repository>/NAME``; None stays None.
    """
    if path is None:
        return None
    p = Path(os.path.abspath(path))
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        try:
            return prefix + p.relative_to(base).as_posix()
        except ValueError:
            continue
    return f"<outside the repository>/{p.name}"


def command_line(argv=None):
    """The benchmark's command as its results record it: the script's name and its arguments,
    an absolute path among them (``--out /.../results``) made relative by :func:`repo_relative`."""
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join([Path(sys.argv[0]).name] + [repo_relative(a) if os.path.isabs(a) else a for a in args])


def library_name(filepath):
    """The file name of a loaded shared library (``libscipy_openblas64_-32a4b2a6.so``), without
    the folder it was loaded from (the Python installation's, which says nothing portable)."""
    return os.path.basename(filepath) if filepath else None


def ensure_data_env():
    """Point TINYGRAD_FREE_DATA at ``<repo>/../shared/data`` when it is unset; returns its value."""
    if not os.environ.get("TINYGRAD_FREE_DATA"):
        default = ROOT.parent / "shared" / "data"
        if default.is_dir():
            os.environ["TINYGRAD_FREE_DATA"] = str(default)
    return os.environ.get("TINYGRAD_FREE_DATA")


# --- subprocess environment ---------------------------------------------------------------------------
def openblas_vars(env=None):
    """The OpenBLAS variables ``--openblas-env unset`` removes, as they are in ``env`` (None if unset)."""
    env = os.environ if env is None else env
    return {k: env.get(k) for k in OPENBLAS_VARS}


def worker_env(threads, openblas="as_set", base=None):
    """Environment of a benchmark subprocess with ``threads`` threads for every library.

    ``openblas="as_set"`` keeps OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as they are; ``"unset"``
    removes them, so OpenBLAS picks its kernel from the CPU it detects.
    """
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_cpu_multi_thread_eigen")]
    if threads == "auto":  # each library's own default (ours: the measured policy)
        for k in THREAD_VARS:
            env.pop(k, None)
    else:
        for k in THREAD_VARS:
            env[k] = str(threads)
        # XLA's CPU backend: Eigen's multi-threading on or off. (Recent XLA runtimes size their
        # intra-op pool from the CPUs the process may run on, so bench_train also restricts the
        # affinity; see cpu_set.)
        flags.append(f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}")
    env["XLA_FLAGS"] = " ".join(flags)
    env["KERAS_BACKEND"] = "jax"
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if openblas == "unset":
        for k in OPENBLAS_VARS:
            env.pop(k, None)
    elif openblas != "as_set":
        raise ValueError(f"openblas must be 'as_set' or 'unset', got {openblas!r}")
    return env


def cpu_set(threads):
    """The first ``threads`` CPUs this process may run on (None when that is all of them)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if not allowed or threads == "auto" or threads >= len(allowed):
        return None
    return allowed[:threads]


def run_python(args, env, cpus=None, timeout=None):
    """Run ``python args...`` with ``env`` (and restricted to ``cpus``); returns CompletedProcess."""

    def pin():
        os.sched_setaffinity(0, cpus)

    return subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=pin if cpus is not None else None,
    )


def run_worker(script, spec, head, tmpdir, timeout=None):
    """Run ``script --worker SPEC`` in a subprocess at ``spec["threads"]`` threads (their variables
    and the CPU affinity set) and return the JSON it wrote; on a timeout or a failure, ``head`` (the
    keys naming the measurement) with an ``error`` (the exit code and the last lines of stderr), so
    the run goes on and the table shows what failed."""
    out = Path(tmpdir) / ("-".join(str(v) for v in head.values()) + ".json")
    spec = dict(spec, out=str(out))
    try:
        proc = run_python(
            [str(Path(script).resolve()), "--worker", json.dumps(spec)],
            worker_env(spec["threads"]),
            cpu_set(spec["threads"]),
            timeout,
        )
    except subprocess.TimeoutExpired:
        return head | {"error": f"timed out after {timeout:g} s (--timeout)"}
    if proc.returncode != 0 or not out.exists():
        return head | {"error": f"exit {proc.returncode}: " + "\n".join((proc.stderr or "").strip().splitlines()[-15:])}
    return json.loads(out.read_text())


def record(argv, config, machine, runs, summary):
    """What a benchmark's JSON holds: its command, settings, machine, every run and the summary."""
    return {"command": command_line(argv), "config": config, "machine": machine, "runs": runs, "summary": summary}


# --- what the machine and the libraries are -------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(packages=VERSION_PACKAGES):
    """Installed versions from the package metadata (without importing anything)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def installed(module):
    return importlib.util.find_spec(module) is not None


def machine_info():
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": versions(),
    }


def blas_info():
    """threadpoolctl's view of the loaded thread pools (call after importing the libraries).

    ``numpy_openblas`` is numpy's own OpenBLAS: its ``architecture`` is the core type (kernel
    set) it actually uses, and ``num_threads`` its thread count. Each pool names its library by
    file name (``library``) and version; the folder it was loaded from is not recorded.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"error": "threadpoolctl not installed"}
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture", "threading_layer")
    pools, numpy_blas = [], None
    for info in threadpool_info():
        pool = {k: info.get(k) for k in keep if k in info}
        pool["library"] = library_name(info.get("filepath"))
        pools.append(pool)
        # numpy's own copy is the one loaded from numpy's wheel (numpy.libs/ or numpy/.libs/)
        if numpy_blas is None and pool.get("user_api") == "blas" and "numpy" in (info.get("filepath") or ""):
            numpy_blas = pool
    if numpy_blas is None:
        numpy_blas = next((p for p in pools if p.get("user_api") == "blas"), None)
    return {"numpy_openblas": numpy_blas, "pools": pools}


# --- timing and formatting ------------------------------------------------------------------------------
def training_step(model, loss_fn, opt, x, y, batch, seed=0):
    """A hand-written training step over shuffled batches of ``x, y`` (forward, loss, backward
    without the input's gradient, the optimizer's step, zero_grad), as the README's API tour
    writes it; each call takes the next batch, round and round."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(x) - len(x) % batch).reshape(-1, batch)
    position = [0]

    def step():
        idx = order[position[0] % len(order)]
        position[0] += 1
        logits, backprop = model.begin_update(x[idx])
        loss = loss_fn.forward(logits, y[idx])
        backprop(loss_fn.backward(), input_grad=False)
        opt.step(loss=loss)
        opt.zero_grad()

    return step


def segments_meta(argv, args):
    """The ``meta`` of a benchmark that alternates settings in segments within one process."""
    from tinygrad_free.kernels import blas

    return {
        "command": command_line(argv),
        "rounds": args.rounds,
        "segment_seconds": args.segment_seconds,
        "gemm": blas.describe(),
        **machine_info(),
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def loop_seconds(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - t0


def calibrate(fn, min_time):
    """Calls per repeat so that one repeat lasts at least ``min_time`` seconds (as timeit.autorange)."""
    number = 1
    while loop_seconds(fn, number) < min_time:
        number *= 2
    return number


def time_alternating(fns, repeats, min_time):
    """Median seconds per call of each zero-argument callable, the callables timed in turns."""
    numbers = [calibrate(fn, min_time) for fn in fns]
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            samples[k].append(loop_seconds(fn, numbers[k]) / numbers[k])
    return [statistics.median(s) for s in samples], samples


def fmt(value, spec=".3f", missing="-"):
    return missing if value is None else format(value, spec)


def write_text(path, text, atomic=True):
    """Write a results file; ``atomic`` (the default) goes through tinygrad_free.fileio, so a
    crash never leaves half a file (workers pass False: their files are private scratch, and
    importing tinygrad_free there would load more than the worker measures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if atomic:
        from tinygrad_free.fileio import atomic_write_text

        atomic_write_text(path, text)
    else:
        path.write_text(text)


def write_json(path, obj, atomic=True):
    write_text(path, json.dumps(obj, indent=1, default=_json_default) + "\n", atomic)


def write_report(out_dir, name, result, markdown, plot=None):
    """``name``.json, ``name``.md (and ``name``.png when ``plot`` draws one), each written
    atomically; prints the Markdown and where the files went. Returns the Markdown."""
    out_dir = Path(out_dir)
    write_json(out_dir / f"{name}.json", result)
    md = markdown(result)
    write_text(out_dir / f"{name}.md", md)
    png = plot(result, out_dir / f"{name}.png") if plot else None
    print("\n" + md)
    print(f"wrote {out_dir / (name + '.json')}, {out_dir / (name + '.md')}" + (f", {png}" if png else ""))
    return md


def replot(out_dir, name, markdown, plot=None, command="the benchmark"):
    """Rebuild ``name``.md (and ``name``.png when ``plot`` draws one) from the ``name``.json an
    earlier run left in ``out_dir``, without measuring anything. Returns 0.

    Raises
    ------
    SystemExit
        When that JSON is missing (raw results are not kept in git); the message names
        ``command``, which measures them again.
    """
    out_dir = Path(out_dir)
    path = out_dir / f"{name}.json"
    if not path.is_file():
        raise SystemExit(
            f"error: no {path} to redraw from: raw results are not kept in git; "
            f"`{command}` measures them again (and writes {name}.md and the figure too)"
        )
    result = json.loads(path.read_text())
    md = markdown(result)
    write_text(out_dir / f"{name}.md", md)
    png = plot(result, out_dir / f"{name}.png") if plot else None
    print(md)
    print(f"redrew {out_dir / (name + '.md')}" + (f", {png}" if png else "") + f" from {path}")
    return 0


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None (with one line saying so) when missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    return plt


def save_figure(fig, path):
    """``fig.savefig`` as PNG, written atomically."""
    from tinygrad_free.fileio import atomic_open

    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    return path


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
