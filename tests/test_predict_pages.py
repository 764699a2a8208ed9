"""AppTest tests for the Predict and What-drives-the-model pages, on the session's tiny finished run (shared with
test_predict.py: `tiny_finished_run`), and on hand-made rows for runs that have not finished.

Uploads go through the page's file uploader (AppTest sets its bytes); what the page does with them is
views.predict.check_upload / run_prediction, which test_predict.py also calls directly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import apptest_helpers
import pandas as pd
import pytest
from apptest_helpers import texts
from conftest import FinishedRun, RunBuilder
from streamlit.testing.v1 import AppTest

from mlestar_core import explain
from mlestar_core.access import Viewer
from mlestar_core.store import Store
from studio.runpages import ExplainKeys
from studio.state import PredictKeys as K

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
BC = ROOT / "demo_tasks" / "breast-cancer"
TIMEOUT = 120  # a click on Predict or "Compute it now" runs the solution in the sandbox


def open_page(page: str, run_id: str | None = None) -> AppTest:
    return apptest_helpers.open_page(page, run_id, TIMEOUT)


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key=K.UPLOAD).set_value((name, data, "text/csv"))
    at.run()
    assert not at.exception, at.exception
    return at


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@pytest.fixture
def tiny(tiny_finished_run: FinishedRun, monkeypatch: pytest.MonkeyPatch) -> FinishedRun:
    monkeypatch.setenv("MLESTAR_HOME", str(tiny_finished_run.root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])
    return tiny_finished_run


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunBuilder:
    root = tmp_path / "store"
    monkeypatch.setenv("MLESTAR_HOME", str(root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])
    AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # the manager first: it resumes "running" runs it finds
    return RunBuilder(Store(root))


# -- Predict ------------------------------------------------------------------------------------------------


def test_predict_shows_the_columns_and_predicts_an_upload(tiny: FinishedRun) -> None:
    at = open_page("app_pages/predict.py", tiny.run_id)
    assert at.title[0].value == "Predict"
    assert at.selectbox(key=K.RUN).value == tiny.run_id  # the run in view, finished: picked first
    columns = at.dataframe[0].value.set_index("column")
    assert columns.loc["id", "needed"] == "id" and columns.loc["mean_radius", "needed"] == "required"
    assert "malignant" not in columns.index and len(columns) == 31  # 30 features and the id
    assert "leave out **malignant**" in texts(at.markdown)
    assert "Uses the model the run kept" in texts(at.success) and "nothing is refitted" in texts(at.success)
    assert {b.key for b in at.get("download_button")} == {K.TEMPLATE}
    assert "Upload a CSV with the columns above" in texts(at.info) and not [b for b in at.button if b.key == K.PREDICT]

    test = pd.read_csv(BC / "test.csv")
    upload(at, "new_rows.csv", csv_bytes(test.head(30)))
    assert "30 row(s) to predict" in texts(at.caption) and not at.error
    assert list(at.dataframe[1].value.columns) == list(test.columns)  # the rows as the solution reads them
    at.button(key=K.PREDICT).click().run()
    assert not at.exception, at.exception
    assert "30 row(s) predicted by script #" in texts(at.success)
    assert "with the model the final run kept (nothing was refitted)" in texts(at.success)
    predictions = at.dataframe[2].value
    submission = pd.read_csv(tiny.root.parent / "out" / "submission.csv").head(20)
    assert list(predictions.columns) == ["id", "malignant"] and len(predictions) == 20
    assert predictions["id"].astype(int).tolist() == submission["id"].tolist()
    assert predictions["malignant"].astype(float).tolist() == pytest.approx(submission["malignant"].tolist())
    assert K.DOWNLOAD in {b.key for b in at.get("download_button")}
    assert at.session_state[K.RESULT][1].csv.decode().count("\n") == 31  # header + every row, not just the preview

    at.run()  # a rerun (a download click) keeps the result of these rows
    assert "30 row(s) predicted" in texts(at.success)
    upload(at, "other.csv", csv_bytes(test.head(5)))  # other rows: the old predictions are not shown for them
    assert "row(s) predicted" not in texts(at.success) and "5 row(s) to predict" in texts(at.caption)


def test_predict_says_which_column_is_missing_or_extra(tiny: FinishedRun) -> None:
    at = open_page("app_pages/predict.py", tiny.run_id)
    test = pd.read_csv(BC / "test.csv")
    upload(at, "new.csv", csv_bytes(test.drop(columns=["mean_radius"])))
    error = texts(at.error)
    assert "new.csv lacks the column(s) 'mean_radius' that the model was trained with" in error
    assert "The columns it needs:" in error
    assert not [b for b in at.button if b.key == K.PREDICT]  # nothing to predict with a bad file

    upload(at, "new.csv", csv_bytes(test.assign(favourite_colour="red", malignant=1)))
    error = texts(at.error)
    assert "target column 'malignant'" in error and "'favourite_colour'" in error
    assert "tick “Drop extra columns” to ignore them" in error and "--drop-extra-columns" not in error
    at.checkbox(key=K.DROP_EXTRA).check().run()
    assert not at.error and "dropped the column(s) 'favourite_colour', 'malignant'" in texts(at.warning)
    assert at.button(key=K.PREDICT) is not None

    upload(at, "broken.csv", test.to_csv(index=False, sep=";").encode())
    assert "separates its columns with semicolons" in texts(at.error)  # the New run page's words


def test_predict_without_a_finished_run(builder: RunBuilder) -> None:
    at = open_page("app_pages/predict.py")
    assert "No finished run yet" in texts(at.info) and not at.selectbox
    running = builder.run("running", name="still-going")
    at = open_page("app_pages/predict.py", running)
    assert "The run in view, **still-going**, is running" in texts(at.info)
    assert "No finished run yet" in texts(at.info) and not at.file_uploader


# -- What drives the model ---------------------------------------------------------------------------------


def test_explain_shows_the_chart_and_the_top_features(tiny: FinishedRun) -> None:
    ex = explain.load_explanation(tiny.store.run_dir(tiny.run_id))
    assert ex is not None and ex["status"] == "ok"
    at = open_page("app_pages/explain.py", tiny.run_id)
    assert at.title[0].value == "What drives the model"
    charts = at.get("plotly_chart")
    assert len(charts) == 1 + len(ex["partial_dependence"]) == 4  # importance + the top three features' curves
    assert "permutation importance" in charts[0].proto.spec and '"error_x"' in charts[0].proto.spec
    top = [f["name"] for f in ex["features"][:3]]
    assert f"Top features: **{top[0]}**, **{top[1]}**, **{top[2]}**" in texts(at.markdown)
    caption = texts(at.caption)
    assert f"of the {ex['rows']['available']} locked hold-out rows (never used to fit the model)" in caption
    assert f"scored with **{ex['metric_title']}** (higher is better)" in caption
    assert f"shuffled {ex['n_repeats']} times" in caption
    assert f"**{top[0]}**: the average probability of" in caption  # the curve in words, under its chart
    table = at.dataframe[0].value
    assert table["feature"].tolist()[:3] == top and len(table) == len(ex["features"])
    assert {b.key for b in at.get("download_button")} == {ExplainKeys.DOWNLOAD}
    assert not [b for b in at.button if b.key == ExplainKeys.COMPUTE]
    assert any(p.proto.page == "predict" for p in at.get("page_link"))


def test_explain_compute_it_now_when_the_budget_left_no_room(tiny: FinishedRun) -> None:
    run_dir = tiny.store.run_dir(tiny.run_id)
    stored = explain.explain_dir(run_dir) / explain.RESULT_FILE
    report = tiny.root.parent / "out" / "report.md"
    saved = stored.read_bytes(), report.read_bytes()
    script_id = explain.load_explanation(run_dir)["script_id"]
    try:
        explain.unavailable(run_dir, script_id, "the time budget had 3 s left, about 20 s are needed: compute it "
                            f"with `python -m mlestar_core explain {tiny.run_id}`")
        at = open_page("app_pages/explain.py", tiny.run_id)
        assert "**Not computed:** the time budget had 3 s left" in texts(at.info)
        assert not at.get("plotly_chart")
        at.button(key=ExplainKeys.COMPUTE).click().run()
        assert not at.exception, at.exception
        assert len(at.get("plotly_chart")) == 4 and "Top features:" in texts(at.markdown)
        assert explain.load_explanation(run_dir)["status"] == "ok"
        assert not [b for b in at.button if b.key == ExplainKeys.COMPUTE]
    finally:
        stored.write_bytes(saved[0])
        report.write_bytes(saved[1])


def test_explain_waits_for_the_run_to_finish(builder: RunBuilder) -> None:
    rid = builder.run("running", name="in-flight")
    at = open_page("app_pages/explain.py", rid)
    assert "once the run has finished: this run is **running**" in texts(at.info)
    assert not at.get("plotly_chart") and not [b for b in at.button if b.key == ExplainKeys.COMPUTE]
    assert any(p.proto.page == "run" for p in at.get("page_link"))


def test_explain_view_offers_compute_only_when_it_can_help(tiny: FinishedRun,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mlestar_core.views import explain as view

    run = tiny.store.get_run(tiny.run_id)
    page = view.explain_page(tiny.store, run)
    assert page.state == "ready" and page.explanation is not None and page.explanation.available
    for status in ("running", "stopped", "failed"):
        assert view.explain_page(tiny.store, {**run, "status": status}).state == "unfinished"
    # A run without a locked hold-out (fewer than 50 labelled rows): the reason, and no button (it cannot help).
    reason = "the run has no locked hold-out (fewer than 50 labelled rows)"
    monkeypatch.setattr(view, "explanation_view", lambda store, run_id: view.ExplanationView(
        run_id=run_id, available=False, computed=True, reason=reason))
    real = view.kept.finished_run(tiny.store, tiny.run_id)
    monkeypatch.setattr(view.kept, "finished_run", lambda store, run_id: SimpleNamespace(
        data=SimpleNamespace(holdout_dir=None, n_holdout=0), run_dir=real.run_dir))
    page = view.explain_page(tiny.store, run)
    assert page.state == "missing" and not page.can_compute and page.message == f"Not available: {reason}."
    # Another user cannot have it computed, even with the run's id.
    refused = view.compute_explanation(tiny.store, tiny.run_id, Viewer("mallory"))
    assert not refused.available and "is not in the store" in refused.reason
