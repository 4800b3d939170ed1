#!/usr/bin/env bash
# Install the package with its test extras, lint, then run the whole suite.
# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
# The linter and the formatter first: CI fails on what they find (settings in pyproject.toml).
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest "$@"
