"""Training configuration: one dataclass, presets per model size, and the choices that depend on the machine."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

METHODS = ("sft", "dpo")


class ConfigError(ValueError):
    """A bad training setting; the message names the field."""


@dataclass
class TrainConfig:
    method: str = "sft"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: Any = "all-linear"
    learning_rate: float = 2e-4
    num_train_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    packing: str = "auto"  # auto: only where attention keeps packed sequences apart (flash attention on CUDA)
    assistant_only_loss: str = "auto"  # auto: when the chat template has {% generation %} markers
    qlora: str = "auto"  # auto: 4-bit base when CUDA and bitsandbytes are present
    gradient_checkpointing: bool = False
    warmup_ratio: float = 0.03
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    logging_steps: int = 5
    eval_steps: Optional[int] = None  # None: evaluate once per epoch
    save_steps: int = 100
    save_total_limit: int = 3
    seed: int = 42
    beta: float = 0.1  # DPO
    merge: bool = False  # also write a merged fp32 model
    bf16: str = "auto"  # auto: on CUDA with bf16 support

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"config field 'method': '{self.method}' is not one of {', '.join(METHODS)}")
        for name in ("lora_r", "lora_alpha", "per_device_train_batch_size", "gradient_accumulation_steps",
                     "max_length", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config field '{name}': {getattr(self, name)} must be at least 1")
        if not self.learning_rate > 0:
            raise ConfigError(f"config field 'learning_rate': {self.learning_rate} must be positive")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise ConfigError("config: give max_steps > 0 or num_train_epochs > 0")
        for name in ("packing", "assistant_only_loss", "qlora", "bf16"):
            if str(getattr(self, name)) not in ("auto", "true", "false", "True", "False"):
                raise ConfigError(f"config field '{name}': '{getattr(self, name)}' must be auto, true or false")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config field(s) {sorted(unknown)}")
        return cls(**d)

    def with_overrides(self, overrides: dict[str, Any]) -> "TrainConfig":
        """`key=value` strings from the CLI or a dict, coerced to the field's type."""
        types = {f.name: type(getattr(self, f.name)) for f in fields(self)}
        out = {}
        for k, v in overrides.items():
            if k not in types:
                raise ConfigError(f"unknown config field '{k}'")
            if isinstance(v, str) and types[k] in (int, float):
                try:
                    v = types[k](v)
                except ValueError:
                    raise ConfigError(f"config field '{k}': '{v}' is not a {types[k].__name__}") from None
            elif isinstance(v, str) and types[k] is bool:
                v = v.lower() in ("1", "true", "yes")
            out[k] = v
        return replace(self, **out)


# Defaults that suit each model size (LoRA SFT as in the RATIONAL paper: < 4k examples, a few epochs).
PRESETS: dict[str, dict[str, Any]] = {
    "test": dict(lora_r=4, lora_alpha=8, lora_dropout=0.0, learning_rate=1e-3, max_steps=4, max_length=64,
                 per_device_train_batch_size=2, logging_steps=1, save_steps=2, warmup_ratio=0.0,
                 lr_scheduler_type="constant"),
    "xs": dict(lora_r=16, lora_alpha=32, learning_rate=3e-4, num_train_epochs=3, max_length=1024,
               per_device_train_batch_size=8, save_steps=100),  # < 0.5B (SmolLM2-135M/360M)
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
    values: dict[str, Any] = dict(PRESETS[preset], method=method)
    if method == "dpo" and preset != "test":
        values["learning_rate"] = values.get("learning_rate", 2e-4) * DPO_LR_SCALE
        values["num_train_epochs"] = DPO_EPOCHS
    cfg = TrainConfig(**values).with_overrides(overrides or {})
    cfg.validate()
    return preset, cfg
