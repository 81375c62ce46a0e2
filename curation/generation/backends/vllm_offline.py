"""vllm backend: offline `LLM.chat`, run by vllm_runner.py in vLLM's own interpreter (see vllm_env.py).

The engine lives in a child process that stays up between calls, so one model load serves a whole run.
"""
from __future__ import annotations

import json
import selectors
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from core.settings import child_env
from curation.generation.backends.base import BackendError, ChatRequest, ChatResult, Completion
from curation.generation.backends.vllm_env import find_vllm_python

RUNNER = Path(__file__).with_name("vllm_runner.py")


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, *, python: Optional[str] = None, seed: int = 0, dtype: str = "auto",
                 max_model_len: Optional[int] = 2048, kv_cache_gb: int = 1, startup_timeout_s: float = 900,
                 engine_args: Optional[dict] = None, env: Optional[dict] = None):
        self.model = str(model)
        py = python or find_vllm_python()
        if not py:
            raise BackendError("vllm backend: no python with vllm found; build one with "
                               "`python -m curation.generation.backends.vllm_env` or set RATIONAL_VLLM_PYTHON")
        env = child_env(**(env or {}))
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        env.pop("PYTHONPATH", None)  # our venv's packages must not shadow vLLM's pinned ones
        self._log = tempfile.NamedTemporaryFile("w+", prefix="vllm-runner-", suffix=".log", delete=False)
        self._proc = subprocess.Popen([py, str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True, env=env, bufsize=1)
        init = {"model": self.model, "seed": seed, "dtype": dtype, "max_model_len": max_model_len,
                "engine_args": engine_args or {}}
        self._send(init)
        self._recv(startup_timeout_s, "starting the engine")

    def _send(self, obj: dict) -> None:
        try:
            self._proc.stdin.write(json.dumps(obj) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise BackendError(f"vllm runner is gone ({e}); log tail:\n{self.log_tail()}") from None

    def _recv(self, timeout_s: float, what: str) -> dict:
        sel = selectors.DefaultSelector()
        sel.register(self._proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if sel.select(timeout=1.0):
                    line = self._proc.stdout.readline()
                    if line:
                        break
                if self._proc.poll() is not None:
                    raise BackendError(f"vllm runner exited with code {self._proc.returncode} while {what}; "
                                       f"log tail:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    self.close()
                    raise BackendError(f"vllm runner timed out after {timeout_s:.0f} s while {what}")
        finally:
            sel.close()
        msg = json.loads(line)
        if not msg.get("ok"):
            raise BackendError(f"vllm failed while {what}: {msg.get('error')}\n{msg.get('trace', '')}")
        return msg

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def generate(self, requests: list[ChatRequest], timeout_s: float = 3600) -> list[ChatResult]:
        if self._proc.poll() is not None:
            raise BackendError("vllm backend is closed")
        payload = [{"messages": list(r.messages), "sampling": r.sampling.to_dict(), "n": r.n,
                    "continue_final_message": r.continue_final_message} for r in requests]
        self._send({"op": "generate", "requests": payload})
        msg = self._recv(timeout_s, f"generating {len(requests)} request(s)")
        return [ChatResult([Completion(**c) for c in res["completions"]], res["prompt_tokens"], res["seconds"],
                           self.name, self.model) for res in msg["results"]]

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
