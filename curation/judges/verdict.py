"""What a judge says about one trace: a label of some kind, by some agent, with a score and a reason."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class Label:
    kind: str
    agent: str
    label: Optional[str]
    score: Optional[float] = None
    rationale: Optional[str] = None
