#!/usr/bin/env python3
"""Every built-in optimizer on the reference network: time per step and validation accuracy per epoch.

1. Step time: ``optimizer.step(loss=...)`` alone, on the real packed parameter buffer of the
   784-128-128-128-10 tanh MLP (float32, 134,794 parameters) holding real, non-zero gradients
   (one forward/backward of a batch of 64 Fashion-MNIST images), numba and NumPy backends timed
   in turns; median microseconds per step. The gradients are left in place between steps
   (no zero_grad), so every step does the full update.
2. Accuracy: each optimizer trains the network (same initial weights, same batches) for
   ``--epochs`` epochs at batch 64 on the 54,000 training images with ``Trainer.fit`` (numba
   backend); the validation accuracy (6,000 held-out images) after every epoch goes on one plot.
   Learning rates: each optimizer's default (rmsprop, adam, nadam, eve: 1e-3), except plain SGD
   0.05, momentum 0.01 and NAG 0.01 (momentum 0.9), whose defaults are not sensible for this
   network at batch 64. No weight decay. ``--lr name=value`` overrides.

    python benchmarks/bench_optimizers.py            # full: 5 epochs, all 54,000 images
    python benchmarks/bench_optimizers.py --quick    # smoke test: 5,000 images, 2 epochs, fewer repeats

Writes benchmarks/results/optimizers.json, optimizers.md and optimizers.png
(``--quick``: optimizers_quick.*).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

OPTIMIZERS = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "eve")
LR_OVERRIDES = {"sgd": 0.05, "momentum": 0.01, "nag": 0.01}
# which fused kernel an optimizer's update runs (None: a NumPy update written in Python)
KERNEL_OF = {
    "sgd": "sgd",
    "momentum": "momentum",
    "nag": "momentum",
    "rmsprop": "rmsprop",
    "adam": "adam",
    "nadam": "nadam",
    "eve": "adam",
}  # Eve: Adam's kernel with lr/d, eps/d (optim/eve.py)
BACKENDS = ("numba", "numpy")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="5,000 training images, 2 epochs, fewer timing repeats")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per optimizer (default 5, quick 2)")
    p.add_argument("--batch", type=int, default=64, help="training batch size (default 64)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images (default all; quick 5000)")
    p.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS))
    p.add_argument("--lr", action="append", default=[], metavar="NAME=VALUE", help="learning rate of one optimizer")
    p.add_argument("--repeats", type=int, default=None, help="step-timing repeats (default 31, quick 7)")
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds each timing repeat lasts at least (default 0.02, quick 0.005)",
    )
    p.add_argument("--threads", type=int, default=1, help="BLAS/numba threads (default 1)")
    p.add_argument("--backend", choices=BACKENDS, default="numba", help="backend of the accuracy runs")
    p.add_argument("--no-train", action="store_true", help="step times only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(C.RESULTS), help="output directory")
    p.add_argument("--name", default=None, help="output file stem (default optimizers, quick: optimizers_quick)")
    args = p.parse_args(argv)
    lrs = {}
    for item in args.lr:
        key, sep, value = item.partition("=")
        if not sep or key not in OPTIMIZERS:
            p.error(f"--lr expects NAME=VALUE with NAME one of {', '.join(OPTIMIZERS)}, got {item!r}")
        lrs[key] = float(value)
    args.lr = lrs
    return args


def learning_rate(name, overrides):
    from tinygrad_free import optim

    if name in overrides:
        return overrides[name]
    if name in LR_OVERRIDES:
        return LR_OVERRIDES[name]
    return optim.get(name).defaults["lr"]


def make(name, lr, seed):
    import numpy as np

    from tinygrad_free import nn, optim
    from tinygrad_free.recipes import build_mlp

    model = build_mlp(784, 3, 128, activation="tanh", weight_init="xavier", num_classes=10, dtype=np.float32, rng=seed)
    return model, optim.create(name, model.parameters(), lr=lr), nn.CrossEntropyLoss()


def step_times(names, lrs, xb, yb, repeats, min_time, seed):
    """Median microseconds per ``opt.step(loss=...)`` for every optimizer and backend."""
    from tinygrad_free import backend

    rows = []
    for name in names:
        setups = {}
        for be in BACKENDS:
            backend.set_backend(be)
            model, opt, loss_fn = make(name, lrs[name], seed)
            loss = loss_fn.forward(model.forward(xb), yb)
            model.backward(loss_fn.backward())
            unit = opt._units[0]  # the packed buffer (one dtype: one unit)
            assert unit.g.any(), "gradients are all zero"
            opt.step(loss=loss)  # first call: compile/load, allocate scratch
            setups[be] = (opt, loss, unit)

        def run(be, number, setups=setups):
            opt, loss = setups[be][:2]
            backend.set_backend(be)
            t0 = time.perf_counter()
            for _ in range(number):
                opt.step(loss=loss)
            return time.perf_counter() - t0

        numbers = {}
        for be in BACKENDS:
            number = 1
            while run(be, number) < min_time:
                number *= 2
            numbers[be] = number
        samples = {be: [] for be in BACKENDS}
        for _ in range(repeats):
            for be in BACKENDS:
                samples[be].append(run(be, numbers[be]) / numbers[be] * 1e6)
        unit = setups["numba"][2]
        row = {
            "optimizer": name,
            "lr": lrs[name],
            "kernel": KERNEL_OF.get(name),
            "n_params": int(unit.w.size),
            "dtype": str(unit.w.dtype),
            "grad_abs_mean": float(abs(unit.g).mean()),
            **{f"{be}_us": statistics.median(samples[be]) for be in BACKENDS},
            **{f"{be}_us_samples": samples[be] for be in BACKENDS},
        }
        row["speedup"] = row["numpy_us"] / row["numba_us"]
        row["numba_ns_per_param"] = row["numba_us"] * 1e3 / row["n_params"]
        rows.append(row)
        print(
            f"step {name:9s} lr {lrs[name]:<6g} numba {row['numba_us']:8.1f} us  numpy {row['numpy_us']:8.1f} us  "
            f"x{row['speedup']:5.2f}" + ("" if row["kernel"] else "  (no fused kernel: NumPy update)"),
            flush=True,
        )
    backend.set_backend("numba")
    return rows


def curves(names, lrs, split, epochs, batch, seed, be):
    from tinygrad_free import backend
    from tinygrad_free.train import Trainer

    backend.set_backend(be)
    out = []
    for name in names:
        model, opt, loss_fn = make(name, lrs[name], seed)
        trainer = Trainer(model, loss_fn, opt, callbacks=[], progress=False)
        hist = trainer.fit(
            split["x_train"],
            split["y_train"],
            epochs=epochs,
            batch_size=batch,
            seed=seed,
            validation_data=(split["x_val"], split["y_val"]),
        )
        h = hist.history
        test_loss, test_acc = (
            trainer.evaluate(split["x_test"], split["y_test"]) if hist.status == "completed" else (None, None)
        )
        out.append(
            {
                "optimizer": name,
                "lr": lrs[name],
                "status": hist.status,
                "message": hist.message,
                "val_accuracy": h.get("val_accuracy", []),
                "val_loss": h.get("val_loss", []),
                "train_loss": h.get("train_loss", []),
                "train_accuracy": h.get("train_accuracy", []),
                "train_seconds": h.get("train_seconds", []),
                "test_accuracy": test_acc,
                "test_loss": test_loss,
            }
        )
        print(
            f"train {name:9s} lr {lrs[name]:<6g} val acc "
            + " ".join(f"{a:.4f}" for a in h.get("val_accuracy", []))
            + f"  test {C.fmt(test_acc, '.4f')}  {C.fmt(C.median(h.get('train_seconds', [])), '.2f')} s/epoch"
            + ("" if hist.status == "completed" else f"  [{hist.status}: {hist.message}]"),
            flush=True,
        )
    return out


def main(argv=None):
    args = parse_args(argv)
    quick = args.quick
    epochs = args.epochs or (2 if quick else 5)
    limit = args.limit or (5000 if quick else None)
    repeats = args.repeats or (7 if quick else 31)
    min_time = args.min_time or (0.005 if quick else 0.02)
    name = args.name or ("optimizers_quick" if quick else "optimizers")
    data_dir = C.ensure_data_env()

    import numba
    import numpy as np
    from threadpoolctl import threadpool_limits

    from tinygrad_free import kernels
    from tinygrad_free.data import load_split

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    with threadpool_limits(limits=args.threads):
        compile_s = kernels.warmup()
        s = load_split("fashion_mnist")
        split = {
            "x_train": s.x_train[:limit] if limit else s.x_train,
            "y_train": s.y_train[:limit] if limit else s.y_train,
            "x_val": s.x_val,
            "y_val": s.y_val,
            "x_test": s.x_test,
            "y_test": s.y_test,
        }
        lrs = {n: learning_rate(n, args.lr) for n in args.optimizers}
        print(
            f"{len(split['x_train'])} training images, {len(split['x_val'])} validation; {args.threads} thread(s); "
            f"kernels.warmup() {compile_s:.2f} s",
            flush=True,
        )
        rng = np.random.default_rng(args.seed)
        idx = rng.choice(len(split["x_train"]), args.batch, replace=False)
        steps = step_times(
            args.optimizers, lrs, split["x_train"][idx], split["y_train"][idx], repeats, min_time, args.seed
        )
        train = (
            [] if args.no_train else curves(args.optimizers, lrs, split, epochs, args.batch, args.seed, args.backend)
        )
        blas = C.blas_info()

    meta = {
        "command": C.command_line(argv),
        "quick": quick,
        "epochs": epochs,
        "batch": args.batch,
        "n_train": len(split["x_train"]),
        "n_val": len(split["x_val"]),
        "n_test": len(split["x_test"]),
        "threads": args.threads,
        "train_backend": args.backend,
        "repeats": repeats,
        "min_time_s": min_time,
        "seed": args.seed,
        "weight_decay": 0.0,
        "lr": lrs,
        "lr_rule": "each optimizer's default lr, except sgd 0.05, momentum 0.01, nag 0.01 (momentum 0.9)",
        "compile_s": compile_s,
        "data_dir": C.repo_relative(data_dir),
        "numpy_openblas": blas.get("numpy_openblas"),
        "openblas_vars": C.openblas_vars(),
        **C.machine_info(),
    }
    result = {"meta": meta, "step_times": steps, "curves": train}
    C.write_report(args.out, name, result, markdown, plot)
    return 0


def markdown(result):
    meta = result["meta"]
    v = meta["versions"]
    n_params = result["step_times"][0]["n_params"] if result["step_times"] else None
    arch = (meta.get("numpy_openblas") or {}).get("architecture")
    lines = [
        "# Optimizers on the reference network",
        "",
        f"784-128-128-128-10 tanh MLP, float32 ({n_params} parameters in one packed buffer), Fashion-MNIST. "
        f"{meta['threads']} thread(s); numpy's OpenBLAS core type {arch}. "
        f"{meta['cpu_model']}, {meta['cpu_count']} CPUs; Python {v['python']}, NumPy {v['numpy']}, "
        f"numba {v['numba']}; {meta['date']}."
        + (" **Quick smoke run: not a benchmark result.**" if meta["quick"] else ""),
        "",
        f"Command: `python benchmarks/{meta['command']}`",
        "",
        "## Time per optimizer step",
        "",
        f"`optimizer.step(loss=...)` alone on the packed parameter buffer holding real gradients (one batch of "
        f"{meta['batch']}), no weight decay; median of {meta['repeats']} repeats, each >= "
        f"{meta['min_time_s'] * 1e3:g} ms of steps; the two backends timed in turns.",
        "",
        "| optimizer | fused kernel | numba us/step | numpy us/step | speedup | numba ns/parameter |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["step_times"]:
        lines.append(
            f"| {r['optimizer']} | {r['kernel'] or 'none (NumPy update)'} | {r['numba_us']:.1f} | "
            f"{r['numpy_us']:.1f} | {r['speedup']:.2f}x | {r['numba_ns_per_param']:.3f} |"
        )
    if result["curves"]:
        ep = meta["epochs"]
        lines += [
            "",
            "## Validation accuracy per epoch",
            "",
            f"{meta['n_train']} training images, batch {meta['batch']}, {ep} epochs, {meta['train_backend']} "
            f"backend, same initial weights and batches for every optimizer; validation on "
            f"{meta['n_val']} held-out images, test accuracy of the final weights on {meta['n_test']}. "
            f"Learning rates: {meta['lr_rule']}.",
            "",
            "| optimizer | lr | "
            + " | ".join(f"epoch {e}" for e in range(1, ep + 1))
            + " | best val | test (final) | s/epoch |",
            "|---|---:|" + "---:|" * (ep + 3),
        ]
        for c in result["curves"]:
            accs = [f"{a:.4f}" for a in c["val_accuracy"]] + ["-"] * (ep - len(c["val_accuracy"]))
            best = max(c["val_accuracy"]) if c["val_accuracy"] else None
            status = "" if c["status"] == "completed" else f" ({c['status']})"
            lines.append(
                f"| {c['optimizer']}{status} | {c['lr']:g} | "
                + " | ".join(accs)
                + f" | {C.fmt(best, '.4f')} | {C.fmt(c['test_accuracy'], '.4f')} | "
                f"{C.fmt(C.median(c['train_seconds']), '.2f')} |"
            )
    lines.append("")
    return "\n".join(lines)


def plot(result, path):
    plt = C.pyplot()
    if plt is None:
        return None
    has_curves = bool(result["curves"])
    fig, axes = plt.subplots(1, 2 if has_curves else 1, figsize=(12 if has_curves else 6, 4.5), squeeze=False)
    axes = axes[0]
    if has_curves:
        ax = axes[0]
        for c in result["curves"]:
            ep = range(1, len(c["val_accuracy"]) + 1)
            ax.plot(ep, c["val_accuracy"], marker="o", label=f"{c['optimizer']} (lr {c['lr']:g})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.set_xticks(range(1, result["meta"]["epochs"] + 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(
            f"Validation accuracy, batch {result['meta']['batch']}, {result['meta']['n_train']} images", fontsize=10
        )
    ax = axes[-1]
    names = [r["optimizer"] for r in result["step_times"]]
    xs = range(len(names))
    for k, (be, color) in enumerate((("numba", "tab:blue"), ("numpy", "tab:cyan"))):
        vals = [r[f"{be}_us"] for r in result["step_times"]]
        bars = ax.bar([x + (k - 0.5) * 0.4 for x in xs], vals, 0.4, label=be, color=color)
        for bar, val in zip(bars, vals):
            ax.text(
                bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{val:.0f}", ha="center", va="bottom", fontsize=7
            )
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("microseconds per optimizer step (median)")
    ax.set_title("Optimizer step on the packed buffer", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(
        "Optimizers on the 784-128-128-128-10 tanh MLP" + (" (quick smoke run)" if result["meta"]["quick"] else ""),
        fontsize=11,
    )
    fig.tight_layout()
    C.save_figure(fig, path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
