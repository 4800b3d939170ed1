"""bench_kernels.py's rendering: kernels.md from a result."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402,F401


def markdown(result):
    meta, comp = result["meta"], result["compile"]
    lines = [
        "# Kernel benchmark: numba vs NumPy",
        "",
        f"Reference network {'-'.join(map(str, meta['layers']))} ({meta['n_params']} parameters). "
        f"Median of {meta['repeats']} repeats (each >= {meta['min_time_s'] * 1e3:g} ms of calls), "
        f"times per call in microseconds; speedup = numpy / numba. "
        f"{'Quick run. ' if meta['quick'] else ''}"
        f"Python {meta['python']}, NumPy {meta['numpy']}, numba {meta['numba']}, "
        f"{meta['cpu_count']} CPUs, {meta['date']}.",
        "",
        "## Compile time (`kernels.warmup()`, all kernels, float32 + float64)",
        "",
    ]
    if "cold_warmup_s" in comp:
        lines.append(f"- cold (empty numba cache, fresh process): {comp['cold_warmup_s']:.2f} s")
        lines.append(f"- from the on-disk cache (fresh process): {comp['cached_warmup_s']:.2f} s")
    lines += [
        f"- in this process: {comp['warmup_in_process_s']:.2f} s",
        "",
        "## Kernel time of one training step",
        "",
        "*activations, losses, optimizer*: 3 x bias_act(tanh) + bias_act(identity) + 3 x dense_grad(tanh) "
        "+ softmax_cross_entropy + weight_decay + adam, without the GEMMs. *whole layers incl. GEMMs*: "
        "dense_forward + dense_backward of each of the 4 layers (numpy's `@` against the numba "
        f"kernels' GEMM, {meta.get('gemm', 'see kernels.blas')}) + softmax_cross_entropy + weight_decay "
        "+ adam.",
        "",
        "| batch | dtype | kernels | calls | numpy us | numba us | speedup |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for s in result["train_step_kernels"]:
        lines.append(
            f"| {s['batch']} | {s['dtype']} | {s.get('kernels', '')} | {s['calls']} | {s['numpy_us']:.1f} "
            f"| {s['numba_us']:.1f} | {s['speedup']:.2f}x |"
        )
    lines += [
        "",
        "## All kernels",
        "",
        "| kernel | shape | dtype | numpy us | numba us | speedup |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in result["results"]:
        if r["section"] == "overhead":
            continue
        name = r["kernel"] + (f" ({r['variant']})" if r["variant"] else "")
        shape = "x".join(map(str, r["shape"]))
        lines.append(
            f"| {name} | {shape} | {r['dtype']} | {r['numpy_us']:.2f} | {r['numba_us']:.2f} | {r['speedup']:.2f}x |"
        )
    if result.get("parallel"):
        lines += [
            "",
            f"## Optimizer updates on several threads (`kernels.parallel`, numba "
            f"{meta.get('numba_threading_layer')} layer)",
            "",
            "The serial numba kernel against its parallel twin on the float32 parameter buffer "
            "(the same result bit for bit).",
            "",
            "| kernel | shape | 1 thread us | threads | parallel us | speedup |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in result["parallel"]:
            name = r["kernel"] + (f" ({r['variant']})" if r["variant"] else "")
            lines.append(
                f"| {name} | {'x'.join(map(str, r['shape']))} | {r['serial_us']:.2f} | {r['threads']} "
                f"| {r['parallel_us']:.2f} | {r['speedup']:.2f}x |"
            )
    lines += [
        "",
        "## Per-call overhead (smallest shapes: 1x1 activations, 1x2 logits, 1-element buffers)",
        "",
        "| kernel | dtype | numpy us | numba us | speedup |",
        "|---|---|---:|---:|---:|",
    ]
    for r in result["results"]:
        if r["section"] == "overhead":
            lines.append(
                f"| {r['kernel']} | {r['dtype']} | {r['numpy_us']:.2f} | {r['numba_us']:.2f} | {r['speedup']:.2f}x |"
            )
    lines += [
        "",
        "numba dispatch floor (a jitted no-op with bias_act's arguments): "
        + ", ".join(f"{f['call']}: {f['us'] * 1e3:.0f} ns" for f in result["dispatch_floor"]),
        "",
    ]
    return "\n".join(lines)
