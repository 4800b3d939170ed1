#!/usr/bin/env bash
# The documentation site (mkdocs.yml, docs/):
#   bash scripts/docs.sh serve   # live preview at http://127.0.0.1:8000, rebuilt on every edit
#   bash scripts/docs.sh build   # the static site in build/site, in strict mode (any warning fails)
# Extra arguments go to mkdocs (e.g. `serve --dev-addr 0.0.0.0:8000`). Installs the docs extra
# first when MkDocs is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import mkdocs, material, mkdocstrings_handlers.python, pymdownx" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -e ".[docs]"
fi
export NO_MKDOCS_2_WARNING=1
command="${1:-}"
shift || true
case "$command" in
  serve) exec python3 -m mkdocs serve --strict "$@" ;;
  build) exec python3 -m mkdocs build --strict --site-dir build/site "$@" ;;
  *)
    echo "usage: bash scripts/docs.sh serve|build [mkdocs options]" >&2
    exit 2
    ;;
esac
