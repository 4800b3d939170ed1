"""The long search: both generators (``fuzz_networks``, ``fuzz_calls``) with fresh random seeds
until the time is up; each failure, shrunk by Hypothesis to a minimal example, is added to
``fuzz_regressions.json``, which the tests replay from then on. ``scripts/fuzz.py`` runs it."""

from __future__ import annotations

import datetime
import json
import random
import time

from fuzz_calls import call_sequences, run_calls
from fuzz_networks import REGRESSIONS, Rejected, check_against_torch, network_specs

from tinygrad_free.fileio import atomic_open

GENERATORS = {"networks": (network_specs, check_against_torch), "calls": (call_sequences, run_calls)}


def _round(which: str, seed: int, examples: int) -> tuple[int, dict | None, str]:
    """One Hypothesis run of ``examples`` cases: (cases run, the minimal failing example or None, its error)."""
    from hypothesis import HealthCheck, Phase, given, reject, settings
    from hypothesis import seed as hseed

    strategy, check = GENERATORS[which]
    seen, failing = [0], []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
        print_blob=False,
    )
    @hseed(seed)
    @given(strategy())
    def case(example):
        seen[0] += 1
        try:
            check(example)
        except Rejected:
            reject()
        except Exception as e:
            lines = [line for line in str(e).strip().splitlines() if line.strip()]
            failing.append((example, f"{type(e).__name__}: {' / '.join(lines[:3])}"))
            raise

    try:
        case()
    except Exception:
        example, error = failing[-1]  # Hypothesis replays the minimal example last
        return seen[0], example, error
    return seen[0], None, ""


def record(which: str, example: dict, error: str) -> None:
    """Add a failing example to the regressions file (atomically), tagged with when it was found."""
    data = json.loads(REGRESSIONS.read_text()) if REGRESSIONS.exists() else {}
    tag = f"{which}-{datetime.date.today().isoformat()}-{len(data.get(which, [])) + 1}"
    data.setdefault(which, []).append(dict(example, found=tag, error=error[:400]))
    with atomic_open(REGRESSIONS, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def fuzz(
    minutes: float, which: tuple[str, ...] = ("networks", "calls"), seed: int | None = None, examples: int = 200
) -> int:
    """Search for ``minutes``; returns how many failures were found (and recorded)."""
    rng = random.Random(seed)
    stop = time.monotonic() + 60 * minutes
    totals = {w: 0 for w in which}
    found = 0
    while time.monotonic() < stop:
        for w in which:
            s = rng.getrandbits(32)
            n, example, error = _round(w, s, examples)
            totals[w] += n
            if example is not None:
                found += 1
                record(w, example, error)
                print(f"FAILURE in {w} (seed {s}), recorded in {REGRESSIONS.name}:\n{error}", flush=True)
            if time.monotonic() >= stop:
                break
        print(
            f"{time.monotonic() - (stop - 60 * minutes):7.0f} s: "
            + ", ".join(f"{w} {n} cases" for w, n in totals.items())
            + f", {found} failures",
            flush=True,
        )
    return found
