"""What every table module shares."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def check_in(col: str, values: Iterable[str]) -> str:
    """A CHECK constraint body: col IN (...) over plain string values."""
    return f"{col} IN ({', '.join(repr(str(v)) for v in values)})"
