#!/usr/bin/env python3
"""The report's figures and report.md: ``python scripts/report.py
{samples,sweep,confusion,losses,mnist,architectures,all} --out DIR ...`` (the commands and their
options: tinygrad_free/report/command.py, or ``--help``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinygrad_free.report.command import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
