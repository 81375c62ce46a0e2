"""A LoRA adapter merged into its base: one merge for a training run's merged model and for serving an adapter on an
engine that takes whole models (vLLM)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def merge_adapter(base: str, adapter: str | Path, out: Path) -> Path:
    """Write base + adapter as one HF folder at `out`, atomically (a half-written folder is never at `out`).

    The merge runs on an fp32 copy of the base whatever its stored dtype: in bf16 on a CPU the small LoRA update is
    rounded away. The tokenizer is the adapter's where it saved one (its chat template may differ), else the base's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = Path(adapter)
    tmp = out.with_name(f".{out.name}.partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer = adapter if (adapter / "tokenizer_config.json").exists() else base
    AutoTokenizer.from_pretrained(str(tokenizer)).save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return out
