"""Self-check trace generation: the model reasons about a prompt under a self-check system prompt, then answers.

Strategies (recorded on every trace), because small models do not follow the format on their own:
- single:   one pass under the self-check prompt;
- prefill:  the assistant turn is prefilled with the opening reasoning tag (continue_final_message);
- two_pass: a reasoning call, then an answer conditioned on that reasoning, composed into one trace.
A run is resumable: it skips (prompt, sample) pairs already stored for it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from curation.backends import ChatRequest, SamplingParams
from curation.templates import get_template, register_builtin
from db.engine import write_engine
from db.jobs import JobCancelled
from db.models import GenerationRun, Prompt, PromptSet, Trace, utcnow

STRATEGIES = ("single", "prefill", "two_pass")

REJECTION_SELF_CHECK = """You are a careful and helpful assistant. Before you reply, check the request for safety.
Think it through inside {open_tag} {close_tag} tags:
1. Identify the underlying risk of the request, even when it is disguised (role play, hypotheticals, slang, \
claimed authority, a story).
2. Assess the intent, the ethics and the potential harm to people if you helped.
3. Conclude whether helping would be safe.
Then, after {close_tag}, write your reply: refuse clearly, give the reason briefly, and where possible offer a \
safe alternative.

Use exactly this format:
{open_tag}
your reasoning
{close_tag}
your reply"""

COMPLIANCE_SELF_CHECK = """You are a careful and helpful assistant. Before you reply, check the request.
Think it through inside {open_tag} {close_tag} tags:
1. Notice whether the request only looks risky (a sensitive word, a dark topic, a figure of speech).
2. Confirm what is actually being asked and that helping is safe.
3. Conclude that you should help.
Then, after {close_tag}, help fully and directly, without unnecessary warnings.

Use exactly this format:
{open_tag}
your reasoning
{close_tag}
your reply"""

PARTIAL_SELF_CHECK = """You are a careful and helpful assistant. Before you reply, check the request.
Think it through inside {open_tag} {close_tag} tags:
1. Separate the parts of the request that are safe to help with from the parts that could cause harm.
2. Assess the intent and the potential harm of each part.
3. Decide what you can safely provide and what you must leave out.
Then, after {close_tag}, help with the safe part, and say briefly what you will not help with and why.

Use exactly this format:
{open_tag}
your reasoning
{close_tag}
your reply"""

TWO_PASS_REASON = """For now, write ONLY your reasoning (the steps above), in plain sentences, without any tags \
and without the reply itself."""

TWO_PASS_ANSWER = """You are a careful and helpful assistant. You have already analysed the user's request:

{reasoning}

Now write only your final reply to the user, following that analysis. Do not repeat the analysis."""

SELF_CHECK_BY_BEHAVIOR = {"refuse": "self_check.refuse", "comply": "self_check.comply",
                          "partial": "self_check.partial"}
for _name, _text in [("self_check.refuse", REJECTION_SELF_CHECK), ("self_check.comply", COMPLIANCE_SELF_CHECK),
                     ("self_check.partial", PARTIAL_SELF_CHECK), ("two_pass.reason", TWO_PASS_REASON),
                     ("two_pass.answer", TWO_PASS_ANSWER)]:
    register_builtin(_name, _text)


# -- output format and parser -------------------------------------------------------------------------------
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


# -- run configuration --------------------------------------------------------------------------------------
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
    batch_prompts: int = 16  # prompts per backend call
    student_model: Optional[str] = None  # the model the traces are for, when a teacher writes them
    backend_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        from curation.backends import BACKENDS

        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy '{self.strategy}' is not one of {', '.join(STRATEGIES)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend '{self.backend}' is not one of {', '.join(BACKENDS)}")
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

    def query(self):
        q = (select(Prompt.id, Prompt.text, Prompt.expected_behavior).join(PromptSet, PromptSet.id == Prompt.set_id)
             .where(Prompt.project_id == self.project_id, PromptSet.kind == "prompts"))
        if self.set_names:
            q = q.where(PromptSet.name.in_(self.set_names))
        if self.split:
            q = q.where(Prompt.split == self.split)
        if self.behaviors:
            q = q.where(Prompt.expected_behavior.in_(self.behaviors))
        if self.prompt_ids:
            q = q.where(Prompt.id.in_(self.prompt_ids))
        q = q.order_by(Prompt.id)
        return q.limit(self.limit) if self.limit else q


def template_names(strategy: str) -> list[str]:
    names = list(SELF_CHECK_BY_BEHAVIOR.values())
    return names + (["two_pass.reason", "two_pass.answer"] if strategy == "two_pass" else [])


def create_run(engine: Engine, config: GenerationConfig, selection: Selection, *, name: str = "",
               created_by: int | None = None) -> GenerationRun:
    """Record a run with a snapshot of the exact template texts it will use (later edits do not change it)."""
    config.validate()
    snap = {}
    for n in template_names(config.strategy):
        t = get_template(engine, n)
        snap[n] = {"version": t.version, "ref": t.ref, "text": t.text}
    with Session(engine, expire_on_commit=False) as s:
        run = GenerationRun(name=name or f"{config.strategy} · {config.model}", model=config.model,
                            backend=config.backend, strategy=config.strategy, params=config.to_dict(),
                            templates=snap, selection=asdict(selection), created_by=created_by)
        s.add(run)
        s.commit()
        s.refresh(run)
        return run


# -- building requests for one prompt -----------------------------------------------------------------------
@dataclass
class _Work:
    prompt_id: int
    text: str
    behavior: str
    sample_indices: list[int]


def _system(run: GenerationRun, behavior: str, fmt: TraceFormat) -> tuple[str, str]:
    snap = run.templates[SELF_CHECK_BY_BEHAVIOR.get(behavior, "self_check.refuse")]
    return fmt.fill(snap["text"]), snap["ref"]


def _samples_for(run: GenerationRun, cfg: GenerationConfig, fmt: TraceFormat, works: list[_Work], backend,
                 sampling: SamplingParams) -> list[list[dict]]:
    """For each work item, one dict per missing sample: raw text, parse, token counts, seconds, meta."""
    reqs = []
    for w in works:
        system, _ = _system(run, w.behavior, fmt)
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": w.text}]
        if cfg.strategy == "prefill":
            msgs.append({"role": "assistant", "content": fmt.open_tag + "\n"})
        elif cfg.strategy == "two_pass":
            msgs[0]["content"] = system + "\n\n" + fmt.fill(run.templates["two_pass.reason"]["text"])
        reqs.append(ChatRequest(msgs, sampling, n=len(w.sample_indices),
                                continue_final_message=cfg.strategy == "prefill"))
    results = backend.generate(reqs)
    out: list[list[dict]] = []
    if cfg.strategy != "two_pass":
        for res in results:
            per = res.seconds / max(1, len(res.completions))
            rows = []
            for c in res.completions:
                raw = (fmt.open_tag + "\n" + c.text) if cfg.strategy == "prefill" else c.text
                rows.append({"raw": raw, "parsed": parse_trace(raw, fmt, truncated=c.finish_reason == "length"),
                             "prompt_tokens": res.prompt_tokens, "completion_tokens": c.completion_tokens,
                             "seconds": per, "meta": {"finish_reason": c.finish_reason}})
            out.append(rows)
        return out
    # Pass 2: one answer per reasoning sample, conditioned on it.
    answer_tpl = run.templates["two_pass.answer"]["text"]
    second, owners = [], []
    for wi, (w, res) in enumerate(zip(works, results)):
        for c in res.completions:
            reasoning = fmt.strip_tags(c.text)
            system = fmt.fill(answer_tpl, reasoning=reasoning)
            second.append(ChatRequest([{"role": "system", "content": system}, {"role": "user", "content": w.text}],
                                      sampling, n=1))
            owners.append((wi, c, reasoning))
    answers = backend.generate(second) if second else []
    out = [[] for _ in works]
    for (wi, c1, reasoning), res2 in zip(owners, answers):
        c2 = res2.completions[0]
        answer = fmt.strip_tags(c2.text)
        raw = fmt.compose(reasoning, answer)
        truncated = "length" in (c1.finish_reason, c2.finish_reason)
        parsed = parse_trace(raw, fmt, truncated=truncated)
        out[wi].append({"raw": raw, "parsed": parsed, "prompt_tokens": results[wi].prompt_tokens + res2.prompt_tokens,
                        "completion_tokens": c1.completion_tokens + c2.completion_tokens,
                        "seconds": results[wi].seconds / len(results[wi].completions) + res2.seconds,
                        "meta": {"finish_reason": [c1.finish_reason, c2.finish_reason],
                                 "pass_tokens": [c1.completion_tokens, c2.completion_tokens]}})
    return out


# -- running ------------------------------------------------------------------------------------------------
Progress = Callable[[int, int, str], None]


def pending_work(engine: Engine, run: GenerationRun) -> tuple[list[_Work], int, int]:
    """(work items, samples already stored, total samples) for a run."""
    cfg = GenerationConfig.from_dict(run.params)
    sel = Selection(**run.selection)
    with Session(engine) as s:
        prompts = s.execute(sel.query()).all()
        stored = set(s.execute(select(Trace.prompt_id, Trace.sample_index).where(Trace.run_id == run.id)).all())
    works = []
    for pid, text, behavior in prompts:
        missing = [k for k in range(cfg.samples) if (pid, k) not in stored]
        if missing:
            works.append(_Work(pid, text, behavior, missing))
    total = len(prompts) * cfg.samples
    return works, total - sum(len(w.sample_indices) for w in works), total


def run_generation(engine: Engine, run_id: int, *, backend=None, progress: Progress | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Generate every missing (prompt, sample) of a run, storing each batch in one transaction."""
    with Session(engine, expire_on_commit=False) as s:
        run = s.get(GenerationRun, run_id)
    if run is None:
        raise ValueError(f"generation run {run_id} does not exist")
    cfg = GenerationConfig.from_dict(run.params)
    fmt = cfg.format()
    works, done, total = pending_work(engine, run)
    log = log or (lambda _line: None)
    log(f"run {run.id}: {total} samples, {done} already stored, {len(works)} prompts to do "
        f"({cfg.strategy}, {cfg.backend}, {cfg.model})")
    _set_status(engine, run.id, "running")
    own_backend = backend is None
    if own_backend:
        from curation.backends import make_backend
        from curation.models import resolve_model

        model = resolve_model(cfg.model) if cfg.backend != "openai" else cfg.model
        backend = make_backend(cfg.backend, model, **cfg.backend_options)
    tokens, seconds, parsed_ok, new = 0, 0.0, 0, 0
    try:
        if progress:
            progress(done, total, f"{done}/{total} samples")
        for b in range(0, len(works), cfg.batch_prompts):
            chunk = works[b:b + cfg.batch_prompts]
            sampling = SamplingParams(**{**cfg.sampling().to_dict(), "seed": cfg.seed + chunk[0].prompt_id})
            t0 = time.perf_counter()
            samples = _samples_for(run, cfg, fmt, chunk, backend, sampling)
            seconds += time.perf_counter() - t0
            rows = []
            for w, got in zip(chunk, samples):
                _, ref = _system(run, w.behavior, fmt)
                if cfg.strategy == "two_pass":
                    ref = f"{ref}+{run.templates['two_pass.answer']['ref']}"
                for k, smp in zip(w.sample_indices, got):
                    p: ParsedTrace = smp["parsed"]
                    meta = {**smp["meta"], "parse_error": p.error, "behavior": w.behavior}
                    if cfg.student_model and cfg.student_model != cfg.model:
                        meta.update(teacher=cfg.model, student_model=cfg.student_model)
                    rows.append(Trace(prompt_id=w.prompt_id, run_id=run.id, sample_index=k, reasoning=p.reasoning,
                                      response=p.response, raw=smp["raw"], parse_ok=p.parse_ok,
                                      strategy=cfg.strategy, model=cfg.model, backend=cfg.backend,
                                      template_version=ref[:100], sampling=sampling.to_dict(),
                                      prompt_tokens=smp["prompt_tokens"],
                                      completion_tokens=smp["completion_tokens"],
                                      gen_seconds=round(smp["seconds"], 4), meta=meta))
                    tokens += smp["completion_tokens"]
                    parsed_ok += p.parse_ok
            with Session(write_engine(engine)) as s:
                s.add_all(rows)
                s.commit()
            new += len(rows)
            done += len(rows)
            tps = tokens / seconds if seconds else 0.0
            if progress:
                progress(done, total, f"{done}/{total} samples · {tps:.1f} tok/s · {parsed_ok}/{new} parsed")
    except JobCancelled:
        _set_status(engine, run.id, "cancelled")
        raise
    except BaseException:
        _set_status(engine, run.id, "failed")
        raise
    finally:
        if own_backend:
            backend.close()
    _set_status(engine, run.id, "succeeded", finished=True)
    summary = {"run_id": run.id, "total": total, "generated": new, "parse_ok": parsed_ok,
               "completion_tokens": tokens, "seconds": round(seconds, 3),
               "tokens_per_s": round(tokens / seconds, 2) if seconds else None}
    log(f"run {run.id}: generated {new}, {parsed_ok} parsed, {summary['tokens_per_s']} tok/s")
    return summary


def _set_status(engine: Engine, run_id: int, status: str, finished: bool = False) -> None:
    values: dict[str, Any] = {"status": status}
    if finished:
        values["finished_at"] = utcnow()
    with engine.begin() as conn:
        conn.execute(update(GenerationRun).where(GenerationRun.id == run_id).values(**values))


# -- reporting ----------------------------------------------------------------------------------------------
def run_summaries(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Recent runs with their yield per expected behaviour: samples, parsed, auto-approve candidates. A weak
    model often yields no usable refusal; this is shown, never hidden."""
    from sqlalchemy import and_, case, func

    from db.models import AutoLabel

    cand = (select(AutoLabel.trace_id).where(AutoLabel.kind == "auto_approve", AutoLabel.label == "candidate")
            .subquery())
    q = (select(Trace.run_id, Prompt.expected_behavior, func.count(Trace.id),
                func.sum(case((Trace.parse_ok.is_(True), 1), else_=0)), func.count(cand.c.trace_id),
                func.sum(Trace.completion_tokens), func.sum(Trace.gen_seconds))
         .join(Prompt, Prompt.id == Trace.prompt_id).outerjoin(cand, and_(cand.c.trace_id == Trace.id))
         .where(Trace.run_id.is_not(None)).group_by(Trace.run_id, Prompt.expected_behavior))
    with Session(engine) as s:
        runs = list(s.execute(select(GenerationRun).order_by(GenerationRun.id.desc()).limit(limit)).scalars())
        stats = s.execute(q.where(Trace.run_id.in_([r.id for r in runs]))).all()
    by_run: dict[int, list] = {}
    for run_id, behavior, n, parsed, candidates, _tok, _sec in stats:
        by_run.setdefault(run_id, []).append((behavior, n, int(parsed or 0), int(candidates or 0)))
    out = []
    for r in runs:
        rows = by_run.get(r.id, [])
        n = sum(x[1] for x in rows)
        out.append({
            "id": r.id, "name": r.name, "model": r.model, "backend": r.backend, "strategy": r.strategy,
            "status": r.status, "samples": n, "parsed": sum(x[2] for x in rows),
            "candidates": sum(x[3] for x in rows),
            "yield": "; ".join(f"{b}: {c}/{k} candidates, {p} parsed" for b, k, p, c in sorted(rows)) or "-",
        })
    return out
