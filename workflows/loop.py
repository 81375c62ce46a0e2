"""The RATIONAL loop end to end (arXiv 2503.05021), through the product's own functions:

1 prompts (built-in sets, contamination-checked) · 2 mutations · 3 self-check generation · 4 rejection-sampling
filter (auto-approve, no human edits) · 5 export + LoRA SFT per arm · 6 evaluation of base and every arm, then a
Markdown report + metrics JSON. Arms: the main recipe and three ablations (self-check system prompt kept at
training time, answer-only targets, benign traces excluded), and with `from_queue` the human arm: the traces that
reviewers approved or edited in that queue instead of the automatic filter, evaluated the same way. Every stage's
wall time is recorded and printed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

from sqlalchemy.engine import Engine

from core.vocabulary import TraceStatus
from curation.export.snapshot import create_export
from curation.export.spec import ExportFilter, ExportOptions
from curation.generation.config import GenerationConfig, Selection
from curation.generation.runs import create_run, run_generation
from curation.generation.runs import get_run as get_generation_run
from curation.generation.selfcheck import REJECTION_SELF_CHECK
from curation.generation.traceformat import DEFAULT_FORMAT
from curation.generation.yields import sample_traces
from curation.judges.labels import label_summary, label_traces
from curation.prompts.builtin import import_builtin
from curation.prompts.contamination import check_contamination
from curation.prompts.mutations import MutationConfig, run_mutations
from curation.prompts.twins import TWIN_KINDS
from curation.review.annotations import auto_decide
from db.crud import prompt_rows, prompt_texts, set_names
from db.engine import artifact_root
from db.filters import PromptFilter
from db.jobs import run_job_here
from db.models import EvalRun, Prompt, Trace, TrainingRun, utcnow
from evaluation.runs import EvalSpec, create_eval_run, execute_eval_run
from evaluation.suites import get_suite
from training import runs
from workflows.loop_config import ABLATIONS, BENIGN_TRAIN, HARMFUL_TRAIN, HUMAN, PREFERENCE, LoopConfig, LoopError
from workflows.loop_filter import fill_survivors, one_per_prompt
from workflows.loop_output import eval_entry, write_outputs
from workflows.loop_preference import preference_stage
from workflows.loop_report import machine, yield_table
from workflows.loop_selection import select_on_dev

STAGES = ("prompts", "mutations", "generation", "filtering", "training", "evaluation", "report")
Log = Callable[[str], None]


class RationalLoop:
    def __init__(self, engine: Engine, config: LoopConfig, *, log: Log = print,
                 stage_progress: Callable[[int, int, str], None] | None = None, job_id: Optional[int] = None):
        config.validate()
        self.engine, self.cfg, self._log = engine, config, log
        self.job_id = job_id  # the worker's job, if any: what it leaves half-built is reaped when the job dies
        self.stage_progress = stage_progress or (lambda *_a: None)
        self.tag = config.tag or utcnow().strftime("%Y%m%d-%H%M%S")
        self.out = Path(config.out) if config.out else artifact_root() / "results" / self.tag
        self.timings: dict[str, float] = {}
        self.results: dict[str, Any] = {"config": config.to_dict(), "tag": self.tag, "notes": []}

    def log(self, line: str) -> None:
        self._log(line)

    def note(self, line: str) -> None:
        self.results["notes"].append(line)
        self.log("note: " + line)

    # -- driver ---------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t_all = time.perf_counter()
        self.results["fresh_database"] = database_is_fresh(self.engine)
        steps = [("prompts", self.stage_prompts), ("mutations", self.stage_mutations),
                 ("generation", self.stage_generation), ("filtering", self.stage_filtering),
                 ("training", self.stage_training), ("evaluation", self.stage_evaluation)]
        try:
            if self.cfg.from_queue:  # a wrong queue name fails now, not after generation and training
                self._queue_id()
            if self.cfg.backend == "auto":
                self.choose_engine()
            for i, (name, fn) in enumerate(steps):
                self.stage_progress(i, len(STAGES), name)
                t0 = time.perf_counter()
                self.log(f"== stage {i + 1}/6: {name}")
                fn()
                self.timings[name] = round(time.perf_counter() - t0, 1)
                self.log(f"== {name}: {self.timings[name]:.1f} s")
        except BaseException as e:  # interrupted too: the report says where it stopped
            self.results["error"] = f"{type(e).__name__}: {e}"
            raise
        finally:
            self.timings["total"] = round(time.perf_counter() - t_all, 1)
            self.stage_progress(len(STAGES) - 1, len(STAGES), "report")
            self.write_outputs()
        self.stage_progress(len(STAGES), len(STAGES), "done")
        return self.results

    def choose_engine(self) -> None:
        """`auto`: the engine predicted fastest on this CPU for the loop's generated tokens (measured by a probe
        on first use, cached per CPU, engine and model; curation.backends.choice)."""
        from curation.backends.catalog import resolve_model
        from curation.backends.choice import choose

        cfg = self.cfg
        t0 = time.perf_counter()
        self.stage_progress(0, len(STAGES), "engine: loading / converting the model")
        self.log("== engine: loading (converting on first use) the model")
        model_path = resolve_model(cfg.teacher or cfg.model)
        self.stage_progress(0, len(STAGES), "engine: measuring the engines on this CPU (first use only)")
        choice = choose(model_path, cfg.expected_tokens(), log=self.log)
        cfg.backend = choice.engine
        self.results["config"]["backend"] = choice.engine
        self.results["engine"] = choice.to_dict()
        self.timings["engine"] = round(time.perf_counter() - t0, 1)
        self.log(f"== engine: {choice.reason} ({self.timings['engine']:.1f} s)")

    # -- 1. prompts -----------------------------------------------------------------------------------------
    def stage_prompts(self) -> None:
        needed = set(HARMFUL_TRAIN + BENIGN_TRAIN + ("jailbreak_templates", "jbb_harmful"))
        for s in self.cfg.eval_suites:
            needed |= set(get_suite(s).builtin_sets)
        for name in sorted(needed - set_names(self.engine)):
            rep = import_builtin(self.engine, name)
            self.log(f"imported built-in set {name}: {rep.inserted} prompts")

    def _pick(self, sets: list[str], n: int, *, mutated: bool = False) -> list[tuple[int, str]]:
        """Up to n train-split prompts taken round-robin over `sets` (so every source is represented)."""
        per = [prompt_texts(self.engine, PromptFilter(set_names=[name], splits=["train"], set_kind="prompts",
                                                      mutated=mutated), limit=n) for name in sets]
        out: list[tuple[int, str]] = []
        for i in range(n):
            for rows in per:
                if i < len(rows) and len(out) < n:
                    out.append(rows[i])
        return out

    # -- 2. mutations ---------------------------------------------------------------------------------------
    def stage_mutations(self) -> None:
        cfg = self.cfg
        if cfg.jbb_methods and "attacks" in cfg.eval_suites:
            res = run_mutations(self.engine, MutationConfig(set_name="jbb_harmful", jbb_methods=cfg.jbb_methods,
                                                            target_set="jbb_artifacts"))
            self.log(f"JBB artifacts {', '.join(cfg.jbb_methods)}: {res['inserted']} new eval attack prompts")
        self.twin_set = f"loop_{self.tag}_twins"
        if cfg.twins:
            made = 0
            for name in HARMFUL_TRAIN:  # one twin per parent, the kinds in turn: as many topics as twins
                res = run_mutations(self.engine, MutationConfig(set_name=name, twins=list(TWIN_KINDS),
                                                                twin_rotate=True, target_set=self.twin_set,
                                                                limit=cfg.twins), log=self.log)
                made += res["inserted"]
            self.results["twins"] = made
            self.log(f"contrast twins: {made} benign, topic-matched prompts from {', '.join(HARMFUL_TRAIN)}")
        into = f"loop_{self.tag}_mutations"
        self.mutation_set = into
        if cfg.mutation == "none":
            self.results["mutations"] = {"kind": "none"}
            return
        if cfg.mutation == "styles":
            mc = MutationConfig(set_name=HARMFUL_TRAIN[0], styles=["slang", "role_play", "misrepresentation"],
                                target_set=into, model=cfg.teacher or cfg.model, backend=cfg.backend,
                                limit=cfg.mutation_limit, seed=cfg.seed)
            kind = "SORRY-Bench style rewrites by " + (cfg.teacher or cfg.model)
        else:
            tpl = [pid for pid, _ in prompt_texts(self.engine, PromptFilter(set_kind="jailbreak_templates"), limit=2)]
            if not tpl:
                raise LoopError("mutations: no jailbreak templates imported")
            mc = MutationConfig(set_name=HARMFUL_TRAIN[0], template_ids=tpl, target_set=into,
                                limit=cfg.mutation_limit)
            kind = f"template jailbreaks ({len(tpl)} templates)"
        res = run_mutations(self.engine, mc, log=self.log)
        self.results["mutations"] = {"kind": kind, **res}
        self.log(f"mutations ({kind}): {res['inserted']} new, {res['duplicates']} duplicates")

    # -- 3. generation --------------------------------------------------------------------------------------
    def stage_generation(self) -> None:
        cfg = self.cfg
        if cfg.generation_run:
            self._reuse_generation(cfg.generation_run)
            return
        n = cfg.limit_train
        n_mut = min(n // 4, cfg.mutation_limit) if cfg.mutation != "none" else 0
        mutated = self._pick([self.mutation_set], n_mut, mutated=True) if n_mut else []
        harmful = self._pick(list(HARMFUL_TRAIN), n - n_mut) + mutated
        twins = self._pick([self.twin_set], min(cfg.twins, n // 2), mutated=True) if cfg.twins else []
        benign = self._pick(list(BENIGN_TRAIN), n - len(twins)) + twins
        chosen = dict(harmful + benign)
        report = check_contamination(self.engine, chosen)
        dropped = report.contaminated_prompt_ids
        if dropped:
            self.note(f"contamination check: {len(dropped)} training prompts overlap eval prompts; dropped")
            chosen = {k: v for k, v in chosen.items() if k not in dropped}
            report = check_contamination(self.engine, chosen)
        if report.overlaps:
            raise LoopError(f"prompts: the contamination check still fails: {report.summary()}")
        self.results["prompts"] = {"harmful": len([p for p, _ in harmful if p in chosen]),
                                   "benign": len([p for p, _ in benign if p in chosen]),
                                   "mutated_harmful": len([p for p, _ in mutated if p in chosen]),
                                   "benign_twins": len([p for p, _ in twins if p in chosen]),
                                   "contamination": "pass",
                                   "dropped_for_contamination": len(dropped)}
        self.log(f"training prompts: {self.results['prompts']}")
        gc = GenerationConfig(model=cfg.teacher or cfg.model, backend=cfg.backend, strategy=cfg.strategy,
                              samples=cfg.samples, temperature=cfg.temperature, max_tokens=cfg.gen_max_tokens,
                              seed=cfg.seed, student_model=cfg.model if cfg.teacher else None)
        run = create_run(self.engine, gc, Selection(prompt_ids=sorted(chosen)), name=f"loop {self.tag}")
        self.gen_run_id = run.id
        summary = run_generation(self.engine, run.id, log=self.log,
                                 progress=lambda d, t, m: self.stage_progress(2, len(STAGES), f"generation: {m}"))
        self.results["generation"] = summary

    def _reuse_generation(self, run_id: int) -> None:
        """Resume an earlier run (its own prompt selection and settings); pairs it already holds are skipped."""
        run = get_generation_run(self.engine, run_id)
        if run is None:
            raise LoopError(f"generation: run {run_id} does not exist")
        wall = (run.finished_at - run.created_at).total_seconds() if run.finished_at else None
        earlier = {"created_at": str(run.created_at), "finished_at": str(run.finished_at),
                   "wall_s": round(wall, 1) if wall is not None else None}
        rows = [(r["id"], r["text"], r["expected_behavior"], r["mutation"])
                for r in prompt_rows(self.engine, run.selection.get("prompt_ids") or [])]
        # The reused run's own prompts are what gets trained on: they are what the check must cover.
        report = check_contamination(self.engine, {pid: text for pid, text, _b, _m in rows})
        if report.overlaps:
            raise LoopError(f"prompts: run {run_id} holds training prompts that overlap eval prompts: "
                            f"{report.summary()}")
        self.results["prompts"] = {"harmful": sum(b == "refuse" for _i, _t, b, _m in rows),
                                   "benign": sum(b == "comply" for _i, _t, b, _m in rows),
                                   "mutated_harmful": sum(m is not None for _i, _t, _b, m in rows),
                                   "contamination": "pass", "dropped_for_contamination": 0}
        self.log(f"training prompts (run {run_id}): {self.results['prompts']}")
        self.gen_run_id = run_id
        self.note(f"generation: reused run {run_id} (its prompts and settings); stored samples are not regenerated, "
                  "so the generation time below covers only what was missing")
        summary = run_generation(self.engine, run_id, log=self.log,
                                 progress=lambda d, t, m: self.stage_progress(2, len(STAGES), f"generation: {m}"))
        self.results["generation"] = {**summary, "reused_run": run_id, "earlier_summary": earlier}

    # -- 4. filtering (rejection sampling) ------------------------------------------------------------------
    def stage_filtering(self) -> None:
        label_traces(self.engine, run_id=self.gen_run_id)
        rows = label_summary(self.engine, self.gen_run_id)
        yields: dict[str, dict[str, Any]] = {}
        keep: dict[str, list[int]] = {}
        passed: set[int] = set()
        for beh in sorted({r["behavior"] for r in rows}):
            rs = [r for r in rows if r["behavior"] == beh]
            y = {"samples": len(rs), "prompts": len({r["prompt_id"] for r in rs}),
                 "parsed": sum(r["parse_ok"] for r in rs),
                 "matches_expected": sum(r["match"] for r in rs),
                 "consistent": sum(r["consistent"] for r in rs),
                 "strict": sum(r["strict"] for r in rs), "truncated": sum(r["truncated"] for r in rs)}
            level, ok, added = fill_survivors(rs, self.cfg.fallback, self.cfg.min_per_behavior)
            passed |= {r["id"] for r in ok}
            ok = one_per_prompt(ok, self.cfg.per_prompt)
            for fb, n in added:
                warn = {"decision": " — their reasoning is truncated or unparsed",
                        "parsed": " — NOT verified as the expected behaviour",
                        "any": " — NOT verified at all"}.get(fb, "")
                self.note(f"{beh}: {y['strict']} strict survivors (parse + consistent + matches expected), fewer "
                          f"than {self.cfg.min_per_behavior}; added {n} at level '{fb}'{warn}")
            y.update(level=level, survived=len(ok), prompts_with_survivor=len({r["prompt_id"] for r in ok}))
            yields[beh] = y
            keep[beh] = [r["id"] for r in ok]
        # Balance: a behaviour may have at most balance_ratio x the other's traces; the rest stay pending.
        if len(keep) == 2 and all(keep.values()):
            small = min(len(v) for v in keep.values())
            cap = int(self.cfg.balance_ratio * small)
            for beh, ids in keep.items():
                if len(ids) > cap:
                    self.note(f"balance: {beh} keeps {cap} of {len(ids)} surviving traces "
                              f"(ratio {self.cfg.balance_ratio}:1)")
                    keep[beh] = ids[:cap]
                yields[beh]["used"] = len(keep[beh])
        else:
            for beh in keep:
                yields[beh]["used"] = len(keep[beh])
            missing = [b for b in ("refuse", "comply") if not keep.get(b)]
            if missing:
                self.note(f"too few traces survive: none for {', '.join(missing)}; cannot balance")
        approved = {i for ids in keep.values() for i in ids}
        if not approved:
            self.results["yield"] = yields
            raise LoopError("filtering: no trace survived for any behaviour; see the yield table")
        if len(approved) < self.cfg.min_train_rows:
            self.results["yield"] = yields
            raise LoopError(f"filtering: only {len(approved)} traces survived (min_train_rows "
                            f"{self.cfg.min_train_rows}); the limiting stage is the yield of usable traces")
        # Survivors left out only for balance or as a prompt's extra sample stay pending: a person may still
        # review them.
        auto_decide(self.engine, self.cfg.acting_user, {
            r["id"]: TraceStatus.APPROVED if r["id"] in approved else
            TraceStatus.PENDING if r["id"] in passed else TraceStatus.REJECTED for r in rows})
        self.results["yield"] = yields
        self.results["samples"] = sample_traces(self.engine, self.gen_run_id)
        self.log("yield per behaviour:\n" + yield_table(yields))

    # -- 5. export + training -------------------------------------------------------------------------------
    def stage_training(self) -> None:
        cfg = self.cfg
        self.train_runs: dict[str, int] = {}
        self.results["training"] = {}
        for arm in cfg.arms:
            if arm == PREFERENCE:
                continue  # trained on the main arm's student, below
            t0 = time.perf_counter()
            flt, opts = arm_export(arm, self.gen_run_id, cfg.seed, queue_id=self._queue_id() if arm == HUMAN else None)
            name = f"loop-{self.tag}-{arm}"
            snap = create_export(self.engine, name, "sft", flt, opts, formats=["hf", "jsonl"],
                                 created_by=cfg.acting_user, job_id=self.job_id)
            run, job = runs.create_run(self.engine, base_model=cfg.model, method="sft", export_name=snap.name,
                                       preset=cfg.train_preset, overrides=dict(cfg.train_overrides),
                                       name=name, created_by=cfg.acting_user)
            self.log(f"[{arm}] export {name}: {snap.row_count} rows; training run {run.id} (job {job.id})")
            done = run_job_here(self.engine, job.id)
            r = runs.get_run(self.engine, run.id)
            if done.status != "succeeded" or r.status != "succeeded":
                raise LoopError(f"training [{arm}] run {run.id} {r.status}: {r.error or done.error}\n"
                                f"{(r.log_tail or '')[-2000:]}")
            self.train_runs[arm] = run.id
            self.results["training"][arm] = {"export": name, "rows": snap.row_count, "counts": snap.counts,
                                             "run_id": run.id, "adapter": r.adapter_path,
                                             "steps": r.global_step, "metrics": r.metrics,
                                             "seconds": round(time.perf_counter() - t0, 1)}
        if PREFERENCE in cfg.arms:
            preference_stage(self)
        if cfg.dev_size:
            select_on_dev(self)

    def _queue_id(self) -> int:
        """The human arm's queue, which must hold approved traces of train-split prompts."""
        from curation.review.queues import queue_id_by_name

        qid = queue_id_by_name(self.engine, self.cfg.acting_user, self.cfg.from_queue)
        if qid is None:
            raise LoopError(f"training [human]: no review queue named '{self.cfg.from_queue}'")
        return qid

    # -- 6. evaluation --------------------------------------------------------------------------------------
    def stage_evaluation(self) -> None:
        cfg = self.cfg
        self.eval_runs: dict[str, dict[str, int]] = {}
        ev: dict[str, Any] = {}
        for arm in ["base"] + [a for a in cfg.arms if a in self.train_runs]:
            self.eval_runs[arm] = {}
            for suite in cfg.eval_suites:
                if arm in (*ABLATIONS, PREFERENCE) and suite not in cfg.ablation_suites:
                    continue
                t0 = time.perf_counter()
                spec = EvalSpec(suite=suite, limit=cfg.limit_eval, max_tokens=cfg.eval_max_tokens,
                                temperature=0.0, backend=cfg.backend, seed=cfg.seed,
                                name=f"loop {self.tag} {arm} {suite}",
                                **({"model": cfg.model} if arm == "base"
                                   else {"training_run_id": self.train_runs[arm]}))
                # The base model's answers are the same in every loop on the same weights, suite and decoding.
                run = create_eval_run(self.engine, spec, reuse=arm == "base")
                cached = run.status == "succeeded"
                if cached:
                    took = (run.finished_at - run.created_at).total_seconds() if run.finished_at else 0
                    self.note(f"evaluation: {arm} {suite} reused eval run {run.id} (same weights, prompts, decoding "
                              f"and judges), which took {took:.0f} s when it ran")
                else:
                    run = execute_eval_run(self.engine, run.id, progress=lambda d, t, m, a=arm, su=suite:
                                           self.stage_progress(5, len(STAGES), f"evaluation {a} {su}: {m}"))
                self.eval_runs[arm][suite] = run.id
                entry = ev.setdefault(arm, {})[suite] = {
                    **eval_entry(self.engine, run.id), "seconds": round(time.perf_counter() - t0, 1),
                    "cached": cached}
                self.log(f"[{arm}] {suite}{' (cached run ' + str(run.id) + ')' if cached else ''}: " + ", ".join(
                    f"{r['group']} {r['metric']} {100 * r['rate']:.1f}%" for r in entry["rows"]
                    if r["level"] == "set"))
        self.results["evaluation"] = ev
        self.results["eval_runs"] = self.eval_runs

    # -- report ---------------------------------------------------------------------------------------------
    def write_outputs(self) -> None:
        self.results["timings_s"] = dict(self.timings)
        self.results["machine"] = machine()
        write_outputs(self.engine, self.out, self.results, self.note)
        self.log(f"report: {self.out / 'report.md'}")


def database_is_fresh(engine: Engine) -> bool:
    """No prompt, trace, training run or eval run yet: nothing the loop could reuse (its time goal is measured so)."""
    from sqlalchemy import select
    from sqlmodel import Session

    with Session(engine) as s:
        return all(s.execute(select(m.id).limit(1)).first() is None for m in (Prompt, Trace, TrainingRun, EvalRun))


def arm_export(arm: str, run_id: int, seed: int = 0, *, queue_id: Optional[int] = None):
    """(ExportFilter, ExportOptions) of one arm: the main recipe, one ablation changed from it, or the human arm
    (the main recipe on a review queue's approved traces, edits applied, from whatever run they came)."""
    opts = ExportOptions(seed=seed)
    flt = ExportFilter(run_ids=[run_id])
    if arm == HUMAN:
        if queue_id is None:
            raise ValueError("the human arm needs a review queue")
        return ExportFilter(queue_ids=[queue_id]), opts
    if arm == "keep_system_prompt":
        opts.system_prompt = DEFAULT_FORMAT.fill(REJECTION_SELF_CHECK)
    elif arm == "answer_only":
        opts.reasoning_template = "{response}"
    elif arm == "no_benign":
        flt.behaviors = ["refuse", "partial"]
    elif arm != "main":
        raise ValueError(f"arm '{arm}' is not main, {HUMAN} or one of {', '.join(ABLATIONS)}")
    return flt, opts


