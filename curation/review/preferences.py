"""Per-user review preferences: the harm categories whose text stays behind a content warning."""
from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.errors import ConflictError
from core.vocabulary import sensitive_by_default
from curation.auth import require
from curation.review.audit import record
from curation.review.reading import harm_categories
from db.engine import write_engine
from db.models import User, UserSetting, utcnow


def get_settings(engine: Engine, user: User | int) -> dict[str, Any]:
    """The user's preferences; before they first save, the defaults (the most distressing categories blurred),
    with "defaults": True."""
    with Session(engine) as s:
        me = require(s, user, "own_settings")
        st = s.get(UserSetting, me.id)
    if st is None:
        return {"blur_categories": [c for c in harm_categories(engine) if sensitive_by_default(c)], "version": 0,
                "defaults": True}
    return {"blur_categories": list(st.blur_categories), "version": st.version, "defaults": False}


def save_settings(engine: Engine, user: User | int, blur_categories: list[str], expected_version: int) -> int:
    with Session(write_engine(engine)) as s:
        me = require(s, user, "own_settings")
        st = s.get(UserSetting, me.id)
        current = st.version if st else 0
        if current != expected_version:
            raise ConflictError("your settings were changed in another tab", current=current)
        before = {"blur_categories": list(st.blur_categories)} if st else None
        if st is None:
            st = UserSetting(user_id=me.id, blur_categories=sorted(set(blur_categories)))
            s.add(st)
        else:
            st.blur_categories = sorted(set(blur_categories))
            st.version += 1
            st.updated_at = utcnow()
        s.flush()
        record(s, me.id, "user_setting", me.id, "update", before, {"blur_categories": st.blur_categories})
        s.commit()
        return st.version


