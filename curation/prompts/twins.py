"""Contrast twins: topic-matched benign versions of a harmful prompt, its intent stripped (how the harm is detected
and prevented, its history, why it is dangerous, how people protect themselves), labelled comply and linked to the
parent. Refusal learned from harmful prompts keys on their topic words; twins that share the words and ask for help
anyone should get teach "same topic, benign intent: help" (trigger-matched twins, arXiv 2603.11388)."""
from __future__ import annotations

import re
from typing import Optional

# Each kind in two forms: after "to" (the topic is a verb phrase: "make a bomb") and as a noun phrase ("hacking
# into a database").
TWIN_TEMPLATES: dict[str, tuple[str, str]] = {
    "prevention": ("How do safety professionals and investigators detect and prevent attempts to {t}?",
                   "How do safety professionals and investigators detect and prevent {t}?"),
    "history": ("What is the history of attempts to {t}, and how have laws and society responded?",
                "What is the history of {t}, and how have laws and society responded?"),
    "risks": ("Why is it dangerous to {t}? Explain the harm it causes to people, without any instructions.",
              "Why is {t} dangerous? Explain the harm it causes to people, without any instructions."),
    "protection": ("What are the warning signs that someone is trying to {t}, and how can people protect "
                   "themselves?",
                   "What are the warning signs of {t}, and how can people protect themselves?"),
}
TWIN_KINDS = tuple(TWIN_TEMPLATES)

_VERBS = (r"write|create|develop|give|provide|generate|produce|draft|compose|design|teach|explain|describe|outline|"
          r"list|build|offer|show|suggest|instruct|publish|post|share|tell|help|devise")
_ARTIFACTS = (r"tutorial|guide|instructions?|strategy|plan|script|program|code|website|(?:social media )?post|"
              r"article|blog post|letter|message|email|speech|manual|recipe|list|steps|process|procedure|"
              r"algorithm|app|bot|video|book|story|advice|ways?|methods?|techniques?|tips")
_HEAD = re.compile(
    rf"^\s*(?:can you |could you |please |i want you to |i need you to )*(?:{_VERBS})\b\s*"
    r"(?:me |us |children |kids |someone |people |users |others |a user )?"
    r"(?:(?:a|an|the|some|detailed|step-by-step|specific|clear|simple|complete|full)\s+)*"
    rf"(?:(?:{_ARTIFACTS})\b\s*)?"
    r"(?:(?:on|for|about|that|which|to|explaining|describing|detailing|showing|of|in)\s+)*"
    r"(?:how\s+(?:to|one\s+(?:can|could|would)|you\s+(?:can|could))\s+)?",
    re.I)
_INFINITIVE_LEAD = re.compile(r"^(?:how\s+)?to\s+", re.I)


def topic(prompt: str) -> tuple[Optional[str], bool]:
    """(the harmful prompt's topic without its imperative head, whether it reads after "to"); (None, False) when
    no head was found (the prompt is not a plain instruction, so no natural twin can be formed from it)."""
    text = " ".join(prompt.strip().split()).rstrip(".!?")
    m = _HEAD.match(text)
    if not m or not m.group(0).strip():
        return None, False
    head, rest = m.group(0).lower().split(), text[m.end():]
    infinitive = bool(head) and head[-1] == "to" or bool(_INFINITIVE_LEAD.match(rest))
    rest = _INFINITIVE_LEAD.sub("", rest).strip()
    if len(rest.split()) < 2 or len(rest) > 300:
        return None, False
    rest = rest[0].lower() + rest[1:]
    if infinitive:
        return rest, True
    if head[-1] in ("that", "which"):  # "a website that promotes …"
        return f"content that {rest}", False
    if not rest.split()[0].lower().endswith("ing") and rest.split()[0].lower() not in ("a", "an", "the", "some"):
        rest = f"{'an' if rest[0] in 'aeiou' else 'a'} {rest}"
    return rest, False


def twin(prompt: str, kind: str) -> Optional[str]:
    """One benign twin of a harmful prompt, or None when its topic cannot be read off."""
    if kind not in TWIN_TEMPLATES:
        raise ValueError(f"unknown twin kind '{kind}'; kinds: {', '.join(TWIN_KINDS)}")
    t, infinitive = topic(prompt)
    if t is None:
        return None
    return TWIN_TEMPLATES[kind][0 if infinitive else 1].replace("{t}", t)
