"""A script running as the app's own (non-root) user cannot read the app's environment, and secrets are
scrubbed from what scripts print."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mlestar_core import hardening

HARDENING = Path(__file__).resolve().parents[1] / "mlestar_core" / "hardening.py"
SYSTEM_PYTHON = "/usr/bin/python3"

# The "app": loads hardening.py (stdlib only) by path, maybe protects itself, then starts a "script"
# that tries to read its parent's environment, where the key is.
APP = f"""
import importlib.util, subprocess, sys
spec = importlib.util.spec_from_file_location("hardening", {str(HARDENING)!r})
hardening = importlib.util.module_from_spec(spec); spec.loader.exec_module(hardening)
if sys.argv[1] == "protect":
    assert hardening.protect_from_children()
script = '''import os
try:
    leaked = b"AIzaSy-in-the-app-env" in open(f"/proc/{{os.getppid()}}/environ", "rb").read()
    print("LEAKED" if leaked else "NOT-FOUND")
except OSError as e:
    print("DENIED", type(e).__name__)'''
print(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={{}}).stdout.strip())
"""

as_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not Path(SYSTEM_PYTHON).exists(),
    reason="needs root, setpriv and /usr/bin/python3 to run the app and its script as another, unprivileged user")


def _as_nobody(mode: str) -> str:
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c", APP,
                          mode], capture_output=True, text=True, timeout=60,
                         env={"GEMINI_API_KEY": "AIzaSy-in-the-app-env", "PATH": "/usr/bin:/bin"}, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@as_nobody
def test_an_unprotected_parent_leaks_its_environment() -> None:
    assert _as_nobody("plain") == "LEAKED"  # the threat is real: same user, /proc/<ppid>/environ


@as_nobody
def test_a_protected_parent_does_not() -> None:
    assert _as_nobody("protect") == "DENIED PermissionError"


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(hardening, "_registered", set())
    for name in list(os.environ):
        if hardening._SECRET_NAME.search(name):
            monkeypatch.delenv(name)
    return monkeypatch


def test_scrub_replaces_registered_and_environment_secrets(no_secrets: pytest.MonkeyPatch) -> None:
    no_secrets.setenv("OPENAI_API_KEY", "sk-abcdefgh12345")
    no_secrets.setenv("HF_TOKEN", "hf_tok_987654321")
    no_secrets.setenv("DB_PASSWORD", "short")  # under 8 characters: would shred ordinary text
    no_secrets.setenv("MODEL_NAME", "gemini-2.5-flash-long-value")  # not a secret-looking name
    hardening.register_secret("my-registered-secret")
    hardening.register_secret("my-registered-secret-longer")  # contains the first: replaced whole
    hardening.register_secret("abc")  # too short to register
    hardening.register_secret(None)
    text = ("a sk-abcdefgh12345 b hf_tok_987654321 c my-registered-secret-longer d my-registered-secret "
            "e short f gemini-2.5-flash-long-value abc")
    assert hardening.scrub(text) == ("a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED] e short f "
                                     "gemini-2.5-flash-long-value abc")
    assert hardening.scrub_bytes(text.encode()).count(b"[REDACTED]") == 4
    assert hardening.scrub("") == "" and hardening.scrub("nothing here") == "nothing here"
    no_secrets.delenv("OPENAI_API_KEY")  # the environment is read at each call
    assert "sk-abcdefgh12345" in hardening.scrub("sk-abcdefgh12345")


def test_scrub_file_rewrites_only_when_needed(no_secrets: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hardening.register_secret("s3cr3t-value-42")
    clean, dirty, empty = tmp_path / "clean.txt", tmp_path / "dirty.txt", tmp_path / "empty.txt"
    clean.write_text("nothing to see\n")
    dirty.write_text("x" * 100_000 + "s3cr3t-value-42\n" + "y" * 10 + "s3cr3t-value-42")
    empty.write_text("")
    before = clean.stat().st_mtime_ns
    assert not hardening.scrub_file(clean) and clean.stat().st_mtime_ns == before
    assert hardening.scrub_file(dirty)
    assert "s3cr3t" not in dirty.read_text() and dirty.read_text().count("[REDACTED]") == 2
    assert not hardening.scrub_file(empty) and not hardening.scrub_file(tmp_path / "missing.txt")
