"""Export rows from reviewed traces.

- SFT rows are TRL conversational `messages`: the prompt alone as the user turn (no self-check system prompt), the
  assistant turn `<think>{reasoning}</think>\n\n{response}` with the annotator's edit where there is one.
- DPO rows are TRL `prompt` / `chosen` / `rejected`: an edit gives (edited, original); a prompt with an approved
  and a rejected trace gives (approved, rejected).
- The validation split is chosen by a seeded hash of the prompt id, stratified by (set, behaviour).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from curation.export.spec import ExportFilter, ExportOptions
from db.models import Annotation, Prompt, PromptSet, Trace

SPLITS = ("train", "validation")
_SLOT = re.compile(r"\{(reasoning|response)\}")


@dataclass(slots=True)
class ExportTrace:
    """One selected trace with the text that trains (edit applied) and its lineage."""

    id: int
    version: int
    prompt_id: int
    prompt: str
    status: str
    set: str
    behavior: str
    mutation: str
    template_version: str
    original: str
    final: str
    annotation_id: Optional[int] = None
    annotation_version: Optional[int] = None
    edited: bool = False
    run_id: Optional[int] = None


# -- selection --------------------------------------------------------------------------------------------------
def _trace_query(flt: ExportFilter, statuses: list[str]):
    q = (select(Trace.id, Trace.version, Trace.prompt_id, Trace.reasoning, Trace.response, Trace.status,
                Trace.decided_by, Trace.template_version, Trace.run_id, Prompt.text, Prompt.expected_behavior,
                Prompt.mutation, PromptSet.name)
         .join(Prompt, Prompt.id == Trace.prompt_id).join(PromptSet, PromptSet.id == Prompt.set_id))
    return replace(flt, statuses=list(statuses)).apply(q).order_by(Trace.id)


def _deciding_annotations(s: Session, trace_ids_q, rows) -> dict[int, Any]:
    """Per trace, the annotation that decided it: the one review recorded as final (trace.meta
    final_annotation_id), else the decider's own, else the latest. Empty without the review tables."""
    decider = {r.id: r.decided_by for r in rows}
    anns = s.execute(select(Annotation.id, Annotation.trace_id, Annotation.annotator_id, Annotation.version,
                            Annotation.quality, Annotation.edited_reasoning, Annotation.edited_response)
                     .where(Annotation.trace_id.in_(trace_ids_q))
                     .order_by(Annotation.trace_id, Annotation.updated_at, Annotation.id)).all()
    if not anns:
        return {}
    # Trace meta (JSON) only for annotated traces: decoding it for every exported row is the slow part.
    final = {tid: (meta or {}).get("final_annotation_id") for tid, meta in s.execute(
        select(Trace.id, Trace.meta).where(Trace.id.in_(select(Annotation.trace_id)
                                                        .where(Annotation.trace_id.in_(trace_ids_q)))))}

    def rank(a) -> int:
        return 2 if a.id == final.get(a.trace_id) else 1 if a.annotator_id == decider.get(a.trace_id) else 0

    chosen: dict[int, Any] = {}
    for a in anns:  # in time order, so among equals the latest wins
        cur = chosen.get(a.trace_id)
        if cur is None or rank(a) >= rank(cur):
            chosen[a.trace_id] = a
    return chosen


class _Template:
    """The assistant-turn template, split once into literal text and {reasoning}/{response} slots."""

    def __init__(self, template: str):
        self.parts = _SLOT.split(template)
        self.empty = self.render("", "")

    def render(self, reasoning: str, response: str) -> str:
        vals = {"reasoning": reasoning.strip(), "response": response.strip()}
        return "".join(vals[p] if i % 2 else p for i, p in enumerate(self.parts))


def select_traces(engine: Engine, flt: ExportFilter, options: ExportOptions, statuses: list[str]) -> list[ExportTrace]:
    q = _trace_query(flt, statuses)
    out: list[ExportTrace] = []
    with Session(engine) as s:
        rows = s.execute(q).all()
        ann = _deciding_annotations(s, select(q.subquery().c.id), rows)
    tpl = _Template(options.reasoning_template)
    for r in rows:
        a = ann.get(r.id)
        if flt.min_quality is not None and r.status != "rejected" and (a is None or a.quality is None
                                                                       or a.quality < flt.min_quality):
            continue
        original = tpl.render(r.reasoning, r.response)
        final = original
        if a is not None and (a.edited_reasoning is not None or a.edited_response is not None):
            final = tpl.render(r.reasoning if a.edited_reasoning is None else a.edited_reasoning,
                               r.response if a.edited_response is None else a.edited_response)
        out.append(ExportTrace(r.id, r.version, r.prompt_id, r.text, r.status, r.name, r.expected_behavior,
                          r.mutation or "none", r.template_version or "", original, final,
                          a.id if a is not None else None, a.version if a is not None else None,
                          edited=final != original, run_id=r.run_id))
    return out


# -- rows -------------------------------------------------------------------------------------------------------
def _prompt_turns(options: ExportOptions, text: str) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": options.system_prompt}] if options.system_prompt else []
    return turns + [{"role": "user", "content": text}]


def _sft_rows(traces: list[ExportTrace], options: ExportOptions):
    rows, lineage, skipped = [], [], 0
    empty = _Template(options.reasoning_template).empty
    for t in traces:
        if t.final == empty or not t.final.strip():
            skipped += 1  # nothing to learn from an empty answer
            continue
        rows.append({"messages": _prompt_turns(options, t.prompt) + [{"role": "assistant", "content": t.final}],
                     "trace_id": t.id, "prompt_id": t.prompt_id, "set": t.set, "behavior": t.behavior,
                     "mutation": t.mutation, "source": "trace"})
        lineage.append([("sft", t)])
    return rows, lineage, {"skipped_empty": skipped}


def _dpo_rows(traces: list[ExportTrace], options: ExportOptions, chosen_statuses: list[str],
              rejected_runs: list[int]):
    rows, lineage = [], []
    by_prompt: dict[int, dict[str, list[ExportTrace]]] = {}
    for t in traces:
        side = ("rejected" if not rejected_runs or t.run_id in rejected_runs else None) if t.status == "rejected" \
            else ("chosen" if t.status in chosen_statuses else None)
        if side:
            by_prompt.setdefault(t.prompt_id, {"chosen": [], "rejected": []})[side].append(t)

    def add(chosen: ExportTrace, chosen_text: str, rejected: ExportTrace, rejected_text: str, source: str):
        rows.append({"prompt": _prompt_turns(options, chosen.prompt),
                     "chosen": [{"role": "assistant", "content": chosen_text}],
                     "rejected": [{"role": "assistant", "content": rejected_text}],
                     "trace_id": chosen.id, "rejected_trace_id": rejected.id, "prompt_id": chosen.prompt_id,
                     "set": chosen.set, "behavior": chosen.behavior, "mutation": chosen.mutation, "source": source})
        lineage.append([("chosen", chosen, source), ("rejected", rejected, source)])

    for t in traces:  # edits first, in trace order
        if t.status in chosen_statuses and t.edited:
            add(t, t.final, t, t.original, "edit")
    for pid in sorted(by_prompt):
        sides, n = by_prompt[pid], 0
        for c in sides["chosen"]:
            for r in sides["rejected"]:
                if n >= options.max_pairs_per_prompt or c.final == r.original:
                    continue
                add(c, c.final, r, r.original, "status")
                n += 1
    sources = {"edit": sum(r["source"] == "edit" for r in rows), "status": sum(r["source"] == "status" for r in rows)}
    return rows, lineage, {"pairs_by_source": sources}


def assign_splits(rows: list[dict], options: ExportOptions) -> list[str]:
    """Validation takes whole prompts, stratified by (set, behaviour), in a seeded-hash order."""
    strata: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        strata.setdefault((r["set"], r["behavior"]), set()).add(r["prompt_id"])

    def h(pid: int) -> str:
        return hashlib.sha256(f"{options.seed}:{pid}".encode()).hexdigest()

    val: set[int] = set()
    for key in sorted(strata):
        pids = sorted(strata[key], key=h)
        val.update(pids[:round(len(pids) * options.val_fraction)])
    all_prompts = {r["prompt_id"] for r in rows}
    if options.val_fraction > 0 and not val and len(all_prompts) >= 2:
        biggest = max(sorted(strata), key=lambda k: len(strata[k]))
        val.add(sorted(strata[biggest], key=h)[0])
    return ["validation" if r["prompt_id"] in val else "train" for r in rows]



def build_rows(engine: Engine, kind: str, flt: ExportFilter, options: ExportOptions):
    """Rows (with their split) and lineage for a filter; also used for the live count on the page."""
    if kind == "sft":
        traces = select_traces(engine, flt, options, flt.statuses)
        rows, lineage, extra = _sft_rows(traces, options)
    else:
        chosen_statuses = [st for st in flt.statuses if st != "rejected"] or ["approved"]
        traces = select_traces(engine, flt, options, sorted(set(chosen_statuses) | {"rejected"}))
        rows, lineage, extra = _dpo_rows(traces, options, chosen_statuses, flt.rejected_run_ids)
    return traces, rows, lineage, extra


def count_rows(engine: Engine, kind: str, flt: ExportFilter, options: ExportOptions | None = None) -> dict:
    _, rows, _, extra = build_rows(engine, kind, flt, options or ExportOptions())
    return {"rows": len(rows), "prompts": len({r["prompt_id"] for r in rows}), **extra}

