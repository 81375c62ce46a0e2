"""`rational export` and `rational train`: export snapshots and LoRA training runs from the command line."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from app.cli.common import engine, err, fail, out, wait_for_job
from core.vocabulary import DEFAULT_MODEL


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("train")(train_cmd)


def export_cmd(
    name: str = typer.Argument(..., help="snapshot name (immutable once ready)"),
    kind: str = typer.Option("sft", "--kind", help="sft | dpo"),
    filter_: List[str] = typer.Option([], "--filter", help="field=value[,value]; fields: statuses, sets, splits, "
                                      "mutations (none = unmutated), behaviors, min_quality, runs"),
    formats: str = typer.Option("hf,jsonl,parquet", "--format", help="comma list of hf, jsonl, parquet"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="parent folder (default: exports/ under the artifact root)"),
    allow_contamination: bool = typer.Option(False, "--allow-contamination",
                                             help="export even when training prompts overlap eval prompts "
                                             "(recorded on the snapshot)"),
    system_prompt: Optional[str] = typer.Option(None, "--system-prompt", help="a fixed system turn for inference"),
    template: Optional[str] = typer.Option(None, "--reasoning-template",
                                           help="assistant turn, default '<think>{reasoning}</think>\\n\\n{response}'"),
    val_fraction: float = typer.Option(0.1, "--val-fraction"),
    queue: bool = typer.Option(False, "--queue", help="enqueue a job for the worker instead of running here"),
) -> None:
    """Export reviewed traces as an immutable SFT or DPO snapshot (HF datasets folder, JSONL, Parquet, card)."""
    from curation.export.jobs import enqueue_export
    from curation.export.spec import ExportError, ExportFilter, ExportOptions

    try:
        flt = ExportFilter.parse(filter_)
        opts = ExportOptions(system_prompt=system_prompt, val_fraction=val_fraction,
                             allow_contamination=allow_contamination)
        if template is not None:
            opts.reasoning_template = template.replace("\\n", "\n")
        opts.validate()
        fmts = [f.strip() for f in formats.split(",") if f.strip()]
        eng = engine()
        job = enqueue_export(eng, None, name=name, kind=kind, flt=flt, options=opts, formats=fmts,
                             out_dir=str(out_dir.resolve()) if out_dir else None)
    except ExportError as e:
        fail(str(e))
    if queue:
        out.print(f"queued job {job.id}")
        return
    # Run here through the job runner: its heartbeat lets a worker reap the snapshot if this process is killed.
    job = wait_for_job(eng, job.id, f"export {name}")
    res = job.result or {}
    if job.status != "succeeded":
        for o in res.get("overlaps", [])[:10]:
            err.print(f"  prompt {o['prompt_id']} ~ eval prompt {o['eval_prompt_id']}: {o['how']} ({o['score']:.0f})",
                      markup=False, highlight=False)
        fail(job.error or f"export '{name}' {job.status}")
    if res["contamination"].get("overridden"):
        err.print(f"warning: {res['contamination']['contaminated_prompts']} training prompts overlap eval prompts; "
                  "exported anyway (--allow-contamination), recorded on the snapshot", markup=False)
    out.print(res["summary"], markup=False, highlight=False)


def train_cmd(
    export: str = typer.Option(..., "--export", help="a ready export snapshot name"),
    base_model: str = typer.Option(DEFAULT_MODEL, "--base-model",
                                   help="model folder, catalog name or hub id"),
    method: str = typer.Option("sft", "--method", help="sft | dpo"),
    preset: Optional[str] = typer.Option(None, "--preset", help="test | xs | s | m | l (default: from the size)"),
    set_: List[str] = typer.Option([], "--set", help="config override key=value, e.g. max_steps=50"),
    processes: Optional[int] = typer.Option(None, "--processes", help="processes (devices) to train on; more "
                                            "than 1 runs through accelerate launch (DDP)"),
    accelerate_config: Optional[str] = typer.Option(None, "--accelerate-config",
                                                    help="the name of an accelerate config file (FSDP, DeepSpeed "
                                                    "ZeRO) in $RATIONAL_HOME/accelerate on the worker"),
    worker_label: Optional[str] = typer.Option(None, "--worker-label", help="only a worker started with this "
                                               "--label (e.g. gpu) takes the run"),
    wait: bool = typer.Option(False, "--wait", help="follow the run with a progress bar and the loss"),
) -> None:
    """Queue a LoRA SFT or DPO run of a base model on an export snapshot."""
    from core.errors import UserError
    from training.config import ConfigError
    from training.runs import RunError, create_run

    overrides = {}
    for item in set_:
        if "=" not in item:
            fail(f"--set '{item}' must look like key=value")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    if processes is not None:
        overrides["num_processes"] = processes
    if accelerate_config is not None:
        overrides["accelerate_config"] = accelerate_config
    eng = engine()
    try:
        run, job = create_run(eng, base_model=base_model, method=method, export_name=export, preset=preset,
                              overrides=overrides, worker_label=worker_label)
    except (RunError, ConfigError, UserError) as e:
        fail(str(e))
    out.print(f"training run {run.id} ({run.method}, preset {run.preset}) queued as job {job.id}; "
              f"output {run.output_dir}")
    if wait:
        raise typer.Exit(_follow(eng, run.id, job.id))


def _follow(eng, run_id: int, job_id: int) -> int:
    """Run exactly this run's job here (or follow it on the worker that took it) with the step and loss; then the
    final losses, or the log tail and the error."""
    from training.runs import get_run, run_metrics

    def loss_line(_job) -> None:
        train = [m for m in run_metrics(eng, run_id) if m["kind"] == "train" and m["loss"] is not None]
        if train:
            _job.message = f"step {train[-1]['step']} loss {train[-1]['loss']:.4f}"

    job = wait_for_job(eng, job_id, f"run {run_id}", on_poll=loss_line)
    run = get_run(eng, run_id)
    train = [m for m in run_metrics(eng, run_id) if m["kind"] == "train" and m["loss"] is not None]
    if train:
        evals = [m for m in run_metrics(eng, run_id) if m["kind"] == "eval"]
        ev = f", eval loss {evals[-1]['loss']:.4f}" if evals else ""
        out.print(f"step {train[-1]['step']}: loss {train[-1]['loss']:.4f} (first {train[0]['loss']:.4f}){ev}",
                  markup=False, highlight=False)
    if run.status != "succeeded":
        err.print((run.log_tail or "")[-2000:], markup=False, highlight=False)
        err.print(f"error: run {run_id} {run.status}: {run.error or job.error}", markup=False)
        return 1
    out.print(f"run {run_id} succeeded; adapter {run.adapter_path}", markup=False, highlight=False)
    return 0
