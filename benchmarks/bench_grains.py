#!/usr/bin/env python3
"""Where an optimizer update's parallel twin starts to pay, measured inside the training step.

An update timed alone, in a loop of itself, has numba's second thread awake and the buffer in
both cores' caches; inside a training step the thread has gone to sleep since the last update
and half the buffer must move to its core. So the crossover (``kernels.optim``'s grains) is
measured here on whole steps: the MLP of ``bench_threads.py`` (784-w-w-w-10 tanh, Fashion-MNIST
batches, float32) at several widths w, with numba and BLAS at two threads, the update forced to
its serial kernel or to its parallel twin (``kernels.NUMBA``'s entry swapped for the step), and
one thread for reference. The settings take turns in one process, their order rotated each
round; reported per case: the median step of each setting, and the median of the rounds' own
ratios parallel / serial (below 1: the parallel twin shortens the step), beside what the
kernel's grain chooses for that many parameters.

    python benchmarks/bench_grains.py                                # Adam and SGD, widths 128-1024
    python benchmarks/bench_grains.py --optimizers Adam --widths 128 192 --batches 16 --rounds 6

With ``--backward``, the same for the dense layers' backward (``kernels.dense_parts.beside``):
dW beside dx on two threads against the two products one after the other, the optimizer Adam
(its update at its own grain in both), the crossover being ``dense_parts.BESIDE_GRAIN``
multiply-adds per product; the hidden layers' products are batch x w x w.

    python benchmarks/bench_grains.py --backward --widths 96 128 192 256 512 --batches 16 64 256

Writes benchmarks/results/grains.json and .md (``--backward``: grains_backward.json and .md).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SETTINGS = ("serial", "parallel", "one thread")
#: --backward's settings: "parallel" is dW beside dx.
KERNELS = {"Adam": "adam", "SGD": "sgd", "Momentum": "momentum", "RMSProp": "rmsprop", "Nadam": "nadam"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--optimizers", nargs="+", choices=sorted(KERNELS), help="default: Adam and SGD (--backward: Adam only)"
    )
    p.add_argument("--widths", type=int, nargs="+", default=[128, 192, 256, 512, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--segment-seconds", type=float, default=0.4)
    p.add_argument("--backward", action="store_true", help="the dense backward's grain, not the updates'")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--name", default=None, help="default: grains, or grains_backward with --backward")
    args = p.parse_args(argv)
    if args.name is None:
        args.name = "grains_backward" if args.backward else "grains"
    if args.backward and args.optimizers not in (None, ["Adam"]):
        p.error("--backward measures the steps with Adam only; leave --optimizers out")
    if args.optimizers is None:
        args.optimizers = ["Adam"] if args.backward else ["Adam", "SGD"]
    if args.rounds < 1 or not args.segment_seconds > 0 or min(args.widths + args.batches) < 1:
        p.error("--rounds, --widths and --batches must be positive integers, --segment-seconds a positive number")
    return args


def measure(optimizer, width, batch, rounds, segment_seconds, x, y, backward=False):
    import numba
    from threadpoolctl import ThreadpoolController

    from tinygrad_free import kernels, nn, optim
    from tinygrad_free.kernels import dense_parts, parallel
    from tinygrad_free.recipes import build_mlp

    model = build_mlp(784, 3, width, activation="tanh", weight_init="xavier", num_classes=10, rng=0)
    size = sum(p.data.size for p in model.parameters())
    loss_fn, opt = nn.CrossEntropyLoss(), getattr(optim, optimizer)(model.parameters(), lr=1e-3)
    name = KERNELS[optimizer]
    threaded = getattr(kernels.NUMBA, name)
    grain_before = dense_parts.BESIDE_GRAIN
    step = C.training_step(model, loss_fn, opt, x, y, batch)

    blas = ThreadpoolController().select(user_api="blas")
    limiter = blas.limit(limits=1)
    numba_before = numba.get_num_threads()
    two = min(2, numba.config.NUMBA_NUM_THREADS)

    def setting(which):
        count = 1 if which == "one thread" else two
        blas.limit(limits=count)
        numba.set_num_threads(count)
        if backward:  # the update at its own grain; the products one after the other, or side by side
            dense_parts.BESIDE_GRAIN = 0 if which == "parallel" else 1 << 62
        else:
            setattr(kernels.NUMBA, name, threaded.parallel if which == "parallel" else threaded.serial)

    try:
        setting("one thread")
        for _ in range(20):
            step()
        t0 = time.perf_counter()
        for _ in range(20):
            step()
        steps = max(10, int(segment_seconds / ((time.perf_counter() - t0) / 20)))
        medians = {s: [] for s in SETTINGS}
        for rnd in range(rounds):
            turn = rnd % len(SETTINGS)
            for which in SETTINGS[turn:] + SETTINGS[:turn]:
                setting(which)
                step()  # wakes the pool
                times = []
                for _ in range(steps):
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
                medians[which].append(C.median(times))
    finally:
        setattr(kernels.NUMBA, name, threaded)
        dense_parts.BESIDE_GRAIN = grain_before
        limiter.restore_original_limits()
        numba.set_num_threads(numba_before)
    ratios = [p / s for p, s in zip(medians["parallel"], medians["serial"])]
    if backward:  # the hidden layers' products, batch x width x width multiply-adds each
        size, grain = batch * width * width, grain_before
    else:
        grain = threaded.grain
    return {
        "optimizer": optimizer,
        "width": width,
        "batch": batch,
        "parameters": size,
        "grain": grain,
        "grain_chooses": "parallel" if size >= grain else "serial",
        "parallel_available": parallel.layer_ok() and two > 1,
        "steps_per_segment": steps,
        "median_step": {s: C.median(v) for s, v in medians.items()},
        "parallel_over_serial": C.median(ratios),
        "ratios": ratios,
    }


def markdown(result):
    meta, backward = result["meta"], result.get("backward", False)
    what = ("dense backward: dW beside dx", "products in turn", "side by side", "multiply-adds per product")
    ratio = "side by side / in turn"
    if not backward:
        what = ("optimizer updates: serial or parallel", "serial update", "parallel update", "parameters")
        ratio = "parallel / serial"
    lines = [
        f"# {what[0][0].upper() + what[0][1:]}, inside the training step",
        "",
        f"{meta['cpu_model']}, {meta['cpu_count']} CPUs; {meta['date']}; BLAS of the kernels: {meta['gemm']}; "
        f"{meta['rounds']} rounds of the three settings, order rotated each round.",
        "",
        f"Command: `python benchmarks/{meta['command']}`",
        "",
        f"| optimizer | width | batch | {what[3]} | 1 thread (us/step) | 2 threads, {what[1]} "
        f"| 2 threads, {what[2]} | {ratio} (per-round median) | grain chooses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["cases"]:
        m = r["median_step"]
        faster = "parallel" if r["parallel_over_serial"] < 1 else "serial"
        mark = "" if faster == r["grain_chooses"] else " (the slower)"
        lines.append(
            f"| {r['optimizer']} | {r['width']} | {r['batch']} | {r['parameters']:,} | {m['one thread'] * 1e6:.0f} "
            f"| {m['serial'] * 1e6:.0f} | {m['parallel'] * 1e6:.0f} | {r['parallel_over_serial']:.3f} "
            f"| {r['grain_chooses']} (grain {r['grain']:,}){mark} |"
        )
    tail = (
        "The grain is the kernel's (`tinygrad_free.kernels.optim`): the parallel twin runs for buffers of at "
        "least that many elements when numba has several threads."
    )
    if backward:
        tail = (
            "The grain is `tinygrad_free.kernels.dense_parts.BESIDE_GRAIN`: a layer's dW and dx run side by side "
            "when each has at least that many multiply-adds and numba has several threads (the hidden layers' "
            "batch x w x w; the first layer computes no dx). Adam's update runs at its own grain throughout."
        )
    lines += [
        "",
        "The MLP is 784-w-w-w-10 tanh; each setting's number is the median over rounds of its segments' median "
        "step. " + tail,
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    C.ensure_data_env()
    import numpy as np

    from tinygrad_free import kernels
    from tinygrad_free.data import load_split

    kernels.warmup()
    split = load_split("fashion_mnist")
    x, y = np.ascontiguousarray(split.x_train, np.float32), split.y_train
    result = {
        "meta": C.segments_meta(argv, args),
        "backward": args.backward,
        "cases": [],
    }
    for optimizer in args.optimizers:
        for width in args.widths:
            for batch in args.batches:
                r = measure(optimizer, width, batch, args.rounds, args.segment_seconds, x, y, args.backward)
                print(
                    f"{optimizer} width {width} batch {batch} ({r['parameters']:,}): "
                    f"parallel/serial {r['parallel_over_serial']:.3f}",
                    flush=True,
                )
                result["cases"].append(r)
    C.write_report(args.out, args.name, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
