"""What every refusal judge returns and the interface it offers.

A judge has a name and a version (`ref` = "name@vN", recorded on every auto-label and eval output it writes) and
judges (prompt, response) pairs in batches: `refused`, `complied`, or `partial` where it can tell, with a score
(how sure it is the response refused, 0..1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class Judgement:
    label: str  # a core.vocabulary.JudgeLabel value
    score: float  # P(refused)-like: 1.0 sure it refused, 0.0 sure it did not
    judge: str  # the judge's ref, name@vN
    why: str = ""


class Judge(Protocol):
    name: str
    version: int

    @property
    def ref(self) -> str: ...

    def judge(self, items: Sequence[tuple[str, str]]) -> list[Judgement]:
        """One judgement per (prompt, response), in order."""
        ...
