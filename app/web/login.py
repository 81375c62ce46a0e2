"""Login for every view: the sign-in form, the first-run admin form (only while no account exists), sign-out,
and the role check views start with. The rules themselves live in curation.auth and app.web.navigation."""
from __future__ import annotations

from typing import Any, Optional

import streamlit as st
import streamlit.components.v1 as components
from sqlalchemy.orm import Session
from streamlit.navigation.page import StreamlitPage

from app.web.navigation import VIEWS, View, menu, view_for
from app.web.plain import plain
from app.web.state import engine
from core.errors import LoginThrottled, PermissionDenied
from core.settings import get_settings
from curation.auth import authenticate, can, count_users, create_first_admin, throttle_client
from curation.sessions import COOKIE, TTL_S, end_session, session_user, start_session
from db.models import User


def signed_in_user() -> Optional[User]:
    """The signed-in user as the database has it now (deactivated accounts are signed out)."""
    uid = st.session_state.get("user_id")
    token = st.session_state.get("_session_token")
    if uid is None and not st.session_state.get("_no_cookie"):
        # A page reload starts a new Streamlit session; the session cookie set at sign-in carries the login over.
        token = _cookie()
        uid = session_user(engine(), token)
        if uid is not None:
            st.session_state["user_id"], st.session_state["_session_token"] = uid, token
    elif uid is not None and token is not None and session_user(engine(), token) != uid:
        uid = None  # signed out elsewhere, password changed, or expired: this tab is out too
    if uid is None:
        st.session_state.pop("user_id", None)
        st.session_state.pop("_session_token", None)
        return None
    with Session(engine(), expire_on_commit=False) as s:
        user = s.get(User, uid)
    if user is None or not user.is_active:
        st.session_state.pop("user_id", None)
        return None
    return user


def _cookie() -> Optional[str]:
    try:
        return st.context.cookies.get(COOKIE)
    except Exception:  # no browser request behind this run (AppTest, bare mode)
        return None


def _client() -> str:
    try:
        ip, headers = st.context.ip_address, dict(st.context.headers or {})
    except Exception:  # no browser request behind this run
        ip, headers = None, {}
    return throttle_client(ip, headers, trust_forwarded=get_settings().rational_trust_forwarded)


def _write_cookie(value: str, max_age: int) -> None:
    # Streamlit cannot set response headers, so the cookie cannot be HttpOnly: it is set from the component's
    # iframe (same origin). What protects it: the token is random and revocable on the server, SameSite=Strict,
    # and Secure whenever the app is served over https.
    url = st.context.url
    secure = "; Secure" if isinstance(url, str) and url.startswith("https:") else ""
    components.html(f"<script>window.parent.document.cookie = '{COOKIE}={value}; path=/; max-age={max_age}; "
                    f"SameSite=Strict{secure}';</script>", height=0, width=0)


def _signed_in(user_id: int) -> None:
    st.session_state.pop("_no_cookie", None)
    st.session_state["user_id"] = user_id
    st.session_state["_set_cookie"] = st.session_state["_session_token"] = start_session(engine(), user_id)
    st.rerun()


def login_gate(pages: Optional[Any] = None) -> User:
    """Return the signed-in user, or draw the sign-in (or first-run) form and stop the script. `pages`: the
    app's navigation, registered hidden so the URL the user asked for survives signing in."""
    user = signed_in_user()
    if user is not None:
        token = st.session_state.pop("_set_cookie", None)
        if token:
            _write_cookie(token, TTL_S)
        return user
    if pages is not None:
        st.navigation(pages, position="hidden")
    if st.session_state.pop("_clear_cookie", False):
        _write_cookie("", 0)
    eng = engine()
    st.title("Rational Studio")
    if count_users(eng) == 0:
        st.subheader("Create the first admin account")
        st.caption("This form exists only while the database has no account.")
        with st.form("first_admin"):
            name = st.text_input("Admin user name")
            pw = st.text_input("Password (8+ characters)", type="password")
            pw2 = st.text_input("Repeat password", type="password")
            if st.form_submit_button("Create admin"):
                if pw != pw2:
                    st.error("The passwords differ.")
                else:
                    try:
                        u = create_first_admin(eng, name, pw)
                    except (ValueError, PermissionDenied) as e:
                        st.error(plain(e))
                    else:
                        _signed_in(u.id)
        st.stop()
    st.subheader("Sign in")
    with st.form("login"):
        name = st.text_input("User name")
        pw = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in"):
            try:
                u = authenticate(eng, name, pw, client=_client())
            except LoginThrottled as e:
                st.error(f"Sign-in refused: {e}.")
                st.stop()
            if u is None:
                st.error("Unknown user name or wrong password.")
            else:
                _signed_in(u.id)
    st.stop()


def page_user(view_file: str) -> User:
    """Start of every view: the signed-in user, who must hold the right the menu table gives this view."""
    user = login_gate()
    if not can(user.role, view_for(view_file).action):
        st.error(f"Your role ({user.role}) does not allow this page.")
        st.stop()
    return user


def sign_out_button() -> None:
    user = signed_in_user()
    if user is None:
        return
    st.sidebar.text(f"Signed in as {user.username} ({user.role})")
    if st.sidebar.button("Sign out", key="sign_out"):
        end_session(engine(), st.session_state.get("_session_token") or _cookie())
        st.session_state.clear()
        st.session_state["_no_cookie"] = st.session_state["_clear_cookie"] = True
        st.rerun()


def _page(view: View) -> StreamlitPage:
    return st.Page(str(view.path), title=view.title, icon=view.icon, default=view.default)


def navigation_for_user() -> dict[str, list[StreamlitPage]]:
    """Sign-in first (every view registered hidden meanwhile, so the URL asked for survives signing in), then
    the sections and views this user's role may open."""
    login_gate({"": [_page(v) for v in VIEWS]})
    user = signed_in_user()
    sign_out_button()
    return {section: [_page(v) for v in views] for section, views in menu(user.role).items()}
