"""Rational Studio web app: `streamlit run app/web/streamlit_app.py` (or `rational serve`).

This file is only the frame: page config, sign-in and the navigation this user's role may open. The menu is one
table in app/web/navigation.py; each view is one script in app/web/views/.
"""
from __future__ import annotations

import streamlit as st

from app.web.login import navigation_for_user

st.set_page_config(page_title="Rational Studio", page_icon=":material/shield:", layout="wide")
st.navigation(navigation_for_user()).run()
