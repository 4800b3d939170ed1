#!/usr/bin/env python3
"""Export a saved model (``model.save``: .npz or .safetensors) to ONNX.

    python3 scripts/export.py model.npz model.onnx --shape 1 28 28     # a CNN on 28x28 images
    python3 scripts/export.py mlp.npz mlp.onnx                         # a Graph or an MLP knows its input

``--shape`` is one input's shape without the batch axis (repeat it for each input of a model with
several); the batch axis of the ONNX model is symbolic. Needs the ``[onnx]`` extra.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinygrad_free import nn  # noqa: E402
from tinygrad_free.cli import writable_file  # noqa: E402
from tinygrad_free.onnx import DEFAULT_OPSET, export  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a model file written by model.save (.npz or .safetensors)")
    p.add_argument("output", type=writable_file, help="the ONNX file to write")
    p.add_argument(
        "--shape",
        type=int,
        nargs="+",
        action="append",
        metavar="N",
        help="one input's shape without the batch axis, e.g. --shape 1 28 28; repeat for several inputs",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    return p, p.parse_args(argv)


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        model = nn.load(args.model)
        shapes = None if args.shape is None else [tuple(s) for s in args.shape]
        proto = export(model, args.output, shapes, opset=args.opset)
    except (ValueError, TypeError, OSError) as e:
        hint = " (give the input shape with --shape)" if "input shape" in str(e) else ""
        parser.error(f"{e}{hint}")
    inputs = ", ".join(i.name for i in proto.graph.input)
    print(f"wrote {args.output}: {len(proto.graph.node)} nodes, opset {args.opset}, inputs {inputs}")


if __name__ == "__main__":
    main()
