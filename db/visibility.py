"""Prompts of an import that is still being written (status "staging") are invisible to every ORM query. A large
import can then commit in small chunks, holding SQLite's write lock for a moment at a time, and still appear all
at once: when its import row flips to "succeeded". Queries that must see staged rows (the importer's duplicate
check) pass the execution option INCLUDE_STAGED."""
from __future__ import annotations

from sqlalchemy import event, or_, select
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from db.models import Prompt, PromptImport
from db.models.prompts import IMPORT_STAGING

INCLUDE_STAGED = "include_staged"


def _visible(cls):
    return or_(cls.import_id.is_(None),
               cls.import_id.not_in(select(PromptImport.id).where(PromptImport.status == IMPORT_STAGING)))


@event.listens_for(Session, "do_orm_execute")
def _hide_staged(state: ORMExecuteState) -> None:
    if state.is_select and not state.is_column_load and not state.execution_options.get(INCLUDE_STAGED):
        state.statement = state.statement.options(with_loader_criteria(Prompt, _visible, include_aliases=True))
