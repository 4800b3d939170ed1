#!/usr/bin/env python3
#!/usr/bin/env python3
"""The assignment report's figures and numbers, as PNGs plus a report.md in one folder.

    python scripts/report.py samples   --out report
    python scripts/report.py sweep     --out report --results sweeps/assignment.jsonl
    python scripts/report.py confusion --out report --model best.npz
    python scripts/report.py losses    --out report --results sweeps/assignment.jsonl --seeds 3
    python scripts/report.py mnist     --out report --results sweeps/assignment.jsonl
    python scripts/report.py all       --out report --results sweeps/assignment.jsonl --model best.npz

Each command rewrites its own section of report.md and leaves the others. Figures are logged
to wandb too when it is on (--wandb_mode; default online when logged in, else off).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinygrad_free.report.command import build_parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
