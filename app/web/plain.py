"""Data shown where Streamlit renders Markdown (headings, expander labels, messages, captions) goes through `plain`
(core.markdown.literal); data bound for a spreadsheet through `spreadsheet_csv`."""
from __future__ import annotations

from typing import Any

from core.markdown import literal as plain  # noqa: F401  (the web app's name for it)

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
