"""Users (admins): accounts and roles, and items seen per user per day."""
from __future__ import annotations

import streamlit as st

from app.web.login import page_user
from app.web.plain import plain
from app.web.state import engine
from core.vocabulary import ROLES
from curation import auth
from curation.auth import list_users
from curation.review.reading import activity

user = page_user(__file__)
eng = engine()
st.title("Users")
with st.form("add_user", clear_on_submit=True):
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("User name")
    pw = c2.text_input("Password", type="password")
    role = c3.selectbox("Role", list(ROLES), index=2)
    if st.form_submit_button("Add user"):
        try:
            auth.add_user(eng, user.id, name, pw, role)
            st.success(f"'{plain(name)}' added as {role}")
        except (ValueError, auth.PermissionDenied) as e:
            st.error(plain(e))
for u in list_users(eng):
    c1, c2, c3 = st.columns([2, 2, 1])
    c1.text(f"{u.username} ({'active' if u.is_active else 'deactivated'})")
    new_role = c2.selectbox("Role", list(ROLES), index=ROLES.index(u.role), key=f"role_{u.id}",
                            label_visibility="collapsed")
    if new_role != u.role or c3.button("Deactivate" if u.is_active else "Activate", key=f"act_{u.id}"):
        try:
            auth.update_user(eng, user.id, u.id, role=new_role,
                             is_active=u.is_active if new_role != u.role else not u.is_active)
            st.rerun()
        except (ValueError, auth.PermissionDenied) as e:
            st.error(plain(e))
with st.expander("Reset a password or link an Argilla account"):
    with st.form("reset_user", clear_on_submit=True):
        people = {u.id: u.username for u in list_users(eng)}
        target = st.selectbox("User", list(people), format_func=people.get)
        new_pw = st.text_input("New password (leave empty to keep)", type="password")
        argilla = st.text_input("Argilla user name whose responses are this user's (leave empty to keep)")
        if st.form_submit_button("Apply"):
            try:
                if new_pw:
                    auth.change_password(eng, user.id, target, new_pw)
                if argilla.strip():
                    auth.update_user(eng, user.id, target, argilla_username=argilla.strip())
                st.success("Saved. A new password ends every session of that user.")
            except (ValueError, auth.PermissionDenied) as e:
                st.error(plain(e))
st.subheader("Items seen per day")
st.dataframe(activity(eng, user.id), hide_index=True)
