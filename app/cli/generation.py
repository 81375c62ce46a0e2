"""`rational generate | mutate | label | templates`: self-check traces, jailbreak mutations, auto-labels."""
from __future__ import annotations

from typing import List, Optional

import typer

from app.cli import common as cli
from app.cli.common import DataTable
from core.vocabulary import DEFAULT_MODEL

templates_app = typer.Typer(no_args_is_help=True, help="Versioned self-check / mutation / judge templates.")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("mutate")(mutate)
    app.command("label")(label)
    app.add_typer(templates_app, name="templates")



def _check_set(eng, set_name: Optional[str]) -> None:
    from db.crud import list_sets

    if set_name and set_name not in {s["name"] for s in list_sets(eng)}:
        cli.fail(f"prompt set '{set_name}' does not exist; import it first (rational sets import {set_name})")


def _wait(eng, job_id: int, label: str) -> None:
    job = cli.wait_for_job(eng, job_id, label)
    cli.finished_or_fail(job)
    cli.out.print(f"job {job.id} succeeded: {job.result}", markup=False, highlight=False, soft_wrap=True)


def _typed(pairs: dict[str, str]) -> dict:
    """key=value strings with numbers as numbers."""
    out: dict = {}
    for k, v in pairs.items():
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def _yield_table(eng, run_id: int) -> None:
    from curation.generation.runs import get_run

    s = get_run(eng, run_id).summary or {}
    t = DataTable("behaviour", "samples", "parsed", "matches expected", "usable", "usable %")
    for b, y in sorted((s.get("yield") or {}).items()):
        t.add_row(b, str(y["samples"]), str(y["parsed"]), str(y["matches"]), str(y["usable"]),
                  f"{100 * y['usable'] / max(1, y['samples']):.0f}%")
    cli.out.print(t)
    for reason, n in list((s.get("rejected") or {}).items())[:8]:
        cli.out.print(f"  rejected {n}: {reason}", markup=False, highlight=False)
    cli.out.print(f"{s.get('tokens_per_s')} tok/s over {s.get('elapsed_s')} s; rejected samples: "
                  f"`rational generate --resume {run_id}` keeps the run, the Generate page lists them", markup=False,
                  highlight=False)


def generate(
    set_name: Optional[str] = typer.Option(None, "--set", help="prompt set to generate for"),
    split: Optional[str] = typer.Option(None, "--split", help="train | eval"),
    behavior: List[str] = typer.Option([], "--behavior", help="refuse | comply | partial (repeat or comma list)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many prompts"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="HF id, local folder, or served name"),
    backend: str = typer.Option("auto", "--backend", help="auto (the local engine measured fastest on this CPU, "
                                "see `rational doctor`) | transformers | vllm | openai"),
    samples: int = typer.Option(1, "--samples", help="K samples per prompt"),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="single | prefill | two_pass | few_shot | "
                                           "scaffold (default: the best measured yield for the model)"),
    strategy_set: List[str] = typer.Option([], "--strategy-set", help="a strategy parameter key=value, e.g. "
                                           "n_demos=3 or comply_reply=scaffold (repeatable)"),
    temperature: float = typer.Option(0.7, "--temperature"),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_tokens: int = typer.Option(192, "--max-tokens"),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", help="> 1 discourages "
                                                       "loops; default 1.0"),
    stop: Optional[str] = typer.Option(None, "--stop", help="comma list of stop strings, escapes like \\n allowed "
                                       "(default: '\\n\\n' for a one-pass strategy on the embedded SmolLM2, "
                                       "which never ends on its own; scaffold and few_shot stop by themselves)"),
    seed: int = typer.Option(0, "--seed"),
    student: Optional[str] = typer.Option(None, "--for-model", help="the model the traces are for, when --model "
                                          "is a separate teacher"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai backend: e.g. http://host:8000/v1"),
    resume: Optional[int] = typer.Option(None, "--resume", help="resume generation run ID (skips stored samples)"),
    worker_label: Optional[str] = typer.Option(None, "--worker-label", help="only a worker started with this "
                                               "--label (e.g. gpu) takes the job"),
    wait: bool = typer.Option(False, "--wait", help="run here and wait, instead of queueing for the worker"),
) -> None:
    """Generate self-check reasoning traces for a prompt set."""
    from sqlmodel import Session

    from core.vocabulary import BEHAVIORS
    from curation.generation.config import GenerationConfig, Selection
    from curation.generation.jobs import enqueue_generation
    from curation.generation.runs import create_run, pending_work
    from db.models import GenerationRun

    eng = cli.engine()
    if resume is not None:
        with Session(eng) as s:
            run = s.get(GenerationRun, resume)
        if run is None:
            cli.fail(f"generation run {resume} does not exist")
    else:
        if not set_name:
            cli.fail("--set is required (or --resume RUN_ID)")
        _check_set(eng, set_name)
        behaviors = cli.split_list(behavior)
        bad = [b for b in behaviors if b not in BEHAVIORS]
        if bad:
            cli.fail(f"--behavior {bad[0]!r} is not one of {', '.join(BEHAVIORS)}")
        if strategy is None:
            from curation.generation.yields import default_strategy

            strategy, why = default_strategy(eng, model)
            cli.err.print(f"strategy {strategy}: {why}", markup=False, highlight=False, soft_wrap=True)
        if repetition_penalty is None:
            repetition_penalty = 1.0
        if stop is None:
            from curation.backends.catalog import SMOLLM2_ALIASES

            one_pass = strategy in ("single", "two_pass")
            stop = "\\n\\n" if model in SMOLLM2_ALIASES and one_pass else ""
        opts = {"base_url": base_url} if base_url and backend == "openai" else {}
        cfg = GenerationConfig(model=model, backend=backend, strategy=strategy, samples=samples,
                               temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                               repetition_penalty=repetition_penalty,
                               stop=[x.encode().decode("unicode_escape") for x in stop.split(",") if x],
                               student_model=student, backend_options=opts,
                               strategy_params=_typed(cli.parse_pairs(strategy_set, "--strategy-set")))
        sel = Selection(set_names=[set_name], split=split, behaviors=behaviors, limit=limit)
        try:
            cfg.validate()
        except ValueError as e:
            cli.fail(str(e))
        run = create_run(eng, cfg, sel)
    works, done, total = pending_work(eng, run)
    if total == 0:
        cli.fail(f"no prompts match (set {set_name!r}, split {split!r}); see 'rational prompts list'")
    try:
        job = enqueue_generation(eng, None, run.id, worker_label=worker_label)
    except ValueError as e:
        cli.fail(str(e))
    cli.out.print(f"generation run {run.id}: {total - done} of {total} samples to generate; job {job.id}")
    if wait:
        job = cli.wait_for_job(eng, job.id, f"run {run.id}")
        cli.finished_or_fail(job)
        _yield_table(eng, run.id)
    else:
        cli.out.print("queued; start a worker with 'rational worker' (or pass --wait)")


def mutate(
    set_name: str = typer.Option(..., "--set", help="prompt set whose refuse prompts are mutated"),
    styles: List[str] = typer.Option([], "--styles", help="comma list of SORRY-Bench styles, 'all', or empty"),
    templates: List[str] = typer.Option([], "--templates", help="jailbreak template prompt ids (from the "
                                        "jailbreak_templates set), comma list"),
    jbb: List[str] = typer.Option([], "--jbb", help="JailbreakBench artifacts to import: PAIR,GCG,JBC,"
                                  "prompt_with_random_search (stored attacks, no model needed)"),
    twins: List[str] = typer.Option([], "--twins", help="contrast twins (benign, topic-matched, expected "
                                    "comply): comma list of prevention,history,risks,protection or 'all'"),
    target_set: Optional[str] = typer.Option(None, "--into", help="set to add mutated prompts to "
                                             "(default: NAME_mutations)"),
    model: str = typer.Option(DEFAULT_MODEL, "--model"),
    backend: str = typer.Option("transformers", "--backend"),
    base_url: Optional[str] = typer.Option(None, "--base-url"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many parent prompts"),
    max_tokens: int = typer.Option(256, "--max-tokens"),
    wait: bool = typer.Option(False, "--wait"),
) -> None:
    """Add mutated versions of a set's refuse prompts, linked to their parents: jailbreak-style (expected refuse) or
    contrast twins (the same topic with the intent stripped, expected comply)."""
    from curation.prompts.jobs import enqueue_mutation
    from curation.prompts.mutations import MutationConfig

    eng = cli.engine()
    if not jbb:
        _check_set(eng, set_name)
    cfg = MutationConfig(set_name=set_name, styles=cli.split_list(styles), template_ids=[int(x) for x in
                         cli.split_list(templates) if x.isdigit()], jbb_methods=cli.split_list(jbb),
                         twins=cli.split_list(twins),
                         target_set=target_set, model=model, backend=backend,
                         backend_options={"base_url": base_url} if base_url else {}, limit=limit,
                         max_tokens=max_tokens)
    try:
        cfg.validate()
    except ValueError as e:
        cli.fail(str(e))
    job = enqueue_mutation(eng, None, cfg)
    cli.out.print(f"mutation job {job.id} queued")
    if wait:
        _wait(eng, job.id, "mutate")


def label(
    set_name: Optional[str] = typer.Option(None, "--set"),
    run_id: Optional[int] = typer.Option(None, "--run", help="only traces of this generation run"),
    judge: str = typer.Option("learned", "--judge", help="the deciding judge: learned | rule | prefix | gcg | llm"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", help="llm judge model"),
    backend: str = typer.Option("transformers", "--backend"),
    base_url: Optional[str] = typer.Option(None, "--base-url"),
    queue: bool = typer.Option(False, "--queue", help="queue for the worker instead of running here"),
) -> None:
    """Auto-label traces: refusal judges (one decides), consistency, format/length, quality gates,
    matches-expected."""
    from curation.judges.jobs import enqueue_label
    from curation.judges.registry import JUDGE_NAMES

    if judge not in JUDGE_NAMES:
        cli.fail(f"--judge {judge!r} is not one of {', '.join(JUDGE_NAMES)}")
    eng = cli.engine()
    _check_set(eng, set_name)
    job = enqueue_label(eng, None, set_name=set_name, run_id=run_id, judge=judge, model=model, backend=backend,
                        backend_options={"base_url": base_url} if base_url else {})
    if queue:
        cli.out.print(f"label job {job.id} queued")
        return
    _wait(eng, job.id, "label")


def _register_builtin_templates() -> None:
    """Each module registers its built-in texts when imported."""
    import curation.generation.runs  # noqa: F401
    import curation.judges.llm  # noqa: F401
    import curation.prompts.mutations  # noqa: F401


@templates_app.command("list")
def templates_list() -> None:
    """Every template with its latest version."""
    _register_builtin_templates()
    from curation.templates import BUILTIN_TEMPLATES, get_template

    eng = cli.engine()
    t = DataTable("name", "version", "first line")
    for name in sorted(BUILTIN_TEMPLATES):
        tpl = get_template(eng, name)
        t.add_row(name, str(tpl.version), tpl.text.splitlines()[0][:80])
    cli.out.print(t)


@templates_app.command("show")
def templates_show(name: str, version: Optional[int] = typer.Option(None, "--version")) -> None:
    _register_builtin_templates()
    from curation.templates import get_template

    try:
        tpl = get_template(cli.engine(), name, version)
    except KeyError as e:
        cli.fail(str(e.args[0]))
    cli.out.print(f"# {tpl.ref}\n{tpl.text}", markup=False, highlight=False)


@templates_app.command("save")
def templates_save(name: str, path: str = typer.Argument(..., help="file holding the new text"),
                   note: str = typer.Option("", "--note")) -> None:
    """Save a new version of a template from a file (older versions stay; runs keep the text they used)."""
    from pathlib import Path

    _register_builtin_templates()
    from curation.templates import save_template

    p = Path(path)
    if not p.exists():
        cli.fail(f"{p}: file not found")
    try:
        tpl = save_template(cli.engine(), name, p.read_text(encoding="utf-8"), note=note)
    except (KeyError, ValueError) as e:
        cli.fail(str(e.args[0]))
    cli.out.print(f"saved {tpl.ref}")
