#!/usr/bin/env python3
"""Seconds per training step of a stack of Transformer encoder layers: tinygrad_free's
``nn.TransformerEncoderLayer`` against ``torch.nn.TransformerEncoderLayer(batch_first=True)``.

The step: forward through ``--layers`` encoder layers (d_model 64, 4 heads, feed-forward width
``--ff``, dropout ``--dropout``, ReLU, pre-norm by default), backward from a fixed random
gradient of the output (no loss function: the layers alone), and one AdamW step (lr 1e-3,
weight decay 0.01), float32, on a fixed random batch (``--batch`` sequences of ``--tokens``
tokens; 16 and 49 are a ViT's on 28x28 images with 7x7 and 4x4 patches). Both sides in training
mode (their dropout draws masks), the same shapes, a fresh process each.

Method, as bench_train.py: every measurement runs in its own subprocess (one implementation, one
token count, one thread count; the thread variables and the CPU affinity set for it), which runs
``--warmup`` steps and then ``--steps`` timed ones and reports their median. The implementations
are alternated within each round (round 1: ours, torch at every setting in turn; round 2: the
same; ...), so drift on a shared machine hits both alike. Reported: the median over rounds of
each one's per-process median, and the ratio ours / torch from the same run (below 1: we are
faster). The target (issue 27) is ours <= 0.75x PyTorch.

    python benchmarks/bench_transformer.py                          # 16 and 49 tokens, 1 and 2 threads, 3 rounds
    python benchmarks/bench_transformer.py --dropout 0.0            # without dropout
    python benchmarks/bench_transformer.py --quick                  # smoke test: batch 8, 3 steps, 1 round

Writes benchmarks/results/transformer.md (``--quick``: transformer_quick.md) and the raw
transformer.json beside it (not kept in git).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

IMPLS = {"ours": "tinygrad_free (numba)", "torch": "PyTorch CPU"}
TARGET = 0.75


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: batch 8, 2+3 steps, 1 round")
    p.add_argument("--rounds", type=int, default=None, help="rounds of alternated runs (default 3, quick 1)")
    p.add_argument("--tokens", type=int, nargs="+", default=[16, 49])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default 128, quick 8)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d_model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ff", type=int, default=256, help="feed-forward width (default 256: 4 x d_model, as ViT)")
    p.add_argument("--dropout", type=float, default=0.1, help="PyTorch's default 0.1")
    p.add_argument("--activation", choices=("relu", "gelu"), default="relu")
    p.add_argument("--post-norm", action="store_true", help="norm_first=False (default: pre-norm, as ViT)")
    p.add_argument("--impls", nargs="+", choices=list(IMPLS), default=list(IMPLS))
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per process (default 5, quick 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per process (default 30, quick 3)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default=str(C.RESULTS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.batch = args.batch or (8 if quick else 128)
    args.warmup = args.warmup if args.warmup is not None else (2 if quick else 5)
    args.steps = args.steps or (3 if quick else 30)
    return args


# --- the workers -----------------------------------------------------------------------------------
def _data(spec):
    import numpy as np

    rng = np.random.default_rng(spec["seed"])
    shape = (spec["batch"], spec["tokens"], spec["d_model"])
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def worker_ours(spec):
    from tinygrad_free import kernels, nn, optim

    compile_s = kernels.warmup()
    x, gy = _data(spec)
    model = nn.Sequential(
        *[
            nn.TransformerEncoderLayer(
                spec["d_model"],
                spec["heads"],
                spec["ff"],
                spec["dropout"],
                spec["activation"],
                spec["norm_first"],
                rng=i,
            )
            for i in range(spec["layers"])
        ]
    )
    opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def step():  # as Trainer.fit runs one: the forward paired with its backward, the input is data
        _, ctx = model._forward_ctx(x)
        model._backward_ctx(ctx, gy, input_grad=False)
        opt.step()
        opt.zero_grad()

    return _time(step, spec) | {"compile_s": compile_s, "parameters": model.num_parameters()}


def worker_torch(spec):
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    layers = [
        torch.nn.TransformerEncoderLayer(
            spec["d_model"],
            spec["heads"],
            spec["ff"],
            spec["dropout"],
            activation=spec["activation"],
            batch_first=True,
            norm_first=spec["norm_first"],
        )
        for _ in range(spec["layers"])
    ]
    model = torch.nn.Sequential(*layers).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x, gy = (torch.from_numpy(a) for a in _data(spec))

    def step():
        opt.zero_grad()
        model(x).backward(gy)
        opt.step()

    return _time(step, spec) | {"parameters": sum(p.numel() for p in model.parameters())}


def _time(step, spec):
    for _ in range(spec["warmup"]):
        step()
    seconds = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t0)
    return {"step_s": seconds, "median_s": statistics.median(seconds)}


def worker_main(spec_json):
    spec = json.loads(spec_json)
    result = {k: spec[k] for k in ("impl", "tokens", "threads", "round")}
    try:
        result.update({"ours": worker_ours, "torch": worker_torch}[spec["impl"]](spec))
    except ImportError as e:
        result["skipped"] = f"{type(e).__name__}: {e}"
    result["thread_pools"] = C.blas_info().get("pools")
    C.write_json(spec["out"], result, atomic=False)
    return 0


# --- the parent ------------------------------------------------------------------------------------
def summarize(runs, settings):
    """{(threads, tokens): {impl: median over rounds of the per-process medians}} and the ratios."""
    table = {}
    for threads, tokens in settings:
        row = {}
        for impl in IMPLS:
            values = [
                r["median_s"]
                for r in runs
                if r["impl"] == impl and r["threads"] == threads and r["tokens"] == tokens and "median_s" in r
            ]
            row[impl] = statistics.median(values) if values else None
        row["ratio"] = row["ours"] / row["torch"] if row.get("ours") and row.get("torch") else None
        table[f"{threads}/{tokens}"] = row
    return table


def markdown(result):
    cfg = result["config"]
    lines = [
        "# Training step of a Transformer encoder stack: seconds per step",
        "",
        f"{cfg['layers']} encoder layers, d_model {cfg['d_model']}, {cfg['heads']} heads, feed-forward "
        f"{cfg['ff']}, dropout {cfg['dropout']}, {cfg['activation']}, "
        f"{'pre-norm' if cfg['norm_first'] else 'post-norm'}; batch {cfg['batch']}, float32; forward, backward from "
        "a fixed output gradient, AdamW step. Each number: the median over "
        f"{cfg['rounds']} round(s) of each process's median of {cfg['steps']} timed steps (after {cfg['warmup']} "
        "untimed), ours and PyTorch alternated within every round, a fresh process per measurement.",
        "",
        f"{result['machine']['cpu_model']}, {result['machine']['cpu_count']} CPUs; "
        + ", ".join(
            f"{k} {v}"
            for k, v in result["machine"]["versions"].items()
            if v and k in ("python", "numpy", "numba", "torch")
        )
        + f"; {result['machine']['date']}; load average at start "
        + ", ".join(f"{v:.2f}" for v in result["machine"]["loadavg_at_start"] or []),
        "",
        f"Command: `{result['command']}`",
        "",
        "| threads | tokens | tinygrad_free ms/step | PyTorch ms/step | ours / PyTorch | target <= 0.75 |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in result["summary"].items():
        threads, tokens = key.split("/")
        ms = {k: None if row.get(k) is None else 1e3 * row[k] for k in IMPLS}
        ratio = row.get("ratio")
        verdict = "-" if ratio is None else ("met" if ratio <= TARGET else "**not met**")
        lines.append(
            f"| {threads} | {tokens} | {C.fmt(ms['ours'], '.1f')} | {C.fmt(ms['torch'], '.1f')} | "
            f"{C.fmt(ratio, '.2f')} | {verdict} |"
        )
    errors = [r for r in result["runs"] if "error" in r or "skipped" in r]
    for r in errors:
        lines.append(
            f"\n- {r['impl']} {r['tokens']} tokens, {r['threads']} thread(s): {r.get('error') or r.get('skipped')}"
        )
    compile_s = [r["compile_s"] for r in result["runs"] if "compile_s" in r]
    if compile_s:
        lines.append(
            f"\n- tinygrad_free's `kernels.warmup()` (numba compile or cache load, not timed): median "
            f"{statistics.median(compile_s):.2f} s over {len(compile_s)} processes"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    config = {
        k: getattr(args, k)
        for k in ("batch", "layers", "d_model", "heads", "ff", "dropout", "activation", "rounds", "warmup", "steps")
    }
    config["norm_first"] = not args.post_norm
    settings = [(t, n) for t in args.threads for n in args.tokens]
    machine = C.machine_info()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(1, args.rounds + 1):
            for threads, tokens in settings:
                for impl in args.impls:
                    spec = dict(config, impl=impl, tokens=tokens, threads=threads, round=rnd, seed=0)
                    r = C.run_worker(
                        __file__, spec, {k: spec[k] for k in ("impl", "tokens", "threads", "round")}, tmp, args.timeout
                    )
                    shown = (
                        f"{1e3 * r['median_s']:.1f} ms/step" if "median_s" in r else r.get("error") or r.get("skipped")
                    )
                    print(f"round {rnd}: {impl:5s} {tokens:3d} tokens, {threads} thread(s): {shown}", flush=True)
                    runs.append(r)
    result = C.record(argv, config, machine, runs, summarize(runs, settings))
    C.write_report(args.out, "transformer_quick" if args.quick else "transformer", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
