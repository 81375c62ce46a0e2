"""What a generation run is configured with: model, backend, strategy, sampling, and the prompts it covers."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from sqlalchemy import select

from curation.backends import BACKENDS, SamplingParams
from curation.generation.strategies import get_strategy
from curation.generation.traceformat import TraceFormat
from db.filters import PromptFilter
from db.models import Prompt

# auto: the local engine measured fastest on this CPU for the run, chosen when it starts (curation.backends.choice)
BACKEND_CHOICES = ("auto",) + BACKENDS


@dataclass
class GenerationConfig:
    model: str
    backend: str = "transformers"
    strategy: str = "single"
    samples: int = 1
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)  # e.g. ["\n\n"]: one paragraph per pass for rambling models
    seed: int = 0
    open_tag: str = "<think>"
    close_tag: str = "</think>"
    batch_prompts: int = 256  # samples in flight at once (the backend batches them)
    student_model: Optional[str] = None  # the model the traces are for, when a teacher writes them
    strategy_params: dict[str, Any] = field(default_factory=dict)  # over the strategy's defaults (n_demos, …)
    backend_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        get_strategy(self.strategy)
        if self.backend not in BACKEND_CHOICES:
            raise ValueError(f"backend '{self.backend}' is not one of {', '.join(BACKEND_CHOICES)}")
        if not 1 <= self.samples <= 64:
            raise ValueError(f"samples must be between 1 and 64, got {self.samples}")
        if self.batch_prompts < 1:
            raise ValueError("batch_prompts must be >= 1")
        self.sampling()
        self.format()

    def sampling(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=self.seed, repetition_penalty=self.repetition_penalty, stop=tuple(self.stop))

    def format(self) -> TraceFormat:
        return TraceFormat(self.open_tag, self.close_tag)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GenerationConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Selection:
    set_names: list[str] = field(default_factory=list)
    split: Optional[str] = None
    behaviors: list[str] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)
    limit: Optional[int] = None
    project_id: int = 1

    def prompt_filter(self) -> PromptFilter:
        return PromptFilter(set_names=list(self.set_names), splits=[self.split] if self.split else [],
                            behaviors=list(self.behaviors), prompt_ids=list(self.prompt_ids), set_kind="prompts",
                            project_id=self.project_id)

    def query(self):
        q = self.prompt_filter().apply(select(Prompt.id, Prompt.text, Prompt.expected_behavior)).order_by(Prompt.id)
        return q.limit(self.limit) if self.limit else q

