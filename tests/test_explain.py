"""What drives the model (issue 12): permutation importance and partial dependence of the final solution, computed
in the sandbox on the locked hold-out rows, validated and stored by the engine, in the report, the CLI and charts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from mlestar_core import explain, kept
from mlestar_core.config import RunConfig
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.predict import KEPT_MODEL, predict_rows
from mlestar_core.store import Store
from mlestar_core.task import load_task
from mlestar_core.views.explain import explanation_view, importance_frame
from studio.explain_charts import importance_chart, partial_dependence_charts

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_models=1, outer_steps=0, inner_steps=1, num_solutions=1, ensemble_rounds=0, workers=2,
            script_timeout=120, n_folds=2)
INFORMATIVE = ["signal_a", "signal_b", "signal_c"]


def _known_task(folder: Path) -> Path:
    """make_classification with shuffle=False: the first three columns carry the signal, the next two are
    noise by construction, plus a column of pure random numbers; a test file and an id column like a real task."""
    X, y = make_classification(n_samples=500, n_features=5, n_informative=3, n_redundant=0, n_repeated=0,
                               class_sep=1.5, flip_y=0.01, shuffle=False, random_state=0)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(X, columns=INFORMATIVE + ["useless_a", "useless_b"]).round(5)
    frame["noise"] = rng.normal(size=len(frame)).round(5)
    frame.insert(0, "row_id", np.arange(len(frame)))
    frame["label"] = np.where(y == 1, "yes", "no")
    folder.mkdir(parents=True)
    frame.iloc[:420].to_csv(folder / "train.csv", index=False)
    frame.iloc[420:].drop(columns=["label"]).to_csv(folder / "test.csv", index=False)
    # Log loss moves with every probability: a model that had seen the rows could not match the hold-out score.
    (folder / "description.md").write_text("Predict `label` (yes/no). Submissions are scored by log loss.\n")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str, Path]:
    root = tmp_path_factory.mktemp("explain")
    store = Store(root / "store")
    task = load_task(_known_task(root / "task"), target="label")
    run_id = create_run(store, task, RunConfig(**TINY), out_dir=root / "out")
    Pipeline(store, run_id).run()
    assert store.get_run(run_id)["status"] == "finished"
    return store, run_id, root


def _importances(ex: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {f["name"]: (f["importance_mean"], f["importance_std"]) for f in ex["features"]}


def test_importance_ranks_features_that_matter_above_pure_noise(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, root = run
    ex = explain.load_explanation(store.run_dir(run_id))
    assert ex is not None and ex["status"] == "ok", ex
    imp = _importances(ex)
    assert set(imp) == set(INFORMATIVE + ["useless_a", "useless_b", "noise"])  # the id is not a feature
    best = max(INFORMATIVE, key=lambda name: imp[name][0])
    assert ex["features"][0]["name"] in INFORMATIVE
    noise_mean, noise_std = imp["noise"]
    assert imp[best][0] > noise_mean + 2 * max(noise_std, imp[best][1]), imp
    assert ex["metric"] == "log_loss" and imp[best][0] > 0.05 and abs(noise_mean) < 0.05
    # Honest rows: all the locked hold-out rows (63 of 420), predicted by the model the hold-out run kept,
    # whose fold models never saw them, so the unshuffled score is the run's hold-out score.
    rows = ex["rows"]
    assert rows["source"] == "locked hold-out" and rows["used"] == rows["available"] == 63
    assert ex["model"] == "kept by the hold-out run"
    assert ex["baseline_score"] == pytest.approx(store.get_run(run_id)["holdout_score"], abs=1e-12)
    assert ex["n_repeats"] == 5 and all(len(f["importances"]) == 5 for f in ex["features"])
    # Partial dependence of the top three features, numeric grids, one probability curve of the positive class.
    pdp = ex["partial_dependence"]
    assert [p["feature"] for p in pdp] == [f["name"] for f in ex["features"][:3]]
    for p in pdp:
        assert p["kind"] == "numeric" and 3 <= len(p["grid"]) <= explain.PDP_GRID
        assert p["grid"] == sorted(p["grid"]) and list(p["values"]) == ["yes"]
        assert all(0 <= v <= 1 for v in p["values"]["yes"])
    top = pdp[0]["values"]["yes"]
    assert max(top) - min(top) > 0.2  # the most important feature moves the prediction
    # The driver predicted with the kept model: no fold was fitted in the sandbox job.
    stdout = (store.run_dir(run_id) / "explain" / "job" / "stdout.txt").read_text()
    assert stdout.count("Predicted with the kept model: nothing was fitted") == 2 and "Fold score" not in stdout
    assert {e["payload"]["status"] for e in store.events_of_kind(run_id, "explained")} == {"ok"}


def test_the_report_has_a_section_on_what_drives_the_model(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, root = run
    report = (root / "out" / "report.md").read_text()
    ex = explain.load_explanation(store.run_dir(run_id))
    section = report[report.index("## What drives the model"):]
    assert "locked hold-out" in section and "permutation_importance" in section
    assert f"| 1 | {ex['features'][0]['name']} |" in section
    assert f"**{ex['partial_dependence'][0]['feature']}**: the average probability of 'yes'" in section


def test_refitting_reproduces_the_kept_models_explanation(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, root = run
    run_dir = store.run_dir(run_id)
    with_model = explain.load_explanation(run_dir)
    backup = root / "holdout-model"
    shutil.copytree(run_dir / "model", backup)
    try:
        kept.discard_model(run_dir, "holdout")
        refitted = explain.explain_run(store, run_id)
    finally:
        shutil.rmtree(run_dir / "model")
        shutil.copytree(backup, run_dir / "model")
    assert refitted["model"] == "refitted on the search rows"
    stdout = (run_dir / "explain" / "job" / "stdout.txt").read_text()
    assert "Final Validation Performance" in stdout and "nothing was fitted" not in stdout
    # The same fold models, refitted on the same search rows with the same seed: the same explanation.
    assert refitted["baseline_score"] == pytest.approx(with_model["baseline_score"], abs=1e-9)
    got, want = _importances(refitted), _importances(with_model)
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-9), name


def test_cli_explain(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, root = run
    out = subprocess.run([sys.executable, "-m", "mlestar_core", "--store", str(store.root), "explain", run_id,
                          "--top", "3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "locked hold-out rows" in lines[0] and "kept by the hold-out run" in lines[0]
    listed = [ln.split()[0] for ln in lines[2:]]
    assert len(listed) == 3 and listed[0] in INFORMATIVE
    missing = subprocess.run([sys.executable, "-m", "mlestar_core", "--store", str(store.root), "explain", "nope"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr and "Traceback" not in missing.stderr


def test_charts_and_view(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, _ = run
    view = explanation_view(store, run_id)
    assert view.available and view.features[0].rank == 1 and "locked hold-out" in view.rows_text
    table = importance_frame(view)
    assert list(table.columns) == ["rank", "feature", "importance", "±"] and len(table) == 6
    fig = importance_chart(view)
    (bar,) = fig.data
    assert bar.orientation == "h" and list(bar.y)[-1] == view.features[0].name  # most important on top
    assert list(bar.x) == sorted(bar.x) and bar.error_x.visible and len(bar.error_x.array) == 6
    charts = partial_dependence_charts(view)
    assert len(charts) == 3 and charts[0].data[0].mode == "lines+markers"
    assert "Partial dependence on" in charts[0].layout.title.text


def test_chart_labels_stay_readable_and_distinct() -> None:
    from mlestar_core.views.explain import _view

    long = "a_really_long_feature_name_from_a_spreadsheet"
    ex = {"format": 1, "status": "ok", "script_id": 1, "metric": "rmse", "metric_title": "RMSE",
          "higher_is_better": False, "task_type": "multiclass", "output": "probability",
          "rows": {"source": "locked hold-out", "used": 10, "available": 10}, "model": "kept by the hold-out run",
          "baseline_score": 1.0, "n_repeats": 2,
          "features": [{"name": f"{long}_{i}", "importance_mean": 1.0 - i / 10, "importance_std": 0.2,
                        "importances": [1.0, 1.0]} for i in range(3)],
          "partial_dependence": [{"feature": "city", "kind": "categorical", "grid": ["Paris", "Lyon"],
                                  "values": {"a": [0.2, 0.3], "b": [0.8, 0.7]}, "rows": 10}]}
    view = _view("r", ex, Path("/nonexistent"))
    labels = list(importance_chart(view).data[0].y)
    assert len(set(labels)) == 3 and all(len(label) <= 40 for label in labels)
    (pdp,) = partial_dependence_charts(view)
    assert [t.type for t in pdp.data] == ["bar", "bar"] and [t.name for t in pdp.data] == ["P(a)", "P(b)"]


def test_no_hold_out_means_no_explanation_and_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    X, y = make_classification(n_samples=40, n_features=3, n_informative=2, n_redundant=0, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).round(4)
    frame["y"] = y
    folder.mkdir()
    frame.to_csv(folder / "train.csv", index=False)
    store = Store(tmp_path / "store")
    run_id = create_run(store, load_task(folder / "train.csv", target="y"), RunConfig(**TINY), out_dir=tmp_path / "o")
    Pipeline(store, run_id).run()
    ex = explain.load_explanation(store.run_dir(run_id))
    assert ex is not None and ex["status"] == "unavailable" and "no locked hold-out" in ex["reason"]
    assert "Not available: the run has no locked hold-out" in (tmp_path / "o" / "report.md").read_text()
    # Without a test file the full-data run still ran, to keep the model that predicts new rows.
    assert kept.kept_model(store.run_dir(run_id), "full") is not None
    frame.drop(columns=["y"]).head(7).to_csv(tmp_path / "new.csv", index=False)
    result = predict_rows(store, run_id, tmp_path / "new.csv")
    assert result.mode == KEPT_MODEL and list(result.frame.columns) == ["y"] and result.rows == 7


def test_explain_after_the_final_respects_the_time_budget(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    fake = SimpleNamespace(run_dir=tmp_path, run_id="r1", time_left=lambda: 3.0, store=SimpleNamespace(
        finished_execution=lambda sid, purpose: {"wall_time": 4.0}), emit=lambda k, p: events.append((k, p)),
        config=RunConfig())
    result = explain.explain_final(fake, 7, SimpleNamespace(), 0.9)
    assert result["status"] == "unavailable" and "time budget had 3 s left" in result["reason"]
    assert "python -m mlestar_core explain r1" in result["reason"]
    assert events == [("explained", {"status": "unavailable", "top": [], "reason": result["reason"]})]
    assert explain.load_explanation(tmp_path)["reason"] == result["reason"]


def test_explain_at_end_switched_off_says_how_to_get_it(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    fake = SimpleNamespace(run_dir=tmp_path, run_id="r2", time_left=lambda: 1e9, store=SimpleNamespace(
        finished_execution=lambda sid, purpose: {"wall_time": 1.0}), emit=lambda k, p: events.append((k, p)),
        config=RunConfig(explain_at_end=False))
    result = explain.explain_final(fake, 7, SimpleNamespace(), 0.9)  # plenty of time: off is why it is not computed
    assert result["status"] == "unavailable" and "switched off" in result["reason"]
    assert "python -m mlestar_core explain r2" in result["reason"]
    assert [k for k, _ in events] == ["explained"]


def test_the_engine_refuses_a_malformed_explanation() -> None:
    features = ["a", "b"]

    def raw(**change: Any) -> dict[str, Any]:
        base = {"baseline_score": 0.9,
                "features": [{"name": n, "importance_mean": 0.1, "importance_std": 0.01, "importances": [0.1, 0.1]}
                             for n in features],
                "partial_dependence": [{"feature": "a", "kind": "numeric", "grid": [1.0, 2.0],
                                        "values": {"yes": [0.2, 0.4]}}]}
        base.update(change)
        return base

    def problems(r: Any) -> list[str]:
        return explain.validate_raw(r, features, ["no", "yes"], "binary", 2)

    assert problems(raw()) == []
    assert problems([]) == ["explain_raw.json is not a JSON object"]
    assert problems(raw(baseline_score=float("nan")))
    assert problems(raw(features=raw()["features"][:1]))  # a feature left out
    assert problems(raw(features=raw()["features"] * 2))  # a feature twice
    bad = json.loads(json.dumps(raw()))
    bad["features"][0]["importances"] = [0.1]
    assert any("expected 2 finite importances" in p for p in problems(bad))
    bad = raw(partial_dependence=[{"feature": "a", "kind": "numeric", "grid": [1.0, 2.0],
                                   "values": {"yes": [0.2]}}])
    assert any("one finite value per grid point" in p for p in problems(bad))
    bad = raw(partial_dependence=[{"feature": "zzz", "kind": "numeric", "grid": [1.0], "values": {"yes": [1.0]}}])
    assert problems(bad)
    bad = raw(partial_dependence=[{"feature": "a", "kind": "numeric", "grid": [1.0], "values": {"maybe": [1.0]}}])
    assert any("curves are not named" in p for p in problems(bad))
