#!/usr/bin/env bash
# Installs Debian's bubblewrap (bwrap), which sandboxes the generated scripts (mlestar_core/sandbox.py).
# Idempotent and quiet: does nothing when bwrap is already there. Never fails the build: without
# bwrap the app still runs, in its fallback mode, and says plainly in the UI what is not protected.
set -euo pipefail

if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if [ "$(uname -s)" != "Linux" ]; then
    exit 0  # bubblewrap is Linux-only; the executor reports the fallback mode
fi

note() {
    echo "setup_sandbox: $*; generated scripts will run WITHOUT the sandbox (see docs/sandbox.md)." >&2
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        note "bwrap is missing and this user cannot install it (install the 'bubblewrap' package)"
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    note "bwrap is missing and there is no apt-get here (install bubblewrap with your package manager)"
    exit 0
fi

echo "setup_sandbox: installing bubblewrap (sandbox for generated scripts)..." >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# apt's chatter goes to a log that is shown only when something fails.
if ! { $SUDO apt-get install -y -qq --no-install-recommends bubblewrap \
       || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends bubblewrap; }; } \
       >"$log" 2>&1; then
    cat "$log" >&2
    note "installing bubblewrap failed"
    exit 0
fi
echo "setup_sandbox: bubblewrap installed at $(command -v bwrap)" >&2
