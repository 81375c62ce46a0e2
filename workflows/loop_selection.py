"""Selection on a dev split: which trained arm the loop recommends, by a stated rule, measured on prompts from the
training sources that no arm trained on (never the held-out test sets, which stay for the report).

Each arm's merged model answers the dev prompts greedily, the prompt alone (a generation run with the `student`
strategy, so a team can read the answers); the judge labels them. The rule and every number it saw go into the
report and metrics.json."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlmodel import Session

from curation.backends.catalog import resolve_model
from curation.backends.lora import merge_adapter
from curation.generation.config import GenerationConfig, Selection
from curation.generation.runs import create_run, run_generation
from curation.judges.labels import label_summary, label_traces
from curation.prompts.contamination import check_contamination
from db.crud import prompt_texts
from db.filters import PromptFilter
from db.models import GenerationRun
from training import runs
from workflows.loop_config import HARMFUL_TRAIN

DEV_BENIGN = ("coconot_contrast",)  # benign prompts that look risky: what over-refusal is about
RULE = "dev harmful refusal minus dev false refusal; the higher wins, ties go to the earlier arm"


def dev_prompts(loop: Any) -> dict[str, list[int]]:
    """Per behaviour, up to dev_size train-split, unmutated prompts of the training sources that the loop's
    generation run did not select, taken round-robin over the sources; eval-overlapping ones dropped."""
    cfg, engine = loop.cfg, loop.engine
    with Session(engine) as s:
        used = set((s.get(GenerationRun, loop.gen_run_id).selection or {}).get("prompt_ids") or [])
    out: dict[str, list[int]] = {}
    for behaviour, sets in (("refuse", HARMFUL_TRAIN), ("comply", DEV_BENIGN)):
        per = [[r for r in prompt_texts(engine, PromptFilter(set_names=[name], splits=["train"], set_kind="prompts",
                                                              mutated=False)) if r[0] not in used] for name in sets]
        longest = max((len(rows) for rows in per), default=0)
        ordered = [rows[i] for i in range(longest) for rows in per if i < len(rows)]
        # Checked in slices, so a prompt that overlaps an eval prompt is replaced by the next one.
        out[behaviour] = []
        for start in range(0, len(ordered), 2 * cfg.dev_size):
            part = dict(ordered[start:start + 2 * cfg.dev_size])
            dropped = check_contamination(engine, part).contaminated_prompt_ids
            out[behaviour] += [pid for pid in part if pid not in dropped][:cfg.dev_size - len(out[behaviour])]
            if len(out[behaviour]) >= cfg.dev_size:
                break
    return out


def arm_model(loop: Any, arm: str) -> Path:
    """The arm's adapter merged into its base (the preference arm's base is the merged SFT student)."""
    r = runs.get_run(loop.engine, loop.train_runs[arm])
    out = Path(r.output_dir) / "merged"
    if (out / "config.json").exists():
        return out
    return merge_adapter(str(resolve_model(r.base_model)), r.adapter_path, out)


def dev_rates(rows: list[dict[str, Any]], ids: dict[str, list[int]]) -> dict[str, Any]:
    """Harmful refusal and false refusal from the judged dev answers (label_summary rows)."""
    harmful = [r["match"] for r in rows if r["prompt_id"] in set(ids["refuse"])]
    benign = [not r["match"] for r in rows if r["prompt_id"] in set(ids["comply"])]
    refusal = sum(harmful) / len(harmful) if harmful else None
    false_refusal = sum(benign) / len(benign) if benign else None
    score = None if refusal is None or false_refusal is None else refusal - false_refusal
    return {"harmful_refusal": refusal, "n_harmful": len(harmful), "false_refusal": false_refusal,
            "n_benign": len(benign), "score": score}


def choose(dev: dict[str, dict[str, Any]]) -> str | None:
    """The arm the rule picks (RULE), or None when no arm has both figures."""
    scored = [(arm, d["score"]) for arm, d in dev.items() if d.get("score") is not None]
    return max(scored, key=lambda a: a[1])[0] if scored else None


def select_on_dev(loop: Any) -> None:
    """Measure every trained arm on the dev split and record the rule's choice in loop.results["selection"]."""
    cfg, engine = loop.cfg, loop.engine
    t0 = time.perf_counter()
    ids = dev_prompts(loop)
    result: dict[str, Any] = {"rule": RULE, "prompts": {b: len(v) for b, v in ids.items()}, "dev": {}}
    loop.results["selection"] = result
    if not all(ids.values()):
        loop.note(f"selection: too few dev prompts {result['prompts']}; no arm selected")
        return
    for arm in loop.train_runs:
        gc = GenerationConfig(model=str(arm_model(loop, arm)), backend=cfg.backend, strategy="student", samples=1,
                              temperature=0.0, max_tokens=cfg.eval_max_tokens, seed=cfg.seed)
        run = create_run(engine, gc, Selection(prompt_ids=ids["refuse"] + ids["comply"]),
                         name=f"loop {loop.tag} dev {arm}", created_by=cfg.acting_user)
        run_generation(engine, run.id, log=loop.log,
                       progress=lambda d, t, m, a=arm: loop.stage_progress(4, 7, f"training: dev split {a}: {m}"))
        label_traces(engine, run_id=run.id)
        result["dev"][arm] = {**dev_rates(label_summary(engine, run.id), ids), "run": run.id}
        loop.log(f"[dev] {arm}: {result['dev'][arm]}")
    result["selected"] = choose(result["dev"])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    loop.log(f"[dev] selected {result['selected']} ({RULE})")
