"""A trace's texts as every review page shows them: model text as plain text (never Markdown or HTML) in a bounded,
scrollable box, so a long trace never pushes the page's actions off screen; and its facts as one escaped line."""
from __future__ import annotations

from typing import Any, Optional

import streamlit as st

from app.web.plain import plain


def text_box(text: str, height: int, *, title: Optional[str] = None, key: Optional[str] = None) -> None:
    if title:
        st.markdown(f"**{title}**")
    with st.container(height=height, key=key):
        st.text(text)


def facts_line(item: dict[str, Any], *fields: str) -> None:
    """"set: x · expected: refuse · …" under a trace's heading (values escaped; empty ones as none/—)."""
    names = {"expected_behavior": "expected"}
    parts = [f"{names.get(f, f)}: {item.get(f) or ('none' if f == 'mutation' else '—')}" for f in fields]
    st.caption(" · ".join(plain(p) for p in parts))
