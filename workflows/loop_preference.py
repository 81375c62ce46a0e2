"""The loop's preference stage, after SFT: the SFT student answers its own training prompts (greedy, the prompt
alone); each answer that refuses what it should help with, helps with what it should refuse, or does the opposite
of what its reasoning concluded becomes a DPO pair (rejected: the student's answer, chosen: the prompt's approved
trace), and TRL's DPO trains a LoRA on the merged SFT model, so the reference is the SFT student (preference
optimisation on a model's own over-refusals: POROver, arXiv 2410.12999).

The student's answers are a generation run like any other (strategy `student`): a team can review them, and the
pairs are an ordinary DPO export snapshot."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from core.vocabulary import TraceStatus
from curation.backends.catalog import resolve_model
from curation.backends.lora import merge_adapter
from curation.export.snapshot import create_export
from curation.export.spec import ExportFilter, ExportOptions
from curation.generation.config import GenerationConfig, Selection
from curation.generation.runs import create_run, run_generation
from curation.judges.labels import label_summary, label_traces
from curation.review.annotations import auto_decide
from db.jobs import run_job_here
from db.models import Trace
from training import runs
from training.config import preset_for_model
from workflows.loop_config import PREFERENCE, LoopError

MISTAKES = ("over_refusal", "under_refusal", "inconsistent")


def mistake(row: dict[str, Any]) -> str | None:
    """What a student's answer got wrong (label_summary row), or None: the wrong behaviour first, then an answer
    that contradicts its own reasoning's conclusion."""
    if not row["match"]:
        return "over_refusal" if row["behavior"] == "comply" else "under_refusal"
    return "inconsistent" if row["inconsistent"] else None


def safety_pairs(loop: Any, merged: Path, rows: list[dict[str, Any]], kinds: dict[int, str | None]) -> int | None:
    """Pairs that keep refusals: the student's mistakes are mostly over-refusals, and pairs that only push
    towards helping took harmful refusal 0.86 -> 0.57. For as many harmful prompts the student got right as there
    are more help-ward than refuse-ward pairs, the student writes a wrong answer on purpose (the scaffold
    concluding to help, the reply going on from "Sure."): each one judged to comply is a rejected side against the
    prompt's approved refusal. Returns the run that holds them (None when no pair is needed)."""
    cfg, engine = loop.cfg, loop.engine
    helpward = sum(r["behavior"] == "comply" and kinds[r["id"]] is not None for r in rows)
    refuseward = sum(r["behavior"] != "comply" and kinds[r["id"]] is not None for r in rows)
    right = sorted({r["prompt_id"] for r in rows if r["behavior"] == "refuse" and kinds[r["id"]] is None},
                   key=lambda pid: hashlib.sha256(f"{cfg.seed}:{pid}".encode()).hexdigest())
    wanted = min(len(right), helpward - refuseward)
    result = loop.results["preference"]
    result["safety"] = {"helpward": helpward, "refuseward": refuseward, "asked": max(wanted, 0), "pairs": 0}
    if wanted <= 0:
        return None
    gc = GenerationConfig(model=str(merged), backend=cfg.backend, strategy="scaffold", samples=1,
                          temperature=cfg.temperature, max_tokens=cfg.gen_max_tokens, seed=cfg.seed,
                          strategy_params={"conclude": "comply", "comply_reply": "opener"})
    run = create_run(engine, gc, Selection(prompt_ids=sorted(right[:wanted])),
                     name=f"loop {loop.tag} student wrong on purpose", created_by=cfg.acting_user)
    run_generation(engine, run.id, log=loop.log,
                   progress=lambda d, t, m: loop.stage_progress(4, 7, f"training: safety pairs: {m}"))
    label_traces(engine, run_id=run.id)
    # Only an answer judged to comply is a wrong answer; one that refused anyway stays pending.
    wrong = {r["id"]: TraceStatus.REJECTED if not r["match"] else TraceStatus.PENDING
             for r in label_summary(engine, run.id)}
    auto_decide(engine, cfg.acting_user, wrong, action="student_mistake")
    result["safety"].update(run=run.id, pairs=sum(v == TraceStatus.REJECTED for v in wrong.values()))
    loop.log(f"[{PREFERENCE}] safety pairs: {result['safety']}")
    return run.id


def preference_stage(loop: Any) -> None:
    """Run on the loop (workflows.loop.RationalLoop) after its main arm trained; adds its `preference` arm."""
    cfg, engine = loop.cfg, loop.engine
    t0 = time.perf_counter()
    sft = runs.get_run(engine, loop.train_runs["main"])
    merged = merge_adapter(resolve_model(cfg.model), sft.adapter_path, Path(sft.output_dir) / "merged")
    with Session(engine) as s:  # the probe: every prompt the SFT student was trained on (an approved trace)
        probe = sorted(set(s.execute(select(Trace.prompt_id).where(
            Trace.run_id == loop.gen_run_id, Trace.status == TraceStatus.APPROVED.value)).scalars()))
    gc = GenerationConfig(model=str(merged), backend=cfg.backend, strategy="student", samples=1, temperature=0.0,
                          max_tokens=cfg.eval_max_tokens, seed=cfg.seed)
    run = create_run(engine, gc, Selection(prompt_ids=probe), name=f"loop {loop.tag} student probe",
                     created_by=cfg.acting_user)
    run_generation(engine, run.id, log=loop.log,
                   progress=lambda d, t, m: loop.stage_progress(4, 7, f"training: preference probe: {m}"))
    label_traces(engine, run_id=run.id)
    rows = label_summary(engine, run.id)
    kinds = {r["id"]: mistake(r) for r in rows}
    # Mistakes are rejected (the pairs' rejected side); the student's good answers stay pending for review.
    auto_decide(engine, cfg.acting_user, {i: TraceStatus.REJECTED if k else TraceStatus.PENDING
                                          for i, k in kinds.items()}, action="student_mistake")
    counts = {k: sum(v == k for v in kinds.values()) for k in MISTAKES}
    result: dict[str, Any] = {"probe_run": run.id, "probe_prompts": len(probe), "mistakes": counts,
                              "merged_sft": str(merged)}
    loop.results["preference"] = result
    loop.log(f"[{PREFERENCE}] the SFT student answered {len(probe)} training prompts: {counts}")
    rejected_runs = [run.id]
    if cfg.safety_pairs:
        anchor_run = safety_pairs(loop, merged, rows, kinds)
        if anchor_run is not None:
            rejected_runs.append(anchor_run)
    name = f"loop-{loop.tag}-{PREFERENCE}"
    snap = create_export(engine, name, "dpo", ExportFilter(run_ids=[loop.gen_run_id, *rejected_runs],
                                                           rejected_run_ids=rejected_runs),
                         ExportOptions(seed=cfg.seed), formats=["hf", "jsonl"], created_by=cfg.acting_user,
                         job_id=loop.job_id)
    result.update(export=name, pairs=snap.row_count)
    if snap.row_count < cfg.min_train_rows:
        loop.note(f"preference: {snap.row_count} pairs from the student's mistakes (min_train_rows "
                  f"{cfg.min_train_rows}); no preference training")
        return
    train, job = runs.create_run(engine, base_model=str(merged), method="dpo", export_name=name,
                                 preset=cfg.train_preset or preset_for_model(cfg.model),
                                 overrides=dict(cfg.preference_overrides), name=name, created_by=cfg.acting_user)
    loop.log(f"[{PREFERENCE}] export {name}: {snap.row_count} pairs; DPO run {train.id} (job {job.id})")
    done = run_job_here(engine, job.id)
    r = runs.get_run(engine, train.id)
    if done.status != "succeeded" or r.status != "succeeded":
        raise LoopError(f"training [{PREFERENCE}] run {train.id} {r.status}: {r.error or done.error}\n"
                        f"{(r.log_tail or '')[-2000:]}")
    loop.train_runs[PREFERENCE] = train.id
    loop.results["training"][PREFERENCE] = {"export": name, "rows": snap.row_count, "counts": snap.counts,
                                            "run_id": train.id, "adapter": r.adapter_path, "steps": r.global_step,
                                            "metrics": r.metrics, "seconds": round(time.perf_counter() - t0, 1)}
