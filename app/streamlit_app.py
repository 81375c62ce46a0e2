"""Rational Studio web app: `streamlit run app/streamlit_app.py` (or `rational serve`).

This file is only the frame: page config and navigation. Each page is one file in app/pages/; adding a page is
one `st.Page(...)` line in PAGES. Shared state (the engine, the signed-in user) lives in app/ui_state.py.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

HERE = Path(__file__).parent


def page(file: str, title: str, icon: str, *, default: bool = False) -> StreamlitPage:
    return st.Page(str(HERE / "pages" / file), title=title, icon=icon, default=default)


# Sections → pages. Later areas add their pages here (review, queues, export/train, runs, compare, argilla).
PAGES: dict[str, list[StreamlitPage]] = {
    "Overview": [
        page("home.py", "Home", ":material/home:", default=True),
        page("jobs.py", "Jobs", ":material/pending_actions:"),
    ],
    "Prompts": [
        page("import_prompts.py", "Import", ":material/upload_file:"),
        page("prompts.py", "Prompts", ":material/list:"),
    ],
}

PAGES.setdefault("Prompts", []).append(page("generate.py", "Generate", ":material/psychology:"))  # issue 3
PAGES.setdefault("Review", []).append(page("argilla.py", "Argilla", ":material/cloud_sync:"))  # issue 7
PAGES.setdefault("Evaluation", []).append(page("eval.py", "Evaluate", ":material/fact_check:"))  # issue 6
PAGES.setdefault("Evaluation", []).append(page("compare.py", "Compare", ":material/compare:"))  # issue 6
PAGES.setdefault("Training", []).append(page("export_train.py", "Export & train", ":material/model_training:"))  # issue 5
PAGES.setdefault("Training", []).append(page("runs.py", "Runs", ":material/monitoring:"))  # issue 5

st.set_page_config(page_title="Rational Studio", page_icon=":material/shield:", layout="wide")
from app.login import pages_for  # noqa: E402  issue 4: sign-in first, then the pages this role may open
st.navigation(pages_for(PAGES, page)).run()
