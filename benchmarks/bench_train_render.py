"""bench_train.py's rendering: train.md and train.png from a result."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
from bench_train_summary import FLOOR, IMPLS, OURS, POLICY_SLACK, thread_policy  # noqa: E402


# =====================================================================================================
# Report
# =====================================================================================================
def _setting_title(s):
    ob = "as set" if s["openblas_env"] == "as_set" else "unset"
    vars_ = ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in s["openblas_vars"].items())
    same = f" (identical to {', '.join(s['same_as'])}: neither variable is set)" if s["same_as"] else ""
    t = s["threads"]
    threads = (
        "default threads (no thread variables; ours: measured)" if t == "auto" else f"{t} thread{'s' if t > 1 else ''}"
    )
    return f"OpenBLAS env {ob}{same}, {threads} ({vars_})"


TITLES = {"convnet": "Keras mnist_convnet", "lstm": "The mnist_lstm network"}


def markdown(result):
    meta = result["meta"]
    v = meta["versions"]
    lines = [
        "# Training speed: seconds per epoch",
        "",
        f"Reference network {meta['network']}; {meta['n_train']} Fashion-MNIST training images per epoch. "
        f"Each number is the median of {meta['rounds']} round(s) x {meta['timed_epochs_per_run']} timed epochs "
        f"(every run a fresh subprocess: {meta['warmup_epochs_per_run']} warm-up epoch, then the timed ones; "
        "implementations alternated within each round). Ratio = ours (tinygrad_free, numba) / it, from the "
        "medians of the same run: below 1 means we are faster."
        + (" **Quick smoke run: not a benchmark result.**" if meta["quick"] else ""),
        "",
        f"{meta['cpu_model']}, {meta['cpu_count']} CPUs; Python {v['python']}, NumPy {v['numpy']}, "
        f"numba {v['numba']}, PyTorch {v.get('torch')}, JAX {v.get('jax')}, Keras {v.get('keras')}; "
        f"{meta['date']}; load average at start {', '.join(f'{x:.2f}' for x in meta['loadavg_at_start'] or [])}.",
        "",
        f"Command: `python benchmarks/{meta['command']}`",
        "",
        "The raw per-run results (the `.json` of the same name beside this file) are not kept in git: the "
        "command above measures them again, and `--replot` added to it redraws this page and the `.png` "
        "from a local copy.",
        "",
    ]
    if meta.get("baseline_commit"):
        lines += [
            f"ours-baseline: the numba path of commit {meta['baseline_commit']} (--baseline), "
            "alternated with the others in the same run.",
            "",
        ]
    if meta["skipped"]:
        lines += [f"Skipped (not installed): {', '.join(IMPLS[k] for k in meta['skipped'])}.", ""]
    batches = meta["batches"]
    for s in result["settings"]:
        lines += [f"## {_setting_title(s)}", ""]
        head = (
            "| implementation | "
            + " | ".join(f"s/epoch batch {b}" for b in batches)
            + " | "
            + " | ".join(f"ours/it batch {b}" for b in batches)
            + " |"
        )
        lines += [head, "|---|" + "---:|" * (2 * len(batches))]
        summ, ratios = s["summary"], s["ratios_ours_over_it"]
        for impl in [k for k in IMPLS if k in summ]:
            cells = [C.fmt(summ[impl].get(str(b), {}).get("median_s")) for b in batches]
            cells += [C.fmt(ratios[str(b)].get(impl), ".2f") for b in batches]
            lines.append(f"| {IMPLS[impl]} | " + " | ".join(cells) + " |")
        if FLOOR in summ:
            cells = [C.fmt(summ[FLOOR].get(str(b), {}).get("median_s")) for b in batches]
            cells += [f"floor/ours {C.fmt(s['gemm_floor'][str(b)]['fraction_reached_numba'], '.2f')}" for b in batches]
            lines.append("| GEMM-only floor (numpy BLAS) | " + " | ".join(cells) + " |")
        lines.append("")
        notes = []
        ours = summ.get(OURS, {})
        comp = [c for b in batches for c in ours.get(str(b), {}).get("compile_s", []) if c is not None]
        if comp:
            notes.append(
                f"tinygrad_free numba compile / cache load (`kernels.warmup()`, not in any epoch): "
                f"first process {comp[0]:.2f} s, median {C.median(comp):.2f} s over {len(comp)} processes"
            )
        ks = summ.get("keras", {})
        for b in batches:
            first = ks.get(str(b), {}).get("first_epoch_s_incl_xla_compile")
            if first:
                notes.append(
                    f"Keras/JAX first epoch at batch {b} (includes XLA compilation; excluded from the "
                    f"median): {', '.join(f'{t:.2f}' for t in first)} s"
                )
        for b in batches:
            fl = summ.get(FLOOR, {}).get(str(b))
            if fl:
                notes.append(
                    f"GEMM floor at batch {b}: {fl['step_us']:.0f} us of GEMMs per step (best repeat of "
                    f"each GEMM, fastest round; medians: {fl['step_median_us']:.0f} us; the 11 run in "
                    f"sequence: {fl['step_in_sequence_us']:.0f} us) x {fl['steps_per_epoch']} steps; "
                    f"fraction of the floor reached: numba "
                    f"{C.fmt(s['gemm_floor'][str(b)]['fraction_reached_numba'], '.2f')}, numpy "
                    f"{C.fmt(s['gemm_floor'][str(b)]['fraction_reached_numpy'], '.2f')}"
                )
                if "kernels_step_us" in fl:
                    notes.append(
                        f"the same GEMMs through the numba kernels' GEMM ({fl['kernels_gemm']}) at batch "
                        f"{b}: {fl['kernels_step_us']:.0f} us per step (best repeats, fastest round)"
                    )
        util = []
        for impl in [k for k in IMPLS if k in summ]:
            u = [summ[impl][str(b)]["cpu_util_median"] for b in batches if str(b) in summ[impl]]
            util.append(f"{IMPLS[impl]} {'/'.join(C.fmt(x, '.2f') for x in u)}")
        if util:
            notes.append(
                f"CPU used per wall second (median over epochs, batch {'/'.join(map(str, batches))}): "
                + "; ".join(util)
            )
        gemms = sorted({r["gemm"] for r in s["runs"] if r.get("impl") == OURS and r.get("gemm")})
        if gemms:
            notes.append(
                f"tinygrad_free (numba) GEMM, called from its kernels: {', '.join(gemms)} "
                "(`tinygrad_free.kernels.blas`)"
            )
        archs = sorted({a for impl in summ for b in summ[impl].values() for a in b["openblas_architecture"]})
        nthreads = sorted({a for impl in summ for b in summ[impl].values() for a in b["openblas_num_threads"]})
        notes.append(
            f"numpy's OpenBLAS core type in the subprocesses (threadpoolctl `architecture`): "
            f"{', '.join(archs)}; its threads: {', '.join(nthreads)}; CPU affinity: "
            f"{s['affinity_cpus'] if s['affinity_cpus'] else 'all CPUs'}"
        )
        errors = [r for r in s["runs"] if "error" in r]
        if errors:
            notes.append(
                f"{len(errors)} run(s) failed: " + "; ".join(f"{r['impl']} b{r['batch']} r{r['round']}" for r in errors)
            )
        issue = {"convnet": 24, "lstm": 27}.get(meta.get("network_key"), 4)
        lines += [f"- {n}" for n in notes] + ["", f"Targets (issue {issue}):", ""]
        for t in s["targets"]:
            if t["value"] is None:
                status, val = "not measured", ""
            else:
                status = "**met**" if t["met"] else "**not met**"
                val = {
                    "ratio": f": {t['value']:.3f}x",
                    "speedup": f": {t['value']:.3f}x",
                    "rel_diff": f": {t['value']:.1e}",
                }[t["kind"]]
            lines.append(f"- {t['target']}{val} — {status}")
        lines.append("")
    policy = thread_policy(result["settings"], batches)
    if policy:
        lines += [
            "## Thread policy: one thread, two threads and the default (issue 13)",
            "",
            "tinygrad_free (numba), seconds per epoch from the tables above (the same run). The default is "
            '`Trainer(threads="auto")` with no thread variables set: it measures which count is faster '
            f"(`tinygrad_free/threads.py`). Target: the default within {POLICY_SLACK - 1:.0%} of the faster "
            "fixed count.",
            "",
            "| OpenBLAS env | batch | 1 thread | 2 threads | default | default / faster fixed | target | "
            "per round (median; each) |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in policy:
            rounds = r["per_round"]
            per = f"{C.median(rounds):.3f}; " + ", ".join(f"{x:.2f}" for x in rounds) if rounds else ""
            lines.append(
                f"| {r['openblas_env']} | {r['batch']} | {r['one_s']:.3f} | {r['two_s']:.3f} | {r['default_s']:.3f} | "
                f"{r['default_over_faster_fixed']:.3f} | {'**met**' if r['met'] else '**not met**'} | {per} |"
            )
        lines += [
            "",
            "Per round: the default's median epoch in that round over the faster fixed count's in the same round "
            "(the settings run one after the other within a round, so slow drift cancels; the minimum of two noisy "
            "medians favours the fixed counts).",
        ]
        lines.append("")
    return "\n".join(lines)


def plot(result, path):
    plt = C.pyplot()
    if plt is None:
        return None
    settings = result["settings"]
    batches = result["meta"]["batches"]
    names = [k for k in list(IMPLS) + [FLOOR] if any(k in s["summary"] for s in settings)]
    labels = {**IMPLS, FLOOR: "GEMM-only floor"}
    colors = {
        "ours-numba": "tab:blue",
        "ours-numpy": "tab:cyan",
        "ours-baseline": "tab:purple",
        "torch": "tab:red",
        "keras": "tab:orange",
        FLOOR: "tab:gray",
    }
    fig, axes = plt.subplots(1, len(settings), figsize=(max(6.5, 4.2 * len(settings)), 4.6), squeeze=False)
    width = 0.8 / max(1, len(names))
    for ax, s in zip(axes[0], settings):
        for k, impl in enumerate(names):
            vals = [s["summary"].get(impl, {}).get(str(b), {}).get("median_s") for b in batches]
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(batches))]
            bars = ax.bar(
                xs,
                [v or 0 for v in vals],
                width,
                color=colors[impl],
                label=labels[impl],
                hatch="//" if impl == FLOOR else None,
            )
            for bar, v in zip(bars, vals):
                if v:
                    ax.text(
                        bar.get_x() + bar.get_width() / 2,
                        bar.get_height(),
                        f"{v:.3g}",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        rotation=90,
                    )
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_title(f"OpenBLAS env {s['openblas_env']}, {s['threads']} thread(s)", fontsize=9)
        ax.set_ylabel("seconds per epoch (median)")
        ax.margins(y=0.2)
    handles, texts = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, texts, fontsize=8, loc="lower center", ncol=min(len(names), 3), frameon=False)
    fig.suptitle(
        f"{TITLES.get(result['meta'].get('network_key'), 'Reference MLP')}, "
        f"{result['meta']['n_train']} images/epoch" + (" (quick smoke run)" if result["meta"]["quick"] else ""),
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.11, 1, 1))
    C.save_figure(fig, path)
    plt.close(fig)
    return path
