#!/usr/bin/env bash
# Installs Debian's chromium for the real-browser test (tests/test_browser.py), once.
# Playwright's own browser download cannot work here, so the test drives /usr/bin/chromium.
# Idempotent and quiet: does nothing when chromium is already there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup_browser: /usr/bin/chromium is missing and this user cannot install it;" \
             "the browser test will be skipped (install the 'chromium' package to run it)." >&2
        exit 0
    fi
fi

echo "setup_browser: installing chromium (for the browser test)..." >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# apt's chatter goes to a log that is shown only when something fails.
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup_browser: installing chromium failed; the browser test will be skipped." >&2
    exit 1
fi
echo "setup_browser: chromium installed at /usr/bin/chromium" >&2
