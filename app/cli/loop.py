"""`rational loop`: the whole RATIONAL experiment (prompts → mutations → traces → filter → LoRA SFT → eval → report)
in one command, through workflows/loop.py."""
from __future__ import annotations

import shlex
import sys
from typing import List, Optional

import typer

from app.cli import common as cli
from workflows.loop_config import LoopConfig

D = LoopConfig()  # the defaults, from their one home


def register(app: typer.Typer) -> None:
    app.command("loop")(loop_command)
    app.command("loop-report")(loop_report_command)


def loop_command(
    model: str = typer.Option(D.model, "--model", help="student model: trained and evaluated"),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="a separate, stronger trace generator"),
    backend: str = typer.Option(D.backend, "--backend", help="auto (vllm where installed) | vllm | transformers"),
    limit_train: int = typer.Option(D.limit_train, "--limit-train", help="training prompts per behaviour"),
    limit_eval: int = typer.Option(D.limit_eval, "--limit-eval", help="eval prompts per set (per attack for attacks)"),
    samples: int = typer.Option(D.samples, "--samples", help="K traces per prompt"),
    strategy: str = typer.Option(D.strategy, "--strategy", help="single | prefill | two_pass | few_shot | scaffold"),
    gen_max_tokens: int = typer.Option(D.gen_max_tokens, "--gen-max-tokens"),
    eval_max_tokens: int = typer.Option(D.eval_max_tokens, "--eval-max-tokens"),
    mutation: str = typer.Option(D.mutation, "--mutation", help="templates | styles | none"),
    twins: int = typer.Option(D.twins, "--twins", help="contrast twins among the benign training prompts (the "
                              "harmful train prompts' topics, intent stripped, expected comply); 0 for none"),
    ablations: List[str] = typer.Option([",".join(D.ablations) or "none"], "--ablations",
                                        help="comma list of keep_system_prompt, answer_only, no_benign; "
                                             "'none' for the main arm only"),
    fallback: List[str] = typer.Option([",".join(D.fallback) or "none"], "--fallback",
                                       help="looser filter levels that fill a behaviour up to --min-per-behavior "
                                            "survivors: matches_expected, decision, parsed, any; 'none' for "
                                            "strict only"),
    min_per_behavior: int = typer.Option(D.min_per_behavior, "--min-per-behavior"),
    preference: bool = typer.Option(D.preference, "--preference/--no-preference",
                                    help="the preference stage: DPO on the SFT student's own mistakes (over- and "
                                         "under-refusals, answers that contradict their reasoning)"),
    safety_pairs: bool = typer.Option(D.safety_pairs, "--safety-pairs/--no-safety-pairs",
                                      help="beside the mistakes, pairs that keep refusals: the student's deliberate "
                                           "compliance with harmful prompts it refused, as many as the mistakes "
                                           "lean towards helping"),
    dev_size: int = typer.Option(D.dev_size, "--dev-size",
                                 help="harmful and benign dev prompts per behaviour (training sources no arm trained "
                                      "on) that every trained arm answers; the rule picks one; 0: no selection"),
    generation_run: Optional[int] = typer.Option(None, "--generation-run",
                                                 help="resume / reuse this generation run"),
    from_queue: Optional[str] = typer.Option(None, "--from-queue",
                                             help="add the human arm: train on the traces reviewers approved or "
                                                  "edited in this review queue, evaluated like the others"),
    epochs: Optional[float] = typer.Option(None, "--epochs",
                                           help=f"default {D.train_overrides.get('num_train_epochs', 'the preset')}"),
    preset: Optional[str] = typer.Option(None, "--preset", help="training preset (default: by model size)"),
    tag: str = typer.Option("", "--tag", help="names this loop's sets, exports and runs (default: a timestamp)"),
    out: Optional[str] = typer.Option(None, "--out", help="folder for report.md and metrics.json (default "
                                      "results/<tag> under the artifact root)"),
) -> None:
    """Run the RATIONAL loop end to end and write the report (every stage's wall time is printed). The defaults are
    the measured default recipe (see docs/results/rational_loop); the Home page's quick start runs the same."""
    from workflows.loop import LoopError, RationalLoop

    abl = [a for a in cli.split_list(ablations) if a != "none"]
    fb = [f for f in cli.split_list(fallback) if f != "none"]
    overrides = {**D.train_overrides, **({"num_train_epochs": epochs} if epochs is not None else {})}
    cfg = LoopConfig(model=model, teacher=teacher, backend=backend, limit_train=limit_train, limit_eval=limit_eval,
                     samples=samples, strategy=strategy, gen_max_tokens=gen_max_tokens,
                     eval_max_tokens=eval_max_tokens, mutation=mutation, twins=twins, ablations=abl, fallback=fb,
                     train_preset=preset, train_overrides=overrides, out=out, tag=tag,
                     min_per_behavior=min_per_behavior, generation_run=generation_run, from_queue=from_queue,
                     preference=preference, safety_pairs=safety_pairs, dev_size=dev_size)
    try:
        cfg.validate()
    except ValueError as e:
        cli.fail(str(e))
    eng = cli.engine()
    with cli.live_progress("loop") as show:
        loop = RationalLoop(eng, cfg, log=lambda line: cli.out.print(line, markup=False, highlight=False,
                                                                     soft_wrap=True),
                            stage_progress=lambda i, n, msg: show(i, n, msg))
        loop.results["command"] = "rational " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        try:
            loop.run()
        except LoopError as e:
            cli.fail(f"{e} (report: {loop.out / 'report.md'})")
    cli.out.print(f"report: {loop.out / 'report.md'} · metrics: {loop.out / 'metrics.json'}", markup=False,
                  highlight=False)


def loop_report_command(out: str = typer.Argument(..., help="the loop's report folder (holding metrics.json)")
                        ) -> None:
    """Write a finished loop's report again from its stored eval runs: people's audit labels and corrections
    since then, and the current report's tables and chart, reach it; the loop's timings and machine stay."""
    from pathlib import Path

    from workflows.loop_output import refresh_report

    eng = cli.engine()
    try:
        results = refresh_report(eng, Path(out))
    except ValueError as e:
        cli.fail(str(e))
    arms = ", ".join(results.get("evaluation") or {}) or "no arms"
    cli.out.print(f"report rewritten: {Path(out) / 'report.md'} ({arms})", markup=False, highlight=False)
