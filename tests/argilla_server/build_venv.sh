#!/usr/bin/env bash
# Builds the argilla-server test venv (its pins conflict with the project's stack, so it lives apart).
# Usage: tests/argilla_server/build_venv.sh [VENV_DIR]   (default: .venv-argilla at the repo root)
# Reused as is when it already imports argilla_server and osmem_server at the pinned versions.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-argilla}"
PY="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(0 if m.version('argilla-server') == '2.8.0' and m.version('osmem-server') else 1)" 2>/dev/null; then
  echo "argilla venv ready: $VENV"; exit 0
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q "argilla-server==2.8.0" "osmem-server>=0.1.6"
echo "argilla venv built: $VENV"
