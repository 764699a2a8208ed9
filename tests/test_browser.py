"""The app in a real browser: `streamlit run app.py` driven by Playwright in headless chromium.

Skipped only when /usr/bin/chromium is missing (`bash scripts/setup_browser.sh` installs it;
`make test` runs that first). Screenshots of every page visited go to docs/screenshots/.

To extend the flow (approve a plan, ablation chart, attempt diff, downloads), add tests that take
the `app` and `page` fixtures; `app.store` is the server's store folder and helpers live in
tests/browser_helpers.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from browser_helpers import CHROMIUM, ROOT, browser_page, free_port, open_page, running_app, screenshot, wait_idle
from waiting import wait_for

from mlestar_core.pipeline import create_run
from mlestar_core.store import Store
from mlestar_core.uploads import demo_config, load_uploaded_task
from studio import nav

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing; run: bash scripts/setup_browser.sh")

BREAST_TRAIN = ROOT / "demo_tasks" / "breast-cancer" / "train.csv"


@dataclass(frozen=True)
class App:
    url: str
    store: Path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One app server per module, on a fresh store; killed (with its runs' scripts) afterwards."""
    base = tmp_path_factory.mktemp("browser")
    store = base / "store"
    with running_app(store, log=base / "streamlit.log") as url:
        yield App(url, store)


@pytest.fixture
def page(app: App) -> Iterator[object]:
    with browser_page() as p:
        yield p


# -- small drivers for Streamlit widgets -------------------------------------------------------


def sidebar_text(page) -> str:  # noqa: ANN001
    return page.locator('[data-testid="stSidebar"]').inner_text()


def main_text(page) -> str:  # noqa: ANN001
    return page.locator('[data-testid="stMain"]').inner_text()


def choose(page, label: str, option: str) -> None:  # noqa: ANN001
    """Pick an option of the st.selectbox labelled `label` (typed to filter: long lists are virtualised)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label)
    for attempt in range(4):  # a rerun that lands while the list is open redraws it under the pointer: retry
        wait_idle(page)
        box.locator('[role="combobox"]').click()
        page.keyboard.type(option)
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            if attempt == 3:
                raise
    wait_idle(page)


def set_number(page, label: str, value: float) -> None:  # noqa: ANN001
    """Type into the st.number_input labelled `label` and commit it (Enter)."""
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def metric_values(page) -> dict[str, str]:  # noqa: ANN001
    out = {}
    for m in page.locator('[data-testid="stMetric"]').all():
        label = m.locator('[data-testid="stMetricLabel"]').inner_text().strip()
        out[label] = m.locator('[data-testid="stMetricValue"]').inner_text().strip()
    return out


# -- the flow ------------------------------------------------------------------------------------


def test_home_then_upload_a_csv_and_start_a_run(app: App, page) -> None:  # noqa: ANN001
    open_page(page, app.url)
    assert page.title() == "MLE-STAR Studio"
    assert "Brain: offline (default for new runs)" in sidebar_text(page)
    assert page.get_by_role("button", name="Start a demo run").is_visible()
    screenshot(page, "home")

    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="New run").click()
    page.wait_for_url(re.compile(r"/new_run"))
    wait_idle(page)
    assert "Brain: offline (default for new runs)" in sidebar_text(page)  # on every page
    assert "Up to 200 MB per file" in page.locator('[data-testid="stMain"]').inner_text()

    page.locator('[data-testid="stFileUploader"]').first.locator('input[type="file"]').set_input_files(
        str(BREAST_TRAIN))
    page.get_by_text("Pick the target column").wait_for()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()  # the preview
    choose(page, "Target column", "malignant")
    page.locator('[data-testid="stMetric"]').first.wait_for()
    # A bare CSV has no description naming a metric: the default is used, and the page says so.
    assert metric_values(page) == {"Target": "malignant", "Task type": "binary", "Metric": "ROC-AUC (default)",
                                   "Better is": "higher ↑"}
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=10_000)  # target distribution

    for label, value in [("M · models", 2), ("T · outer steps", 1), ("K · attempts per block", 1),
                         ("L · solution tracks", 1), ("R · ensemble rounds", 0), ("Time budget (s)", 60),
                         ("Workers", 2)]:
        set_number(page, label, value)
    screenshot(page, "new_run")

    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/run\?run="), timeout=30_000)
    wait_idle(page)
    run_id = page.url.split("run=")[1].split("&")[0]
    run = Store(app.store).get_run(run_id)
    assert run is not None and run["name"] == "malignant (binary)"  # not the file's name, "train"
    config = run["config_json"]
    assert '"num_models": 2' in config and '"time_budget": 60.0' in config and '"ensemble_rounds": 0' in config
    assert "Brain: offline — deterministic, no LLM" in sidebar_text(page)  # the brain of the run in view
    screenshot(page, "run")

    open_page(page, app.url, "history", query=f"run={run_id}")  # a reload keeps the selected run
    assert "1 of 1 runs" in page.locator('[data-testid="stMain"]').inner_text()
    assert page.get_by_label("Run", exact=True).input_value().endswith(run_id)
    screenshot(page, "history")


def test_make_run_lands_on_home_with_the_demo_run_going(tmp_path: Path) -> None:
    """`make run` passes `-- --demo NAME`: the first session starts that demo, Home links to it."""
    store = tmp_path / "store"
    with running_app(store, "--demo", "wine-cultivar", log=tmp_path / "streamlit.log") as url, \
            browser_page() as page:
        open_page(page, url)
        watch = page.get_by_role("button", name="Watch the demo run")
        watch.wait_for()
        assert "started a demo run on wine-cultivar" in page.locator('[data-testid="stMain"]').inner_text()
        runs = Store(store).list_runs()
        assert len(runs) == 1 and runs[0]["name"] == "wine-cultivar"
        assert runs[0]["status"] in ("created", "running", "waiting", "finished")  # it did start
        screenshot(page, "home_demo_run")
        watch.click()
        page.wait_for_url(re.compile(r"/run\?run=" + runs[0]["id"]))
        open_page(page, url)  # a second session: no second demo run
        page.get_by_role("button", name="Watch the demo run").wait_for()
        assert len(Store(store).list_runs()) == 1


# -- links that always work: deep links on a fresh server, and a tab open across a restart ----------

RUN_NAME = "deep-link-run"
ALL_TITLES = [p.title for pages in nav.SECTIONS.values() for p in pages]
# What Streamlit's legacy `pages/` folder mode showed instead of the app's navigation: the file names.
FILE_NAMES = ["app", "ablation", "attempts", "brain calls", "new run", "run"]


def seed_run_waiting_for_approval(store_dir: Path) -> str:
    """A run with a plan waiting for a decision. Stopped, so the server does not resume it on start."""
    store = Store(store_dir)
    task = load_uploaded_task(ROOT / "demo_tasks" / "breast-cancer", name=RUN_NAME)
    run_id = create_run(store, task, demo_config(require_approval=True), name=RUN_NAME)
    store.update_run(run_id, status="stopped", control="stop")
    store.request_decision(run_id, "t0/o0/i0", "model", "Use more trees in the forest", "model = Forest()")
    return run_id


def assert_inside_the_app(page, title: str, run_id: str, run_name: str = RUN_NAME) -> None:  # noqa: ANN001
    """The page drawn by app.py's navigation: titled sidebar links, the run named by ?run=, the brain of
    that run, and the approval banner."""
    links = page.locator('[data-testid="stSidebarNav"]')
    for name in ALL_TITLES:
        assert links.get_by_role("link", name=name, exact=True).count() == 1, (title, name)
    for name in FILE_NAMES:
        assert links.get_by_role("link", name=name, exact=True).count() == 0, (title, name)
    assert page.locator("h1").first.inner_text().strip() == title
    main = main_text(page)
    assert run_name in main and run_id in main and "No run selected yet" not in main, (title, main[:300])
    sidebar = sidebar_text(page)
    assert "Brain: offline — deterministic, no LLM" in sidebar and f"of the run in view: {run_name}" in sidebar
    assert "1 refinement plan waiting for your approval" in sidebar and f"Review: {run_name}" in sidebar
    assert f"run={run_id}" in page.url


def test_deep_links_open_inside_the_app_as_a_fresh_servers_first_request(tmp_path: Path) -> None:
    """Every page URL with ?run=, each in a new browser; the first one is the fresh server's very first
    request (before app.py ever ran in that process)."""
    store = tmp_path / "store"
    run_id = seed_run_waiting_for_approval(store)
    with running_app(store, log=tmp_path / "streamlit.log") as url:
        for page_def in (nav.RUN, nav.ATTEMPTS, nav.BRAIN_CALLS, nav.ABLATION):
            with browser_page() as page:
                open_page(page, url, Path(page_def.path).stem, query=f"run={run_id}")
                page.get_by_text(run_id).first.wait_for()
                assert_inside_the_app(page, page_def.title, run_id)
                if page_def == nav.RUN:
                    page.get_by_text("The run is waiting for your approval").wait_for()


def test_a_tab_left_open_across_a_restart_comes_back_inside_the_app(tmp_path: Path) -> None:
    """The dashboard tab reconnects by itself to the restarted server (same port and store): its first
    request there is that reconnect, and it draws the full app with the same run."""
    store = tmp_path / "store"
    run_id = seed_run_waiting_for_approval(store)
    port, log = free_port(), tmp_path / "streamlit.log"
    app_root = '[data-testid="stApp"]'
    with browser_page() as page:
        with running_app(store, log=log, port=port) as url:
            open_page(page, url, "run", query=f"run={run_id}")
            assert_inside_the_app(page, "Run dashboard", run_id)
        page.wait_for_selector(f'{app_root}:not([data-test-connection-state="CONNECTED"])')  # the tab saw it go
        renamed = "renamed-while-the-server-was-down"
        Store(store).update_run(run_id, name=renamed)  # so only a redraw by the new server shows this name
        with running_app(store, log=log, port=port):
            page.get_by_text(renamed).first.wait_for(timeout=60_000)
            page.wait_for_selector(f'{app_root}[data-test-connection-state="CONNECTED"]')
            wait_idle(page)
            assert_inside_the_app(page, "Run dashboard", run_id, renamed)
            page.reload()
            page.wait_for_selector('[data-testid="stMain"]')
            wait_idle(page)
            page.get_by_text(renamed).first.wait_for()
            assert_inside_the_app(page, "Run dashboard", run_id, renamed)


# -- the run pages, live: a run with approval, steered from the Refinement page -----------------------

# A regression task, so the live flow also checks a lower-is-better metric (RMSE) end to end.
DIABETES = ROOT / "demo_tasks" / "diabetes-progression"


def nav_to(page, title: str) -> None:  # noqa: ANN001
    """Click a page in the sidebar (same session: the selected run comes along)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    link = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True)
    path = urlparse(link.get_attribute("href") or "").path
    for _ in range(3):  # a click that lands while a live fragment redraws can be swallowed: wait for the URL
        link.click()
        try:
            page.wait_for_url(lambda url: urlparse(url).path == path, timeout=10_000)
            break
        except PlaywrightTimeout:
            continue
    wait_idle(page)


def test_run_pages_live_with_approval(app: App, page) -> None:  # noqa: ANN001
    """Start a run with approval from the UI, approve its plans on the Refinement page, watch the ablation
    chart and an attempt's diff appear, and download the submission once it finished."""
    store = Store(app.store)
    open_page(page, app.url, "new_run")  # a deep link, even as the server's first request
    uploaders = page.locator('[data-testid="stFileUploader"]')
    uploaders.nth(0).locator('input[type="file"]').set_input_files(str(DIABETES / "train.csv"))
    page.get_by_text("Pick the target column").wait_for()
    uploaders.nth(1).locator('input[type="file"]').set_input_files(str(DIABETES / "test.csv"))
    wait_idle(page)
    choose(page, "Target column", "progression")
    page.locator('[data-testid="stMetric"]').first.wait_for()
    assert metric_values(page)["Better is"] == "lower ↓"
    for label, value in [("M · models", 2), ("T · outer steps", 1), ("K · attempts per block", 1),
                         ("L · solution tracks", 2), ("R · ensemble rounds", 1), ("Time budget (s)", 240),
                         ("Workers", 2)]:
        set_number(page, label, value)
    page.get_by_text("Require my approval for each refinement plan").click()
    wait_idle(page)
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/run\?run="), timeout=30_000)
    run_id = page.url.split("run=")[1].split("&")[0]
    assert '"require_approval": true' in store.get_run(run_id)["config_json"]
    page.get_by_text("Event log").wait_for()
    assert "Run dashboard" in main_text(page) and "What MLE-STAR does in each phase" in main_text(page)

    # The dashboard's live fragment shows the first plan, with a link to the Refinement page.
    page.get_by_text("The run is waiting for your approval").wait_for(timeout=120_000)
    screenshot(page, "run_waiting")
    page.get_by_role("link", name=re.compile("Review it on the Refinement page")).click()
    wait_idle(page)
    # The page switch can land before the Refinement page's first draw on a busy machine: wait for it.
    page.get_by_text("Human in the loop").first.wait_for(timeout=60_000)

    def next_plan(seen: set[int]) -> tuple[str, dict | None] | None:
        pending = [d for d in store.pending_decisions(run_id) if d["id"] not in seen]
        if pending:
            return "plan", pending[0]
        keys = {s["key"] for s in store.steps(run_id)}
        if "final" in keys or any(k.startswith("ens/") for k in keys):
            return "done", None  # refinement is over: no plan will come
        return None

    approved: set[int] = set()
    while True:  # one plan per track (T = K = 1), approved as it comes
        _, pending = wait_for(lambda: next_plan(approved), what="a plan waiting for approval")
        if pending is None:
            break
        first_line = pending["plan"].splitlines()[0]
        page.get_by_text(first_line, exact=False).first.wait_for(timeout=30_000)  # the watcher redraws
        page.get_by_role("button", name="Approve", exact=True).wait_for()
        if not approved:
            screenshot(page, "approval")
        page.get_by_role("button", name="Approve", exact=True).click()
        wait_idle(page)
        decision_id = int(pending["id"])
        wait_for(lambda d=decision_id: store.get_decision(d)["status"] == "approved", what="the decision row")
        approved.add(decision_id)
    assert approved
    wait_for(lambda: any(a["decision"] == "approved" and a["script_id"] for a in store.table("attempts", run_id)),
               what="an approved attempt that ran")

    # Ablation: a plotly chart per study
    nav_to(page, "Ablation")
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=30_000)
    assert "Chosen for refinement" in main_text(page)
    screenshot(page, "ablation")

    # Refinement: the attempt's diff, side by side
    nav_to(page, "Refinement")
    page.get_by_text("Inspect an attempt").wait_for(timeout=60_000)
    page.locator("table.diff").first.wait_for()
    assert "approved" in main_text(page)

    # Once finished: every page, and the submission on History
    wait_for(lambda: store.get_run(run_id)["status"] in ("finished", "failed"), timeout=240, what="the run's end")
    assert store.get_run(run_id)["status"] == "finished", store.get_run(run_id)["error"]
    page.reload()
    wait_idle(page)
    page.locator("table.diff").first.wait_for()
    screenshot(page, "attempts")
    for title, name in [("Run dashboard", "run"), ("Retrieved models", "models"), ("Ablation", "ablation"),
                        ("Ensemble", "ensemble"), ("Brain calls", "brain_calls"), ("Replay", "replay")]:
        nav_to(page, title)
        if name == "brain_calls":  # the offline brain's calls, each a collapsed expander
            page.locator('[data-testid="stExpander"]').first.wait_for(timeout=30_000)
        elif name != "models":  # every other page draws a chart for a finished run
            page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=30_000)
        assert "Traceback" not in main_text(page), name
        screenshot(page, name)
    nav_to(page, "Run dashboard")
    page.get_by_text("Locked hold-out score").first.wait_for(timeout=30_000)  # the live part renders last
    assert "Locked hold-out score" in main_text(page) and "RMSE (lower is better ↓)" in main_text(page)

    nav_to(page, "History")
    button = page.locator('[data-testid="stDownloadButton"]').filter(has_text="submission.csv").locator("button")
    button.wait_for()
    assert button.is_enabled()
    with page.expect_download() as download:
        button.click()
    assert download.value.suggested_filename == "submission.csv"
    content = Path(download.value.path()).read_text()
    assert content.splitlines()[0].startswith("id,")
    screenshot(page, "history_finished")


def test_gemini_run_from_the_browser_against_a_fake_server(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's Gemini run: key typed on New run, base URL pointed at a local fake generateContent
    server; the run finishes, the brain and its cost show, every call is listed, the key stays in memory."""
    from fakes import FakeGemini, ScriptedExpert, scripted
    from playwright.sync_api import expect

    key = "AIzaSy-typed-in-the-browser-0042"
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    store_dir = tmp_path / "store"
    with FakeGemini(scripted(ScriptedExpert())) as server, \
            running_app(store_dir, log=tmp_path / "streamlit.log") as url, browser_page() as page:
        store = Store(store_dir)
        open_page(page, url)
        nav_to(page, "New run")
        page.get_by_text("Bundled demo task").click()
        wait_idle(page)
        choose(page, "Demo task", "breast-cancer")
        for label, value in [("M · models", 2), ("T · outer steps", 1), ("K · attempts per block", 1),
                             ("L · solution tracks", 1), ("R · ensemble rounds", 0), ("Workers", 2)]:
            set_number(page, label, value)
        choose(page, "Brain", "Gemini (Google)")
        # no key anywhere yet; expect() retries while the brain section's rerun paints
        expect(page.get_by_role("button", name="Start run")).to_be_disabled()
        box = page.get_by_label("API key", exact=True)
        box.fill(key)
        box.press("Enter")
        wait_idle(page)
        page.get_by_text("Advanced").click()
        base = page.get_by_label("Base URL", exact=True)
        base.fill(server.url)
        base.press("Enter")
        wait_idle(page)
        screenshot(page, "new_run_gemini")
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url(re.compile(r"/run\?run="), timeout=30_000)
        run_id = page.url.split("run=")[1].split("&")[0]
        wait_for(lambda: store.get_run(run_id)["status"] in ("finished", "failed", "paused"), timeout=240,
                 what="the Gemini run to end")
        run = store.get_run(run_id)
        assert run["status"] == "finished", (run["status"], run["pause_reason"], run["error"])
        open_page(page, url, "run", query=f"run={run_id}")
        assert "Brain: gemini · gemini-3.5-flash" in sidebar_text(page)
        page.get_by_text("Brain usage").first.wait_for()
        screenshot(page, "run_gemini")
        open_page(page, url, "brain_calls", query=f"run={run_id}")
        text = main_text(page)
        assert "write_initial_solution" in text and "tokens" in text and "$" in text
        page.locator('[data-testid="stExpander"]').last.click()  # the oldest call: retrieval
        page.get_by_text("Prompt").first.wait_for()
        screenshot(page, "brain_calls_gemini")
        open_page(page, url, "models", query=f"run={run_id}")
        assert "scikit-learn.org" in page.content()  # grounding sources as links

    assert server.calls and all(c.headers.get("x-goog-api-key") == key for c in server.calls)
    assert "gemini" in (config := store.get_run(run_id)["config_json"]) and key not in config
    leaks = [p for p in store_dir.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
    assert leaks == []
    assert key.encode() not in (tmp_path / "streamlit.log").read_bytes()
