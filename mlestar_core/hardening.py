"""Keep this process's secrets out of reach of the scripts it starts, and out of what they print.

Generated scripts run as the same OS user as the app. On Linux that user can read any of its
processes' /proc/<pid>/environ and, with ptrace rights, their memory: a script could read the
API key from the app's environment or heap. Marking the app non-dumpable (PR_SET_DUMPABLE 0)
makes its /proc entries root-owned and refuses ptrace from same-user processes. Children get
their own dumpable flag back when they exec, so scripts are unaffected. That does not stop a
script running as root (root reads any /proc entry); the bubblewrap sandbox (sandbox.py) does, by
giving scripts their own PID namespace where the app does not exist. Stdlib only.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import re
import sys
import threading

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
_done = False


def protect_from_children() -> bool:
    """Make this process non-dumpable (once). True when it is; False where that does not exist."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _done = libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    return _done


# -- scrubbing secrets from what scripts print ---------------------------------------------------------
#
# A script never gets our secrets through its environment (executor.scrubbed_env), but it may still
# print one it found elsewhere (a key pasted into a prompt, a file it could read in fallback mode).
# Whatever it prints is stored in the run store and shown in the UI, so it is scrubbed first.

REDACTED = "[REDACTED]"
MIN_ENV_SECRET_LEN = 8  # shorter values of secret-looking variables ("1", "true") would shred the text
MIN_REGISTERED_LEN = 4  # an explicitly registered secret is trusted to be one, but not a single letter
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)
_registered: set[str] = set()
_lock = threading.Lock()
_patterns: dict[frozenset[str], tuple[re.Pattern[str], re.Pattern[bytes]]] = {}


def register_secret(value: str | None) -> None:
    """Scrub `value` from every script output from now on (e.g. an API key that did not come from os.environ)."""
    if not value or not isinstance(value, str):
        return
    value = value.strip()
    if len(value) < MIN_REGISTERED_LEN:
        log.warning("not registering a %d-character secret: too short to scrub safely", len(value))
        return
    with _lock:
        _registered.add(value)


def known_secrets() -> frozenset[str]:
    """Registered secrets plus the current values of this process's secret-looking environment variables."""
    from_env = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= MIN_ENV_SECRET_LEN}
    with _lock:
        return frozenset(_registered | from_env)


def _compiled(secrets: frozenset[str]) -> tuple[re.Pattern[str], re.Pattern[bytes]]:
    with _lock:
        found = _patterns.get(secrets)
    if found is None:
        ordered = sorted(secrets, key=len, reverse=True)  # longest first: a secret inside another goes whole
        found = (re.compile("|".join(map(re.escape, ordered))),
                 re.compile(b"|".join(re.escape(s.encode("utf-8")) for s in ordered)))
        with _lock:
            if len(_patterns) > 32:  # the environment changed often (tests): do not grow forever
                _patterns.clear()
            _patterns[secrets] = found
    return found


def scrub(text: str) -> str:
    """`text` with every known secret replaced by "[REDACTED]" (exact occurrences only)."""
    secrets = known_secrets()
    if not text or not secrets:
        return text
    return _compiled(secrets)[0].sub(REDACTED, text)


def scrub_bytes(data: bytes) -> bytes:
    secrets = known_secrets()
    if not data or not secrets:
        return data
    return _compiled(secrets)[1].sub(REDACTED.encode(), data)


def scrub_file(path: str | os.PathLike[str]) -> bool:
    """Scrub a file in place (only rewritten when a secret is found); True when it was changed."""
    secrets = known_secrets()
    if not secrets:
        return False
    pattern = _compiled(secrets)[1]
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:  # search without a copy
                if pattern.search(view) is None:
                    return False
                data = pattern.sub(REDACTED.encode(), view)
    except (OSError, ValueError):
        return False
    with open(path, "wb") as f:
        f.write(data)
    return True
