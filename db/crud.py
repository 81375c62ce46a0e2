"""Read queries beside the models: prompt listing and counts, sets, imports, jobs. Pages and the CLI call these,
never raw SQL."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db.filters import PromptFilter
from db.models import EvalRun, ExportSnapshot, GenerationRun, Job, Prompt, PromptSet, Queue, Trace, TrainingRun


# -- where the work stands -----------------------------------------------------------------------------------
def workflow_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """Rows per status at each stage of the workflow (the Home page's map of the work), one GROUP BY each."""
    stages = {"prompts": (Prompt.split, Prompt.id), "generation_runs": (GenerationRun.status, GenerationRun.id),
              "traces": (Trace.status, Trace.id), "queues": (Queue.is_active, Queue.id),
              "exports": (ExportSnapshot.status, ExportSnapshot.id), "training_runs": (TrainingRun.status, TrainingRun.id),
              "eval_runs": (EvalRun.status, EvalRun.id)}
    out: dict[str, dict[str, int]] = {}
    with Session(engine) as s:
        for stage, (key, ident) in stages.items():
            rows = s.execute(select(key, func.count(ident)).group_by(key)).all()
            out[stage] = {("active" if k is True else "inactive" if k is False else str(k)): n for k, n in rows}
    return out


# -- prompts --------------------------------------------------------------------------------------------------
def count_prompts(engine: Engine, flt: PromptFilter | None = None) -> int:
    flt = flt or PromptFilter()
    with Session(engine) as s:
        return s.execute(flt.apply(select(func.count(Prompt.id)))).scalar_one()


def list_prompts(engine: Engine, flt: PromptFilter | None = None, *, limit: int = 50, offset: int = 0
                 ) -> list[dict[str, Any]]:
    """One page of prompts, newest sets last, as plain dicts (the table never loads whole)."""
    flt = flt or PromptFilter()
    q = flt.apply(select(Prompt.id, PromptSet.name.label("set"), Prompt.text, Prompt.expected_behavior,
                         Prompt.split, Prompt.category, Prompt.source_id, Prompt.mutation)
                  .join(PromptSet, PromptSet.id == Prompt.set_id))
    q = q.order_by(Prompt.id).limit(limit).offset(offset)
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(q)]


def prompt_counts(engine: Engine, project_id: int = 1) -> list[dict[str, Any]]:
    """Counts by set, expected behaviour and split."""
    q = (select(PromptSet.name.label("set"), Prompt.expected_behavior, Prompt.split, func.count(Prompt.id).label("n"))
         .join(PromptSet, PromptSet.id == Prompt.set_id).where(Prompt.project_id == project_id)
         .group_by(PromptSet.name, Prompt.expected_behavior, Prompt.split)
         .order_by(PromptSet.name, Prompt.expected_behavior, Prompt.split))
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(q)]


def set_names(engine: Engine, project_id: int = 1) -> set[str]:
    with Session(engine) as s:
        return set(s.execute(select(PromptSet.name).where(PromptSet.project_id == project_id)).scalars())


def prompt_texts(engine: Engine, flt: PromptFilter, *, limit: int | None = None) -> list[tuple[int, str]]:
    """(id, text) of the matching prompts in id order."""
    q = flt.apply(select(Prompt.id, Prompt.text)).order_by(Prompt.id)
    with Session(engine) as s:
        return [tuple(r) for r in s.execute(q.limit(limit) if limit else q)]  # type: ignore[misc]


def prompt_rows(engine: Engine, ids: list[int]) -> list[dict[str, Any]]:
    """id, text, expected behaviour and mutation of the given prompts, in id order."""
    q = (select(Prompt.id, Prompt.text, Prompt.expected_behavior, Prompt.mutation)
         .where(Prompt.id.in_(list(ids))).order_by(Prompt.id))
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(q)]


def generation_run_names(engine: Engine, limit: int = 200) -> dict[int, str]:
    """Recent generation runs, newest first: id -> "#id name" (for pickers)."""
    with Session(engine) as s:
        rows = s.execute(select(GenerationRun.id, GenerationRun.name).order_by(GenerationRun.id.desc())
                         .limit(limit)).all()
    return {i: f"#{i} {n}".rstrip() for i, n in rows}


def list_sets(engine: Engine, project_id: int = 1) -> list[dict[str, Any]]:
    q = (select(PromptSet.id, PromptSet.name, PromptSet.kind, PromptSet.license, PromptSet.source,
                PromptSet.description, func.count(Prompt.id).label("prompts"))
         .outerjoin(Prompt, Prompt.set_id == PromptSet.id).where(PromptSet.project_id == project_id)
         .group_by(PromptSet.id).order_by(PromptSet.name))
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(q)]



def list_jobs(engine: Engine, limit: int = 50, kinds: list[str] | None = None) -> list[Job]:
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if kinds:
        q = q.where(Job.kind.in_(kinds))
    with Session(engine, expire_on_commit=False) as s:
        return list(s.execute(q).scalars())
