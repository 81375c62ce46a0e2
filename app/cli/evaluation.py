"""`rational eval`, `rational eval-runs` and `rational compare`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from app.cli import common as cli
from app.cli.common import DataTable


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("eval-runs")(eval_runs_command)
    app.command("compare")(compare_command)
    app.command("rescore")(rescore_command)


def eval_command(
    model: Optional[str] = typer.Option(None, "--model", help="model folder or name (curation.backends.catalog); with "
                                        "--run, defaults to the training run's base model"),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="LoRA adapter folder (PEFT)"),
    run: Optional[int] = typer.Option(None, "--run", help="training run id: evaluate its adapter"),
    suite: str = typer.Option(..., "--suite", help="harmful | attacks | over_refusal | noncompliance"),
    limit: Optional[int] = typer.Option(None, "--limit", help="prompts per set (per set and attack style)"),
    backend: str = typer.Option("transformers", "--backend", help="transformers | vllm | openai"),
    max_tokens: int = typer.Option(128, "--max-tokens"),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(32, "--batch-size"),
    system_prompt: Optional[str] = typer.Option(None, "--system-prompt"),
    judge: Optional[str] = typer.Option(None, "--judge", help="learned (default) | rule | prefix | gcg | llm"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="LLM judge model (implies --judge llm)"),
    judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="its OpenAI-compatible server"),
    name: str = typer.Option("", "--name"),
    worker_label: Optional[str] = typer.Option(None, "--worker-label", help="only a worker started with this "
                                               "--label (e.g. gpu) takes the job"),
    wait: bool = typer.Option(False, "--wait", help="run the queued job here and now and print the metrics"),
) -> None:
    """Evaluate a model (optionally with a LoRA adapter) on a safety suite."""
    from core.errors import UserError
    from curation.judges.registry import DEFAULT_JUDGE
    from evaluation.jobs import enqueue_eval
    from evaluation.judging import judge_line
    from evaluation.runs import EvalSpec, create_eval_run, run_metrics

    if adapter is not None and run is not None:
        cli.fail("give --adapter or --run, not both")
    if adapter is not None and not adapter.exists():
        cli.fail(f"{adapter}: adapter folder not found")
    spec = EvalSpec(suite=suite, model=model, adapter=str(adapter) if adapter else None, training_run_id=run,
                    backend=backend, limit=limit, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                    seed=seed, batch_size=batch_size, system_prompt=system_prompt, name=name,
                    judge=judge or ("llm" if judge_model else DEFAULT_JUDGE),
                    llm_judge={"backend": "openai", "model": judge_model, "base_url": judge_base_url}
                    if judge_model else None)
    eng = cli.engine()
    try:
        er = create_eval_run(eng, spec)
    except (UserError, ValueError) as e:
        cli.fail(str(e))
    cli.out.print(f"eval run {er.id}: {er.n_prompts} prompts, suite {er.suite_version}"
                  + (f", adapter sha256 {er.adapter_sha256[:12]}…" if er.adapter_sha256 else "")
                  + f"; judged by {judge_line(er.judges)}", highlight=False)
    for set_name, n in er.selection.get("train_overlap", {}).items():
        cli.err.print(f"note: {n} prompts of '{set_name}' are in the train split (set used for both)")
    try:
        job = enqueue_eval(eng, None, er.id, worker_label=worker_label)
    except UserError as e:
        cli.fail(str(e))
    if not wait:
        cli.out.print(f"queued job {job.id} (run `rational worker` to process it)")
        return
    job = cli.wait_for_job(eng, job.id, f"eval run {er.id}")
    if job.status != "succeeded":
        cli.fail(f"eval run {er.id} {job.status}: {job.error}")
    cli.out.print(metrics_table(run_metrics(eng, er.id), source="judge"))
    cli.out.print(corrected_table(eng, er.id))


def rescore_command(run: int = typer.Argument(..., help="eval run id"),
                    judge: str = typer.Option(..., "--judge", help="learned | rule | prefix | gcg"),
                    version: Optional[int] = typer.Option(None, "--version", help="learned judge version")) -> None:
    """Re-judge a run's stored outputs with another judge, without generating again."""
    from core.errors import UserError
    from evaluation.judging import judge_line
    from evaluation.rescore import rescore
    from evaluation.runs import get_run, run_metrics

    if judge == "llm":
        cli.fail("re-scoring with the llm judge is done from a queued eval run (--judge llm); pick another judge")
    eng = cli.engine()
    try:
        res = rescore(eng, None, run, judge, version=version)
    except (UserError, ValueError) as e:
        cli.fail(str(e))
    cli.out.print(f"eval run {run}: {res['outputs']} outputs re-judged by {judge_line(get_run(eng, run).judges)}; "
                  f"{res['changed']} verdicts changed", highlight=False)
    cli.out.print(metrics_table(run_metrics(eng, run), source="judge"))
    cli.out.print(corrected_table(eng, run))


def corrected_table(eng, run_id: int) -> DataTable:
    """The judge's rate beside the rate corrected for its measured error (suite and set level)."""
    from evaluation.audit import corrected_metrics
    from evaluation.metrics import METRICS

    res = corrected_metrics(eng, run_id)
    t = DataTable("metric", "level", "group", "n", "judge", "corrected", "95% CI", "from",
                  title="corrected for the judge's error",
                  caption=f"audit: {res['audit']['labelled']} of {res['audit']['sampled']} sampled outputs labelled")
    for r in res["rows"]:
        c = r["corrected"]
        if c:
            t.add_row(METRICS[r["metric"]], r["level"], str(r["group"]), str(r["n"]), f"{100 * r['raw']:.1f}%",
                      f"{100 * c['rate']:.1f}%", f"[{100 * c['lo']:.1f}, {100 * c['hi']:.1f}]",
                      c["source"] + ("" if c["defined"] else " (judge no better than chance)"))
    return t


def metrics_table(rows: list[dict], *, source: str) -> DataTable:
    from evaluation.metrics import METRICS, SMALL_N

    t = DataTable("metric", "level", "group", "n", "rate", "95% CI", caption=f"† n < {SMALL_N}: a wide interval")
    for r in rows:
        if r["source"] == source and r["level"] in ("suite", "set", "mutation"):
            if r["level"] == "mutation" and r["group"] == "none":
                continue
            t.add_row(METRICS[r["metric"]], r["level"], str(r["group"]),
                      f"{r['n']}{' †' if r['n'] < SMALL_N else ''}", f"{100 * r['rate']:.1f}%",
                      f"[{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]")
    return t


def eval_runs_command(suite: Optional[str] = typer.Option(None, "--suite"),
                      limit: int = typer.Option(20, "--limit")) -> None:
    """List eval runs."""
    from evaluation.judging import judge_line
    from evaluation.runs import list_runs

    t = DataTable("id", "name", "suite", "status", "prompts", "judge", "adapter sha256", "created")
    for r in list_runs(cli.engine(), suite=suite, limit=limit):
        t.add_row(str(r.id), r.name, r.suite_version, r.status, str(r.n_prompts), judge_line(r.judges),
                  (r.adapter_sha256 or "")[:12], r.created_at.strftime("%Y-%m-%d %H:%M"))
    cli.out.print(t)


def compare_command(run_a: int = typer.Argument(..., help="eval run A (before)"),
                    run_b: int = typer.Argument(..., help="eval run B (after)"),
                    report: Optional[Path] = typer.Option(None, "--report", help="write the Markdown report here "
                                                          "(charts go to <name>_files/ beside it)")) -> None:
    """Compare two eval runs on the same suite; optionally write the report."""
    from evaluation.compare import compare_runs
    from evaluation.metrics import METRICS
    from evaluation.runs import EvalError

    eng = cli.engine()
    try:
        cmp = compare_runs(eng, run_a, run_b)
    except EvalError as e:
        cli.fail(str(e))
    for n in cmp["notes"]:
        cli.err.print(f"note: {n}", markup=False, highlight=False)
    t = DataTable("metric", "level", "group", "n", "A", "B", "delta [95% CI]")
    for r in cmp["judge"]:
        if r["level"] in ("suite", "set"):
            t.add_row(METRICS[r["metric"]], r["level"], str(r["group"]), str(r["n"]), f"{100 * r['before']:.1f}%",
                      f"{100 * r['after']:.1f}%",
                      f"{100 * r['delta']:+.1f} [{100 * r['delta_lo']:+.1f}, {100 * r['delta_hi']:+.1f}]")
    cli.out.print(t)
    if report is not None:
        from evaluation.report import build_report, write_report

        path = write_report(build_report(eng, run_a, run_b), report)
        cli.out.print(f"report written to {path}", highlight=False)
