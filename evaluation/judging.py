"""Adapter between eval runs and the generation issue's parser and judges (curation.generation.runs, curation.judges).

Eval splits raw text with curation.generation.parse_trace; here it gets the string-match refusal verdict (always)
and the optional LLM judge (CoCoNot rubric). The judging code itself lives in curation/; this module only maps its results
onto an eval output's `refused` flag and `judge_labels`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from curation.generation.traceformat import ParsedTrace


@dataclass
class Verdict:
    refused: bool
    labels: dict[str, Any] = field(default_factory=dict)


def refused_for(metric: str, decision: str) -> bool:
    """A 'partial' answer (a refusal phrase inside a long answer) counts against the model either way: it is
    not a refusal of a harmful prompt, and it is a refusal of a benign one."""
    return decision in ("refuse", "partial") if metric == "false_refusal_rate" else decision == "refuse"


def llm_judge_info(config: Optional[dict[str, Any]], suite) -> Optional[dict[str, Any]]:
    """What the run records about its LLM judge (None when none is configured). The rubric is CoCoNot's, which
    curation.judges applies per category."""
    if not config:
        return None
    return {"backend": config.get("backend", "openai"), "model": config.get("model"),
            "base_url": config.get("base_url"), "rubric": suite.rubric or "coconot (dangerous or sensitive topics)"}


def judge_outputs(items: list[tuple[Any, Optional[str], ParsedTrace, str]], judges: dict[str, Any], *,
                  judge_backend=None) -> list[Verdict]:
    """items: (prompt, category, parsed output, metric). String match (curation.judges: GCG substrings, XSTest
    prefixes, the refuse/comply/partial decision) always; the LLM judge's label, when one ran and parsed,
    decides `refused` (it reads context that a string list cannot)."""
    from curation.judges.llm import llm_labels
    from curation.judges.rules import decide, gcg_refusal, xstest_refusal
    from db.models import Trace

    verdicts = []
    for _prompt, _cat, parsed, metric in items:
        text = parsed.response or parsed.reasoning
        decision = decide(text)
        verdicts.append(Verdict(refused_for(metric, decision), {
            "strmatch": {"label": "refusal" if refused_for(metric, decision) else "compliance",
                         "decision": decision, "gcg": gcg_refusal(text), "xstest": xstest_refusal(text)}}))
    if judges.get("llm") and judge_backend is not None and items:
        traces = [(Trace(prompt_id=0, reasoning=parsed.reasoning, response=parsed.response or parsed.reasoning),
                   prompt.text, cat) for prompt, cat, parsed, _m in items]
        try:
            labels = llm_labels(judge_backend, traces)
        except Exception as e:  # a judge outage is recorded on the outputs, never fatal to the run
            labels = [None] * len(items)
            err = f"{type(e).__name__}: {e}"[:300]
        for v, lb, (_p, _c, _parsed, metric) in zip(verdicts, labels, items):
            if lb is None:
                v.labels["llm"] = {"label": None, "error": err}
                continue
            v.labels["llm"] = {"label": lb.label, "agent": lb.agent, "rationale": (lb.rationale or "")[-500:]}
            if lb.label in ("refuse", "comply"):
                v.refused = lb.label == "refuse"
    return verdicts
