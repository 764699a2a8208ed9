"""Who may use the app and which runs they see, once the app is reachable from other machines.

Pure logic, no Streamlit: `studio/auth.py` is the Streamlit side (the sign-in page, `st.login` / `st.user`,
session state) and calls these functions; the tests call them directly.

Modes (`AccessSettings.mode`), decided from the server's `server.address` and the secrets:

- "local": the server listens on a loopback address only (the default in .streamlit/config.toml). Only this
  machine can connect, so there is no sign-in and every run is visible, as before.
- "oidc": exposed, and an `[auth]` section is in secrets.toml: sign in with Streamlit's `st.login`
  (OpenID Connect); the user id is the verified e-mail, else the `sub` claim.
- "password": exposed, with `[access] password = "..."` (one shared user) and/or `[access.users]`
  (name = password or "sha256:<hex>"); checked in constant time.
- "closed": exposed with neither: the app serves nothing but how to configure it. Never open.

Visibility: a signed-in user sees and controls the runs they own (`runs.owner`). Runs without an owner (the
CLI's, or older than owners) are shared: visible to every signed-in user only with `[access] show_unowned =
true`, otherwise only in local mode.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

Mode = Literal["local", "oidc", "password", "closed"]

SHARED_USER = "shared"  # the user id of everyone who signs in with the one `[access] password`
SHA256_PREFIX = "sha256:"
DATA_DIR_ENV = "MLESTAR_DATA_DIR"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# Compared against when the user name is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY = SHA256_PREFIX + "0" * 64


class UnsafePathError(ValueError):
    """A user-supplied name would lead outside the folder it belongs in."""


# ----------------------------------------------------------------------------------------------
# Exposure and settings
# ----------------------------------------------------------------------------------------------


def is_exposed(address: str | None) -> bool:
    """Whether other machines may reach a server listening on `address` (Streamlit's `server.address`).

    Unset means every interface (Streamlit's default), a host name may resolve to anything, and a unix socket
    is usually fronted by a reverse proxy: all count as exposed. Only loopback names and addresses do not."""
    if not address or not address.strip():
        return True
    a = address.strip().lower()
    if a.startswith("unix://"):
        return True
    if a in LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(a.strip("[]")).is_loopback
    except ValueError:
        return True


@dataclass(frozen=True)
class AccessSettings:
    """What this server requires, read from its address and its secrets (see `access_settings`)."""

    mode: Mode
    users: Mapping[str, str] = field(default_factory=dict)  # name -> password or "sha256:<hex>"
    shared_password: str | None = None  # `[access] password`: signs in as SHARED_USER
    providers: tuple[str | None, ...] = ()  # OIDC: None = the [auth] section itself, else [auth.<name>]
    show_unowned: bool = False
    problems: tuple[str, ...] = ()  # why a configured mode is unusable or partly ignored; never names a user

    @property
    def exposed(self) -> bool:
        return self.mode != "local"


def _section(secrets: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = secrets.get(name)
    return value if isinstance(value, Mapping) else {}


def _password_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "is empty or not text"
    if value.startswith(SHA256_PREFIX) and not _HEX64.fullmatch(value[len(SHA256_PREFIX):]):
        return "starts with sha256: but is not followed by 64 hex digits"
    return None


def access_settings(address: str | None, secrets: Mapping[str, Any]) -> AccessSettings:
    """The mode for a server on `address` with these secrets (secrets.toml as a dict).

    `[access] require_login = true` asks for a sign-in even on a loopback address: for a reverse proxy on the
    same machine that makes the app public while Streamlit itself listens on 127.0.0.1."""
    access = _section(secrets, "access")
    show_unowned = access.get("show_unowned") is True
    if not is_exposed(address) and access.get("require_login") is not True:
        return AccessSettings("local")
    problems: list[str] = []
    auth = _section(secrets, "auth")
    if auth:
        missing = [k for k in ("redirect_uri", "cookie_secret") if not auth.get(k)]
        named = tuple(k for k, v in auth.items() if isinstance(v, Mapping))
        providers: tuple[str | None, ...] = ((None,) if auth.get("client_id") or not named else ()) + named
        if missing:
            problems.append(f"[auth] lacks {' and '.join(missing)} (needed by st.login)")
            return AccessSettings("closed", show_unowned=show_unowned, problems=tuple(problems))
        return AccessSettings("oidc", providers=providers, show_unowned=show_unowned)
    users: dict[str, str] = {}
    raw_users = access.get("users")
    if raw_users is not None and not isinstance(raw_users, Mapping):
        problems.append("[access.users] must be a table of name = password")
    bad = 0
    for name, value in (raw_users.items() if isinstance(raw_users, Mapping) else ()):
        if _password_problem(value) or not str(name).strip() or str(name) == SHARED_USER:
            bad += 1
            continue
        users[str(name)] = value
    if bad:
        problems.append(f"{bad} entr{'y' if bad == 1 else 'ies'} of [access.users] ignored (an empty name, the "
                        f"reserved name {SHARED_USER!r}, or a password that is empty or a malformed sha256: value)")
    shared = access.get("password")
    if shared is not None and (why := _password_problem(shared)):
        problems.append(f"[access] password {why}: ignored")
        shared = None
    if users or shared:
        return AccessSettings("password", users=users, shared_password=shared, show_unowned=show_unowned,
                              problems=tuple(problems))
    return AccessSettings("closed", show_unowned=show_unowned, problems=tuple(problems))


# ----------------------------------------------------------------------------------------------
# Passwords and identities
# ----------------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """The "sha256:<hex>" form of a password, to store in `[access.users]` instead of the password."""
    return SHA256_PREFIX + hashlib.sha256(password.encode("utf-8")).hexdigest()


def verify_password(stored: str, given: str) -> bool:
    """`given` matches `stored` (a password, or "sha256:<hex>"), compared in constant time."""
    if not given or not stored:
        return False
    if stored.startswith(SHA256_PREFIX):
        return hmac.compare_digest(hash_password(given), SHA256_PREFIX + stored[len(SHA256_PREFIX):].lower())
    return hmac.compare_digest(given.encode("utf-8"), stored.encode("utf-8"))


def check_login(settings: AccessSettings, name: str, password: str) -> str | None:
    """The user id these credentials sign in as, or None. An empty name means the shared password."""
    name = (name or "").strip()
    if name:
        stored = settings.users.get(name)
        ok = verify_password(stored if stored is not None else _DUMMY, password)
        return name if ok and stored is not None else None
    if settings.shared_password and verify_password(settings.shared_password, password):
        return SHARED_USER
    return None


def still_valid(settings: AccessSettings, user_id: str | None) -> bool:
    """A password session's user still exists (the admin may have removed it since they signed in)."""
    if settings.mode != "password" or not user_id:
        return False
    return user_id in settings.users or (user_id == SHARED_USER and bool(settings.shared_password))


def oidc_user_id(info: Mapping[str, Any]) -> str | None:
    """The user id of an `st.user` (as a dict): the e-mail unless the provider says it is unverified, else
    the `sub` claim; None when nobody is signed in. (`email_verified` is often absent: many providers only send
    verified addresses; an explicit false is not trusted, or anyone could claim another's address.)"""
    if info.get("is_logged_in") is not True:
        return None
    email = info.get("email")
    if isinstance(email, str) and email.strip() and info.get("email_verified") is not False:
        return email.strip().lower()  # e-mail addresses are case-insensitive in practice
    sub = info.get("sub")
    return sub.strip() if isinstance(sub, str) and sub.strip() else None


# ----------------------------------------------------------------------------------------------
# Who sees which run
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """Who is looking. Local mode: `local`, no user. Signed in: `user_id`. Neither: sees nothing."""

    user_id: str | None = None
    local: bool = False
    show_unowned: bool = False

    @property
    def owner(self) -> str | None:
        """What a run this viewer starts records as its owner (None in local mode, as the CLI)."""
        return None if self.local else self.user_id


LOCAL = Viewer(local=True)
NOBODY = Viewer()


def can_see(viewer: Viewer, run: Mapping[str, Any] | None) -> bool:
    """Whether `viewer` may see (and so control) `run`, a store row."""
    if run is None:
        return False
    if viewer.local:
        return True
    if not viewer.user_id:
        return False
    owner = run.get("owner")
    if owner is None:
        return viewer.show_unowned
    return owner == viewer.user_id


def visible(viewer: Viewer, runs: Iterable[Mapping[str, Any]]) -> list[Any]:
    return [r for r in runs if can_see(viewer, r)]


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------


def safe_join(base: str | Path, *names: str) -> Path:
    """`base / names...`, resolved, or UnsafePathError if a name is absolute, empty, or leads outside `base`
    (through `..` or a symbolic link). For every path built from something a user typed or uploaded."""
    root = Path(base).resolve()
    for name in names:
        if not isinstance(name, str) or not name.strip() or "\x00" in name:
            raise UnsafePathError(f"{name!r} is not a usable file name.")
        if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
            raise UnsafePathError(f"{name!r} is an absolute path; only a name inside the folder is allowed.")
    target = root.joinpath(*names).resolve()
    if root not in target.parents:  # also refuses the folder itself ("." or "a/..")
        raise UnsafePathError(f"{'/'.join(names)!r} would lead outside its folder; it was refused.")
    return target


def user_dir_name(user_id: str) -> str:
    """A folder name for a user: readable, and unique even when two ids slug alike (a hash of the id)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", user_id).strip(".-")[:40] or "user"
    return f"{slug}-{hashlib.sha256(user_id.encode('utf-8')).hexdigest()[:10]}"


def data_root(store_root: str | Path, environ: Mapping[str, str], secrets: Mapping[str, Any]) -> Path:
    """The folder uploads live under: MLESTAR_DATA_DIR, else `[storage] data_dir`, else the store folder."""
    raw = environ.get(DATA_DIR_ENV) or _section(secrets, "storage").get("data_dir")
    return Path(str(raw)).expanduser().resolve() if raw else Path(store_root).resolve()


def upload_root(root: str | Path, viewer: Viewer) -> Path:
    """Where this viewer's uploads go: the data folder itself locally, `<data>/users/<user>/` when signed in,
    so one user's uploads never mix with another's."""
    if viewer.local:
        return Path(root).resolve()
    if not viewer.user_id:  # fail closed: the sign-in gate never lets this happen
        raise UnsafePathError("nobody is signed in, so there is no folder for uploads.")
    return safe_join(root, "users", user_dir_name(viewer.user_id))
