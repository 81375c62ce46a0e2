"""Generation runs: create one (with a snapshot of its strategy and templates), run it, and summarise it.

A run is resumable: stored (prompt, sample) pairs are skipped. Samples stream: each one is stored with its
auto-labels the moment its last step is back, and the run's progress (samples, tokens/s, ETA) and yield per
behaviour (parsed, matches expected, usable) are updated as it goes.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.durations import clock
from curation.auth import check
from curation.backends.catalog import resolve_model
from curation.backends.engines import engine as warm_engine
from curation.generation.config import GenerationConfig, Selection
from curation.generation.demos import DemoPicker
from curation.generation.scheduler import drive
from curation.generation.strategies import Draft, SampleContext, Strategy, get_strategy
from curation.generation.yields import run_yield
from curation.judges import gates
from curation.judges.labels import Labeller
from curation.templates import get_template
from db.engine import refresh_statistics, write_engine
from db.jobs import JobCancelled
from db.models import AutoLabel, GenerationRun, Trace, utcnow

Progress = Callable[[int, int, str], None]
FLUSH_S = 0.5  # how often finished samples are written (and progress shown)
SUMMARY_S = 2.0  # how often the run's live yield is recomputed


def create_run(engine: Engine, config: GenerationConfig, selection: Selection, *, name: str = "",
               created_by: int | None = None) -> GenerationRun:
    """Record a run with a snapshot of its strategy and the exact template texts it will use (later edits do
    not change it). `created_by` must be allowed to generate (None: the local operator)."""
    check(engine, created_by, "generate")
    config.validate()
    strategy = get_strategy(config.strategy)
    snap = {}
    for n in strategy.template_names():
        t = get_template(engine, n)
        snap[n] = {"version": t.version, "ref": t.ref, "text": t.text}
    params = config.to_dict()
    params["strategy_params"] = {**strategy.defaults, **config.strategy_params}
    params["strategy_ref"] = strategy.ref
    with Session(engine, expire_on_commit=False) as s:
        run = GenerationRun(name=name or f"{config.strategy} · {config.model}", model=config.model,
                            backend=config.backend, strategy=config.strategy, params=params, templates=snap,
                            selection=asdict(selection), created_by=created_by)
        s.add(run)
        s.commit()
        s.refresh(run)
        return run


@dataclass
class Work:
    prompt_id: int
    text: str
    behavior: str
    sample_indices: list[int]


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


@dataclass
class _Sample:
    prompt_id: int
    text: str
    behavior: str
    index: int


def _contexts(engine: Engine, run: GenerationRun, cfg: GenerationConfig, strategy: Strategy, works: list[Work]):
    params = {**strategy.defaults, **(run.params.get("strategy_params") or {})}
    texts = {name: snap["text"] for name, snap in run.templates.items()}
    picker = DemoPicker(engine, seed=cfg.seed) if strategy.uses_demos else None
    sampling = cfg.sampling()
    for w in works:
        for k in w.sample_indices:
            demos = picker.pick(w.text, w.behavior, int(params.get("n_demos", 0)), prompt_id=w.prompt_id,
                                sample=k) if picker else []
            ctx = SampleContext(prompt=w.text, behavior=w.behavior, fmt=cfg.format(), templates=texts,
                                sampling=sampling, params=params, demos=demos)
            yield _Sample(w.prompt_id, w.text, w.behavior, k), strategy.steps(ctx)


def _trace(run: GenerationRun, cfg: GenerationConfig, sample: _Sample, d: Draft, seconds: float) -> Trace:
    p = d.parsed
    reasoning, response, trimmed, parse_ok, error = p.reasoning, p.response, False, p.parse_ok, p.error
    if d.truncated and response:
        kept = gates.trim_to_sentence(response)
        if kept is not None:  # the format was fine; only the budget ran out: keep the full sentences
            response, trimmed = kept, True
            if error and "truncated" in error and p.reasoning:
                parse_ok, error = True, None
    meta = {**d.meta, "finish_reason": d.finish if len(d.finish) > 1 else d.finish[0], "parse_error": error,
            "behavior": sample.behavior, "strategy_ref": run.params.get("strategy_ref")}
    if trimmed:
        meta["trimmed"] = True
    if cfg.student_model and cfg.student_model != cfg.model:
        meta.update(teacher=cfg.model, student_model=cfg.student_model)
    # The behaviour's self-check prompt, then every other template edited from its built-in text (all versions
    # are in meta["templates"]).
    own = run.templates.get(f"self_check.{sample.behavior}") or {"ref": ""}
    template_refs = "+".join([own["ref"]] + [snap["ref"] for name, snap in sorted(run.templates.items())
                                             if snap["version"] and not name.startswith("self_check.")])
    meta["templates"] = {name: snap["version"] for name, snap in run.templates.items()}
    return Trace(prompt_id=sample.prompt_id, run_id=run.id, sample_index=sample.index, reasoning=reasoning,
                 response=response, raw=d.raw, parse_ok=parse_ok, strategy=run.strategy, model=cfg.model,
                 backend=cfg.backend, template_version=template_refs[:100], sampling=cfg.sampling().to_dict(),
                 prompt_tokens=d.prompt_tokens, completion_tokens=d.completion_tokens,
                 gen_seconds=round(seconds, 4), meta=meta)


def _store(engine: Engine, rows: list[tuple[Trace, str, str]], labeller: Labeller) -> None:
    """Finished samples and their auto-labels (the default judge deciding), in one transaction."""
    per_trace = labeller.labels(rows)
    with Session(write_engine(engine)) as s:
        s.add_all([t for t, _, _ in rows])
        s.flush()
        labels = [dict(trace_id=t.id, kind=lb.kind, agent=lb.agent, label=lb.label, score=lb.score,
                       rationale=lb.rationale, created_at=utcnow())
                  for (t, _e, _p), ls in zip(rows, per_trace) for lb in ls]
        if labels:
            s.execute(insert(AutoLabel), labels)
        s.commit()


def run_generation(engine: Engine, run_id: int, *, backend=None, progress: Progress | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Generate every missing (prompt, sample) of a run; store each sample as it finishes."""
    run = get_run(engine, run_id)
    if run is None:
        raise ValueError(f"generation run {run_id} does not exist")
    cfg = GenerationConfig.from_dict(run.params)
    strategy = get_strategy(run.strategy)
    works, done, total = pending_work(engine, run)
    log = log or (lambda _line: None)
    log(f"run {run.id}: {total} samples, {done} already stored, {sum(len(w.sample_indices) for w in works)} to "
        f"generate ({run.params.get('strategy_ref', run.strategy)}, {cfg.backend}, {cfg.model})")
    _set(engine, run.id, status="running", started_at=run.started_at or utcnow())
    t_start, tokens, new = time.perf_counter(), 0, 0
    t_ready: Optional[float] = None  # the engine is up: rates and the ETA count from here, not from its start
    last_flush = last_summary = 0.0
    buffer: list[tuple[Trace, str, str]] = []
    labeller = Labeller(engine)

    def flush(final: bool = False) -> None:
        nonlocal buffer, last_flush, last_summary
        if buffer:
            _store(engine, buffer, labeller)
            buffer = []
        last_flush = time.perf_counter()
        elapsed = last_flush - t_start
        generating = last_flush - t_ready if t_ready is not None else 0.0
        tps = tokens / generating if generating > 0 else 0.0
        eta = remaining_s(total - done - new, new, generating, expected_per_sample, probe_tps)
        if final or last_flush - last_summary >= SUMMARY_S:
            last_summary = last_flush
            _set(engine, run.id, summary={**run_yield(engine, run.id), "tokens": tokens,
                                          "tokens_per_s": round(tps, 1), "elapsed_s": round(elapsed, 1),
                                          "start_s": None if t_ready is None else round(t_ready - t_start, 1),
                                          "eta_s": None if final or eta is None else round(eta, 1),
                                          "done": done + new, "total": total})
        if progress:
            progress(done + new, total, f"{done + new}/{total} samples · {tps:.0f} tok/s · elapsed "
                     f"{clock(elapsed)} · ETA {'-' if eta is None else clock(eta)}")

    expected_per_sample, probe_tps = float(cfg.max_tokens), None
    try:
        if cfg.backend == "auto":
            cfg = (_choose_engine(engine, run, cfg, done, total, progress, log) if backend is None
                   else GenerationConfig.from_dict({**run.params, "backend": backend.name}))
        if progress:
            progress(done, total, f"{done}/{total} samples · starting {cfg.backend}")
        ctx = nullcontext(backend) if backend is not None else warm_engine(
            cfg.backend, resolve_model(cfg.model) if cfg.backend != "openai" else cfg.model, **cfg.backend_options)
        expected_per_sample = _tokens_per_sample(cfg, run.strategy)
        probe_tps = _probe_tps(cfg)
        with ctx as be:
            t_ready = time.perf_counter()
            for sample, draft in drive(be, _contexts(engine, run, cfg, strategy, works),
                                       max_inflight=cfg.batch_prompts):
                buffer.append((_trace(run, cfg, sample, draft, time.perf_counter() - t_start), sample.behavior,
                               sample.text))
                tokens += draft.completion_tokens
                new += 1
                if time.perf_counter() - last_flush >= FLUSH_S:
                    flush()
            flush(final=True)
    except BaseException as e:
        try:  # keep every sample that finished: a resumed run then redoes only what was in flight
            flush(final=True)
        except Exception:
            pass
        _set(engine, run.id, status="cancelled" if isinstance(e, JobCancelled) else "failed")
        raise
    _set(engine, run.id, status="succeeded", finished_at=utcnow())
    refresh_statistics(engine, ("trace", "auto_label"), new)
    summary = get_run(engine, run.id).summary
    log(f"run {run.id}: generated {new}; " + "; ".join(
        f"{b}: {y['usable']}/{y['samples']} usable ({y['parsed']} parsed, {y['matches']} match)"
        for b, y in sorted(summary.get("yield", {}).items())) + f"; {summary.get('tokens_per_s')} tok/s")
    return {"run_id": run.id, "total": total, "generated": new, "completion_tokens": tokens,
            "seconds": summary.get("elapsed_s"), "tokens_per_s": summary.get("tokens_per_s"),
            "yield": summary.get("yield"), "rejected": summary.get("rejected")}


MIN_SAMPLES_FOR_RATE = 8  # fewer finished samples say little: the first ones of a batch all land at once


def remaining_s(left: int, finished: int, elapsed: float, expected_per_sample: float,
                probe_tps: Optional[float]) -> Optional[float]:
    """Seconds left: the run's own seconds per sample once a few samples are back; until then the budgeted tokens
    per sample over the engine's measured probe rate (one sample after minutes is not a rate); None when neither is
    known."""
    if finished >= MIN_SAMPLES_FOR_RATE and elapsed > 0:
        return left * elapsed / finished
    if probe_tps:
        return left * expected_per_sample / probe_tps
    return None


def _tokens_per_sample(cfg: GenerationConfig, strategy: str) -> int:
    """The token budget of one sample: its reply, plus two ~40-token clause calls for a multi-step strategy."""
    return cfg.max_tokens + (80 if strategy in ("scaffold", "two_pass") else 0)


def _probe_tps(cfg: GenerationConfig) -> Optional[float]:
    """The engine's cached probe rate on this CPU and model, if it was measured (curation.backends.choice)."""
    if cfg.backend not in ("transformers", "vllm"):
        return None
    from curation.backends.choice import cached, cpu

    try:
        hit = cached(cpu(), cfg.backend, resolve_model(cfg.model))
    except Exception:  # a model not available here fails later, with its own message
        return None
    return hit.tokens_per_s if hit and not hit.error else None


def _choose_engine(engine: Engine, run: GenerationRun, cfg: GenerationConfig, done: int, total: int,
                   progress: Progress | None, log: Callable[[str], None]) -> GenerationConfig:
    """Resolve `auto` to the engine predicted fastest here (curation.backends.choice); the run and its traces
    record the engine that ran, and the run's params say why."""
    from curation.backends.choice import choose

    if progress:
        progress(done, total, f"{done}/{total} samples · loading the model (converted on first use)")
    path = resolve_model(cfg.model)
    if progress:
        progress(done, total, f"{done}/{total} samples · choosing the engine (measured once per CPU and model)")
    choice = choose(path, (total - done) * _tokens_per_sample(cfg, run.strategy), log=log)
    log(f"run {run.id}: engine {choice.reason}")
    params = {**run.params, "backend": choice.engine, "engine_choice": choice.reason}
    _set(engine, run.id, backend=choice.engine, params=params)
    run.params, run.backend = params, choice.engine
    return GenerationConfig.from_dict(params)


def _set(engine: Engine, run_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(GenerationRun).where(GenerationRun.id == run_id).values(**values))


def get_run(engine: Engine, run_id: int) -> Optional[GenerationRun]:
    with Session(engine, expire_on_commit=False) as s:
        return s.get(GenerationRun, run_id)
