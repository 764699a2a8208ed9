"""Scores are what the engine measures from a script's predictions, never what the script prints.

Real scripts run through the pipeline's executor on a demo task's run folders; each one misbehaves
in one way a careless or hostile script could.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from mlestar_core.brains.base import BrainContext
from mlestar_core.brains.offline.templates import baseline_script
from mlestar_core.config import RunConfig
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.report import write_report
from mlestar_core.store import Store
from mlestar_core.task import load_task

DEMOS = Path(__file__).resolve().parents[1] / "demo_tasks"
SCORE_LINE = re.compile(r'^print\(f"Final Validation Performance: .*$', re.M)


def _pipeline(tmp_path: Path, demo: str) -> Pipeline:
    store = Store(tmp_path / "store")
    task = load_task(DEMOS / demo)
    run_id = create_run(store, task, RunConfig(num_models=1, outer_steps=0, num_solutions=1, ensemble_rounds=0,
                                               workers=2, script_timeout=120), out_dir=tmp_path / "out")
    pipe = Pipeline(store, run_id)
    pipe._data()  # the run's folders and the engine's folds
    return pipe


def _script(pipe: Pipeline) -> str:
    """The trivial baseline, an honest script under the protocol (the run's own file names)."""
    return baseline_script(BrainContext(pipe.ctx.task, seed=pipe.config.seed))


def _execution(pipe: Pipeline, script_id: int) -> dict:
    (row,) = [e for e in pipe.store.table("executions", pipe.run_id) if e["script_id"] == script_id]
    return row


def test_a_false_printed_score_is_replaced_by_the_measured_one(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, "breast-cancer")
    honest = _script(pipe)
    liar = SCORE_LINE.sub('print("Final Validation Performance: 0.999")', honest)
    assert liar != honest
    good, lying = pipe._run_scripts([(honest, "initial", None, "honest"), (liar, "initial", None, "liar")],
                                    debug=False)
    assert good.score == pytest.approx(0.5)  # a constant prediction has ROC-AUC 0.5 on every fold
    assert lying.score == pytest.approx(good.score)  # the engine's number, not 0.999
    row = _execution(pipe, lying.script_id)
    assert row["claimed_score"] == 0.999 and row["score"] == pytest.approx(0.5)
    assert "0.999" in row["score_note"]
    assert _execution(pipe, good.script_id)["score_note"] is None
    kinds = [e["kind"] for e in pipe.store.events_after(pipe.run_id)]
    assert kinds.count("score_disagreement") == 1
    report = write_report(pipe.store, pipe.run_id, {}, tmp_path / "report").read_text()
    assert "1 script(s) printed a score the engine did not measure" in report and "0.999" in report
    assert len(good.fold_scores) == pipe.protocol.protocol.n_folds * pipe.protocol.protocol.n_repeats


def test_a_script_on_its_own_split_is_caught(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, "breast-cancer")
    # An 80/20 split of its own: predictions for a fifth of the rows only, whatever it prints.
    own_split = _script(pipe).replace("UNITS = fold_units(TRAIN_ROWS, y_all)", """\
from sklearn.model_selection import train_test_split
_fit, _held = train_test_split(np.arange(len(y_all)), test_size=0.2, random_state=1)
UNITS = [(0, 0, _fit, _held)]""")
    (res,) = pipe._run_scripts([(own_split, "initial", None, "own split")], debug=False)
    assert res.score is None
    row = _execution(pipe, res.script_id)
    assert row["exit_code"] == 0 and row["claimed_score"] is not None  # it ran and printed a number ...
    assert "misaligned" in row["score_note"]  # ... which the engine refused


def test_predictions_of_the_wrong_shape_are_caught(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, "diabetes-progression")
    # Two prediction columns for a regression target (an (n, 2) array): no `prediction` column.
    wrong = _script(pipe).replace(
        'return pd.DataFrame({"prediction": pred.reshape(len(pred))})',
        'return pd.DataFrame({"a": pred, "b": pred})')
    assert wrong != _script(pipe)
    (res,) = pipe._run_scripts([(wrong, "initial", None, "wrong shape")], debug=False)
    assert res.score is None
    assert "no 'prediction' column" in _execution(pipe, res.script_id)["score_note"]
    # The file had the protocol's key columns: only its prediction columns were wrong.
    sub = pd.read_csv(next((tmp_path / "store").rglob("oof.csv")))
    assert list(sub.columns) == ["repeat", "row", "a", "b"]


def test_the_chosen_ensemble_is_a_script_that_reproduces_the_engines_score(tmp_path: Path) -> None:
    from mlestar_core.model import SolutionSummary

    pipe = _pipeline(tmp_path, "wine-cultivar")  # multi-class log loss over per-class probabilities
    brain, ctx = pipe.brain, pipe.ctx
    cards = [c for c in brain.retrieve_models(ctx, 4) if c.family in ("linear", "svm", "knn")][:2]
    scored = pipe._run_scripts([(brain.write_initial_solution(ctx, c), "initial", None, c.name) for c in cards])
    library = pipe._ensemble_library(scored)
    assert len(library) == 2
    sols = [SolutionSummary(s.label, pipe._code(s.script_id), s.score) for s in library]
    rounds = [pipe._ensemble_round(r, library, sols, []) for r in range(1)]
    (best,) = rounds
    assert best["strategy"] == "caruana" and best["score"] is not None  # no script ran for this round
    written = pipe._ensemble_script(best, library, sols)
    code = pipe._code(written["script_id"])
    (ran,) = pipe._run_scripts([(code, "ensemble", None, "the written ensemble")], debug=False)
    # Run for real, the script's out-of-fold predictions score what the engine computed from stored ones.
    assert ran.score == pytest.approx(best["score"], rel=1e-9)
    assert ran.fold_scores == pytest.approx(best["fold_scores"], rel=1e-9)


def test_an_attempt_that_cannot_catch_up_is_stopped_early(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, "breast-cancer")
    brain, ctx = pipe.brain, pipe.ctx
    card = next(c for c in brain.retrieve_models(ctx, 4) if c.family == "linear")
    (good,) = pipe._run_scripts([(brain.write_initial_solution(ctx, card), "initial", None, "linear")])
    assert good.score is not None and len(good.fold_scores) >= 2
    # An attempt whose first folds are far worse, and which would then take long to finish.
    keys = pipe.protocol.unit_keys()
    lines = "".join(f'print("Fold score: repeat={r} fold={k} value=0.3", flush=True)\n' for r, k in keys[:-1])
    slow_and_bad = f"import time\n{lines}time.sleep(120)\n" + _script(pipe)
    (res,) = pipe._run_scripts([(slow_and_bad, "refine", good.script_id, "hopeless")],
                               stop_check=pipe._hopeless_check(good))
    assert res.score is None
    row = _execution(pipe, res.script_id)
    assert row["killed_reason"] == "early_stop" and "could not catch up" in row["score_note"]
    report = write_report(pipe.store, pipe.run_id, {}, tmp_path / "report").read_text()
    assert "1 refinement attempt(s) stopped early" in report and "printed a score" not in report
    assert len([s for s in pipe.store.table("scripts", pipe.run_id) if s["role"] == "debug"]) == 0  # not "repaired"
