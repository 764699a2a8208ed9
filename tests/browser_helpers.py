"""Helpers for real-browser tests: run the app as a subprocess, drive Debian's chromium, take screenshots.

Use from a test module:

    with running_app(store_dir) as url:            # streamlit run app.py on a free port
        with browser_page() as page:               # a Playwright page in headless chromium
            open_page(page, url, "new_run")        # by url path ("" = Home), waits until idle
            screenshot(page, "new_run")            # docs/screenshots/new_run.png, full page

`wait_idle(page)` waits for the script run a click started; `CHROMIUM` is where the browser must be
(scripts/setup_browser.sh installs it; tests skip without it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:.0f} s")


@contextmanager
def running_app(store_dir: Path, *app_args: str, log: Path | None = None, port: int | None = None) -> Iterator[str]:
    """`streamlit run app.py` with MLESTAR_HOME=store_dir on `port` (default: a free one); yields its URL.

    The server runs in its own process group, killed on exit with everything it started
    (runs' scripts included), so a failing test leaves nothing behind. Waiting for the port opens a
    bare TCP connection only: the first HTTP request the server gets is the test's own. Pass the
    same `port` twice to restart an app under an open tab.
    """
    port = port or free_port()
    env = {**os.environ, "MLESTAR_HOME": str(store_dir), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    if app_args:
        cmd += ["--", *app_args]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if log:
            out.close()  # type: ignore[union-attr]


@contextmanager
def browser_page() -> Iterator[object]:
    """A fresh Playwright page in headless Debian chromium (Playwright's own browsers cannot run here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def wait_idle(page, timeout: float = 30_000) -> None:  # noqa: ANN001
    """Wait until the app's script run finished (the stApp root says notRunning) and the DOM settled."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)
    page.wait_for_timeout(300)  # let the last deltas paint


def open_page(page, base_url: str, url_path: str = "", query: str = "") -> None:  # noqa: ANN001
    """Open a page by its url path (the page file's name; "" is Home) and wait until it is drawn."""
    page.goto(f"{base_url}/{url_path}" + (f"?{query}" if query else ""))
    page.wait_for_selector('[data-testid="stMain"]')
    wait_idle(page)


def screenshot(page, name: str) -> Path:  # noqa: ANN001
    """Full-page screenshot to docs/screenshots/<name>.png.

    Streamlit scrolls inside its main container, not the document, so the viewport is stretched to
    the content's height for the shot and restored afterwards.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = page.evaluate(
        "() => Math.max(...['stMain', 'stMainBlockContainer', 'stSidebarContent']"
        ".map(id => document.querySelector(`[data-testid=\"${id}\"]`))"
        ".filter(Boolean).map(el => el.scrollHeight), document.body.scrollHeight)"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(height) + 40)})
    page.wait_for_timeout(400)  # charts re-layout to the new size
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(VIEWPORT)
    return path
