"""Quality gates: cheap checks that catch traces nobody should train on, whatever their decision.

- repetition: degenerate output (a phrase or line over and over, "### Step 1 … Step 39");
- echo: the reasoning and the reply are (nearly) the same text;
- off_topic: the reasoning shares no content word with the request;
- truncated: the output hit the token budget; `trim_to_sentence` keeps it when the last full sentence is enough.
"""
from __future__ import annotations

import re
import zlib
from typing import Optional

from rapidfuzz import fuzz

_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
_DIGITS = re.compile(r"\d+")
STOPWORDS = frozenset("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he
her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now
of off on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves tell give write explain make describe provide
please help want need know way ways best get user asking me request""".split())
ECHO_RATIO = 85  # rapidfuzz ratio (0-100) at or above which reasoning and reply count as the same text
MIN_TRIMMED_CHARS = 20


def content_words(text: str) -> set[str]:
    """Lower-case words that carry the topic (no stop words), cut to a 5-letter stem so forms match."""
    return {w[:5] for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOPWORDS}


def repetition(text: str) -> tuple[bool, str]:
    """(degenerate?, why): a line repeated three or more times, mostly repeated word trigrams, or text that
    compresses far better than language does."""
    # Numbers are folded, so "### Step 1 … ### Step 39" counts as one line said 39 times.
    lines = [_DIGITS.sub("0", ln.strip()) for ln in text.splitlines() if ln.strip()]
    for ln in set(lines):
        if len(ln) > 3 and lines.count(ln) >= 3:
            return True, f"the line {ln[:40]!r} repeats {lines.count(ln)} times"
    words = _WORD.findall(text.lower())
    if len(words) >= 30:
        grams = list(zip(words, words[1:], words[2:]))
        share = 1 - len(set(grams)) / len(grams)
        if share > 0.5:
            return True, f"{share:.0%} of its word trigrams are repeats"
    raw = text.encode("utf-8")
    if len(raw) >= 400 and len(zlib.compress(raw)) / len(raw) < 0.15:
        return True, "it compresses to under 15% of its length (a loop)"
    return False, "no degenerate repetition"


def echo(reasoning: str, response: str) -> tuple[bool, str]:
    """(echo?, why): the reply repeats the reasoning (or the other way round) instead of acting on it."""
    a, b = " ".join(reasoning.split()).lower(), " ".join(response.split()).lower()
    if not a or not b:
        return False, "one side is empty"
    ratio = fuzz.ratio(a, b)
    if ratio >= ECHO_RATIO:
        return True, f"reasoning and reply are {ratio:.0f}% the same"
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 40 and short in long_ and len(short) >= 0.6 * len(long_):
        return True, "one of reasoning and reply contains the other"
    return False, f"reasoning and reply differ ({ratio:.0f}% alike)"


def off_topic(prompt: str, reasoning: str) -> tuple[Optional[bool], str]:
    """(off topic?, why): None when the request has too few content words to tell."""
    want = content_words(prompt)
    if len(want) < 2:
        return None, "the request has too few content words to check"
    shared = want & content_words(reasoning)
    if not shared:
        return True, "the reasoning shares no content word with the request"
    return False, f"the reasoning mentions {', '.join(sorted(shared)[:5])}"


def trim_to_sentence(text: str) -> Optional[str]:
    """A cut-off text up to its last full sentence, or None when too little would be left to use."""
    if text.count("```") % 2:  # a code block left open: drop it whole, half a program teaches nothing
        text = text[:text.rindex("```")]
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends:
        return None
    trimmed = text[:ends[-1]].strip()
    return trimmed if len(trimmed) >= MIN_TRIMMED_CHARS and len(trimmed) >= 0.5 * len(text.strip()) else None
