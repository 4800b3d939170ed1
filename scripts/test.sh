#!/usr/bin/env bash
# Install the package with its test extras, lint, then run the whole suite.
# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
# The documentation's browser test (tests/test_docs.py) drives Debian's Chromium; install it when
# it is missing and this can (root, apt-get). Never fatal: without it that test skips, saying why.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
  && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
    >/dev/null 2>&1 || echo "scripts/test.sh: could not install chromium; the docs browser test will skip" >&2
fi
# The linter and the formatter first: CI fails on what they find (settings in pyproject.toml).
python3 -m ruff check .
python3 -m ruff format --check .
# Compile the numba kernels first, one process per core (each compiles whole kernel files into
# numba's on-disk cache; the suite then loads them): a cold compile is most of the suite's time
# and runs on one core otherwise. A few seconds when the cache is already warm.
# (The CPUs this process may use, not the host's count, which a container may not give it.)
python3 -c "import os; from tinygrad_free import kernels
cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
print(f'kernels compiled or loaded in {kernels.warmup(jobs=cores):.0f} s')"
# Then the suite on every core too, each test file on one worker (its module fixtures built once);
# arguments after scripts/test.sh go to pytest (`-n 0`: one process).
python3 -m pytest -n auto --dist loadfile "$@"
