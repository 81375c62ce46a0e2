"""Decision buttons in the colours people read them by: approve green, reject outlined in red. Streamlit draws
every primary button in its one theme colour (red by default), which made Approve look like a warning."""
from __future__ import annotations

import streamlit as st


def decision_colours(approve: tuple[str, ...], reject: tuple[str, ...]) -> None:
    """Colour the buttons with these widget keys (Streamlit gives each keyed widget the class st-key-<key>)."""
    go = ", ".join(f".st-key-{k} button" for k in approve)
    go_hover = ", ".join(f".st-key-{k} button:hover" for k in approve)
    stop = ", ".join(f".st-key-{k} button" for k in reject)
    st.html(f"<style>{go} {{background:#1b7f3b; border-color:#1b7f3b; color:#fff;}} "
            f"{go_hover} {{background:#166a31; border-color:#166a31; color:#fff;}} "
            f"{stop} {{color:#b3261e; border-color:#b3261e;}}</style>")


def compact_top() -> None:
    """Less empty space above the page's first row, for pages that must fit one item on one screen."""
    st.html('<style>[data-testid="stMainBlockContainer"] {padding-top: 2.5rem;}</style>')
