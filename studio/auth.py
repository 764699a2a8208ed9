"""The Streamlit side of `mlestar_core.access`: this server's access settings, the viewer of this session, the
sign-in page, and the runs and upload folder that viewer may use.

app.py calls `require_viewer()` before `st.navigation(...)`, and so does every page, first thing. The pages live
in `app_pages/`, not `pages/`: Streamlit treats a `pages/` folder next to the entry script as a legacy multipage
app and runs a page file directly, without app.py, for a deep link that is a fresh server's first request. With
no such folder app.py always runs first; the pages' own call is a second lock for a page file run on its own
(`streamlit run app_pages/run.py`). Where app.py ran first, it only re-reads the session (cheap).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import streamlit as st

from mlestar_core import access
from mlestar_core.views.common import md_escape

from .resources import get_store, store_root

USER = "access.user"  # password mode: the signed-in user id. Not a widget key, so no browser can set it.
FORM = "access.sign_in"
NAME = "access.sign_in.name"
PASSWORD = "access.sign_in.password"
SUBMIT = "access.sign_in.submit"
PROVIDER = "access.sign_in.provider."  # + provider name ("default" for [auth] itself)
SIGN_OUT = "access.sign_out"
FAILED_SIGN_IN_DELAY = 1.0  # seconds a wrong password costs: slows guessing (each try waits, per session)


def _secrets() -> dict[str, Any]:
    try:
        return st.secrets.to_dict()
    except FileNotFoundError:  # no secrets.toml (or an unreadable one): nothing configured, so exposed = closed
        return {}


def _authlib_installed() -> bool:
    return importlib.util.find_spec("authlib") is not None


def settings() -> access.AccessSettings:
    """This server's access settings, from its `server.address` and secrets (re-read on every call, so an edit
    of secrets.toml applies without a restart)."""
    cfg = access.access_settings(st.get_option("server.address"), _secrets())
    if cfg.mode == "oidc" and not _authlib_installed():
        # st.login would raise on the first click; say so to the admin up front instead.
        return dataclasses.replace(cfg, mode="closed", problems=(
            *cfg.problems, "[auth] is configured but Authlib is not installed: pip install 'Authlib>=1.3.2'"))
    return cfg


def current_viewer() -> access.Viewer | None:
    """Who this session is: LOCAL when the server is not exposed, the signed-in user, or None (not signed in)."""
    cfg = settings()
    if cfg.mode == "local":
        return access.LOCAL
    user_id: str | None = None
    if cfg.mode == "oidc":
        # st.user.to_dict(), not st.user.is_logged_in: the attribute is missing (AttributeError) whenever
        # Streamlit does not see the [auth] section itself, and a missing flag must read as "not signed in".
        user_id = access.oidc_user_id(st.user.to_dict())
    elif cfg.mode == "password":
        candidate = st.session_state.get(USER)
        user_id = candidate if access.still_valid(cfg, candidate) else None
    return access.Viewer(user_id, show_unowned=cfg.show_unowned) if user_id else None


def viewer() -> access.Viewer:
    """The session's viewer for run filtering; NOBODY (sees nothing) when nobody is signed in."""
    return current_viewer() or access.NOBODY


def require_viewer() -> access.Viewer:
    """The session's viewer, or the sign-in page (or the refusal page) and st.stop(): nothing else renders."""
    found = current_viewer()
    if found is None:
        sign_in_page()
        st.stop()
    return found  # type: ignore[return-value]  # st.stop() does not return


# -- pages -----------------------------------------------------------------------------------


def sign_in_page() -> None:
    cfg = settings()
    st.title("MLE-STAR Studio")
    if cfg.mode == "closed":
        _closed(cfg)
    elif cfg.mode == "oidc":
        _oidc(cfg)
    else:
        _password_form(cfg)


def _closed(cfg: access.AccessSettings) -> None:
    st.error("This server can be reached from other machines, but no sign-in is configured, so it serves "
             "nothing.", icon=":material/lock:")
    st.markdown(
        "The administrator can either:\n\n"
        "- configure a sign-in in `.streamlit/secrets.toml`: an OpenID Connect provider in `[auth]` "
        "(`st.login`), or a password in `[access]` (`password = \"...\"`, or one per user in `[access.users]`);\n"
        "- or serve this machine only: `server.address = \"127.0.0.1\"` in `.streamlit/config.toml`.\n\n"
        "See `docs/access.md`.")
    for problem in cfg.problems:
        st.caption(f"Configuration: {problem}")


def _oidc(cfg: access.AccessSettings) -> None:
    if st.user.to_dict().get("is_logged_in") is True:  # signed in, but the provider gave nothing usable as an id
        st.error("Your identity provider sent neither a verified e-mail address nor a subject id, so this app "
                 "cannot tell whose runs are yours. Sign out and use another account.", icon=":material/error:")
        if st.button("Sign out", key=SIGN_OUT):
            st.logout()
        return
    st.info("This server is shared: sign in to see and start your runs.", icon=":material/lock:")
    for provider in cfg.providers:
        label = f"Sign in with {provider.title()}" if provider else "Sign in"
        if st.button(label, key=PROVIDER + (provider or "default"), type="primary", icon=":material/login:"):
            st.login(provider)


def _password_form(cfg: access.AccessSettings) -> None:
    st.info("This server is shared: sign in to see and start your runs.", icon=":material/lock:")
    with st.form(FORM, clear_on_submit=True):  # cleared: the typed password does not stay in the session
        name = ""
        if cfg.users:
            name = st.text_input("User name", key=NAME, help="Leave empty to use the shared password."
                                 if cfg.shared_password else None)
        password = st.text_input("Password", type="password", key=PASSWORD)
        submitted = st.form_submit_button("Sign in", key=SUBMIT, type="primary", icon=":material/login:")
    if not submitted:
        return
    user_id = access.check_login(cfg, name, password)
    if user_id is not None:
        st.session_state[USER] = user_id
        st.rerun()
    time.sleep(FAILED_SIGN_IN_DELAY)
    st.error("Wrong user name or password." if cfg.users else "Wrong password.", icon=":material/error:")


def account_box(who: access.Viewer) -> None:
    """The sidebar's "Signed in as … / Sign out" (nothing in local mode)."""
    if who.local or not who.user_id:
        return
    st.caption(f"Signed in as **{md_escape(who.user_id)}**")
    if st.button("Sign out", key=SIGN_OUT, icon=":material/logout:"):
        if settings().mode == "oidc":
            st.logout()
        else:
            st.session_state.pop(USER, None)
            st.rerun()


# -- what the viewer may use -----------------------------------------------------------------


def visible_runs() -> list[dict[str, Any]]:
    """The store's runs this session may see, newest first."""
    return access.visible(viewer(), get_store().list_runs())


def visible_run(run_id: str | None) -> dict[str, Any] | None:
    """The run's row if this session may see it, else None: another user's run looks exactly like no run."""
    run = get_store().get_run(run_id) if run_id else None
    return run if access.can_see(viewer(), run) else None


def upload_root() -> Path:
    """Where this session's uploads go (see access.data_root and access.upload_root)."""
    return access.upload_root(access.data_root(store_root(), os.environ, _secrets()), viewer())
