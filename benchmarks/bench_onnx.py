#!/usr/bin/env python3
"""Inference of the exported CNN in ONNX Runtime against our own forward pass, in one process.

The network is the ``fashion_mnist_cnn`` recipe (three blocks of 3x3 conv -> BatchNorm -> ReLU ->
2x2 max pooling, 32/64/96 channels, Dense; 83,242 parameters), float32, evaluation mode. It is
exported with ``tinygrad_free.onnx.export`` and run by an ``onnxruntime.InferenceSession`` on the
CPU provider (default graph optimisations, ``intra_op_num_threads`` set to the thread count);
ours is ``model(x)`` in eval mode on the numba backend with BLAS and numba at the same thread
count. Both get the same batch of random images; their outputs are checked equal (1e-5 relative)
before anything is timed. For each batch size and thread count the two are timed in turns
(``common.time_alternating``: each repeat runs a block of calls of one, then of the other);
reported: median milliseconds per batch, images per second and ours / ONNX Runtime.

    python benchmarks/bench_onnx.py                                   # batch 1, 64, 256; 1 and 2 threads
    python benchmarks/bench_onnx.py --batches 2 --threads 1 --repeats 1 --min-time 0.001 --out /tmp/onnx

Run it alone on an idle machine. Writes benchmarks/results/onnx.json and onnx.md.
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

RECIPE = "fashion_mnist_cnn"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=15, help="timed blocks per implementation (default 15)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds a timed block lasts at least (default 0.2)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(C.RESULTS))
    p.add_argument("--name", default="onnx")
    args = p.parse_args(argv)
    if min(args.batches) < 1 or min(args.threads) < 1 or args.repeats < 1 or not args.min_time > 0:
        p.error("--batches, --threads and --repeats must be positive integers and --min-time a positive number")
    return args


def build(seed):
    from tinygrad_free import training_run
    from tinygrad_free.recipes import load_config

    cfg = dict(load_config(RECIPE), seed=seed)
    return training_run.build_model(cfg, training_run.input_shape(cfg, 784), 10).eval()


def measure(args, folder):
    import numba
    import numpy as np
    import onnxruntime as ort
    from threadpoolctl import ThreadpoolController

    from tinygrad_free import kernels
    from tinygrad_free.onnx import DEFAULT_OPSET, export

    kernels.warmup()
    model = build(args.seed)
    path = Path(folder) / "cnn.onnx"
    export(model, path, (1, 28, 28), opset=args.opset or DEFAULT_OPSET)
    blas = ThreadpoolController().select(user_api="blas")
    limiter = blas.limit(limits=1)
    numba_before = numba.get_num_threads()
    rng = np.random.default_rng(args.seed)
    rows = []
    for threads in args.threads:
        blas.limit(limits=threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for batch in args.batches:
            x = rng.random((batch, 1, 28, 28), dtype=np.float32)
            ours, (theirs,) = model(x), session.run(None, {"input": x})
            np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5 * float(np.abs(ours).max()))
            (t_ours, t_ort), samples = C.time_alternating(
                [lambda x=x: model(x), lambda x=x, s=session: s.run(None, {"input": x})], args.repeats, args.min_time
            )
            row = {
                "threads": threads,
                "batch": batch,
                "ours_ms": t_ours * 1e3,
                "onnxruntime_ms": t_ort * 1e3,
                "ours_images_per_s": batch / t_ours,
                "onnxruntime_images_per_s": batch / t_ort,
                "ours_over_onnxruntime": t_ours / t_ort,
                "samples_s": {"ours": samples[0], "onnxruntime": samples[1]},
            }
            rows.append(row)
            print(
                f"threads {threads} batch {batch}: ours {row['ours_ms']:.3f} ms, onnxruntime "
                f"{row['onnxruntime_ms']:.3f} ms, ours/ort {row['ours_over_onnxruntime']:.2f}",
                flush=True,
            )
    limiter.restore_original_limits()
    numba.set_num_threads(numba_before)
    return rows, model.num_parameters()


def markdown(result):
    meta = result["meta"]
    lines = [
        "# ONNX Runtime against our forward pass: the exported CNN",
        "",
        f"{meta['cpu_model']}, {meta['cpu_count']} CPUs; {meta['date']}; `{RECIPE}` recipe "
        f"({meta['parameters']:,} parameters), float32, eval mode; onnxruntime "
        f"{meta['versions'].get('onnxruntime')}, opset {meta['opset']}; BLAS of the kernels: {meta['gemm']}; "
        f"{meta['repeats']} timed blocks each, in turns.",
        "",
        f"Command: `python benchmarks/{meta['command']}`",
        "",
        "| threads | batch | ours (ms) | ONNX Runtime (ms) | ours (images/s) | ONNX Runtime (images/s) | ours / ORT |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['threads']} | {r['batch']} | {r['ours_ms']:.3f} | {r['onnxruntime_ms']:.3f} "
            f"| {r['ours_images_per_s']:.0f} | {r['onnxruntime_images_per_s']:.0f} | {r['ours_over_onnxruntime']:.2f} |"
        )
    lines += ["", "Medians over the blocks; ours / ORT above 1 means ONNX Runtime is faster.", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    from tinygrad_free.kernels import blas
    from tinygrad_free.onnx import DEFAULT_OPSET

    meta = {
        "command": C.command_line(argv),
        "repeats": args.repeats,
        "min_time": args.min_time,
        "opset": args.opset or DEFAULT_OPSET,
        "gemm": blas.describe(),
        **C.machine_info(),
    }
    meta["versions"]["onnxruntime"] = C.versions(("onnxruntime",)).get("onnxruntime")
    with tempfile.TemporaryDirectory() as folder:
        rows, parameters = measure(args, folder)
    result = {"meta": dict(meta, parameters=parameters), "rows": rows}
    C.write_report(args.out, args.name, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
