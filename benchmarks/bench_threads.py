#!/usr/bin/env python3
"""Thread counts in one process, interleaved finely: fixed counts, the default, the measured policy.

``bench_train.py`` runs every setting in its own process, seconds apart; on a shared machine
the speed of one process to the next varies by 15-30% (steal by the host, other tenants), more
than the 5% held to here. Here one process trains a network in short segments, each at one
setting, on Fashion-MNIST batches (float32, Adam):

* ``1`` and ``2``: BLAS and numba fixed at one or two threads (one threadpoolctl controller);
* ``default``: a plain loop as a user writes it, at the counts the process started with (numba's
  and BLAS's defaults: every core), each kernel choosing by its own work whether to use them;
* ``auto``: the Trainer's measured policy (``threads.StepThreads``, one object kept for the whole
  run and ``resume()``-d at each of its segments, as a long training run would keep it).

The settings take turns, their order rotated every round, so each round compares them within a
few seconds. Reported per network and batch: the seconds per step of each setting (all its
segments' steps), the default's and the policy's over the faster fixed count's, the medians of
the rounds' own ratios, and what the policy did. Networks (``bench_train_networks``): ``mlp``, the
reference 784-128-128-128-10 tanh MLP; ``convnet``, Keras's mnist_convnet.

    python benchmarks/bench_threads.py                       # mlp at batch 16 and 64, convnet at 128
    python benchmarks/bench_threads.py --cases mlp:64 --rounds 8 --segment-seconds 0.3

Writes benchmarks/results/threads_inprocess.json and .md.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SETTINGS = (1, 2, "default", "auto")
NETWORKS = ("mlp", "convnet")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--cases",
        nargs="+",
        default=["mlp:16", "mlp:64", "convnet:128"],
        help="network:batch pairs (networks: mlp, convnet; default mlp:16 mlp:64 convnet:128)",
    )
    p.add_argument("--rounds", type=int, default=24, help="rounds of the settings (default 24)")
    p.add_argument("--segment-seconds", type=float, default=0.6, help="about this long per segment (default 0.6)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--name", default="threads_inprocess")
    args = p.parse_args(argv)
    cases = []
    for case in args.cases:
        network, _, batch = case.partition(":")
        if network not in NETWORKS or not batch.isdigit() or int(batch) < 1:
            p.error(f"--cases: {case!r} is not network:batch with a network of {list(NETWORKS)} and a positive batch")
        cases.append((network, int(batch)))
    args.cases = cases
    if args.rounds < 1 or not args.segment_seconds > 0:
        p.error("--rounds must be a positive integer and --segment-seconds a positive number")
    return args


def measure(network, batch, rounds, segment_seconds):
    import bench_train_networks as networks
    import numba
    import numpy as np
    from threadpoolctl import ThreadpoolController

    from tinygrad_free import kernels, nn, optim, threads
    from tinygrad_free.data import load_split

    kernels.warmup()
    split = load_split("fashion_mnist")
    x, y = networks.images(np.ascontiguousarray(split.x_train, np.float32), network), split.y_train
    model = networks.ours(network, 0)
    loss_fn, opt = nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3)
    step = C.training_step(model, loss_fn, opt, x, y, batch)

    # The counts the process started with: the default (read before the policy sets its own).
    numba_before = numba.get_num_threads()
    blas = ThreadpoolController().select(user_api="blas")
    limiter = blas.limit(limits=1)  # remembers BLAS's counts from before
    cores = threads.available_threads()
    policy = threads.StepThreads()

    def fixed(n):
        blas.limit(limits=n)
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

    def default():
        limiter.restore_original_limits()
        numba.set_num_threads(numba_before)

    # Steps per segment from a short calibration on one thread.
    fixed(1)
    for _ in range(50):
        step()
    t0 = time.perf_counter()
    for _ in range(200):
        step()
    steps = max(50, int(segment_seconds / ((time.perf_counter() - t0) / 200)))

    seconds = {s: [] for s in SETTINGS}  # per round
    for rnd in range(rounds):
        turn = rnd % len(SETTINGS)
        for setting in SETTINGS[turn:] + SETTINGS[:turn]:
            if setting == "auto":
                policy.resume()
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                    policy.tick()
            else:
                if setting == "default":
                    default()
                else:
                    fixed(min(setting, cores))
                step()  # wakes the pool, as the policy's first step after a switch
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
            seconds[setting].append(time.perf_counter() - t0)
    events = {}
    for event, count, _ in policy.history:
        events[f"{event} {count}"] = events.get(f"{event} {count}", 0) + 1
    policy.close()
    limiter.restore_original_limits()
    numba.set_num_threads(numba_before)
    per_step = {str(s): sum(v) / (len(v) * steps) for s, v in seconds.items()}
    faster = min(per_step["1"], per_step["2"])
    ratios = {
        which: [a / min(o, t) for o, t, a in zip(seconds[1], seconds[2], seconds[which])]
        for which in ("default", "auto")
    }
    return {
        "network": network,
        "batch": batch,
        "steps_per_segment": steps,
        "segment_seconds": {str(s): v for s, v in seconds.items()},
        "seconds_per_step": per_step,
        "default_over_faster_fixed": per_step["default"] / faster,
        "policy_over_faster_fixed": per_step["auto"] / faster,
        "per_round_ratio_median": {which: C.median(r) for which, r in ratios.items()},
        "per_round_ratio": ratios,
        "policy_events": events,
    }


def markdown(result):
    meta = result["meta"]
    lines = [
        "# Thread counts against each other, interleaved in one process",
        "",
        f"{meta['cpu_model']}, {meta['cpu_count']} CPUs; {meta['date']}; BLAS of the kernels: {meta['gemm']}; "
        f"{meta['rounds']} rounds of the four settings, order rotated each round.",
        "",
        f"Command: `python benchmarks/{meta['command']}`",
        "",
        "| network | batch | steps per segment | 1 thread (us/step) | 2 threads | default, plain loop "
        "| measured policy | default / faster fixed (per-round median) | policy / faster fixed (per-round median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["cases"]:
        s, med = r["seconds_per_step"], r["per_round_ratio_median"]
        lines.append(
            f"| {r['network']} | {r['batch']} | {r['steps_per_segment']} | {s['1'] * 1e6:.0f} | {s['2'] * 1e6:.0f} "
            f"| {s['default'] * 1e6:.0f} | {s['auto'] * 1e6:.0f} "
            f"| {r['default_over_faster_fixed']:.3f} ({med['default']:.3f}) "
            f"| {r['policy_over_faster_fixed']:.3f} ({med['auto']:.3f}) |"
        )
    lines += ["", "What the policy did (its events over the whole run, `threads.StepThreads.history`):", ""]
    for r in result["cases"]:
        ev = ", ".join(f"{k}: {v}" for k, v in sorted(r["policy_events"].items()))
        lines.append(f"- {r['network']}, batch {r['batch']}: {ev}")
    lines += [
        "",
        "Each setting's time is the sum of its segments; the policy's includes its probes and explorations "
        "(blocks at the other count). The default is the thread counts the process started with (every core), "
        "with no policy: what a hand-written loop gets. Per-round ratio: a setting's segment over the faster "
        "fixed segment of the same round.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    C.ensure_data_env()

    result = {
        "meta": C.segments_meta(argv, args),
        "cases": [],
    }
    for network, batch in args.cases:
        r = measure(network, batch, args.rounds, args.segment_seconds)
        print(
            f"{network} batch {batch}: {r['seconds_per_step']}, default/faster {r['default_over_faster_fixed']:.3f}, "
            f"policy/faster {r['policy_over_faster_fixed']:.3f}",
            flush=True,
        )
        result["cases"].append(r)
    C.write_report(args.out, args.name, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
