"""Prompts: server-side filters and pagination (one page of rows is loaded, never the whole table)."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app.web.login import page_user
from app.web.plain import spreadsheet_csv
from app.web.state import engine
from core.vocabulary import BEHAVIORS, SPLITS
from db.crud import count_prompts, list_prompts, list_sets
from db.filters import PromptFilter

PAGE_SIZES = (25, 50, 100, 200)
COLUMNS = ["id", "set", "expected_behavior", "split", "category", "source_id", "mutation", "text"]

user = page_user(__file__)
eng = engine()
st.title("Prompts")

f1, f2, f3 = st.columns([2, 1, 1])
sets = f1.multiselect("Sets", [s["name"] for s in list_sets(eng)], key="pr_sets")
behaviors = f2.multiselect("Expected behaviour", BEHAVIORS, key="pr_behaviors")
splits = f3.multiselect("Split", SPLITS, key="pr_splits")
s1, s2 = st.columns([3, 1])
search = s1.text_input("Search text or source id", key="pr_search").strip()
page_size = s2.selectbox("Rows per page", PAGE_SIZES, index=1, key="pr_page_size")

flt = PromptFilter(set_names=sets or None, behaviors=behaviors or None, splits=splits or None, search=search or None)
# A changed filter starts again at page 1.
signature = (tuple(sets), tuple(behaviors), tuple(splits), search, page_size)
if st.session_state.get("pr_signature") != signature:
    st.session_state["pr_signature"] = signature
    st.session_state["pr_page"] = 1

total = count_prompts(eng, flt)
pages = max(1, math.ceil(total / page_size))
st.session_state["pr_page"] = min(st.session_state.get("pr_page", 1), pages)
p1, p2 = st.columns([1, 4])
page = p1.number_input("Page", min_value=1, max_value=pages, step=1, key="pr_page")
rows = list_prompts(eng, flt, limit=page_size, offset=(page - 1) * page_size)
first = (page - 1) * page_size + 1 if rows else 0
p2.caption(f"{total:,} prompts match · showing {first:,}–{first + len(rows) - 1 if rows else 0:,} · "
           f"page {page} of {pages}")

frame = pd.DataFrame(rows, columns=COLUMNS)
st.download_button("Download this page as CSV", spreadsheet_csv(frame), f"prompts_page_{page}.csv", "text/csv",
                   help="Cells that a spreadsheet would run as formulas (=, +, -, @) are prefixed with '")
st.dataframe(frame, hide_index=True, width="stretch", height=600,
             column_config={"id": st.column_config.NumberColumn("id", format="%d"),
                            "text": st.column_config.TextColumn("text", width="large"),
                            "expected_behavior": st.column_config.TextColumn("behaviour")})
