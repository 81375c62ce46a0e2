"""The trace format (reasoning between two tags, then the answer) and its parser, shared by generation, export and
evaluation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class TraceFormat:
    open_tag: str = "<think>"
    close_tag: str = "</think>"

    def __post_init__(self):
        if not self.open_tag or not self.close_tag or self.open_tag == self.close_tag:
            raise ValueError("trace format needs two different, non-empty tags")

    def fill(self, template: str, **extra: str) -> str:
        # Plain replacement, not str.format: user-edited templates may hold braces.
        out = template.replace("{open_tag}", self.open_tag).replace("{close_tag}", self.close_tag)
        for k, v in extra.items():
            out = out.replace("{" + k + "}", v)
        return out

    def compose(self, reasoning: str, response: str) -> str:
        return f"{self.open_tag}\n{reasoning.strip()}\n{self.close_tag}\n{response.strip()}"

    def strip_tags(self, text: str) -> str:
        return text.replace(self.open_tag, "").replace(self.close_tag, "").strip()


DEFAULT_FORMAT = TraceFormat()


@dataclass(frozen=True)
class ParsedTrace:
    reasoning: str
    response: str
    parse_ok: bool
    error: Optional[str] = None


def parse_trace(raw: Any, fmt: TraceFormat = DEFAULT_FORMAT, *, truncated: bool = False) -> ParsedTrace:
    """Split `raw` into reasoning and answer. Never raises: malformed output gives parse_ok=False and a reason,
    keeping whatever could be recovered."""
    text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    o, c = fmt.open_tag, fmt.close_tag
    start = text.find(o)
    end = text.find(c, start + len(o)) if start >= 0 else text.find(c)
    error: Optional[str] = None
    if start < 0 and end < 0:
        return ParsedTrace("", text.strip(), False, f"no {o}…{c} reasoning block")
    if start < 0:
        reasoning, response, error = text[:end], text[end + len(c):], f"missing opening {o}"
    elif end < 0:
        reasoning, response = text[start + len(o):], ""
        error = f"reasoning never closed with {c}" + (" (truncated at max_tokens)" if truncated else "")
    else:
        reasoning, response = text[start + len(o):end], text[end + len(c):]
        if text[:start].strip():
            error = f"text before {o}"
    reasoning, response = reasoning.strip(), response.strip()
    if error is None:
        if not reasoning:
            error = "empty reasoning"
        elif not response:
            error = "empty answer"
        elif o in response or c in response:
            error = "a second reasoning tag in the answer"
        elif truncated:
            error = "answer truncated at max_tokens"
    return ParsedTrace(reasoning, response, error is None, error)

