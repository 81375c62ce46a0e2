"""Raw vLLM baseline for bench/generation.py: `LLM.chat` on the same prompts, timed the same way. Runs in the vLLM
python (.venv-vllm). Loads once, prints `READY`, then for each line `go` on stdin prints `RESULT {json}`, so the
bench can alternate raw and wrapped runs under the same machine load."""
from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # vLLM's own prints go to stderr
    cfg = json.loads(sys.stdin.readline())
    from vllm import LLM, SamplingParams

    llm = LLM(model=cfg["model"], seed=0, dtype=cfg["dtype"], max_model_len=cfg["max_model_len"],
              **cfg["engine_args"])
    sp = SamplingParams(temperature=0.0, max_tokens=cfg["max_tokens"])
    llm.chat(cfg["conversations"][:2], SamplingParams(temperature=0.0, max_tokens=4), use_tqdm=False)  # warm-up
    out.write("READY\n")
    for line in sys.stdin:
        if line.strip() != "go":
            break
        t0 = time.perf_counter()
        outs = llm.chat(cfg["conversations"], sp, use_tqdm=False)
        dt = time.perf_counter() - t0
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        out.write("RESULT " + json.dumps({"seconds": dt, "tokens": tokens}) + "\n")


if __name__ == "__main__":
    main()
