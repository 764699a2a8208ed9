"""A script running as the app's own (non-root) user cannot read the app's environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

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

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not Path(SYSTEM_PYTHON).exists(),
    reason="needs root, setpriv and /usr/bin/python3 to run the app and its script as another, unprivileged user")


def _as_nobody(mode: str) -> str:
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c", APP,
                          mode], capture_output=True, text=True, timeout=60,
                         env={"GEMINI_API_KEY": "AIzaSy-in-the-app-env", "PATH": "/usr/bin:/bin"}, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_an_unprotected_parent_leaks_its_environment() -> None:
    assert _as_nobody("plain") == "LEAKED"  # the threat is real: same user, /proc/<ppid>/environ


def test_a_protected_parent_does_not() -> None:
    assert _as_nobody("protect") == "DENIED PermissionError"
