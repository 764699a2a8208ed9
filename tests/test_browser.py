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

import pytest
from browser_helpers import CHROMIUM, ROOT, browser_page, open_page, running_app, screenshot, wait_idle

from mlestar_core.store import Store

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


def choose(page, label: str, option: str) -> None:  # noqa: ANN001
    """Pick an option of the st.selectbox labelled `label` (typed to filter: long lists are virtualised)."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).locator('[role="combobox"]').click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
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
    assert "Brain: offline — deterministic, no LLM" in sidebar_text(page)
    assert page.get_by_role("button", name="Start a demo run").is_visible()
    screenshot(page, "home")

    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="New run").click()
    page.wait_for_url(re.compile(r"/new_run"))
    wait_idle(page)
    assert "Brain: offline — deterministic, no LLM" in sidebar_text(page)  # on every page
    assert "Up to 200 MB per file" in page.locator('[data-testid="stMain"]').inner_text()

    page.locator('[data-testid="stFileUploader"]').first.locator('input[type="file"]').set_input_files(
        str(BREAST_TRAIN))
    page.get_by_text("Pick the target column").wait_for()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()  # the preview
    choose(page, "Target column", "malignant")
    page.locator('[data-testid="stMetric"]').first.wait_for()
    assert metric_values(page) == {"Target": "malignant", "Task type": "binary", "Metric": "ROC-AUC",
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
    assert run is not None and run["name"] == "train"
    config = run["config_json"]
    assert '"num_models": 2' in config and '"time_budget": 60.0' in config and '"ensemble_rounds": 0' in config
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
