"""My settings: harm categories whose traces stay collapsed behind a content warning until clicked."""
from __future__ import annotations

import streamlit as st

from app.web.login import page_user
from app.web.state import engine
from core.errors import ConflictError
from curation.review import preferences, reading

user = page_user(__file__)
eng = engine()
st.title("My settings")
cur = preferences.get_settings(eng, user.id)
options = sorted(set(reading.harm_categories(eng)) | set(cur["blur_categories"]))
with st.form("settings"):
    chosen = st.multiselect("Hide traces in these harm categories behind a content warning", options,
                            default=cur["blur_categories"])
    if st.form_submit_button("Save"):
        try:
            preferences.save_settings(eng, user.id, chosen, cur["version"])
            st.success("Saved")
        except ConflictError as e:
            st.error(str(e))
