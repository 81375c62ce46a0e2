"""Generation runs: create one (with a snapshot of its templates), run it (resumable: stored (prompt, sample)
pairs are skipped), and summarise each run's yield."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.vocabulary import LabelKind
from curation.generation.backends import SamplingParams
from curation.generation.config import GenerationConfig, Selection
from curation.generation.strategies import Work, sample_chunk, system_prompt, template_names
from curation.generation.templates import get_template
from curation.generation.traceformat import ParsedTrace
from db.engine import write_engine
from db.jobs import JobCancelled
from db.models import GenerationRun, Prompt, Trace, utcnow


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



# -- running ------------------------------------------------------------------------------------------------
Progress = Callable[[int, int, str], None]


def pending_work(engine: Engine, run: GenerationRun) -> tuple[list[Work], int, int]:
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
            works.append(Work(pid, text, behavior, missing))
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
        from curation.generation.backends import make_backend
        from curation.generation.catalog import resolve_model

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
            samples = sample_chunk(run, cfg.strategy, fmt, chunk, backend, sampling)
            seconds += time.perf_counter() - t0
            rows = []
            for w, got in zip(chunk, samples):
                _, ref = system_prompt(run, w.behavior, fmt)
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

    cand = (select(AutoLabel.trace_id).where(AutoLabel.kind == LabelKind.AUTO_APPROVE, AutoLabel.label == "candidate")
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


def get_run(engine: Engine, run_id: int) -> GenerationRun | None:
    with Session(engine, expire_on_commit=False) as s:
        return s.get(GenerationRun, run_id)


def sample_traces(engine: Engine, run_id: int, per: int = 2, chars: int = 400) -> dict[str, list[dict]]:
    """A few traces of a run per (expected behaviour, status), cut to `chars`: evidence beside a yield table."""
    out: dict[str, list[dict]] = {}
    with Session(engine) as s:
        rows = s.execute(select(Trace.id, Trace.status, Trace.parse_ok, Trace.reasoning, Trace.response,
                                Prompt.text, Prompt.expected_behavior).join(Prompt, Prompt.id == Trace.prompt_id)
                         .where(Trace.run_id == run_id).order_by(Trace.id)).all()
    for tid, status, ok, reasoning, response, prompt, beh in rows:
        group = out.setdefault(beh, [])
        if sum(1 for g in group if g["status"] == status) < per:
            group.append({"trace_id": tid, "status": status, "parse_ok": bool(ok), "prompt": prompt[:chars],
                          "reasoning": (reasoning or "")[:chars], "response": (response or "")[:chars]})
    return out
