"""My settings: harm categories whose traces stay collapsed behind a content warning until clicked; my password."""
from __future__ import annotations

import streamlit as st

from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.errors import ConflictError, PermissionDenied
from curation import auth
from curation.review import preferences, reading

user = page_user(__file__)
eng = engine()
st.title("My settings")
cur = preferences.get_settings(eng, user.id)
options = sorted(set(reading.harm_categories(eng)) | set(cur["blur_categories"]))
if cur.get("defaults"):
    st.caption("These are the defaults (self-harm, suicide, sexual and child-related categories start hidden); "
               "saving makes them your choice.")
with st.form("settings"):
    chosen = st.multiselect("Hide traces in these harm categories behind a content warning", options,
                            default=cur["blur_categories"])
    if st.form_submit_button("Save"):
        try:
            preferences.save_settings(eng, user.id, chosen, cur["version"])
            st.success("Saved")
        except ConflictError as e:
            st.error(plain(e))

st.subheader("Password")
with st.form("password", clear_on_submit=True):
    current = st.text_input("Current password", type="password")
    new = st.text_input("New password (8+ characters)", type="password")
    again = st.text_input("Repeat the new password", type="password")
    if st.form_submit_button("Change password"):
        if new != again:
            st.error("The new passwords differ.")
        else:
            try:
                auth.change_password(eng, user.id, user.id, new, current_password=current)
            except (ValueError, PermissionDenied) as e:
                st.error(plain(e))
            else:
                st.success("Password changed. Every session of yours has ended: sign in again.")
