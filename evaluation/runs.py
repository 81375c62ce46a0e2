"""Eval runs: a model (+ optional LoRA adapter) answers a suite's prompts; every output is parsed, judged and
stored, then metrics are computed.

`create_eval_run` records the identity (suite version, model path, adapter path and sha256 of its weights) so two
runs are known to be comparable; `execute_eval_run` does the work (the worker's `evaluate` job calls it) and is
resumable: prompts already answered are skipped.
"""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import UserError
from curation.auth import check
from curation.backends import ChatRequest, SamplingParams, make_backend
from curation.backends.catalog import resolve_model
from curation.backends.engines import engine as warm_engine
from curation.backends.lora import merge_adapter
from curation.judges.consistency import reasoning_conclusion
from curation.judges.registry import DEFAULT_JUDGE
from db.models import EvalOutput, EvalRun, Prompt, PromptSet, TrainingRun, utcnow
from evaluation.judging import judge_config, judge_outputs
from evaluation.metrics import OutcomeRow, compute_metrics, consistency_counts, consistency_row, failed_for
from evaluation.suites import ensure_builtin_sets, get_suite, select_prompts

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_FILES = (".safetensors", ".bin", ".gguf", ".json")
Progress = Callable[[int, Optional[int], str], None]


@dataclass
class EvalSpec:
    suite: str
    model: Optional[str] = None  # name or folder; defaults to the training run's base model with --run
    adapter: Optional[str] = None
    training_run_id: Optional[int] = None
    backend: str = "transformers"
    limit: Optional[int] = None  # prompts per set (per set and mutation in the attack suite)
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    system_prompt: Optional[str] = None  # None: the prompt alone, as a user would send it
    judge: str = DEFAULT_JUDGE  # the refusal judge that decides (curation.judges.registry)
    llm_judge: Optional[dict[str, Any]] = None  # {"backend": "openai", "model": ..., "base_url": ...} for judge "llm"
    batch_size: int = 32  # prompts per transformers batch (decode on CPU: 32 rows ran 1.4x 8 rows per token)
    backend_options: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed, "system_prompt": self.system_prompt}


class EvalError(UserError):
    """Bad eval input (unknown suite, missing adapter, no prompts); the message names what and where."""


def adapter_sha256(path: str | Path) -> str:
    """sha256 over the adapter's weight files (name + bytes), so a retrained adapter in the same folder differs."""
    p = Path(path)
    files = [p / n for n in ADAPTER_WEIGHTS if (p / n).is_file()] if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise EvalError(f"{path}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}) found")
    return _files_sha256(files)


def model_sha256(path: str | Path) -> str:
    """sha256 over a model folder's weight files and config (a re-converted or replaced model differs)."""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix in MODEL_FILES) if p.is_dir() else [p]
    return _files_sha256(files)


_SHA_MEMO: dict[tuple, str] = {}


def _files_sha256(files: list[Path]) -> str:
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stamp not in _SHA_MEMO:  # hashing a model's weights takes a second or two: once per process and version
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        _SHA_MEMO[stamp] = h.hexdigest()
    return _SHA_MEMO[stamp]


def resolve_model_path(model: str) -> str:
    """A local folder for a model name or folder (the embedded model is converted on first use)."""
    try:
        return str(resolve_model(model))
    except Exception as e:  # resolve_model's own message says what is missing
        raise EvalError(f"model '{model}': {e}") from None


def _check_not_unfinished(engine: Engine, adapter: str) -> None:
    """An adapter folder inside one of our training runs must be that run's published adapter, and the run must
    have succeeded: a failed or stopped run's checkpoint is not a result. Adapters from elsewhere pass."""
    path = Path(adapter).resolve()
    with Session(engine) as s:
        for run_id, out, status, final in s.execute(select(TrainingRun.id, TrainingRun.output_dir,
                                                           TrainingRun.status, TrainingRun.adapter_path)):
            if out and path.is_relative_to(Path(out).resolve()):
                if status != "succeeded" or not final or Path(final).resolve() != path:
                    raise EvalError(f"{adapter}: a checkpoint of training run {run_id} ({status}), not its final "
                                    f"adapter; only a succeeded run's adapter is evaluated (--run {run_id})")
                return


def create_eval_run(engine: Engine, spec: EvalSpec, *, created_by: Optional[int] = None,
                    project_id: int = 1, reuse: bool = False) -> EvalRun:
    """Record a run (who may: reviewers and admins; None is the local operator). Suite sets missing from the
    database are imported first. With `reuse`, a succeeded run that would answer the same way (same model and
    adapter weights, suite version, prompts, decoding and judges) is returned instead of a new one."""
    check(engine, created_by, "evaluate")
    try:
        suite = get_suite(spec.suite)
    except KeyError as e:
        raise EvalError(str(e.args[0])) from None
    if spec.limit is not None and spec.limit < 1:
        raise EvalError(f"--limit must be at least 1, got {spec.limit}")
    model, adapter = spec.model, spec.adapter
    if spec.training_run_id is not None:
        with Session(engine) as s:
            tr = s.get(TrainingRun, spec.training_run_id)
        if tr is None:
            raise EvalError(f"training run {spec.training_run_id} does not exist")
        if tr.status != "succeeded" or not tr.adapter_path:  # a run that did not finish has no final adapter
            raise EvalError(f"training run {tr.id} is {tr.status}; only a succeeded run's adapter is evaluated")
        adapter, model = tr.adapter_path, model or tr.base_model
    elif adapter:
        _check_not_unfinished(engine, adapter)
    if not model:
        raise EvalError("give a model (--model), or a training run (--run) whose base model is used")
    digest = adapter_sha256(adapter) if adapter else None
    ensure_builtin_sets(engine, suite, project_id)
    sel = select_prompts(engine, suite, limit_per_set=spec.limit, project_id=project_id)
    if not sel.prompts:
        why = f"; sets not imported: {', '.join(sel.missing_sets)}" if sel.missing_sets else ""
        raise EvalError(f"suite '{suite.name}' selects no prompts{why}"
                        + ("; the attack suite needs mutated eval prompts (run the mutation step first)"
                           if suite.name == "attacks" else ""))
    run = EvalRun(
        name=spec.name or f"{Path(model).name}{' + ' + Path(adapter).name if adapter else ''} on {suite.name}",
        suite=suite.name, suite_version=sel.version, model=model, model_path=resolve_model_path(model),
        adapter_path=str(Path(adapter).resolve()) if adapter else None, adapter_sha256=digest,
        training_run_id=spec.training_run_id, backend=spec.backend, sampling=spec.sampling(),
        judges=judge_config(engine, spec.judge, spec.llm_judge, suite),
        selection={"prompt_ids": [p.prompt_id for p in sel.prompts],
                   "metrics": {str(p.prompt_id): p.metric for p in sel.prompts}, "limit_per_set": spec.limit,
                   "batch_size": spec.batch_size, "backend_options": spec.backend_options, **sel.summary()},
        n_prompts=len(sel.prompts), created_by=created_by,
    )
    run.selection["model_sha256"] = model_sha256(run.model_path)
    if reuse and (same := equivalent_run(engine, run)) is not None:
        return same
    with Session(engine, expire_on_commit=False) as s:
        s.add(run)
        s.commit()
        return run


def _answers_key(run: EvalRun) -> str:
    sel = run.selection or {}
    return json.dumps([run.suite, run.suite_version, run.backend, sel.get("model_sha256"), run.adapter_sha256,
                       sorted(sel.get("prompt_ids") or []), run.sampling, run.judges], sort_keys=True, default=str)


def equivalent_run(engine: Engine, run: EvalRun) -> Optional[EvalRun]:
    """The newest succeeded run whose answers and verdicts this one would repeat (None if there is none)."""
    q = (select(EvalRun).where(EvalRun.suite == run.suite, EvalRun.suite_version == run.suite_version,
                               EvalRun.status == "succeeded", EvalRun.backend == run.backend)
         .order_by(EvalRun.id.desc()))
    key = _answers_key(run)
    with Session(engine, expire_on_commit=False) as s:
        return next((r for r in s.execute(q).scalars() if _answers_key(r) == key), None)


def get_run(engine: Engine, run_id: int) -> EvalRun:
    with Session(engine, expire_on_commit=False) as s:
        run = s.get(EvalRun, run_id)
    if run is None:
        raise EvalError(f"eval run {run_id} does not exist")
    return run


def list_runs(engine: Engine, *, suite: Optional[str] = None, limit: int = 100) -> list[EvalRun]:
    q = select(EvalRun).order_by(EvalRun.id.desc()).limit(limit)
    if suite:
        q = q.where(EvalRun.suite == suite)
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(q).scalars())


def _set_status(engine: Engine, run_id: int, **values) -> None:
    with engine.begin() as conn:
        conn.execute(update(EvalRun).where(EvalRun.id == run_id).values(**values))


def eval_engine(run: EvalRun):
    """A context manager giving the backend for a run with its adapter applied. Plain models come warm from the
    engine pool (consecutive eval and generation jobs on one model share one engine); transformers wraps the base
    in PEFT for an adapter; vllm serves an adapter merged into the base weights (see merged_model_dir)."""
    opts = dict(run.selection.get("backend_options") or {})
    if run.backend == "transformers":
        opts.setdefault("batch_size", run.selection.get("batch_size", 32))
    if not run.adapter_path:
        return warm_engine(run.backend, run.model_path, **opts)
    if run.backend == "vllm":
        return warm_engine("vllm", str(merged_model_dir(run)), **opts)
    if run.backend != "transformers":
        raise EvalError(f"backend '{run.backend}' cannot apply a LoRA adapter; use transformers or vllm")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(run.model_path, dtype="auto")
    model = PeftModel.from_pretrained(base, run.adapter_path)
    return closing(make_backend("transformers", run.model_path,
                                tokenizer=AutoTokenizer.from_pretrained(_tokenizer_dir(run)), hf_model=model, **opts))


def _tokenizer_dir(run: EvalRun) -> str:
    return run.adapter_path if (Path(run.adapter_path) / "tokenizer_config.json").exists() else run.model_path


def merged_model_dir(run: EvalRun) -> Path:
    """Base + adapter merged into one HF folder, cached by adapter sha256 under RATIONAL_HOME/eval_merged/.

    Merged, not a LoRARequest: the same function as base + LoRA, and on vLLM-CPU an engine started with
    enable_lora answered 4.4x slower (325 vs 1,446 tokens/s on 2 cores, even for requests without an adapter),
    while merging and a fresh engine cost seconds."""
    from db.engine import rational_home

    key = hashlib.sha256(f"{run.model_path}\0{run.adapter_sha256}".encode()).hexdigest()[:16]
    target = rational_home() / "eval_merged" / key
    if (target / "config.json").exists():
        return target
    return merge_adapter(run.model_path, run.adapter_path, target)


def execute_eval_run(engine: Engine, run_id: int, *, progress: Optional[Progress] = None, backend=None,
                     judge_backend=None) -> EvalRun:
    """Answer the run's remaining prompts; each answer is judged and stored as soon as it is back (in small
    groups), so progress moves per output; then compute metrics."""
    from curation.generation.traceformat import parse_trace

    run = get_run(engine, run_id)
    ids = list(run.selection.get("prompt_ids") or [])
    with Session(engine) as s:
        done = set(s.execute(select(EvalOutput.prompt_id).where(EvalOutput.run_id == run_id)).scalars())
        todo = [(p, set_name) for p, set_name in s.execute(
            select(Prompt, PromptSet.name).join(PromptSet, PromptSet.id == Prompt.set_id)
            .where(Prompt.id.in_([i for i in ids if i not in done])))]
        for p, _ in todo:
            s.expunge(p)
    # Requests of similar length batch with little padding (contextual HarmBench rows are 10x longer than most).
    todo.sort(key=lambda ps: (len(ps[0].text), ps[0].id))
    metric_of = run.selection.get("metrics", {})
    _set_status(engine, run_id, status="running", error=None)
    suite = get_suite(run.suite)
    samp = run.sampling
    sp = SamplingParams(temperature=samp["temperature"], top_p=samp["top_p"], max_tokens=samp["max_tokens"],
                        seed=samp.get("seed"))
    group = int(run.selection.get("batch_size") or 32)
    state = {"done": len(done), "t0": time.perf_counter(), "pending": [], "last": 0.0}
    total = len(ids)

    def store(final: bool = False) -> None:
        batch = state["pending"]
        if not batch or (not final and len(batch) < group and time.perf_counter() - state["last"] < 1.0):
            return
        state["pending"], state["last"] = [], time.perf_counter()
        parsed = [parse_trace(r.completions[0].text, truncated=r.completions[0].finish_reason == "length")
                  for _, r in batch]
        metrics = [metric_of.get(str(p.id)) or _metric_for(suite, set_name, p.expected_behavior)
                   for (p, set_name), _ in batch]
        verdicts = judge_outputs(engine, [(p, p.category, po, m) for ((p, _), _), po, m in zip(batch, parsed, metrics)],
                                 run.judges, judge_backend=judge_backend)
        rows = []
        for ((p, set_name), res), po, metric, verdict in zip(batch, parsed, metrics, verdicts):
            comp = res.completions[0]
            rows.append(EvalOutput(
                run_id=run_id, prompt_id=p.id, set_name=set_name, category=p.category, mutation=p.mutation,
                expected_behavior=p.expected_behavior, metric=metric, reasoning=po.reasoning,
                response=po.response, raw=comp.text, parse_ok=po.parse_ok, refused=verdict.refused,
                failed=failed_for(metric, verdict.refused),
                judge_labels={**verdict.labels, "format": {"ok": po.parse_ok, "error": po.error}},
                prompt_tokens=res.prompt_tokens, completion_tokens=comp.completion_tokens,
                gen_seconds=res.seconds))
        with Session(engine) as s, s.begin():  # a crash loses at most the outputs in flight
            s.add_all(rows)
        state["done"] += len(rows)
        if progress:
            elapsed = time.perf_counter() - state["t0"]
            rate = (state["done"] - len(done)) / elapsed if elapsed else 0
            eta = f" · ETA {int((total - state['done']) / rate)} s" if rate else ""
            progress(state["done"], total, f"{state['done']}/{total} answered · {rate * 60:.0f}/min{eta}")

    own_judge = False
    try:
        if todo and judge_backend is None and (run.judges.get("decides") or "").startswith("llm"):
            cfg = run.judges["llm"]
            opts = {"base_url": cfg["base_url"]} if cfg.get("base_url") else {}
            judge_backend, own_judge = make_backend(cfg.get("backend") or "openai", cfg["model"], **opts), True
        if progress:
            progress(state["done"], total, "starting the model" if todo else "answered")
        if todo:
            reqs = [ChatRequest(messages=_messages(p.text, samp.get("system_prompt")), sampling=sp) for p, _ in todo]

            def on_result(i: int, res) -> None:
                state["pending"].append((todo[i], res))
                store()

            with (nullcontext(backend) if backend is not None else eval_engine(run)) as be:
                be.generate(reqs, on_result=on_result)
            store(final=True)
        table = [m.as_dict() for m in compute_metrics(outcome_rows(engine, run_id)) if m.source == "judge"]
        _set_status(engine, run_id, status="succeeded", finished_at=utcnow(),
                    metrics={"rows": table, "outputs": state["done"]})
    except BaseException as e:
        from db.jobs import JobCancelled

        try:
            store(final=True)  # keep what was answered: a resumed run skips it
        except Exception:
            pass
        status = "cancelled" if isinstance(e, JobCancelled) else "failed"
        _set_status(engine, run_id, status=status, error=f"{type(e).__name__}: {e}"[:4000], finished_at=utcnow())
        raise
    finally:
        if own_judge:
            judge_backend.close()
    return get_run(engine, run_id)


def _metric_for(suite, set_name: str, expected_behavior: str) -> str:
    for entry in suite.sets:
        if entry.expected_behavior == expected_behavior and entry.set_name in (None, set_name):
            return entry.metric
    return "false_refusal_rate" if expected_behavior == "comply" else "asr"


def _messages(text: str, system_prompt: Optional[str]) -> list[dict]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": text}]


def outcome_rows(engine: Engine, run_id: int) -> list[OutcomeRow]:
    """Each output's verdict row and, where its reasoning concludes, its consistency row."""
    q = select(EvalOutput.prompt_id, EvalOutput.set_name, EvalOutput.category, EvalOutput.mutation,
               EvalOutput.metric, EvalOutput.failed, EvalOutput.human_failed, EvalOutput.reasoning,
               EvalOutput.refused, EvalOutput.human_refused).where(EvalOutput.run_id == run_id)
    out = []
    with Session(engine) as s:
        for *fields, reasoning, refused, human_refused in s.execute(q.order_by(EvalOutput.prompt_id)):
            row = OutcomeRow(*fields)
            out.append(row)
            twin = consistency_row(row, reasoning_conclusion(reasoning), refused, human_refused)
            if twin is not None:
                out.append(twin)
    return out


def consistency_by_set(engine: Engine, run_id: int) -> dict[str, dict[str, int]]:
    """Per set: outputs, concluded, consistent, reasoned help but refused, reasoned refuse but complied (judge)."""
    q = select(EvalOutput.set_name, EvalOutput.reasoning, EvalOutput.refused).where(EvalOutput.run_id == run_id)
    with Session(engine) as s:
        return consistency_counts((n, reasoning_conclusion(r), refused) for n, r, refused in s.execute(q))


def run_metrics(engine: Engine, run_id: int) -> list[dict[str, Any]]:
    """Live metrics (judge and human-corrected), so new human labels show at once."""
    return [m.as_dict() for m in compute_metrics(outcome_rows(engine, run_id))]


def run_identity(run: EvalRun) -> dict[str, Any]:
    return {"id": run.id, "name": run.name, "suite": run.suite, "suite_version": run.suite_version,
            "model": run.model, "model_path": run.model_path, "adapter_path": run.adapter_path,
            "adapter_sha256": run.adapter_sha256, "training_run_id": run.training_run_id, "backend": run.backend,
            "sampling": run.sampling, "judges": run.judges, "status": run.status, "n_prompts": run.n_prompts,
            "train_overlap": run.selection.get("train_overlap", {}), "notes": run.selection.get("notes", [])}




def adapter_choices(engine: Engine) -> list[dict[str, Any]]:
    """Succeeded training runs, whose adapter is final (for pickers)."""
    with Session(engine) as s:
        rows = s.execute(select(TrainingRun.id, TrainingRun.name, TrainingRun.base_model, TrainingRun.method,
                                TrainingRun.status, TrainingRun.adapter_path)
                         .where(TrainingRun.status == "succeeded", TrainingRun.adapter_path.is_not(None))
                         .order_by(TrainingRun.id.desc())).all()
    return [{"id": i, "label": f"#{i} {n or m} ({meth}, {st}) on {m}", "base_model": m, "adapter_path": a}
            for i, n, m, meth, st, a in rows]


def run_summaries(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """One row per run with its headline (suite-level, judge) rates, for tables."""
    out = []
    for r in list_runs(engine, limit=limit):
        head = {m["metric"]: m["rate"] for m in (r.metrics or {}).get("rows", []) if m["level"] == "suite"}
        out.append({"id": r.id, "name": r.name, "suite": r.suite, "suite_version": r.suite_version,
                    "status": r.status, "prompts": r.n_prompts, "model": r.model,
                    "adapter": r.adapter_path or "", "adapter_sha256": (r.adapter_sha256 or "")[:12],
                    "backend": r.backend, "job_id": r.job_id, "created": r.created_at, **head})
    return out


def trained_on_eval_prompts(engine: Engine, run: EvalRun) -> Optional[int]:
    """How many of this run's prompts were in the export its adapter was trained on (None: not known, i.e. the
    run was not started from a training run). Non-zero means the set was used for both."""
    from db.models import ExportItem, Trace

    if run.training_run_id is None:
        return None
    with Session(engine) as s:
        tr = s.get(TrainingRun, run.training_run_id)
        if tr is None or tr.export_id is None:
            return None
        ids = list(run.selection.get("prompt_ids") or [])
        q = (select(Trace.prompt_id).join(ExportItem, ExportItem.trace_id == Trace.id)
             .where(ExportItem.export_id == tr.export_id, Trace.prompt_id.in_(ids)).distinct())
        return len(s.execute(q).all())
