"""Predicting new rows with a finished run (issue 12): the kept model, the refit fallback, the input checks,
the CLI and what the Predict page is given. Real runs of the offline brain, real sandboxed executions."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_RUN_CONFIG, FinishedRun

from mlestar_core import kept
from mlestar_core.access import LOCAL, Viewer
from mlestar_core.brains.base import BrainContext
from mlestar_core.brains.offline import OfflineBrain
from mlestar_core.brains.offline import ensemble as offline_ensemble
from mlestar_core.config import RunConfig
from mlestar_core.executor import Job, LocalExecutor
from mlestar_core.model import ModelCard, SolutionSummary
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.predict import KEPT_MARKER, KEPT_MODEL, REFITTED, PredictError, predict_rows, read_new_rows
from mlestar_core.store import Store
from mlestar_core.task import load_task
from mlestar_core.views.predict import check_upload, predict_form, predictable_runs, run_prediction

ROOT = Path(__file__).resolve().parents[1]
BC = ROOT / "demo_tasks" / "breast-cancer"
BAD = ROOT / "tests" / "data" / "bad"
TINY = TINY_RUN_CONFIG


@pytest.fixture(scope="module")
def run(tiny_finished_run: FinishedRun) -> tuple[Store, str, Path]:
    """The session's tiny breast-cancer run (shared with the Predict page's tests): store, run id, its folder."""
    return tiny_finished_run.store, tiny_finished_run.run_id, tiny_finished_run.root.parent


def _predict_dirs(store: Store, run_id: str) -> list[Path]:
    folder = store.run_dir(run_id) / "predict"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_final_runs_keep_the_fitted_model_with_the_run(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, _ = run
    final = store.step_result(run_id, "final")[1]["final_script_id"]
    run_dir = store.run_dir(run_id)
    for purpose in ("full", "holdout"):
        km = kept.kept_model(run_dir, purpose, final)
        assert km is not None, purpose
        assert km.files == ["model.pkl"] and km.bytes > 0 and km.origin == "final run"
        assert (run_dir / "model" / purpose / "model.pkl").is_file()
    # the working folders of the final runs no longer hold it: it lives with the run
    assert not any((run_dir / "work").glob("*/model"))
    assert {e["payload"]["purpose"] for e in store.events_of_kind(run_id, "model_kept")} == {"full", "holdout"}
    report = (run[2] / "out" / "report.md").read_text()
    assert "## Predicting new rows" in report and "nothing is refitted" in report


def test_kept_model_predicts_the_submission_without_fitting(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, root = run
    result = predict_rows(store, run_id, BC / "test.csv", root / "predictions.csv")
    assert result.mode == KEPT_MODEL and not result.refitted and result.note == ""
    # No fit happened: the template's marker, no fold scores, no validation score (and no oof.csv, see mode).
    assert KEPT_MARKER in result.stdout_tail
    assert "Fold score" not in result.stdout_tail and "Final Validation Performance" not in result.stdout_tail
    written = pd.read_csv(root / "predictions.csv")
    submission = pd.read_csv(root / "out" / "submission.csv")
    assert list(written.columns) == list(submission.columns) == ["id", "malignant"]
    # The kept fold models are the final run's: the same predictions as the run's own submission.
    assert written["id"].tolist() == submission["id"].tolist()
    np.testing.assert_allclose(written["malignant"], submission["malignant"], rtol=1e-12)
    assert not _predict_dirs(store, run_id)  # the job's folder is cleaned up after a good prediction


def test_rows_in_any_order_with_shuffled_columns_come_back_in_input_order(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, root = run
    test = pd.read_csv(BC / "test.csv", dtype=str, keep_default_na=False)
    rows = test.sample(frac=1.0, random_state=3).iloc[:25]
    rows = rows[list(reversed(rows.columns))]
    rows.to_csv(root / "shuffled.csv", index=False)
    result = predict_rows(store, run_id, root / "shuffled.csv")
    assert result.rows == 25 and result.mode == KEPT_MODEL
    assert result.frame["id"].tolist() == rows["id"].tolist()
    by_id = pd.read_csv(root / "out" / "submission.csv", dtype=str).set_index("id")["malignant"]
    np.testing.assert_allclose(result.frame["malignant"].astype(float),
                               by_id.loc[rows["id"]].astype(float).to_numpy(), rtol=1e-12)


def test_without_a_kept_model_it_refits_says_so_and_keeps_that_fit(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, root = run
    run_dir = store.run_dir(run_id)
    backup = root / "model-backup"
    shutil.copytree(run_dir / "model", backup)
    try:
        kept.discard_model(run_dir, "full")
        refit = predict_rows(store, run_id, BC / "test.csv")
        assert refit.mode == REFITTED and "kept no fitted model" in refit.note
        assert "refitting" in refit.describe()
        assert "Final Validation Performance" in refit.stdout_tail and KEPT_MARKER not in refit.stdout_tail
        submission = pd.read_csv(root / "out" / "submission.csv")
        np.testing.assert_allclose(refit.frame["malignant"].astype(float), submission["malignant"], rtol=1e-9)
        # the refit kept its state: the next prediction does not refit
        km = kept.kept_model(run_dir, "full")
        assert km is not None and km.origin == "prediction"
        again = predict_rows(store, run_id, BC / "test.csv")
        assert again.mode == KEPT_MODEL
        # --refit forces it even with a kept model
        assert predict_rows(store, run_id, BC / "test.csv", refit=True).mode == REFITTED
    finally:
        shutil.rmtree(run_dir / "model")
        shutil.copytree(backup, run_dir / "model")


def test_bad_input_is_a_clear_error_before_anything_runs(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, run_id, _ = run
    before = _predict_dirs(store, run_id)
    test = pd.read_csv(BC / "test.csv")

    def refused(frame_or_bytes: pd.DataFrame | bytes, name: str = "new.csv") -> str:
        path = tmp_path / name
        if isinstance(frame_or_bytes, bytes):
            path.write_bytes(frame_or_bytes)
        else:
            frame_or_bytes.to_csv(path, index=False)
        with pytest.raises(PredictError) as info:
            predict_rows(store, run_id, path, tmp_path / "out.csv")
        return str(info.value)

    msg = refused(test.drop(columns=["mean_radius", "worst_area"]))
    assert "lacks the column(s) 'mean_radius', 'worst_area'" in msg and "The columns it needs" in msg
    msg = refused(test.assign(favourite_colour="red"))
    assert "'favourite_colour'" in msg and "training data does not have" in msg and "lacks" not in msg
    msg = refused(test.assign(malignant=1))
    assert "target column 'malignant'" in msg
    msg = refused(test.drop(columns=["id"]))
    assert "lacks the column(s) 'id'" in msg and "names each row" in msg
    msg = refused(test.rename(columns={"mean_texture": "mean_textur"}))
    assert "Renamed columns? mean_textur → mean_texture" in msg
    msg = refused(pd.concat([test.head(3), test.head(1)]))
    assert "repeats id values" in msg
    assert "no rows" in refused(test.head(0))
    assert "empty" in refused(b"")
    # An unreadable CSV gets the New run page's words (task.read_csv): semicolons, Latin-1, binary junk.
    assert "separates its columns with semicolons" in refused(test.to_csv(index=False, sep=";").encode())
    assert "not UTF-8" in refused((BAD / "latin1" / "train.csv").read_bytes())
    assert "not a text CSV" in refused(b"PK\x03\x04" + b"\x00" * 64, "book.csv")
    with pytest.raises(PredictError, match="does not exist"):
        predict_rows(store, run_id, tmp_path / "nowhere.csv")
    assert _predict_dirs(store, run_id) == before  # nothing ran for any of them
    # Extra columns may be dropped on request, with a warning.
    frame, warnings = read_new_rows(kept.finished_run(store, run_id),
                                    _csv(tmp_path, test.assign(note="x")), drop_extra=True)
    assert list(frame.columns) == list(test.columns) and "dropped the column(s) 'note'" in warnings[0]


def _csv(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "rows.csv"
    frame.to_csv(path, index=False)
    return path


def _cli(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlestar_core", "--store", str(store.root), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_predict_exit_codes_and_messages(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, run_id, root = run
    out = tmp_path / "predictions.csv"
    ok = _cli(store, "predict", run_id, "--input", str(BC / "test.csv"), "--output", str(out))
    assert ok.returncode == 0, ok.stderr
    assert "with the model the final run kept" in ok.stdout and out.is_file()
    assert len(pd.read_csv(out)) == len(pd.read_csv(BC / "test.csv"))

    unknown = _cli(store, "predict", "no-such-run", "--input", str(BC / "test.csv"), "--output", str(out))
    assert unknown.returncode == 2 and "no run 'no-such-run'" in unknown.stderr
    unfinished = create_run(store, load_task(BC), RunConfig(**TINY))
    pending = _cli(store, "predict", unfinished, "--input", str(BC / "test.csv"), "--output", str(out))
    assert pending.returncode == 2 and "not finished" in pending.stderr
    bad = tmp_path / "bad.csv"
    pd.read_csv(BC / "test.csv").drop(columns=["mean_area"]).to_csv(bad, index=False)
    refused = _cli(store, "predict", run_id, "--input", str(bad), "--output", str(out))
    assert refused.returncode == 2 and "'mean_area'" in refused.stderr
    for result in (unknown, pending, refused):
        assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1
    store.delete_run(unfinished)


def test_what_the_predict_page_is_given(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, _ = run
    (choice,) = [r for r in predictable_runs(store, LOCAL) if r["id"] == run_id]
    assert choice["kept"] and run_id in choice["label"]
    form = predict_form(store, run_id, LOCAL)
    assert form.ready and form.kept and "nothing is refitted" in form.mode_text
    assert form.id_column == "id" and "mean_radius" in form.required_columns and "malignant" not in \
        form.required_columns
    template = pd.read_csv(io.BytesIO(form.template_csv))
    assert list(template.columns) == list(pd.read_csv(BC / "test.csv", nrows=0).columns) and len(template) == 5
    assert not predict_form(store, "nope", LOCAL).ready

    data = (BC / "test.csv").read_bytes()
    check = check_upload(store, run_id, data, "test.csv", LOCAL)
    assert check.ok and check.rows == 114 and check.preview is not None
    bad = check_upload(store, run_id, data.replace(b"mean_radius", b"radius"), "test.csv", LOCAL)
    assert not bad.ok and "'mean_radius'" in bad.error
    outcome = run_prediction(store, run_id, data, "test.csv", LOCAL)
    assert outcome.ok and outcome.mode == KEPT_MODEL and outcome.rows == 114
    assert outcome.file_name == "test_predictions.csv"
    assert pd.read_csv(io.BytesIO(outcome.csv)).shape == (114, 2)
    refused = run_prediction(store, run_id, b"a;b\n1;2\n", "x.csv", LOCAL)
    assert not refused.ok and refused.bad_input


def test_another_users_run_cannot_be_predicted_with(run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, _ = run  # made by the CLI: nobody owns it, so a signed-in user sees it only with show_unowned
    alice = Viewer("alice")
    assert predictable_runs(store, alice) == []
    assert [r["id"] for r in predictable_runs(store, Viewer("alice", show_unowned=True))] == [run_id]
    data = (BC / "test.csv").read_bytes()
    before = _predict_dirs(store, run_id)
    form = predict_form(store, run_id, alice)
    assert not form.ready and form.reason == f"Run `{run_id}` is not in the store (it may have been deleted)."
    assert not form.required_columns and not form.template_csv  # nothing about the run leaks
    assert check_upload(store, run_id, data, "test.csv", alice).error == form.reason
    refused = run_prediction(store, run_id, data, "test.csv", alice)
    assert not refused.ok and refused.bad_input and refused.error == form.reason and not refused.csv
    assert _predict_dirs(store, run_id) == before  # nothing ran
    assert predict_form(store, "no-such-run", alice).reason == \
        "Run `no-such-run` is not in the store (it may have been deleted)."  # the same words as a foreign run


FOREIGN = '''\
# A hand-written solution that follows the evaluation protocol and keeps a file when MLESTAR_MODEL_DIR is set,
# but ignores MLESTAR_PREDICT_FROM: it always fits.
import os

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SUBMIT = os.environ.get("MLESTAR_SUBMIT", "1") != "0"
MODEL_DIR = os.environ.get("MLESTAR_MODEL_DIR")
train = pd.read_csv("./input/train.csv")
test = pd.read_csv("./input/test.csv") if os.path.exists("./input/test.csv") else None
FEATURES = [c for c in train.columns if c not in ("id", "malignant")]
y = train["malignant"].to_numpy()
folds = pd.read_csv("./input/folds.csv")
parts, scores, tests = [], [], []
for r in sorted(folds["repeat"].unique()):
    f = folds[folds["repeat"] == r]
    for k in sorted(f.loc[f["fold"] >= 0, "fold"].unique()):
        fit, held = f.loc[f["fold"] != k, "row"].to_numpy(), f.loc[f["fold"] == k, "row"].to_numpy()
        model = make_pipeline(StandardScaler(), LogisticRegression()).fit(train.loc[fit, FEATURES], y[fit])
        pred = model.predict_proba(train.loc[held, FEATURES])
        scores.append(roc_auc_score(y[held], pred[:, 1]))
        parts.append(pd.DataFrame({"repeat": r, "row": held, "0": pred[:, 0], "1": pred[:, 1]}))
        if SUBMIT and test is not None:
            tests.append(model.predict_proba(test[FEATURES]))
pd.concat(parts).to_csv("oof.csv", index=False)
print(f"Final Validation Performance: {np.mean(scores)}")
if MODEL_DIR:
    os.makedirs(MODEL_DIR, exist_ok=True)
    with open(os.path.join(MODEL_DIR, "note.txt"), "w") as out:
        out.write("kept, but never read back")
if SUBMIT and test is not None:
    mean = np.mean(tests, axis=0)
    pd.DataFrame({"row": np.arange(len(test)), "0": mean[:, 0], "1": mean[:, 1]}).to_csv("test_pred.csv", index=False)
    pd.DataFrame({"id": test["id"], "malignant": mean[:, 1]}).to_csv("submission.csv", index=False)
'''


def test_a_solution_that_ignores_predict_from_is_refitted_and_said(tmp_path: Path) -> None:
    # A fork starts from a given script: here one that keeps a file but never loads it back.
    store = Store(tmp_path / "store")
    run_id = create_run(store, load_task(BC), RunConfig(**{**TINY, "start_code": FOREIGN}), out_dir=tmp_path / "out")
    Pipeline(store, run_id).run()
    final = store.step_result(run_id, "final")[1]["final_script_id"]
    assert "ignores MLESTAR_PREDICT_FROM" in store.get_script(final)["code"]
    assert kept.kept_model(store.run_dir(run_id), "full", final) is not None  # it kept something...
    result = predict_rows(store, run_id, BC / "test.csv")
    # ...but fitted anyway (it wrote oof.csv): the engine says the prediction was refitted, and why.
    assert result.mode == REFITTED and "does not honour MLESTAR_PREDICT_FROM" in result.note
    submission = pd.read_csv(tmp_path / "out" / "submission.csv")
    np.testing.assert_allclose(result.frame["malignant"].astype(float), submission["malignant"], rtol=1e-9)


def test_an_offline_ensemble_keeps_its_members_and_combiner_and_predicts_from_them(tmp_path: Path) -> None:
    task = load_task(BC)
    ctx = BrainContext(task, seed=7, n_folds=2)
    brain = OfflineBrain()
    members = [SolutionSummary(f, brain.write_initial_solution(ctx, ModelCard(f, "", "", "kb", family=f)), None)
               for f in ("linear", "hist_gb")]
    code = offline_ensemble.render(ctx, members, {"strategy": "stacking", "weights": None})
    with LocalExecutor(workers=1, timeout=120) as ex:
        fitted = ex.run(Job(code=code, workdir=tmp_path / "fit", inputs=BC,
                            env={"MLESTAR_SUBMIT": "1", kept.ENV_MODEL_DIR: kept.JOB_MODEL_DIR}))
        assert fitted.exit_code == 0, fitted.stderr[-2000:]
        model = tmp_path / "fit" / "model"
        saved = sorted(str(p.relative_to(model)) for p in model.rglob("*.pkl"))
        assert saved == ["ensemble.pkl", "solution_1/model.pkl", "solution_2/model.pkl"]
        inputs = tmp_path / "inputs"
        kept.stage_files(BC, inputs)
        kept.stage_files(tmp_path / "fit" / "model", inputs / "model")
        again = ex.run(Job(code=code, workdir=tmp_path / "predict", inputs=inputs,
                           env={"MLESTAR_SUBMIT": "1", kept.ENV_PREDICT_FROM: "./input/model"}))
    assert again.exit_code == 0, again.stderr[-2000:]
    assert KEPT_MARKER in again.stdout and "Final Validation Performance" not in again.stdout
    assert not (tmp_path / "predict" / "oof.csv").exists()
    first = pd.read_csv(tmp_path / "fit" / "test_pred.csv")
    second = pd.read_csv(tmp_path / "predict" / "test_pred.csv")
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fit" / "submission.csv"),
                                  pd.read_csv(tmp_path / "predict" / "submission.csv"))


def test_manifest_lists_only_what_the_script_left(tmp_path: Path) -> None:
    # Links and special files in a kept folder are dropped before it is listed; nothing is ever followed.
    job_model = tmp_path / "work" / "model"
    (job_model / "sub").mkdir(parents=True)
    (job_model / "model.pkl").write_bytes(b"x" * 10)
    (job_model / "sub" / "part.bin").write_bytes(b"y" * 5)
    (job_model / "answers.csv").symlink_to(tmp_path / "secret.csv")
    run_dir = tmp_path / "run"
    km = kept.keep_model(run_dir, "full", 3, job_model)
    assert km is not None and km.files == ["model.pkl", "sub/part.bin"] and km.bytes == 15
    assert not job_model.exists() and json.loads((run_dir / "model" / "full.json").read_text())["script_id"] == 3
    assert kept.kept_model(run_dir, "full", 4) is None  # another script's model is not this one's
    kept.discard_other_models(run_dir, 4)
    assert kept.kept_model(run_dir, "full") is None and not (run_dir / "model" / "full").exists()
    assert kept.keep_model(run_dir, "full", 3, tmp_path / "nothing-here") is None
