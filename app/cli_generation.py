"""`rational generate | mutate | label | templates`: self-check traces, jailbreak mutations, auto-labels."""
from __future__ import annotations

import threading
from typing import List, Optional

import typer
from rich.table import Table

templates_app = typer.Typer(no_args_is_help=True, help="Versioned self-check / mutation / judge templates.")


def install(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("mutate")(mutate)
    app.command("label")(label)
    app.add_typer(templates_app, name="templates")


def _cli():
    from app import cli  # late: app.cli imports this module while it loads

    return cli


def _split_list(values: List[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _check_set(eng, set_name: Optional[str]) -> None:
    from db.crud import list_sets

    if set_name and set_name not in {s["name"] for s in list_sets(eng)}:
        _cli().fail(f"prompt set '{set_name}' does not exist; import it first (rational sets import {set_name})")


def _wait(eng, job_id: int, label: str) -> None:
    """Run the job here and draw its progress from the job row, as the UI does."""
    from curation.jobs_generation import run_job_here
    from db.jobs import get_job

    cli = _cli()
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("job", run_job_here(eng, job_id)), daemon=True)
    t.start()
    with cli.progress_bar() as bar:
        task = bar.add_task(label, total=None)
        while t.is_alive():
            t.join(timeout=1.0)
            j = get_job(eng, job_id)
            bar.update(task, completed=j.progress_done, total=j.progress_total, description=f"{label}: {j.message}")
    job = box.get("job") or get_job(eng, job_id)
    if job.status != "succeeded":
        cli.fail(f"job {job.id} {job.status}: {job.error}")
    cli.out.print(f"job {job.id} succeeded: {job.result}", markup=False, highlight=False, soft_wrap=True)


def generate(
    set_name: Optional[str] = typer.Option(None, "--set", help="prompt set to generate for"),
    split: Optional[str] = typer.Option(None, "--split", help="train | eval"),
    behavior: List[str] = typer.Option([], "--behavior", help="refuse | comply | partial (repeat or comma list)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many prompts"),
    model: str = typer.Option("smollm2-135m-instruct", "--model", help="HF id, local folder, or served name"),
    backend: str = typer.Option("transformers", "--backend", help="transformers | vllm | openai"),
    samples: int = typer.Option(1, "--samples", help="K samples per prompt"),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="single | prefill | two_pass (default: "
                                           "two_pass for the embedded SmolLM2, which never follows the reasoning "
                                           "format on its own; single otherwise)"),
    temperature: float = typer.Option(0.7, "--temperature"),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_tokens: int = typer.Option(512, "--max-tokens"),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", help="> 1 discourages "
                                                       "loops; default 1.0"),
    stop: Optional[str] = typer.Option(None, "--stop", help="comma list of stop strings, escapes like \\n allowed "
                                       "(default: '\\n\\n' for the embedded SmolLM2, else none)"),
    seed: int = typer.Option(0, "--seed"),
    student: Optional[str] = typer.Option(None, "--for-model", help="the model the traces are for, when --model "
                                          "is a separate teacher"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai backend: e.g. http://host:8000/v1"),
    resume: Optional[int] = typer.Option(None, "--resume", help="resume generation run ID (skips stored samples)"),
    wait: bool = typer.Option(False, "--wait", help="run here and wait, instead of queueing for the worker"),
) -> None:
    """Generate self-check reasoning traces for a prompt set."""
    from curation.generation import GenerationConfig, Selection, create_run, pending_work
    from curation.jobs_generation import enqueue_generation
    from db.models import BEHAVIORS, GenerationRun
    from sqlmodel import Session

    cli = _cli()
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
        behaviors = _split_list(behavior)
        bad = [b for b in behaviors if b not in BEHAVIORS]
        if bad:
            cli.fail(f"--behavior {bad[0]!r} is not one of {', '.join(BEHAVIORS)}")
        if strategy is None:
            from curation.models import SMOLLM2_ALIASES

            strategy = "two_pass" if model in SMOLLM2_ALIASES else "single"
        if repetition_penalty is None:
            from curation.models import SMOLLM2_ALIASES

            repetition_penalty = 1.0
        if stop is None:
            from curation.models import SMOLLM2_ALIASES

            # SmolLM2-135M never ends on its own (it loops to max_tokens): one paragraph per pass.
            stop = "\\n\\n" if model in SMOLLM2_ALIASES else ""
        opts = {"base_url": base_url} if base_url and backend == "openai" else {}
        cfg = GenerationConfig(model=model, backend=backend, strategy=strategy, samples=samples,
                               temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed,
                               repetition_penalty=repetition_penalty,
                               stop=[x.encode().decode("unicode_escape") for x in stop.split(",") if x],
                               student_model=student, backend_options=opts)
        sel = Selection(set_names=[set_name], split=split, behaviors=behaviors, limit=limit)
        try:
            cfg.validate()
        except ValueError as e:
            cli.fail(str(e))
        run = create_run(eng, cfg, sel)
    works, done, total = pending_work(eng, run)
    if total == 0:
        cli.fail(f"no prompts match (set {set_name!r}, split {split!r}); see 'rational prompts list'")
    job = enqueue_generation(eng, run.id)
    cli.out.print(f"generation run {run.id}: {total - done} of {total} samples to generate; job {job.id}")
    if wait:
        _wait(eng, job.id, f"run {run.id}")
    else:
        cli.out.print("queued; start a worker with 'rational worker' (or pass --wait)")


def mutate(
    set_name: str = typer.Option(..., "--set", help="prompt set whose refuse prompts are mutated"),
    styles: List[str] = typer.Option([], "--styles", help="comma list of SORRY-Bench styles, 'all', or empty"),
    templates: List[str] = typer.Option([], "--templates", help="jailbreak template prompt ids (from the "
                                        "jailbreak_templates set), comma list"),
    jbb: List[str] = typer.Option([], "--jbb", help="JailbreakBench artifacts to import: PAIR,GCG,JBC,"
                                  "prompt_with_random_search (stored attacks, no model needed)"),
    target_set: Optional[str] = typer.Option(None, "--into", help="set to add mutated prompts to "
                                             "(default: NAME_mutations)"),
    model: str = typer.Option("smollm2-135m-instruct", "--model"),
    backend: str = typer.Option("transformers", "--backend"),
    base_url: Optional[str] = typer.Option(None, "--base-url"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many parent prompts"),
    max_tokens: int = typer.Option(256, "--max-tokens"),
    wait: bool = typer.Option(False, "--wait"),
) -> None:
    """Add mutated (jailbreak-style) versions of a set's refuse prompts, linked to their parents."""
    from curation.jobs_generation import enqueue_mutation
    from curation.mutations import MutationConfig

    cli = _cli()
    eng = cli.engine()
    if not jbb:
        _check_set(eng, set_name)
    cfg = MutationConfig(set_name=set_name, styles=_split_list(styles), template_ids=[int(x) for x in
                         _split_list(templates) if x.isdigit()], jbb_methods=_split_list(jbb),
                         target_set=target_set, model=model, backend=backend,
                         backend_options={"base_url": base_url} if base_url else {}, limit=limit,
                         max_tokens=max_tokens)
    try:
        cfg.validate()
    except ValueError as e:
        cli.fail(str(e))
    job = enqueue_mutation(eng, cfg)
    cli.out.print(f"mutation job {job.id} queued")
    if wait:
        _wait(eng, job.id, "mutate")


def label(
    set_name: Optional[str] = typer.Option(None, "--set"),
    run_id: Optional[int] = typer.Option(None, "--run", help="only traces of this generation run"),
    judge: str = typer.Option("strmatch", "--judge", help="strmatch | llm"),
    model: str = typer.Option("smollm2-135m-instruct", "--model", help="llm judge model"),
    backend: str = typer.Option("transformers", "--backend"),
    base_url: Optional[str] = typer.Option(None, "--base-url"),
    queue: bool = typer.Option(False, "--queue", help="queue for the worker instead of running here"),
) -> None:
    """Auto-label traces: refusal judges, decision, consistency, format/length, matches-expected."""
    from curation.jobs_generation import enqueue_label

    cli = _cli()
    if judge not in ("strmatch", "llm"):
        cli.fail(f"--judge {judge!r} is not one of strmatch, llm")
    eng = cli.engine()
    _check_set(eng, set_name)
    job = enqueue_label(eng, set_name=set_name, run_id=run_id, judge=judge, model=model, backend=backend,
                        backend_options={"base_url": base_url} if base_url else {})
    if queue:
        cli.out.print(f"label job {job.id} queued")
        return
    _wait(eng, job.id, "label")


@templates_app.command("list")
def templates_list() -> None:
    """Every template with its latest version."""
    import curation.generation  # noqa: F401  (register built-ins)
    import curation.judges  # noqa: F401
    import curation.mutations  # noqa: F401
    from curation.templates import BUILTIN_TEMPLATES, get_template

    eng = _cli().engine()
    t = Table("name", "version", "first line")
    for name in sorted(BUILTIN_TEMPLATES):
        tpl = get_template(eng, name)
        t.add_row(name, str(tpl.version), tpl.text.splitlines()[0][:80])
    _cli().out.print(t)


@templates_app.command("show")
def templates_show(name: str, version: Optional[int] = typer.Option(None, "--version")) -> None:
    import curation.generation  # noqa: F401
    import curation.judges  # noqa: F401
    import curation.mutations  # noqa: F401
    from curation.templates import get_template

    try:
        tpl = get_template(_cli().engine(), name, version)
    except KeyError as e:
        _cli().fail(str(e.args[0]))
    _cli().out.print(f"# {tpl.ref}\n{tpl.text}", markup=False, highlight=False)


@templates_app.command("save")
def templates_save(name: str, path: str = typer.Argument(..., help="file holding the new text"),
                   note: str = typer.Option("", "--note")) -> None:
    """Save a new version of a template from a file (older versions stay; runs keep the text they used)."""
    import curation.generation  # noqa: F401
    import curation.judges  # noqa: F401
    import curation.mutations  # noqa: F401
    from pathlib import Path

    from curation.templates import save_template

    p = Path(path)
    if not p.exists():
        _cli().fail(f"{p}: file not found")
    try:
        tpl = save_template(_cli().engine(), name, p.read_text(encoding="utf-8"), note=note)
    except (KeyError, ValueError) as e:
        _cli().fail(str(e.args[0]))
    _cli().out.print(f"saved {tpl.ref}")
