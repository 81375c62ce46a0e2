"""Rejection sampling for the loop, as pure functions over label summaries (curation.judges.labels.label_summary)."""
from __future__ import annotations

from typing import Any

LEVELS = ("strict", "matches_expected", "decision", "parsed", "any")  # rejection-sampling criteria, strictest first


def fill_survivors(rows: list[dict[str, Any]], fallback: list[str], minimum: int
                   ) -> tuple[str, list[dict[str, Any]], list[tuple[str, int]]]:
    """Strict survivors first; then each fallback level in turn adds its new rows while fewer than `minimum`
    survive. Returns (loosest level used, survivors strictest first, [(level, rows added)])."""
    level, ok, added = "strict", [r for r in rows if r["strict"]], []
    for fb in fallback:
        if len(ok) >= minimum:
            break
        have = {r["id"] for r in ok}
        extra = [r for r in rows if r["id"] not in have and _passes(r, fb)]
        if extra:
            level, ok = fb, ok + extra
            added.append((fb, len(extra)))
    return level, ok, added


def one_per_prompt(rows: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """The first `most` rows of each prompt, order kept (survivors come strictest first)."""
    seen: dict[int, int] = {}
    out = []
    for r in rows:
        seen[r["prompt_id"]] = seen.get(r["prompt_id"], 0) + 1
        if seen[r["prompt_id"]] <= most:
            out.append(r)
    return out


def _passes(r: dict[str, Any], level: str) -> bool:
    if level == "matches_expected":
        return r["parse_ok"] and r["match"]
    if level == "decision":
        return r["match"] and r["has_response"]
    if level == "parsed":
        return r["parse_ok"]
    return r["has_response"]  # any: a non-empty answer (wiring runs on random-weight models only)


