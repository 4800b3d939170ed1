#!/usr/bin/env python3
"""The thread policy against fixed thread counts, in one process, interleaved finely.

``bench_train.py`` runs every setting in its own process, seconds apart; on a shared machine
the speed of one process to the next varies by 15-30% (steal by the host, other tenants), more
than the 5% the policy is held to. Here one process trains the reference network (784-128-128-128
-10 tanh MLP, float32, Adam, Fashion-MNIST batches) in short segments, each at one setting: one
thread, two threads (BLAS and numba, set through one threadpoolctl controller) or the measured
policy (``threads.StepThreads``, one object kept for the whole run and ``resume()``-d at each of
its segments, as a long training run would keep it). The three settings take turns, their order
rotated every round, so each round compares them within about a second. Reported per batch: the
seconds per step of each setting (all its segments' steps), the policy's over the faster fixed
count's, the median of the rounds' own ratios, and what the policy did.

    python benchmarks/bench_threads.py                       # batch 16 and 64, 24 rounds
    python benchmarks/bench_threads.py --batches 64 --rounds 8 --segment-seconds 0.3

Writes benchmarks/results/threads_inprocess.json and .md.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

SETTINGS = (1, 2, "auto")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    p.add_argument("--rounds", type=int, default=24, help="rounds of the three settings (default 24)")
    p.add_argument("--segment-seconds", type=float, default=0.6, help="about this long per segment (default 0.6)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--name", default="threads_inprocess")
    args = p.parse_args(argv)
    if args.rounds < 1 or not args.segment_seconds > 0 or min(args.batches) < 1:
        p.error("--rounds and --batches must be positive integers and --segment-seconds a positive number")
    return args


def measure(batch, rounds, segment_seconds):
    import numba
    import numpy as np
    from threadpoolctl import ThreadpoolController

    from tinygrad_free import kernels, nn, optim, threads
    from tinygrad_free.data import load_split
    from tinygrad_free.recipes import build_mlp

    kernels.warmup()
    split = load_split("fashion_mnist")
    x, y = np.ascontiguousarray(split.x_train, np.float32), split.y_train
    model = build_mlp(784, 3, 128, activation="tanh", weight_init="xavier", num_classes=10, rng=0)
    loss_fn, opt = nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3)
    order = np.random.default_rng(0).permutation(len(x) - len(x) % batch).reshape(-1, batch)
    position = [0]

    def step():
        idx = order[position[0] % len(order)]
        position[0] += 1
        logits, backprop = model.begin_update(x[idx])
        loss = loss_fn.forward(logits, y[idx])
        backprop(loss_fn.backward(), input_grad=False)
        opt.step(loss=loss)
        opt.zero_grad()

    blas = ThreadpoolController().select(user_api="blas")
    limiter = blas.limit(limits=1)  # remembers the counts from before
    cores = threads.available_threads()
    policy = threads.StepThreads()
    numba_before = numba.get_num_threads()

    def fixed(n):
        blas.limit(limits=n)
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

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
        for setting in SETTINGS[rnd % 3 :] + SETTINGS[: rnd % 3]:
            if setting == "auto":
                policy.resume()
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                    policy.tick()
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
    rounds_ratio = [a / min(o, t) for o, t, a in zip(seconds[1], seconds[2], seconds["auto"])]
    return {
        "batch": batch,
        "steps_per_segment": steps,
        "segment_seconds": {str(s): v for s, v in seconds.items()},
        "seconds_per_step": per_step,
        "default_over_faster_fixed": per_step["auto"] / min(per_step["1"], per_step["2"]),
        "per_round_ratio_median": C.median(rounds_ratio),
        "per_round_ratio": rounds_ratio,
        "policy_events": events,
    }


def markdown(result):
    meta = result["meta"]
    lines = [
        "# Thread policy against fixed counts, interleaved in one process",
        "",
        f"{meta['cpu_model']}, {meta['cpu_count']} CPUs; {meta['date']}; BLAS of the kernels: {meta['gemm']}; "
        f"{meta['rounds']} rounds of the three settings, order rotated each round.",
        "",
        f"Command: `python benchmarks/{meta['command']}`",
        "",
        "| batch | steps per segment | 1 thread (us/step) | 2 threads | default (measured) | default / faster fixed "
        "| per-round ratio, median |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["batches"]:
        s = r["seconds_per_step"]
        lines.append(
            f"| {r['batch']} | {r['steps_per_segment']} | {s['1'] * 1e6:.0f} | {s['2'] * 1e6:.0f} "
            f"| {s['auto'] * 1e6:.0f} | {r['default_over_faster_fixed']:.3f} | {r['per_round_ratio_median']:.3f} |"
        )
    lines += ["", "What the policy did (its events over the whole run, `threads.StepThreads.history`):", ""]
    for r in result["batches"]:
        ev = ", ".join(f"{k}: {v}" for k, v in sorted(r["policy_events"].items()))
        lines.append(f"- batch {r['batch']}: {ev}")
    lines += [
        "",
        "Each setting's time is the sum of its segments; the default's includes its probes and explorations "
        "(blocks at the other count). Per-round ratio: the default's segment over the faster fixed segment "
        "of the same round.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    C.ensure_data_env()
    from tinygrad_free.kernels import blas

    result = {
        "meta": {
            "command": C.command_line(argv),
            "rounds": args.rounds,
            "segment_seconds": args.segment_seconds,
            "gemm": blas.describe(),
            **C.machine_info(),
        },
        "batches": [],
    }
    for batch in args.batches:
        r = measure(batch, args.rounds, args.segment_seconds)
        print(
            f"batch {batch}: {r['seconds_per_step']}, default/faster {r['default_over_faster_fixed']:.3f}", flush=True
        )
        result["batches"].append(r)
    C.write_report(args.out, args.name, result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
