"""Access when the app is exposed: mlestar_core.access (unit tests), and the app through AppTest — a non-loopback
`server.address` shows only the sign-in form until the right password is given, every page file refuses to render
without a sign-in, and two users each see only their own runs.

AppTest reads `server.address` from .streamlit/config.toml (127.0.0.1, local mode); the `exposed` fixture sets it
to 0.0.0.0 for one test and puts it back.
"""

from __future__ import annotations

import ast
import io
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from mlestar_core import access
from mlestar_core.access import LOCAL, NOBODY, SHARED_USER, UnsafePathError, Viewer
from mlestar_core.config import RunConfig
from mlestar_core.model import Task, TaskError
from mlestar_core.pipeline import create_run
from mlestar_core.service import RunManager
from mlestar_core.store import Store
from mlestar_core.uploads import UploadedFile, demo_config, load_uploaded_task, save_csv_upload, save_zip_upload
from studio import auth, state
from studio.state import HistoryKeys, HomeKeys
from studio.state import NewRunKeys as K

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
BREAST = ROOT / "demo_tasks" / "breast-cancer"
PAGES = sorted(str(p) for p in (ROOT / "app_pages").glob("*.py"))
TIMEOUT = 60
USERS = {"alice": "alice-pw", "bob": access.hash_password("bob-pw")}
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
CSV = b"id,x,y\n" + b"".join(f"{i},{i % 7},{i % 2}\n".encode() for i in range(40))
TEST_CSV = b"id,x\n" + b"".join(f"{i},{i % 7}\n".encode() for i in range(40, 50))


# ----------------------------------------------------------------------------------------------
# Unit tests: exposure and settings
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [None, "", "  ", "0.0.0.0", "::", "192.168.1.5", "10.0.0.2", "example.com",
                                     "my-laptop", "unix:///tmp/streamlit.sock"])
def test_exposed_addresses(address: str | None) -> None:
    assert access.is_exposed(address)


@pytest.mark.parametrize("address", ["localhost", " LOCALHOST ", "127.0.0.1", "127.0.1.1", "::1", "[::1]"])
def test_loopback_addresses(address: str) -> None:
    assert not access.is_exposed(address)


def test_local_mode_ignores_secrets_unless_login_is_required() -> None:
    secrets = {"access": {"password": "pw"}}
    assert access.access_settings("127.0.0.1", secrets).mode == "local"
    assert not access.access_settings("127.0.0.1", secrets).exposed
    # Behind a reverse proxy on the same machine the app is public although Streamlit listens on loopback.
    required = access.access_settings("127.0.0.1", {"access": {"password": "pw", "require_login": True}})
    assert required.mode == "password" and required.exposed


def test_oidc_wins_and_lists_its_providers() -> None:
    auth_section = {"redirect_uri": "https://x/oauth2callback", "cookie_secret": "s" * 32, "client_id": "id",
                    "client_secret": "c", "server_metadata_url": "https://idp/.well-known/openid-configuration"}
    cfg = access.access_settings("0.0.0.0", {"auth": auth_section, "access": {"password": "pw"}})
    assert cfg.mode == "oidc" and cfg.providers == (None,)
    named = {"redirect_uri": "https://x/oauth2callback", "cookie_secret": "s" * 32,
             "google": {"client_id": "g"}, "microsoft": {"client_id": "m"}}
    assert access.access_settings("0.0.0.0", {"auth": named}).providers == ("google", "microsoft")


def test_oidc_without_redirect_uri_or_cookie_secret_is_closed() -> None:
    cfg = access.access_settings("0.0.0.0", {"auth": {"client_id": "id"}})
    assert cfg.mode == "closed"
    assert "redirect_uri" in cfg.problems[0] and "cookie_secret" in cfg.problems[0]


def test_password_settings() -> None:
    cfg = access.access_settings("0.0.0.0", {"access": {"password": "shared-pw", "users": USERS,
                                                        "show_unowned": True}})
    assert cfg.mode == "password" and cfg.shared_password == "shared-pw" and set(cfg.users) == {"alice", "bob"}
    assert cfg.show_unowned and not cfg.problems


def test_unusable_passwords_are_ignored_without_naming_the_user() -> None:
    users = {"carol": "", "dave": "sha256:abc", "shared": "x", "erin": "ok-pw"}
    cfg = access.access_settings("0.0.0.0", {"access": {"users": users}})
    assert cfg.mode == "password" and list(cfg.users) == ["erin"]
    assert "3 entries" in cfg.problems[0]
    assert not any(name in " ".join(cfg.problems) for name in ("carol", "dave", "erin"))


@pytest.mark.parametrize("secrets", [{}, {"access": {}}, {"access": {"password": ""}},
                                     {"access": {"users": {"alice": ""}}}, {"access": {"users": "alice=pw"}},
                                     {"access": {"show_unowned": True}}])
def test_exposed_without_a_usable_sign_in_is_closed(secrets: dict[str, Any]) -> None:
    assert access.access_settings("0.0.0.0", secrets).mode == "closed"
    assert access.access_settings(None, secrets).mode == "closed"  # unset address = every interface


# ----------------------------------------------------------------------------------------------
# Unit tests: passwords and identities
# ----------------------------------------------------------------------------------------------


def test_verify_password() -> None:
    assert access.verify_password("pw", "pw")
    assert not access.verify_password("pw", "pw ")
    assert not access.verify_password("pw", "")
    hashed = access.hash_password("s3cret")
    assert hashed.startswith("sha256:") and len(hashed) == 7 + 64
    assert access.verify_password(hashed, "s3cret")
    assert access.verify_password("sha256:" + hashed[7:].upper(), "s3cret")  # hex digits in either case
    assert not access.verify_password(hashed, "S3cret")
    assert not access.verify_password(hashed, hashed)  # the hash itself is not the password


def test_check_login() -> None:
    cfg = access.access_settings("0.0.0.0", {"access": {"users": USERS, "password": "team-pw"}})
    assert access.check_login(cfg, "alice", "alice-pw") == "alice"
    assert access.check_login(cfg, " bob ", "bob-pw") == "bob"
    assert access.check_login(cfg, "alice", "bob-pw") is None
    assert access.check_login(cfg, "mallory", "alice-pw") is None
    assert access.check_login(cfg, "", "team-pw") == SHARED_USER
    assert access.check_login(cfg, "", "alice-pw") is None
    only_users = access.access_settings("0.0.0.0", {"access": {"users": USERS}})
    assert access.check_login(only_users, "", "alice-pw") is None  # no shared password: a name is needed


def test_a_removed_user_is_signed_out() -> None:
    cfg = access.access_settings("0.0.0.0", {"access": {"users": USERS}})
    assert access.still_valid(cfg, "alice")
    assert not access.still_valid(cfg, "carol")
    assert not access.still_valid(cfg, SHARED_USER)  # no shared password configured
    assert not access.still_valid(access.access_settings("127.0.0.1", {}), "alice")


def test_oidc_user_id() -> None:
    assert access.oidc_user_id({"email": "a@x.org"}) is None  # not signed in
    assert access.oidc_user_id({"is_logged_in": False, "email": "a@x.org"}) is None
    assert access.oidc_user_id({"is_logged_in": True, "email": " Alice@X.org ", "sub": "1"}) == "alice@x.org"
    assert access.oidc_user_id({"is_logged_in": True, "email": "a@x.org", "email_verified": False,
                                "sub": "google-123"}) == "google-123"
    assert access.oidc_user_id({"is_logged_in": True, "sub": "google-123"}) == "google-123"
    assert access.oidc_user_id({"is_logged_in": True}) is None


# ----------------------------------------------------------------------------------------------
# Unit tests: who sees which run
# ----------------------------------------------------------------------------------------------


def test_can_see() -> None:
    alice, bob, unowned = {"owner": "alice"}, {"owner": "bob"}, {"owner": None}
    assert all(access.can_see(LOCAL, r) for r in (alice, bob, unowned))
    assert not any(access.can_see(NOBODY, r) for r in (alice, bob, unowned))
    as_alice = Viewer("alice")
    assert access.can_see(as_alice, alice)
    assert not access.can_see(as_alice, bob)
    assert not access.can_see(as_alice, unowned)
    assert access.can_see(Viewer("alice", show_unowned=True), unowned)
    assert not access.can_see(Viewer("alice", show_unowned=True), bob)
    assert not access.can_see(LOCAL, None)
    assert access.visible(as_alice, [alice, bob, unowned, alice]) == [alice, alice]


def test_owner_of_a_new_run() -> None:
    assert LOCAL.owner is None  # local runs look like the CLI's
    assert Viewer("alice").owner == "alice"


# ----------------------------------------------------------------------------------------------
# Unit tests: paths
# ----------------------------------------------------------------------------------------------


def test_safe_join_keeps_names_inside(tmp_path: Path) -> None:
    assert access.safe_join(tmp_path, "a.csv") == tmp_path.resolve() / "a.csv"
    assert access.safe_join(tmp_path, "users", "alice", "x.csv") == tmp_path.resolve() / "users" / "alice" / "x.csv"
    assert access.safe_join(tmp_path, "a/../b.csv") == tmp_path.resolve() / "b.csv"


@pytest.mark.parametrize("name", ["../x.csv", "a/../../x.csv", "/etc/passwd", "C:\\x.csv", "C:x.csv", "", " ", ".",
                                  "a/..", "x\x00.csv", ".."])
def test_safe_join_refuses_names_that_leave(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError):
        access.safe_join(tmp_path / "base", name)


def test_safe_join_refuses_a_symlink_out(tmp_path: Path) -> None:
    base, outside = tmp_path / "base", tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (base / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside"):
        access.safe_join(base, "link", "x.csv")


def test_user_folders(tmp_path: Path) -> None:
    names = {access.user_dir_name(u) for u in ("a b", "a-b", "A-B", "../../etc", "alice@example.com")}
    assert len(names) == 5 and not any("/" in n or n.startswith(".") for n in names)
    root = tmp_path / "data"
    assert access.upload_root(root, LOCAL) == root.resolve()
    mallory = access.upload_root(root, Viewer("../../etc"))
    assert root.resolve() / "users" in mallory.parents
    assert access.upload_root(root, Viewer("alice")) != access.upload_root(root, Viewer("bob"))
    with pytest.raises(UnsafePathError):
        access.upload_root(root, NOBODY)


def test_data_root(tmp_path: Path) -> None:
    store, env_dir, secret_dir = tmp_path / "store", tmp_path / "env", tmp_path / "secret"
    assert access.data_root(store, {}, {}) == store.resolve()
    assert access.data_root(store, {}, {"storage": {"data_dir": str(secret_dir)}}) == secret_dir.resolve()
    assert access.data_root(store, {"MLESTAR_DATA_DIR": str(env_dir)},
                            {"storage": {"data_dir": str(secret_dir)}}) == env_dir.resolve()


def test_uploaded_file_names_never_become_paths(tmp_path: Path) -> None:
    root = tmp_path / "data" / "users" / "alice"
    folder = save_csv_upload(root, UploadedFile("../../../evil.csv", CSV),
                             UploadedFile("/etc/passwd.csv", TEST_CSV))
    assert root.resolve() in folder.parents
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["test.csv", "train.csv"]
    assert not list(tmp_path.rglob("evil.csv")) and not list(tmp_path.rglob("passwd.csv"))


def test_a_zip_member_that_leaves_its_folder_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("train.csv", CSV)
        zf.writestr("../../escaped.csv", CSV)
    with pytest.raises(TaskError, match="leaves the folder"):
        save_zip_upload(tmp_path / "data", UploadedFile("task.zip", buf.getvalue()))
    assert not list(tmp_path.rglob("escaped.csv"))


def test_a_fork_belongs_to_whoever_forks_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "store")
    task = load_uploaded_task(BREAST)
    parent = create_run(store, task, demo_config(), owner="alice")
    script_id = store.add_script(parent, "initial", "print('hi')")
    manager = RunManager(store)
    monkeypatch.setattr(manager, "_launch", lambda run_id: None)  # the owner is what is tested, not the run
    assert store.get_run(manager.fork(parent, script_id))["owner"] == "alice"
    assert store.get_run(manager.fork(parent, script_id, owner="bob"))["owner"] == "bob"


# ----------------------------------------------------------------------------------------------
# The app (AppTest)
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    root = tmp_path / "store"
    monkeypatch.setenv("MLESTAR_HOME", str(root))
    monkeypatch.delenv("MLESTAR_DATA_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", ["streamlit"])  # no --demo
    return Store(root)


@pytest.fixture
def exposed() -> Iterator[None]:
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    try:
        yield
    finally:
        st_config.set_option("server.address", before)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """RunManager.start registers the run (with its owner) without running it; returns the owners it got."""
    owners: list[str | None] = []

    def fake_start(self: RunManager, task: Task, config: RunConfig, *, name: str | None = None,
                   out_dir: Path | None = None, api_key: str | None = None, owner: str | None = None) -> str:
        owners.append(owner)
        return create_run(self.store, task, config, name=name, out_dir=out_dir, owner=owner)

    monkeypatch.setattr(RunManager, "start", fake_start)
    return owners


def make_run(store: Store, name: str, owner: str | None, status: str = "finished") -> str:
    task = load_uploaded_task(BREAST, name=name)
    run_id = store.create_run(name, task, demo_config(), "offline", task_dir=str(task.data_dir), owner=owner)
    store.update_run(run_id, status=status, best_score=0.9, holdout_score=0.9, time_used=10.0)
    return run_id


def page_text(at: AppTest) -> str:
    """Everything a user can read on the page: text elements, tables, selectbox options."""
    parts = [str(e.value) for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                                       "error", "success") for e in getattr(at, kind)]
    parts += [df.value.to_string() for df in at.dataframe]
    parts += [str(o) for box in at.selectbox for o in box.options]
    return "\n".join(parts)


def app(secrets: dict[str, Any], query: dict[str, str] | None = None, script: str = APP) -> AppTest:
    at = AppTest.from_file(script, default_timeout=TIMEOUT)
    at.secrets.update(secrets)
    at.query_params.update(query or {})
    return at.run()


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    if name:
        at.text_input(key=auth.NAME).set_value(name)
    at.text_input(key=auth.PASSWORD).set_value(password)
    at.button(key=auth.SUBMIT).click().run()
    assert not at.exception, at.exception
    return at


def shows_only_sign_in(at: AppTest) -> bool:
    return [t.value for t in at.title] == ["MLE-STAR Studio"] and not at.dataframe and not at.selectbox


PASSWORD_SECRETS = {"access": {"users": USERS}}


def test_local_mode_has_no_sign_in_and_shows_every_run(store: Store) -> None:
    assert not access.is_exposed(st_config.get_option("server.address"))  # .streamlit/config.toml: 127.0.0.1
    runs = [make_run(store, "alices-run", "alice"), make_run(store, "cli-run", None)]
    at = app(PASSWORD_SECRETS)  # secrets do not matter on loopback
    assert not at.exception, at.exception
    assert not [t for t in at.text_input if t.key == auth.PASSWORD]
    text = page_text(at)
    assert all(r in text for r in runs) and "alices-run" in text and "cli-run" in text


def test_exposed_without_sign_in_configured_serves_nothing(store: Store, exposed: None) -> None:
    make_run(store, "secret-run", "alice")
    at = app({})
    assert not at.exception, at.exception
    assert "no sign-in is configured, so it serves nothing" in page_text(at)
    assert "secret-run" not in page_text(at) and not at.text_input and not at.button


def test_password_gate(store: Store, exposed: None) -> None:
    run_id = make_run(store, "alices-run", "alice")
    at = app(PASSWORD_SECRETS)
    assert shows_only_sign_in(at)
    assert {t.key for t in at.text_input} == {auth.NAME, auth.PASSWORD}
    assert run_id not in page_text(at) and "alices-run" not in page_text(at)

    sign_in(at, "alice", "bob-pw")  # another user's password
    assert "Wrong user name or password." in page_text(at)
    assert shows_only_sign_in(at) and "alices-run" not in page_text(at)
    sign_in(at, "mallory", "alice-pw")
    assert shows_only_sign_in(at) and "Wrong user name or password." in page_text(at)

    sign_in(at, "alice", "alice-pw")
    assert not [t for t in at.text_input if t.key == auth.PASSWORD]
    assert run_id in page_text(at) and "alices-run" in page_text(at)
    assert at.session_state[auth.USER] == "alice"


def _signed_in_area() -> None:
    import streamlit as st

    from studio import auth

    who = auth.require_viewer()
    auth.account_box(who)  # app.py puts it in the sidebar; AppTest draws app.py's sidebar on a session's first run only
    st.markdown(f"content for {who.user_id}")


def test_sign_out(store: Store, exposed: None) -> None:
    at = AppTest.from_function(_signed_in_area, default_timeout=TIMEOUT)
    at.secrets.update(PASSWORD_SECRETS)
    at.run()
    assert "content for" not in page_text(at)
    sign_in(at, "bob", "bob-pw")
    assert "content for bob" in page_text(at) and "Signed in as **bob**" in page_text(at)
    at.button(key=auth.SIGN_OUT).click().run()
    assert "content for" not in page_text(at) and [t.key for t in at.text_input] == [auth.NAME, auth.PASSWORD]
    assert auth.USER not in at.session_state


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_every_page_file_refuses_to_render_without_a_sign_in(store: Store, exposed: None, page: str) -> None:
    """A page file run on its own, without app.py (`streamlit run app_pages/x.py`), still guards itself."""
    make_run(store, "alices-run", "alice")
    at = app(PASSWORD_SECRETS, {state.QUERY_RUN: make_run(store, "bobs-run", "bob")}, script=page)
    assert not at.exception, at.exception
    assert shows_only_sign_in(at), page_text(at)
    assert "alices-run" not in page_text(at) and "bobs-run" not in page_text(at)
    assert [t.key for t in at.text_input if t.key == auth.PASSWORD]


def test_every_page_calls_the_guard_before_drawing_anything() -> None:
    """Statically: the guard comes before the first module-level statement that touches `st`."""
    for page in PAGES:
        body = [s for s in ast.parse(Path(page).read_text()).body
                if not isinstance(s, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
        guard = next((i for i, s in enumerate(body) if "require_viewer()" in ast.unparse(s)), None)
        assert guard is not None, f"{page} does not call require_viewer()"
        uses_st = [ast.unparse(s) for s in body[:guard]
                   if any(isinstance(n, ast.Name) and n.id == "st" for n in ast.walk(s))]
        assert not uses_st, (page, uses_st)


def test_two_users_see_only_their_own_runs(store: Store, exposed: None) -> None:
    alice_runs = [make_run(store, "alice-one", "alice"), make_run(store, "alice-two", "alice")]
    bob_run = make_run(store, "bob-one", "bob", status="waiting")
    store.request_decision(bob_run, "t0/o0/i0", "model", "use more trees", "model = X()")
    unowned = make_run(store, "cli-run", None)

    at = sign_in(app(PASSWORD_SECRETS), "alice", "alice-pw")
    home = page_text(at)
    assert all(r in home for r in alice_runs)
    assert bob_run not in home and "bob-one" not in home and unowned not in home
    assert "waiting for your approval" not in "\n".join(str(w.value) for w in at.sidebar.warning)

    at.switch_page("app_pages/history.py").run()
    assert not at.exception, at.exception
    history = page_text(at)
    assert "2 of 2 runs" in history
    assert all(r in history for r in alice_runs) and bob_run not in history and unowned not in history
    assert all(bob_run not in str(o) for o in at.selectbox(key=HistoryKeys.PICK).options)

    at = sign_in(app(PASSWORD_SECRETS), "bob", "bob-pw")
    assert bob_run in page_text(at) and not any(r in page_text(at) for r in alice_runs)
    assert "1 refinement plan waiting for your approval" in "\n".join(str(w.value) for w in at.sidebar.warning)


@pytest.mark.parametrize("page", ["app_pages/run.py", "app_pages/attempts.py", "app_pages/brain_calls.py",
                                  "app_pages/explain.py"])
def test_another_users_run_in_the_url_is_no_such_run(store: Store, exposed: None, page: str) -> None:
    bob_run = make_run(store, "bob-one", "bob")
    at = sign_in(app(PASSWORD_SECRETS, {state.QUERY_RUN: bob_run}), "alice", "alice-pw")
    at.session_state[state.RUN_ID] = bob_run  # as a shared link would select it
    at.switch_page(page).run()
    assert not at.exception, at.exception
    text = page_text(at)
    assert "is not in the store" in text  # the same words as for a deleted run
    assert "bob-one" not in text
    assert {b.key for b in at.button} <= {auth.SIGN_OUT}  # no pause, stop, approve or fork: the page stopped
    assert at.session_state[state.RUN_ID] is None

    at = sign_in(app(PASSWORD_SECRETS), "bob", "bob-pw")  # the owner opens it
    at.session_state[state.RUN_ID] = bob_run
    at.switch_page(page).run()
    assert "bob-one" in page_text(at) and "is not in the store" not in page_text(at)


def test_the_predict_page_offers_only_the_viewers_own_finished_runs(store: Store, exposed: None) -> None:
    from studio.state import PredictKeys

    mine = make_run(store, "alice-one", "alice")
    bob_run = make_run(store, "bob-one", "bob")
    at = sign_in(app(PASSWORD_SECRETS, {state.QUERY_RUN: bob_run}), "alice", "alice-pw")
    at.session_state[state.RUN_ID] = bob_run  # as a shared link would select it
    at.switch_page("app_pages/predict.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key=PredictKeys.RUN).options == [f"alice-one ({mine}, validation 0.9) — will refit"]
    assert at.selectbox(key=PredictKeys.RUN).value == mine
    assert bob_run not in page_text(at) and "bob-one" not in page_text(at)


def test_unowned_runs_are_shared_only_with_show_unowned(store: Store, exposed: None) -> None:
    unowned = make_run(store, "cli-run", None)
    at = sign_in(app(PASSWORD_SECRETS), "alice", "alice-pw")
    assert unowned not in page_text(at)
    at = sign_in(app({"access": {"users": USERS, "show_unowned": True}}), "alice", "alice-pw")
    assert unowned in page_text(at)


def test_a_signed_in_users_runs_and_uploads_are_theirs(store: Store, exposed: None, started: list[str | None],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("MLESTAR_DATA_DIR", str(data))
    at = sign_in(app(PASSWORD_SECRETS), "alice", "alice-pw")
    at.button(key=HomeKeys.DEMO_START).click().run()
    assert not at.exception, at.exception
    assert started == ["alice"]
    assert [r["owner"] for r in store.list_runs()] == ["alice"]

    at.switch_page("app_pages/new_run.py").run()
    at.file_uploader(key=K.TRAIN).set_value(("../../evil.csv", CSV, "text/csv"))
    at.run()
    assert not at.exception, at.exception
    mine = data / "users" / access.user_dir_name("alice") / "uploads"
    assert [p.name for p in mine.glob("*/train.csv")] == ["train.csv"]  # saved under a fixed name, in her folder
    assert not list(tmp_path.rglob("evil.csv")) and not (store.root / "uploads").exists()


def test_oidc_signed_in_user_sees_own_runs(store: Store, exposed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_authlib_installed", lambda: True)
    mine, theirs = make_run(store, "alice-one", "alice@example.com"), make_run(store, "bob-one", "bob@example.com")
    secrets = {"auth": {"redirect_uri": "http://x/oauth2callback", "cookie_secret": "s" * 32, "client_id": "id",
                        "client_secret": "c", "server_metadata_url": "http://idp/.well-known/openid-configuration"}}
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets.update(secrets)
    at.user = {"is_logged_in": False}
    at.run()
    assert shows_only_sign_in(at) and mine not in page_text(at)
    assert at.button(key=auth.PROVIDER + "default").label == "Sign in"

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets.update(secrets)
    at.user = {"is_logged_in": True, "email": "Alice@Example.com", "sub": "1"}
    at.run()
    assert not at.exception, at.exception
    assert mine in page_text(at) and theirs not in page_text(at)


def test_oidc_without_authlib_is_refused_with_the_reason(store: Store, exposed: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_authlib_installed", lambda: False)
    at = app({"auth": {"redirect_uri": "http://x/oauth2callback", "cookie_secret": "s" * 32, "client_id": "id"}})
    assert "serves nothing" in page_text(at) and "Authlib" in page_text(at)
    assert not at.button
