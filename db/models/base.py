"""What every table module shares."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

from core.settings import artifact_path


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def check_in(col: str, values: Iterable[str]) -> str:
    """A CHECK constraint body: col IN (...) over plain string values."""
    return f"{col} IN ({', '.join(repr(str(v)) for v in values)})"


class ArtifactPath(TypeDecorator):
    """A file or folder path, stored relative to the artifact root when it lies under it and read back absolute
    under this machine's root: a web app and workers that mount the shared root at different paths find each
    other's exports, adapters and reports. Paths outside the root are stored as they are."""

    impl = String(1000)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if not value or not os.path.isabs(value):
            return value
        root = artifact_path()
        for path in (Path(os.path.abspath(value)), Path(value).resolve()):
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                continue
        return str(value)

    def process_result_value(self, value, dialect):
        if not value or os.path.isabs(value):
            return value
        return str(artifact_path() / value)  # touches nothing: reading must not create folders
