"""Durations as people read them on progress lines and tables: 0:07, 12:30, 1:02:03."""
from __future__ import annotations


def clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def remaining(done: int, total: int | None, elapsed_s: float) -> float | None:
    """Seconds left at the rate so far (None until there is a rate, or without a total)."""
    if not total or done <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, elapsed_s / done * (total - done))


def eta_line(done: int, total: int | None, elapsed_s: float) -> str:
    """tqdm's reading of progress: "12/100 0:30<2:00" (done/total elapsed<left)."""
    left = remaining(done, total, elapsed_s)
    return f"{done:,}/{total:,} {clock(elapsed_s)}<{clock(left) if left is not None else '?'}" if total else \
        f"{done:,} {clock(elapsed_s)}"
