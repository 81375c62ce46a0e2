"""Rational Studio web app: `streamlit run app/web/streamlit_app.py` (or `rational serve`).

This file is only the frame: page config, sign-in and the navigation this user's role may open. The menu is one
table in app/web/navigation.py; each view is one script in app/web/views/.
"""
from __future__ import annotations

import streamlit as st
from sqlalchemy.exc import OperationalError

from app.web.login import navigation_for_user
from app.web.plain import HIDE_TABLE_DOWNLOAD_CSS
from db.engine import busy

st.set_page_config(page_title="Rational Studio", page_icon=":material/shield:", layout="wide")
st.html(HIDE_TABLE_DOWNLOAD_CSS)
try:
    st.navigation(navigation_for_user(), expanded=True).run()
except OperationalError as e:
    if not busy(e):
        raise
    # SQLite allows one writer: a long write (a large import) makes others wait up to the busy timeout.
    st.warning("The database is busy with another write (a large import or export?). Nothing was lost: wait a "
               "few seconds and try again.", icon=":material/hourglass:")
    st.button("Try again")
