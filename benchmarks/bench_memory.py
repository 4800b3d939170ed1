#!/usr/bin/env python3
"""Peak resident memory of training each recipe's network: tinygrad_free against PyTorch, the same
network, batch, optimizer and data.

What one measurement is, in a fresh process per implementation and recipe: import the library,
read the recipe's data set (the same float32 arrays on both sides, read here by a NumPy-only IDX
reader), reset the process's peak-RSS counter (``/proc/self/clear_refs``: the reading's own
transient, the same on both sides, is left out) and train: build the network and its optimizer,
``--steps`` training steps at the recipe's batch size (shuffled batches, training mode: dropout
and batch statistics on), then one evaluation pass over the 6,000 validation images in batches of
1,024 (ours: ``build_run(...).fit()`` with one epoch, as ``scripts/train.py`` runs a recipe,
kernels loaded by the Trainer; PyTorch: the usual loop, ``torch.no_grad()`` for the evaluation).
Reported:

* the process's peak RSS, the figure compared (what a user's machine must have);
* its parts: the RSS after the imports (PyTorch's is about twice NumPy's and numba's), what the
  data added, and the peak of the training above that (parameters, gradients, optimizer state,
  activations kept for backward, workspaces; for us also the network's numba kernels, loaded from
  the cache when training starts).

Augmentation (shifts, flips) is off on both sides: it costs one batch-sized buffer. Each recipe's
PyTorch twin is built from our network's layer configurations (``torch_twin``), so the two
cannot drift apart. Linux only (``/proc``).

    python benchmarks/bench_memory.py                        # every recipe, 3 rounds, 1 thread
    python benchmarks/bench_memory.py --recipes mnist_lstm --rounds 1 --steps 20

Writes benchmarks/results/memory.md and the raw memory.json beside it (not kept in git).
"""

import argparse
import gzip
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

RECIPES = ("fashion_mnist_mlp_regularized", "fashion_mnist_cnn", "mnist_lstm", "mnist_vit", "fashion_mnist_vit")
IMPLS = {"ours": "tinygrad_free (numba)", "torch": "PyTorch CPU"}
FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    p.add_argument("--impls", nargs="+", choices=list(IMPLS), default=list(IMPLS))
    p.add_argument("--steps", type=int, default=100, help="training steps per process (default 100)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of alternated processes (default 3)")
    p.add_argument("--threads", type=int, default=1, help="threads of every library (default 1)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--out", default=str(C.RESULTS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- memory, from /proc ---------------------------------------------------------------------------
def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak():
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0): the peak from here on.
    Path("/proc/self/clear_refs").write_text("5")


# --- the data: one reader for both sides -----------------------------------------------------------
def _idx(path):
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    return raw, 4 + 4 * ndim, [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]


def load(dataset):
    """(x_train, y_train, x_val, y_val): the first 54,000 training images and the last 6,000,
    float32 in [0, 1], flat rows; int64 labels."""
    import numpy as np

    folder = Path(C.ensure_data_env() or "") / FOLDERS[dataset]
    arrays = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        path = next(p for p in (folder / (stem + ".gz"), folder / stem) if p.exists())
        raw, offset, dims = _idx(path)
        arrays.append(np.frombuffer(raw, np.uint8, offset=offset).reshape(dims[0], -1))
    x = (arrays[0] / np.float32(255)).astype(np.float32)
    y = arrays[1].reshape(-1).astype(np.int64)
    return x[:54000], y[:54000], x[54000:], y[54000:]


# --- the workers -----------------------------------------------------------------------------------
def describe(recipe, steps):
    """What a worker needs of ``recipe`` (read in the parent, so PyTorch's worker imports no
    tinygrad_free): its configuration for one epoch without augmentation, the images' shape, and
    each layer of its network as (class name, ``get_config()``), which :func:`torch_twin` reads."""
    from tinygrad_free.recipes import load_config
    from tinygrad_free.training_run import build_model, input_shape

    c = dict(load_config(recipe), epochs=1, shift=0, flip=False)
    shape = input_shape(c, 784)
    layers = [(type(layer).__name__, layer.get_config()) for layer in build_model(c, shape, 10)]
    return {"config": c, "limit": steps * c["batch_size"], "shape": list(shape), "layers": layers}


def worker_ours(spec):
    from tinygrad_free.data import Split
    from tinygrad_free.training_run import build_run

    rss_imports = _status_kib("VmRSS")
    config, limit = spec["config"], spec["limit"]
    x, y, xv, yv = load(config["dataset"])
    rss_data = _status_kib("VmRSS")
    data = Split(x, y, xv, yv, xv[:0], yv[:0], tuple(str(i) for i in range(10)))
    start = _status_kib("VmRSS")
    _reset_peak()
    run = build_run(config, data, limit=limit, threads=spec["threads"], progress=False)
    hist = run.fit()
    if hist.status != "completed":
        raise RuntimeError(f"training did not complete: {hist.status} {hist.message}")
    return {
        "rss_imports_kib": rss_imports,
        "rss_data_kib": rss_data,
        "rss_start_kib": start,
        "peak_kib": _status_kib("VmHWM"),
        "parameters": run.model.num_parameters(),
        "val_loss": hist.history["val_loss"][-1],
    }


def torch_twin(layers_of):
    """The PyTorch network of our network's layers, given as (class name, ``get_config()``)."""
    import torch

    nn = torch.nn
    acts = {"identity": None, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}

    class Fn(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x)

    class LastStep(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.lstm = nn.LSTM(
                c["input_size"],
                c["hidden_size"],
                c["num_layers"],
                batch_first=True,
                dropout=c["dropout"],
                bidirectional=c["bidirectional"],
            )
            self.sequences = c["return_sequences"]

        def forward(self, x):
            out = self.lstm(x)[0]
            return out if self.sequences else out[:, -1]

    class Positions(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1, c["max_len"], c["dim"]))

        def forward(self, x):
            return x + self.weight[:, : x.shape[1]]

    layers = []
    for kind, c in layers_of:
        if kind == "Dense":
            layers.append(nn.Linear(c["in_features"], c["out_features"], bias=c["bias"]))
        elif kind == "Conv2D":
            layers.append(
                nn.Conv2d(
                    c["in_channels"], c["out_channels"], c["kernel_size"], c["stride"], c["padding"], bias=c["bias"]
                )
            )
        elif kind == "BatchNorm":
            layers.append(
                (nn.BatchNorm2d if layers and isinstance(layers[-1], nn.Conv2d) else nn.BatchNorm1d)(
                    c["num_features"], c["eps"], c["momentum"]
                )
            )
        elif kind in ("ReLU", "GELU", "Tanh", "Sigmoid"):
            layers.append(acts[kind.lower()]())
        elif kind == "Dropout":
            layers.append(nn.Dropout(c["p"]))
        elif kind == "MaxPool2D":
            layers.append(nn.MaxPool2d(c["kernel_size"], c["stride"]))
        elif kind == "Flatten":
            layers.append(nn.Flatten())
        elif kind == "LSTM":
            layers.append(LastStep(c))
        elif kind == "Reshape":
            layers.append(Fn(lambda x, s=tuple(c["shape"]): x.reshape(len(x), *s)))
        elif kind == "Permute":
            layers.append(Fn(lambda x, d=tuple(c["dims"]): x.permute(0, *d)))
        elif kind == "PositionalEmbedding":
            layers.append(Positions(c))
        elif kind == "TransformerEncoderLayer":
            layers.append(
                nn.TransformerEncoderLayer(
                    c["d_model"],
                    c["nhead"],
                    c["dim_feedforward"],
                    c["dropout"],
                    c["activation"],
                    c["layer_norm_eps"],
                    batch_first=True,
                    norm_first=c["norm_first"],
                )
            )
        elif kind == "LayerNorm":
            layers.append(nn.LayerNorm(c["num_features"], c["eps"]))
        elif kind == "Mean":
            layers.append(Fn(lambda x, a=c["axis"], k=c["keepdims"]: x.mean(a, keepdim=k)))
        else:
            raise NotImplementedError(f"torch_twin: no PyTorch twin for {kind}; add one here")
        act = c.get("activation") if kind in ("Dense", "Conv2D") else None
        if act not in (None, "identity"):
            layers.append(acts[act]())
    return nn.Sequential(*layers)


def worker_torch(spec):
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    rss_imports = _status_kib("VmRSS")
    config, limit, shape = spec["config"], spec["limit"], tuple(spec["shape"])
    x, y, xv, yv = load(config["dataset"])
    start = _status_kib("VmRSS")
    _reset_peak()
    torch.manual_seed(0)
    model = torch_twin(spec["layers"]).train()
    kw = {"lr": config["learning_rate"], "betas": (config["beta1"], config["beta2"]), "eps": config["epsilon"]}
    if config["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), weight_decay=config["weight_decay"], **kw)
    elif config["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), weight_decay=config["weight_decay"] or 0.0, **kw)
    else:
        raise NotImplementedError(f"bench_memory: no PyTorch optimizer for {config['optimizer']}")
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.get("label_smoothing") or 0.0)
    xt, yt = torch.from_numpy(x[:limit].reshape(-1, *shape)), torch.from_numpy(y[:limit])
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(xt)))
    batch = config["batch_size"]
    for i in range(0, len(xt), batch):
        idx = order[i : i + batch]
        opt.zero_grad()
        loss_fn(model(xt[idx]), yt[idx]).backward()
        opt.step()
    model.eval()
    xvt, yvt = torch.from_numpy(xv.reshape(-1, *shape)), torch.from_numpy(yv)
    with torch.no_grad():
        val_loss = sum(
            float(loss_fn(model(xvt[i : i + 1024]), yvt[i : i + 1024])) * len(yvt[i : i + 1024])
            for i in range(0, len(xvt), 1024)
        ) / len(xvt)
    return {
        "rss_imports_kib": rss_imports,
        "rss_start_kib": start,
        "peak_kib": _status_kib("VmHWM"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "val_loss": val_loss,
    }


def worker_main(spec_json):
    spec = json.loads(spec_json)
    result = {k: spec[k] for k in ("impl", "recipe", "round")}
    try:
        result.update({"ours": worker_ours, "torch": worker_torch}[spec["impl"]](spec))
    except ImportError as e:
        result["skipped"] = f"{type(e).__name__}: {e}"
    C.write_json(spec["out"], result, atomic=False)
    return 0


# --- the parent ------------------------------------------------------------------------------------
def summarize(runs, recipes):
    """{recipe: {impl: medians over rounds (MiB) of the process peak and its parts}, "ratio": ours /
    PyTorch of the process peaks}."""
    table = {}
    for recipe in recipes:
        row = {}
        for impl in IMPLS:
            ok = [r for r in runs if r["impl"] == impl and r["recipe"] == recipe and "peak_kib" in r]
            if ok:
                row[impl] = {
                    key: statistics.median(fn(r) / 1024 for r in ok)
                    for key, fn in (
                        ("peak_mib", lambda r: r["peak_kib"]),
                        ("imports_mib", lambda r: r["rss_imports_kib"]),
                        ("data_mib", lambda r: r["rss_start_kib"] - r["rss_imports_kib"]),
                        ("train_mib", lambda r: r["peak_kib"] - r["rss_start_kib"]),
                    )
                } | {"parameters": ok[0]["parameters"]}
        both = all(i in row for i in IMPLS)
        row["ratio"] = row["ours"]["peak_mib"] / row["torch"]["peak_mib"] if both else None
        table[recipe] = row
    return table


def markdown(result):
    cfg, m = result["config"], result["machine"]
    lines = [
        "# Peak memory of training each recipe's network",
        "",
        "The peak resident memory (VmHWM) of a process that imports the library, reads the data set "
        f"(the same float32 arrays on both sides) and trains the recipe's network: {cfg['steps']} steps at "
        "the recipe's batch size in training mode (dropout and batch statistics on), then one evaluation "
        "pass over 6,000 validation images in batches of 1,024. The same network (PyTorch's built from "
        "our layers' configurations), batch, optimizer and loss on both sides; augmentation off; "
        f"{cfg['threads']} thread(s). The parts: the RSS after the imports, what reading the data added, "
        "and what the training took above that (for us this includes loading the network's numba kernels "
        "from the cache; PyTorch's kernels come with its import). Median over "
        f"{cfg['rounds']} round(s), a fresh process per measurement, ours and PyTorch alternated.",
        "",
        f"{m['cpu_model']}, {m['cpu_count']} CPUs; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v and k in ("python", "numpy", "numba", "torch"))
        + f"; {m['date']}",
        "",
        f"Command: `{result['command']}`",
        "",
        "| recipe | parameters | tinygrad_free peak MiB | PyTorch peak MiB | ours / PyTorch "
        "| ours: imports + data + training MiB | PyTorch: imports + data + training MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for recipe, row in result["summary"].items():
        o, t = row.get("ours"), row.get("torch")

        def parts(d):
            return "-" if not d else " + ".join(f"{d[k]:.0f}" for k in ("imports_mib", "data_mib", "train_mib"))

        lines.append(
            f"| {recipe} | {(o or t or {}).get('parameters', '-'):,} | {C.fmt(o and o['peak_mib'], '.0f')} "
            f"| {C.fmt(t and t['peak_mib'], '.0f')} | {C.fmt(row['ratio'], '.2f')} | {parts(o)} | {parts(t)} |"
        )
    for r in result["runs"]:
        if "error" in r or "skipped" in r:
            lines.append(f"\n- {r['impl']} {r['recipe']} round {r['round']}: {r.get('error') or r.get('skipped')}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    C.ensure_data_env()
    config = {"steps": args.steps, "rounds": args.rounds, "threads": args.threads}
    machine, runs = C.machine_info(), []
    described = {recipe: describe(recipe, args.steps) for recipe in args.recipes}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(1, args.rounds + 1):
            for recipe in args.recipes:
                for impl in args.impls:
                    spec = dict(config, impl=impl, recipe=recipe, round=rnd) | described[recipe]
                    r = C.run_worker(
                        __file__, spec, {k: spec[k] for k in ("impl", "recipe", "round")}, tmp, args.timeout
                    )
                    shown = (
                        f"training peak {(r['peak_kib'] - r['rss_start_kib']) / 1024:.1f} MiB, process peak "
                        f"{r['peak_kib'] / 1024:.1f} MiB"
                        if "peak_kib" in r
                        else r.get("error") or r.get("skipped")
                    )
                    print(f"round {rnd}: {impl:5s} {recipe}: {shown}", flush=True)
                    runs.append(r)
    result = C.record(argv, config, machine, runs, summarize(runs, args.recipes))
    C.write_report(args.out, "memory", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
