"""Keep this process's secrets out of reach of the scripts it starts.

Generated scripts run as the same OS user as the app. On Linux that user can read any of its
processes' /proc/<pid>/environ and, with ptrace rights, their memory: a script could read the
API key from the app's environment or heap. Marking the app non-dumpable (PR_SET_DUMPABLE 0)
makes its /proc entries root-owned and refuses ptrace from same-user processes. Children get
their own dumpable flag back when they exec, so scripts are unaffected. Stdlib only.
"""

from __future__ import annotations

import ctypes
import sys

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
