"""Versioned, editable templates. Built-in texts are version 0 of each name; saving an edit adds a new version
row (never an in-place change), and every run records the name@version and the exact text it used."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from db.engine import write_engine
from db.models import TemplateVersion

BUILTIN_TEMPLATES: dict[str, str] = {}  # filled by generation.py, mutations.py and judges.py at import


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    text: str

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"


def register_builtin(name: str, text: str) -> None:
    BUILTIN_TEMPLATES[name] = text


def get_template(engine: Engine | None, name: str, version: int | None = None) -> Template:
    """The latest saved version of `name` (or the given one); version 0 is the built-in text."""
    if engine is not None and version != 0:
        with Session(engine) as s:
            q = select(TemplateVersion).where(TemplateVersion.name == name)
            q = q.where(TemplateVersion.version == version) if version else q.order_by(TemplateVersion.version.desc())
            row = s.execute(q.limit(1)).scalars().first()
            if row is not None:
                return Template(row.name, row.version, row.text)
    if version not in (None, 0):
        raise KeyError(f"template {name} has no version {version}")
    if name not in BUILTIN_TEMPLATES:
        raise KeyError(f"unknown template '{name}'; known: {', '.join(sorted(BUILTIN_TEMPLATES))}")
    return Template(name, 0, BUILTIN_TEMPLATES[name])


def save_template(engine: Engine, name: str, text: str, *, note: str = "", created_by: int | None = None
                  ) -> Template:
    if name not in BUILTIN_TEMPLATES:
        raise KeyError(f"unknown template '{name}'; known: {', '.join(sorted(BUILTIN_TEMPLATES))}")
    if not text.strip():
        raise ValueError(f"template {name}: text is empty")
    with Session(write_engine(engine)) as s:
        last = s.execute(select(func.max(TemplateVersion.version)).where(TemplateVersion.name == name)).scalar()
        row = TemplateVersion(name=name, version=(last or 0) + 1, text=text, note=note[:500], created_by=created_by)
        s.add(row)
        s.commit()
        return Template(name, row.version, text)
