"""My settings: harm categories whose traces stay collapsed behind a content warning until clicked."""
from __future__ import annotations

import streamlit as st

from app.login import page_user
from app.ui_state import engine
from curation import review as rv
from curation.review import ConflictError

user = page_user("own_settings")
eng = engine()
st.title("My settings")
cur = rv.get_settings(eng, user.id)
options = sorted(set(rv.harm_categories(eng)) | set(cur["blur_categories"]))
with st.form("settings"):
    chosen = st.multiselect("Hide traces in these harm categories behind a content warning", options,
                            default=cur["blur_categories"])
    if st.form_submit_button("Save"):
        try:
            rv.save_settings(eng, user.id, chosen, cur["version"])
            st.success("Saved")
        except ConflictError as e:
            st.error(str(e))
