"""Durations as people read them on progress lines and tables: 0:07, 12:30, 1:02:03."""
from __future__ import annotations


def clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
