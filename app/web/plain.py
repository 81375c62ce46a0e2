"""Data shown where Streamlit renders Markdown (headings, expander labels, messages, captions): escaped, so that a
queue name or a harm category is only text. Unescaped, `![x](http://…)` makes the browser fetch a URL and `$…$`
runs KaTeX."""
from __future__ import annotations

import re
from typing import Any

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|<>$~:=^])")
_BLOCK_START = re.compile(r"^(\d+)([.)])|^([-+])")  # a list item when it starts the text


def plain(value: Any) -> str:
    """`value` as literal Markdown text on one line."""
    text = _SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", text)


# A cell starting with one of these runs as a formula when a spreadsheet opens the CSV (OWASP: CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: formula-like text gets a leading apostrophe."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def spreadsheet_csv(frame) -> bytes:
    """CSV bytes of a pandas frame for a download, every text cell neutralised."""
    return frame.map(spreadsheet_cell).to_csv(index=False).encode("utf-8")


# Streamlit's own "Download as CSV" on tables writes cells verbatim: hidden, pages offer spreadsheet_csv instead.
HIDE_TABLE_DOWNLOAD_CSS = ('<style>[data-testid="stElementToolbar"] button[aria-label="Download as CSV"]'
                           '{display: none !important;}</style>')
