#!/usr/bin/env python3
"""Hunt for wrong numbers: random networks and random call sequences against PyTorch, for as long
as asked. Each failure is shrunk to a minimal example and added to tests/fuzz_regressions.json,
which the test suite replays from then on. Needs the test extras (torch, hypothesis).

    python3 scripts/fuzz.py --minutes 30
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the generators live beside the tests that run them

from fuzz_run import GENERATORS, fuzz  # noqa: E402

from tinygrad_free.cli import positive_float  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=positive_float, default=1.0, help="how long to search (default: %(default)s)")
    p.add_argument("--which", nargs="+", choices=sorted(GENERATORS), default=sorted(GENERATORS), help="generators")
    p.add_argument("--seed", type=int, default=None, help="seed of the seeds (default: fresh)")
    args = p.parse_args(argv)
    found = fuzz(args.minutes, tuple(args.which), args.seed)
    print(f"done: {found} failure(s) found" + (", recorded in tests/fuzz_regressions.json" if found else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
