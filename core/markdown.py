"""Data inside Markdown: the web app's headings, labels and messages, the loop report, dataset cards. Escaped, so
that a name, a harm category or a model's reply is only text: unescaped, `![x](http://…)` makes a browser fetch a
URL, `$…$` runs KaTeX, `:red[…]` colours, and `|` splits a table cell."""
from __future__ import annotations

import re
from typing import Any

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|<>$~:=^&])")
_BLOCK_START = re.compile(r"^(\d+)([.)])|^([-+])")  # a list item when it starts the text
# GitHub-flavoured Markdown links bare URLs ("http://", "https://", "www.") and e-mail addresses in the text it
# has parsed, after escapes are resolved, so no escape stops it: an invisible word joiner (U+2060) inside each
# pattern does.
_AUTOLINK = re.compile(r"(?i)\bwww(?=\.)|\b(?:https?|ftp):(?=//)|@")
JOINER = "\u2060"


def literal(value: Any) -> str:
    """`value` as literal Markdown text on one line (line breaks flattened, so a table cell stays one cell)."""
    text = _SPECIAL.sub(r"\\\1", _AUTOLINK.sub(lambda m: m[0] + JOINER, " ".join(str(value).split())))
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", text)


def code_span(value: Any) -> str:
    """`value` as an inline code span whose fence is longer than any run of backticks inside it."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
