#!/usr/bin/env bash
# Install, create the SQLite database, load built-in sets, start the worker and the app on http://localhost:8501.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh ml
.venv/bin/rational db upgrade
.venv/bin/rational sets import xstest harmbench_val jbb_benign coconot_contrast
.venv/bin/rational worker &
WORKER=$!
trap 'kill $WORKER 2>/dev/null || true' EXIT
.venv/bin/rational serve --port 8501
