#!/usr/bin/env bash
# Install the test needs (Python packages, Debian chromium for browser tests) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "ml,test"
if ! [ -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest -ra "$@"
