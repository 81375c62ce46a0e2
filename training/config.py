"""Training configuration: a small part of our own (method, LoRA, the choices that depend on the machine) plus a
pass-through of TRL's own SFTConfig / DPOConfig fields, so any TRL setting can be set from a preset, the CLI
(`--set key=value`) and the page. Presets per model size fill both parts.
"""
from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

from core.errors import UserError

METHODS = ("sft", "dpo")
AUTO_FLAGS = ("packing", "assistant_only_loss", "qlora", "bf16")  # auto: decided on the machine that trains
# Set by the runner from the run itself; a preset or an override may not change them.
RESERVED_TRL = ("output_dir", "use_cpu", "report_to", "disable_tqdm")


class ConfigError(UserError):
    """A bad training setting; the message names the field."""


@dataclass
class TrainConfig:
    method: str = "sft"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: Any = "all-linear"
    packing: str = "auto"  # auto: only where attention keeps packed sequences apart (flash attention on CUDA)
    assistant_only_loss: str = "auto"  # auto: when the chat template has {% generation %} markers
    qlora: str = "auto"  # auto: 4-bit base when CUDA and bitsandbytes are present
    bf16: str = "auto"  # auto: on CUDA with bf16 support, or a CPU with native bf16 (AVX512-BF16, AMX)
    merge: bool = False  # also write a merged fp32 model
    num_processes: int = 1  # > 1: `accelerate launch` with one process per device (DDP; CPU processes use gloo)
    accelerate_config: str = ""  # a file name in $RATIONAL_HOME/accelerate (FSDP, DeepSpeed ZeRO, ...) on the worker
    trl: dict[str, Any] = field(default_factory=dict)  # SFTConfig / DPOConfig fields, passed through

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"config field 'method': '{self.method}' is not one of {', '.join(METHODS)}")
        for name in ("lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config field '{name}': {getattr(self, name)} must be at least 1")
        if not 1 <= int(self.num_processes) <= 256:
            raise ConfigError(f"config field 'num_processes': {self.num_processes} must be between 1 and 256")
        name = str(self.accelerate_config)
        if name and (not re.fullmatch(r"[\w.-]+\.(yaml|yml|json)", name) or name.startswith(".")):
            raise ConfigError(f"config field 'accelerate_config': '{name[:100]}' must be the name of a .yaml, .yml "
                              "or .json file in $RATIONAL_HOME/accelerate (no folders)")
        for name in AUTO_FLAGS:
            if str(getattr(self, name)) not in ("auto", "true", "false", "True", "False"):
                raise ConfigError(f"config field '{name}': '{getattr(self, name)}' must be auto, true or false")
        for name in RESERVED_TRL:
            if name in self.trl:
                raise ConfigError(f"config field '{name}' is set by the run itself")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "logging_steps",
                     "save_steps"):
            if name in self.trl and self.trl[name] is not None and self.trl[name] < 1:
                raise ConfigError(f"config field '{name}': {self.trl[name]} must be at least 1")
        if not self.trl.get("learning_rate", 1) > 0:
            raise ConfigError(f"config field 'learning_rate': {self.trl['learning_rate']} must be positive")
        if self.trl.get("max_steps", -1) <= 0 and not self.trl.get("num_train_epochs", 1) > 0:
            raise ConfigError("config: give max_steps > 0 or num_train_epochs > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Our fields by name; `trl` as given; any other key (a flat config from before the split) is a TRL field."""
        own = {f.name for f in fields(cls)}
        out = {k: v for k, v in d.items() if k in own}
        out["trl"] = {**{k: v for k, v in d.items() if k not in own}, **dict(d.get("trl") or {})}
        return cls(**out)

    def with_overrides(self, overrides: dict[str, Any]) -> "TrainConfig":
        """`key=value` strings from the CLI or a dict: our fields by their type; anything else must be a field of
        TRL's config for this method, coerced to that field's type."""
        own = {f.name: f for f in fields(self) if f.name != "trl"}
        mine, trl = {}, dict(self.trl)
        for k, v in overrides.items():
            if k in own:
                mine[k] = _coerce(k, v, getattr(self, k))
                continue
            known = trl_fields(self.method)
            if k not in known:
                raise ConfigError(f"unknown config field '{k}': neither a LoRA setting nor a field of TRL's "
                                  f"{'SFTConfig' if self.method == 'sft' else 'DPOConfig'}")
            trl[k] = _coerce(k, v, known[k])
        return replace(self, **mine, trl=trl)

    def __getitem__(self, key: str) -> Any:
        """A TRL setting as the trainer will see it: ours, else TRL's default."""
        if key in self.trl:
            return self.trl[key]
        return trl_fields(self.method)[key]


@lru_cache(maxsize=2)
def trl_fields(method: str) -> dict[str, Any]:
    """TRL's config fields for a method, with their defaults (imports TRL: seconds, once per process)."""
    if method == "dpo":
        from trl import DPOConfig as cls
    else:
        from trl import SFTConfig as cls
    return {f.name: (None if f.default is MISSING and f.default_factory is MISSING else
                     f.default if f.default is not MISSING else f.default_factory())
            for f in fields(cls) if f.init}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """A CLI string to the type of the field's default (numbers, booleans, JSON lists/objects, else text)."""
    if not isinstance(value, str):
        return value
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config field '{name}': '{value}' is not true or false")
    if isinstance(default, (int, float)):
        try:
            return type(default)(float(value)) if isinstance(default, int) and float(value).is_integer() \
                else float(value)
        except ValueError:
            raise ConfigError(f"config field '{name}': '{value}' is not a {type(default).__name__}") from None
    if isinstance(default, (list, dict)) or value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            raise ConfigError(f"config field '{name}': '{value}' is not valid JSON") from None
    if default is None:
        try:
            return json.loads(value)  # numbers, true/false/null
        except ValueError:
            return value
    return value


# Defaults that suit each model size (LoRA SFT as in the RATIONAL paper: < 4k examples, a few epochs). Keys are
# our fields or TRL fields; build_config sorts them.
COMMON_TRL: dict[str, Any] = dict(warmup_steps=0.03, lr_scheduler_type="cosine", weight_decay=0.0, logging_steps=5,
                                  save_steps=100, save_total_limit=3, seed=42, num_train_epochs=3.0,
                                  per_device_train_batch_size=4, max_length=1024)
PRESETS: dict[str, dict[str, Any]] = {
    "test": dict(lora_r=4, lora_alpha=8, lora_dropout=0.0, learning_rate=1e-3, max_steps=4, max_length=64,
                 per_device_train_batch_size=2, logging_steps=1, save_steps=2, warmup_steps=0.0,
                 lr_scheduler_type="constant"),
    # < 0.5B (SmolLM2-135M/360M): memory is no concern, so no activation checkpointing (TRL's default recomputes
    # the forward pass), and batches of similar length (less padding: 9.6 vs 12.2 s per step on 2 cores).
    "xs": dict(lora_r=16, lora_alpha=32, learning_rate=3e-4, num_train_epochs=3, max_length=1024,
               per_device_train_batch_size=8, save_steps=100, gradient_checkpointing=False,
               train_sampling_strategy="group_by_length"),
    "s": dict(lora_r=16, lora_alpha=32, learning_rate=2e-4, num_train_epochs=3, max_length=2048,
              per_device_train_batch_size=4, gradient_accumulation_steps=2),  # 0.5B - 3B
    "m": dict(lora_r=16, lora_alpha=32, learning_rate=1e-4, num_train_epochs=2, max_length=2048,
              per_device_train_batch_size=2, gradient_accumulation_steps=8,
              gradient_checkpointing=True),  # 7B - 14B (the paper's Llama-3-8B / Mistral-7B)
    "l": dict(lora_r=32, lora_alpha=64, learning_rate=5e-5, num_train_epochs=2, max_length=2048,
              per_device_train_batch_size=1, gradient_accumulation_steps=16, gradient_checkpointing=True),  # 30B+
}
DPO_LR_SCALE = 0.1  # DPO on top of LoRA wants a much smaller step than SFT
DPO_EPOCHS = 1
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([mb])\b", re.I)


def preset_for_model(base_model: str) -> str:
    """Guess the size class from a name such as 'SmolLM2-135M' or 'Llama-3-8B'; 's' when unknown."""
    sizes = [float(n) * (1e-3 if u.lower() == "m" else 1.0) for n, u in _SIZE.findall(base_model.replace("_", "-"))]
    if not sizes:
        return "s"
    b = max(sizes)
    return "xs" if b < 0.5 else "s" if b <= 3.5 else "m" if b <= 20 else "l"


def build_config(method: str, base_model: str, preset: str | None = None,
                 overrides: dict[str, Any] | None = None) -> tuple[str, TrainConfig]:
    preset = preset or preset_for_model(base_model)
    if preset not in PRESETS:
        raise ConfigError(f"preset '{preset}' is not one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {**COMMON_TRL, **PRESETS[preset]}
    if method == "dpo" and preset != "test":
        values["learning_rate"] = values.get("learning_rate", 2e-4) * DPO_LR_SCALE
        values["num_train_epochs"] = DPO_EPOCHS
    if method == "dpo":  # a preference row has no single `input_ids` to group by length: TRL's sampler refuses it
        values.pop("train_sampling_strategy", None)
    own = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(method=method, **{k: v for k, v in values.items() if k in own},
                      trl={k: v for k, v in values.items() if k not in own})
    cfg = cfg.with_overrides(overrides or {})
    cfg.validate()
    return preset, cfg
