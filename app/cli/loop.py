"""`rational loop`: the whole RATIONAL experiment (prompts → mutations → traces → filter → LoRA SFT → eval → report)
in one command, through workflows/loop.py."""
from __future__ import annotations

import shlex
import sys
from typing import List, Optional

import typer

from app.cli import common as cli
from core.vocabulary import DEFAULT_MODEL


def register(app: typer.Typer) -> None:
    app.command("loop")(loop_command)


def loop_command(
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="student model: trained and evaluated"),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="a separate, stronger trace generator"),
    backend: str = typer.Option("transformers", "--backend", help="transformers | vllm"),
    limit_train: int = typer.Option(40, "--limit-train", help="training prompts per behaviour"),
    limit_eval: int = typer.Option(30, "--limit-eval", help="eval prompts per set (per attack for attacks)"),
    samples: int = typer.Option(2, "--samples", help="K traces per prompt"),
    strategy: str = typer.Option("two_pass", "--strategy", help="single | prefill | two_pass"),
    gen_max_tokens: int = typer.Option(160, "--gen-max-tokens"),
    eval_max_tokens: int = typer.Option(128, "--eval-max-tokens"),
    mutation: str = typer.Option("templates", "--mutation", help="templates | styles | none"),
    ablations: List[str] = typer.Option(["keep_system_prompt,answer_only,no_benign"], "--ablations",
                                        help="comma list of keep_system_prompt, answer_only, no_benign; "
                                             "'none' for the main arm only"),
    fallback: List[str] = typer.Option(["matches_expected"], "--fallback",
                                       help="looser filter levels that fill a behaviour up to --min-per-behavior "
                                            "survivors: matches_expected, decision, parsed, any; 'none' for "
                                            "strict only"),
    min_per_behavior: int = typer.Option(10, "--min-per-behavior"),
    generation_run: Optional[int] = typer.Option(None, "--generation-run",
                                                 help="resume / reuse this generation run"),
    from_queue: Optional[str] = typer.Option(None, "--from-queue",
                                             help="add the human arm: train on the traces reviewers approved or "
                                                  "edited in this review queue, evaluated like the others"),
    epochs: float = typer.Option(2.0, "--epochs"),
    preset: Optional[str] = typer.Option(None, "--preset", help="training preset (default: by model size)"),
    tag: str = typer.Option("", "--tag", help="names this loop's sets, exports and runs (default: a timestamp)"),
    out: Optional[str] = typer.Option(None, "--out", help="folder for report.md and metrics.json (default "
                                      "results/<tag> under the artifact root)"),
) -> None:
    """Run the RATIONAL loop end to end and write the report (every stage's wall time is printed)."""
    from workflows.loop import LoopConfig, LoopError, RationalLoop

    abl = [a for a in cli.split_list(ablations) if a != "none"]
    fb = [f for f in cli.split_list(fallback) if f != "none"]
    cfg = LoopConfig(model=model, teacher=teacher, backend=backend, limit_train=limit_train, limit_eval=limit_eval,
                     samples=samples, strategy=strategy, gen_max_tokens=gen_max_tokens,
                     eval_max_tokens=eval_max_tokens, mutation=mutation, ablations=abl, fallback=fb,
                     train_preset=preset, train_overrides={"num_train_epochs": epochs}, out=out, tag=tag,
                     min_per_behavior=min_per_behavior, generation_run=generation_run, from_queue=from_queue)
    try:
        cfg.validate()
    except ValueError as e:
        cli.fail(str(e))
    eng = cli.engine()
    loop = RationalLoop(eng, cfg, log=lambda line: cli.out.print(line, markup=False, highlight=False,
                                                                 soft_wrap=True))
    loop.results["command"] = "rational " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        loop.run()
    except LoopError as e:
        cli.fail(f"{e} (report: {loop.out / 'report.md'})")
    cli.out.print(f"report: {loop.out / 'report.md'} · metrics: {loop.out / 'metrics.json'}", markup=False,
                  highlight=False)
