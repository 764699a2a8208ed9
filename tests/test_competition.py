"""MLE-bench competition folders: loading (three entry points, the private answers never a task's data), answers
in MLE-bench's variants, Kaggle medal thresholds as MLE-bench computes them, and a real run graded end to end.

The folders are built from scikit-learn's bundled datasets (real data, offline) in MLE-bench's layout:
<competition>/prepared/public/{train,test,sample_submission}.csv + description.md, <competition>/prepared/private/
with the answers, and a leaderboard.csv in MLE-bench's columns with a few hundred synthetic teams.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from mlestar_core import cli
from mlestar_core.competition import (
    CompetitionGrade,
    answers_frame,
    find_competition,
    grade_competition,
    grade_submission,
    leaderboard_scores,
    load_grade,
    medal_for,
    medal_positions,
    medal_thresholds,
    ordinal,
    report_lines,
    would_be_rank,
)
from mlestar_core.grading import SubmissionError
from mlestar_core.model import TaskError
from mlestar_core.store import Store
from mlestar_core.task import load_task
from mlestar_core.views.common import describe_event
from mlestar_core.views.run import competition_view

ROOT = Path(__file__).resolve().parents[1]

BREAST_DESC = ("# Breast cancer diagnosis\n\nPredict whether a tumour is malignant. The target column is "
               "`target`.\n\n## Evaluation\n\nSubmissions are evaluated on accuracy.\n")


def leaderboard_csv(scores: list[float], higher_is_better: bool) -> pd.DataFrame:
    """A leaderboard in MLE-bench's columns (Kaggle's export), best first as MLE-bench ships it."""
    ordered = sorted(scores, reverse=higher_is_better)
    n = len(ordered)
    return pd.DataFrame({"scoreNullable": ordered, "teamId": range(1000, 1000 + n),
                         "hasTeamName": [True] * n, "submissionDate": ["2020-01-01 00:00:00"] * n,
                         "score": ordered, "teamName": [f"team {i}" for i in range(n)]})


def make_competition(root: Path, name: str = "breast-cancer-diagnosis", *, answers: str | None = "test.csv",
                     leaderboard: str | None = ".", n_teams: int = 300) -> tuple[Path, pd.DataFrame]:
    """An MLE-bench competition folder from breast cancer; returns (folder, the test rows with their target).

    `answers`: the private file's name ("test.csv": the test rows plus the target, "answers.csv" or
    "gold_submission.csv": the sample submission's columns, None: no private folder). `leaderboard`: where
    leaderboard.csv goes, relative to the competition folder (None: nowhere)."""
    data = load_breast_cancer(as_frame=True).frame
    data.insert(0, "id", np.arange(10_000, 10_000 + len(data)))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data))
    test, train = data.iloc[order[:120]].reset_index(drop=True), data.iloc[order[120:]].reset_index(drop=True)
    comp = root / name
    public = comp / "prepared" / "public"
    public.mkdir(parents=True)
    train.to_csv(public / "train.csv", index=False)
    test.drop(columns="target").to_csv(public / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "target": 0}).to_csv(public / "sample_submission.csv", index=False)
    (public / "description.md").write_text(BREAST_DESC, encoding="utf-8")
    if answers is not None:
        private = comp / "prepared" / "private"
        private.mkdir()
        frame = test if answers == "test.csv" else test[["id", "target"]]
        frame.to_csv(private / answers, index=False)
        # Something only private/ holds, to look for wherever scripts could see it.
        (private / "grader_notes.txt").write_text(f"private answers of {name}: do not leak\n", encoding="utf-8")
    if leaderboard is not None:
        accuracies = np.clip(rng.beta(30, 3, size=n_teams), 0, 1).round(5).tolist()
        leaderboard_csv(accuracies, True).to_csv(comp / leaderboard / "leaderboard.csv", index=False)
    return comp, test


# -- loading: three entry points, private/ never task data ------------------------------------------------------


def test_each_entry_point_loads_the_public_folder_and_names_the_competition(tmp_path: Path) -> None:
    comp, _ = make_competition(tmp_path)
    public = comp / "prepared" / "public"
    for entry in (comp, comp / "prepared", public):
        task = load_task(entry)
        assert task.data_dir == public
        assert task.name == "breast-cancer-diagnosis"  # not "prepared" nor "public"
        assert (task.target, task.metric, task.task_type, task.id_column) == ("target", "accuracy", "binary", "id")
        assert task.description.startswith("# Breast cancer diagnosis")
        assert task.other_files == []  # private/ and the leaderboard are not the task's files
        assert task.n_test_rows == 120


def test_a_private_folder_is_never_loaded_as_task_data(tmp_path: Path) -> None:
    comp, _ = make_competition(tmp_path)
    private = comp / "prepared" / "private"
    with pytest.raises(TaskError, match="private answers"):
        load_task(private)
    with pytest.raises(TaskError, match="private answers"):
        load_task(private / "test.csv", target="target")
    with pytest.raises(TaskError, match="private answers"):
        load_task(comp, test_path=private / "test.csv")
    # train.csv directly in prepared/ next to private/: the folder is listed, never copied as an "other file".
    prepared = comp / "prepared"
    for f in ("train.csv", "test.csv", "sample_submission.csv"):
        (prepared / f).write_bytes((prepared / "public" / f).read_bytes())
    (prepared / "public").rename(comp / "public_moved")
    task = load_task(prepared)
    assert task.data_dir == prepared and "private" not in task.other_files


def test_a_zipped_competition_folder_uploads_and_grades_under_its_own_name(tmp_path: Path) -> None:
    import shutil

    from mlestar_core.uploads import save_zip_file

    comp, test = make_competition(tmp_path / "src")
    archive = Path(shutil.make_archive(str(tmp_path / "breast-cancer-diagnosis"), "zip", comp.parent, comp.name))
    folder = save_zip_file(tmp_path / "store", archive)  # what the app's zip upload and `--task x.zip` do
    task = load_task(folder, name=archive.stem)
    assert task.data_dir == folder / "prepared" / "public" and task.other_files == []
    sub = tmp_path / "sub.csv"
    test[["id", "target"]].to_csv(sub, index=False)
    grade = grade_competition(task, sub)
    assert grade is not None and grade.competition == "breast-cancer-diagnosis" and grade.score == 1.0
    assert grade.medal == "gold" and grade.rank == 1


def test_a_competition_without_train_csv_says_what_it_needs(tmp_path: Path) -> None:
    public = tmp_path / "image-comp" / "prepared" / "public"
    public.mkdir(parents=True)
    (public / "train_labels.csv").write_text("id,label\n1,0\n", encoding="utf-8")
    with pytest.raises(TaskError, match=r"train_labels\.csv.*looks like an MLE-bench competition folder"):
        load_task(tmp_path / "image-comp")


# -- finding and reading answers and leaderboards ---------------------------------------------------------------


@pytest.mark.parametrize("where", [".", "prepared", "prepared/private"])
def test_the_leaderboard_is_found_where_mlebench_variants_keep_it(tmp_path: Path, where: str) -> None:
    comp, _ = make_competition(tmp_path, leaderboard=where)
    files = find_competition(comp / "prepared" / "public")
    assert files is not None and files.leaderboard == (comp / where / "leaderboard.csv")
    assert files.name == "breast-cancer-diagnosis"
    # leaderboard.csv in private/ is never taken for the answers
    assert [p.name for p in files.answers] == ["test.csv"]


def test_a_plain_task_folder_is_not_a_competition(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    assert find_competition(ROOT / "demo_tasks" / "breast-cancer") is None
    folder = make_task_dir(None, files={"public/train.csv": "a,b\n1,2\n"})
    assert find_competition(folder / "public") is None  # public/ without private/ or prepared/: an ordinary task


@pytest.mark.parametrize("answers", ["test.csv", "answers.csv", "gold_submission.csv", "labels_2020.csv"])
def test_answer_file_variants_grade_a_perfect_and_a_bad_submission(tmp_path: Path, answers: str) -> None:
    comp, test = make_competition(tmp_path, answers=answers)
    task = load_task(comp)
    files = find_competition(task.data_dir)
    assert files is not None and [p.name for p in files.answers] == [answers]
    perfect = tmp_path / "perfect.csv"
    test[["id", "target"]].sample(frac=1, random_state=1).to_csv(perfect, index=False)  # any row order
    assert grade_submission(task, perfect, files.answers[0]) == 1.0
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": test["id"], "target": 1 - test["target"]}).to_csv(bad, index=False)
    assert grade_submission(task, bad, files.answers[0]) == 0.0
    # A submission missing rows is refused, not scored on the rows it has.
    short = tmp_path / "short.csv"
    test[["id", "target"]].head(50).to_csv(short, index=False)
    with pytest.raises(SubmissionError, match="lacks 70 of the 120"):
        grade_submission(task, short, files.answers[0])


def test_answers_that_fit_nothing_fall_back_to_the_next_file(tmp_path: Path) -> None:
    comp, test = make_competition(tmp_path, answers="answers.csv")
    private = comp / "prepared" / "private"
    (private / "answers.csv").rename(private / "gold_submission.csv")
    test.drop(columns="target").to_csv(private / "test.csv", index=False)  # no target: cannot be the answers
    task = load_task(comp)
    sub = tmp_path / "sub.csv"
    test[["id", "target"]].to_csv(sub, index=False)
    grade = grade_competition(task, sub)
    assert grade is not None and grade.score == 1.0
    assert Path(grade.answers_file or "").name == "gold_submission.csv"


def test_one_hot_answers_of_a_multiclass_probability_task(tmp_path: Path) -> None:
    wine = load_wine(as_frame=True).frame
    wine.insert(0, "id", range(len(wine)))
    test, train = wine.iloc[::4].reset_index(drop=True), wine.drop(index=wine.index[::4]).reset_index(drop=True)
    public = tmp_path / "wine" / "prepared" / "public"
    private = public.parent / "private"
    public.mkdir(parents=True)
    private.mkdir()
    train.to_csv(public / "train.csv", index=False)
    test.drop(columns="target").to_csv(public / "test.csv", index=False)
    classes = ["class_0", "class_1", "class_2"]
    pd.DataFrame({"id": test["id"], **{c: 1 / 3 for c in classes}}).to_csv(public / "sample_submission.csv",
                                                                           index=False)
    (public / "description.md").write_text("Predict the cultivar `target`. Evaluated on multi-class log loss.")
    onehot = pd.DataFrame({"id": test["id"], **{c: (test["target"] == i).astype(int) for i, c in enumerate(classes)}})
    onehot.to_csv(private / "gold_submission.csv", index=False)
    task = load_task(tmp_path / "wine")
    assert (task.submission_kind, task.metric, task.higher_is_better) == ("proba_per_class", "log_loss", False)
    answers = answers_frame(task, onehot)
    assert list(answers["target"]) == [str(v) for v in test["target"]]
    uniform = tmp_path / "uniform.csv"
    pd.DataFrame({"id": test["id"], **{c: 1 / 3 for c in classes}}).to_csv(uniform, index=False)
    assert grade_submission(task, uniform, private / "gold_submission.csv") == pytest.approx(np.log(3), rel=1e-6)


# -- Kaggle medal rules, as MLE-bench applies them --------------------------------------------------------------


@pytest.mark.parametrize(("n_teams", "positions"), [
    # 1-99 teams: top 10% / 20% / 40%, at least position 1 (int() truncates: 99 teams → 9, 19, 39)
    (1, (1, 1, 1)), (5, (1, 1, 2)), (50, (5, 10, 20)), (99, (9, 19, 39)),
    # 100-249: gold is the top 10 places, silver 20%, bronze 40%
    (100, (10, 20, 40)), (150, (10, 30, 60)), (249, (10, 49, 99)),
    # 250-999: gold top 10 + 0.2% of the teams, silver top 50, bronze top 100
    (250, (10, 50, 100)), (500, (11, 50, 100)), (999, (11, 50, 100)),
    # 1000+: gold top 10 + 0.2%, silver 5%, bronze 10%
    (1000, (12, 50, 100)), (2500, (15, 125, 250)), (10_000, (30, 500, 1000)),
])
def test_medal_positions_follow_the_kaggle_rules(n_teams: int, positions: tuple[int, int, int]) -> None:
    assert medal_positions(n_teams) == positions


def test_no_team_no_thresholds() -> None:
    with pytest.raises(ValueError):
        medal_positions(0)


def test_thresholds_are_the_scores_at_those_positions_and_reaching_one_wins_it() -> None:
    # 300 teams scoring 0.300 (first) down to 0.001 (last): the score at position p is (301 - p) / 1000.
    scores = [(301 - p) / 1000 for p in range(1, 301)]
    t = medal_thresholds(scores)
    assert t.positions == (10, 50, 100)
    assert (t.gold, t.silver, t.bronze) == (0.291, 0.251, 0.201)
    assert t.median == pytest.approx(0.1505)
    assert medal_for(0.291, t, True) == ("gold", True)  # exactly on the threshold wins it
    assert medal_for(0.29099, t, True) == ("silver", True)
    assert medal_for(0.2010000001, t, True) == ("bronze", True)  # rounded to 5 decimals as MLE-bench does
    assert medal_for(0.2, t, True) == (None, True)
    assert medal_for(0.1505, t, True) == (None, False)  # above the median is strictly above
    assert would_be_rank(0.291, scores, True) == 10  # ties share the place
    assert would_be_rank(1.0, scores, True) == 1 and would_be_rank(0.0, scores, True) == 301


def test_lower_is_better_mirrors_everything() -> None:
    scores = [p / 100 for p in range(1, 41)]  # 40 teams, RMSE 0.01 (best) .. 0.40
    t = medal_thresholds(scores)
    assert t.positions == (4, 8, 16) and (t.gold, t.silver, t.bronze) == (0.04, 0.08, 0.16)
    assert medal_for(0.04, t, False) == ("gold", True)
    assert medal_for(0.05, t, False) == ("silver", True)
    assert medal_for(0.3, t, False) == (None, False)
    assert would_be_rank(0.055, scores, False) == 6


def test_leaderboard_order_comes_from_the_metric_and_a_disagreeing_file_is_said() -> None:
    board = leaderboard_csv([0.5, 0.9, 0.7, 0.8], higher_is_better=False)  # listed lowest first
    board.loc[1, "score"] = np.nan  # a team without a final score: scoreNullable fills it
    board.loc[2, ["score", "scoreNullable"]] = np.nan  # no score at all: left out
    lb = leaderboard_scores(board, higher_is_better=True, name="leaderboard.csv")
    assert lb.scores == (0.9, 0.7, 0.5)
    assert any("1 of the 4 leaderboard rows have no score" in n for n in lb.notes)
    assert any("lists lower scores first" in n for n in lb.notes)


def test_regression_medals_with_a_lower_is_better_leaderboard(tmp_path: Path) -> None:
    diabetes = load_diabetes(as_frame=True).frame
    diabetes.insert(0, "id", range(len(diabetes)))
    test, train = diabetes.iloc[:80].reset_index(drop=True), diabetes.iloc[80:].reset_index(drop=True)
    public = tmp_path / "diabetes-progression" / "prepared" / "public"
    private = public.parent / "private"
    public.mkdir(parents=True)
    private.mkdir()
    train.to_csv(public / "train.csv", index=False)
    test.drop(columns="target").to_csv(public / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "target": 150.0}).to_csv(public / "sample_submission.csv", index=False)
    (public / "description.md").write_text("Predict `target`. Submissions are scored on root mean squared error.")
    test[["id", "target"]].to_csv(private / "answers.csv", index=False)
    leaderboard_csv([50.0 + i * 0.1 for i in range(200)], False).to_csv(public.parent / "leaderboard.csv",
                                                                          index=False)
    task = load_task(public)
    assert (task.metric, task.higher_is_better) == ("rmse", False)
    sub = tmp_path / "sub.csv"
    pd.DataFrame({"id": test["id"], "target": test["target"] + 3.0}).to_csv(sub, index=False)
    grade = grade_competition(task, sub)
    assert grade is not None and grade.score == pytest.approx(3.0)
    assert (grade.medal, grade.above_median, grade.rank, grade.n_teams) == ("gold", True, 1, 200)
    assert grade.gold_threshold == pytest.approx(50.9)  # 200 teams: gold is place 10
    assert "gold medal" in grade.headline() and "≤ 50.9" in grade.headline()


# -- what the user reads when something is missing ----------------------------------------------------------------


def test_no_answers_means_no_grade_and_no_leaderboard_means_score_only(tmp_path: Path) -> None:
    comp, test = make_competition(tmp_path / "a", answers=None)
    sub = tmp_path / "sub.csv"
    test[["id", "target"]].to_csv(sub, index=False)
    grade = grade_competition(load_task(comp), sub)
    assert grade is not None and not grade.graded and grade.n_teams == 300
    assert "no answers found" in grade.notes[0]
    text = "\n".join(report_lines(grade))
    assert "**Not graded.** no answers found" in text and "would have asked for" in text
    view = competition_view(grade)
    assert view is not None and view.badge == "Not graded"

    comp, _ = make_competition(tmp_path / "b", leaderboard=None)
    grade = grade_competition(load_task(comp), sub)
    assert grade is not None and grade.score == 1.0 and grade.n_teams is None
    text = "\n".join(report_lines(grade))
    assert "**Score only: no leaderboard**" in text and "no leaderboard.csv (looked in" in text
    assert "no leaderboard" in grade.headline()
    assert competition_view(grade).badge.startswith("Score only")  # type: ignore[union-attr]
    assert report_lines(None) == []


# -- a real run on an MLE-bench folder, through the CLI -------------------------------------------------------------


def _hashes(folder: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def graded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str, Path, Path, str]:
    root = tmp_path_factory.mktemp("mlebench_run")
    comp, _ = make_competition(root)
    store_dir, out = root / "store", root / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(["--store", str(store_dir), "run", "--task", str(comp), "--out", str(out), "-M", "1", "-T",
                         "0", "-K", "1", "-L", "1", "-R", "0", "--folds", "2", "--workers", "2",
                         "--no-explain"])  # what drives the model is not this file's subject
    assert code == 0, buf.getvalue()
    store = Store(store_dir)
    run_id = store.list_runs()[0]["id"]
    return store, run_id, comp, out, buf.getvalue()


def test_a_run_is_graded_end_to_end(graded_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, comp, out, stdout = graded_run
    grade = load_grade(store.run_dir(run_id))
    assert grade is not None and grade.graded and grade.competition == "breast-cancer-diagnosis"
    assert 0.85 < (grade.score or 0) <= 1.0
    task = load_task(comp)
    assert grade.score == grade_submission(task, out / "submission.csv", comp / "prepared" / "private" / "test.csv")
    assert grade.n_teams == 300 and grade.rank is not None and len(grade.leaderboard) == 300
    # the CLI says it after "run ... finished"
    assert f"run {run_id} finished" in stdout and "  competition: breast-cancer-diagnosis: " in stdout
    events = store.events_of_kind(run_id, "competition_graded")
    assert len(events) == 1 and events[0]["payload"]["score"] == grade.score
    assert describe_event("competition_graded", events[0]["payload"]).startswith("Competition grade — breast-cancer")
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Competition grade (MLE-bench)" in report and "| gold | ≥ " in report
    assert f"{grade.score:.6g}" in report


def test_the_private_answers_never_reach_a_script(graded_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, comp, _, _ = graded_run
    private = _hashes(comp / "prepared" / "private")
    run_dir = store.run_dir(run_id)
    assert (run_dir / "data").is_dir() and (run_dir / "work").is_dir()
    for folder in (run_dir / "data", run_dir / "work"):
        assert not private & _hashes(folder), f"a file of private/ reached {folder}"
        assert not [p for p in folder.rglob("*") if "private" in p.name.lower()]
    task = json.loads(store.get_run(run_id)["task_json"])
    assert "private" not in json.dumps(task["other_files"]) and Path(task["data_dir"]).name == "public"


def test_regrading_from_the_cli_and_a_view_of_the_grade(graded_run, capsys) -> None:  # type: ignore[no-untyped-def]
    store, run_id, comp, out, _ = graded_run
    saved = load_grade(store.run_dir(run_id))
    assert cli.main(["--store", str(store.root), "grade", run_id]) == 0
    assert capsys.readouterr().out.startswith("breast-cancer-diagnosis: ")
    again = load_grade(store.run_dir(run_id))
    assert again is not None and saved is not None and again.score == saved.score
    # another file graded on request leaves the run's grade alone
    data = pd.read_csv(comp / "prepared" / "private" / "test.csv")
    perfect = out.parent / "perfect.csv"
    data[["id", "target"]].to_csv(perfect, index=False)
    assert cli.main(["--store", str(store.root), "grade", run_id, "--submission", str(perfect)]) == 0
    assert "accuracy 1 on the competition's answers" in capsys.readouterr().out.replace("Accuracy", "accuracy")
    assert load_grade(store.run_dir(run_id)).score == saved.score  # type: ignore[union-attr]

    view = competition_view(saved)
    assert view is not None and view.score == saved.score and len(view.thresholds) == 4
    assert f"**{ordinal(saved.rank or 0)}** of the leaderboard's 300 teams" in view.rank_text
    assert len(view.leaderboard) == 300
    from mlestar_core.views.common import run_info
    from studio.charts import leaderboard_chart

    fig = leaderboard_chart(view, run_info(store.get_run(run_id)))
    assert len(fig.data) == 2 and fig.data[1].x[0] == saved.rank


def test_the_run_dashboard_shows_the_grade(graded_run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from apptest_helpers import open_page

    store, run_id, _, _, _ = graded_run
    monkeypatch.setenv("MLESTAR_HOME", str(store.root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])
    grade = load_grade(store.run_dir(run_id))
    assert grade is not None and grade.medal is not None  # 0.9+ accuracy beats the synthetic bronze threshold
    at = open_page("app_pages/run.py", run_id)
    assert "Competition grade · breast-cancer-diagnosis" in [s.value for s in at.subheader]
    assert any(f"{grade.medal.capitalize()} medal" in m.value for m in at.markdown if "badge[" in m.value)
    shown = {m.label: m for m in at.metric}
    assert shown["Score (Accuracy)"].value == f"{grade.score:.5g}"
    assert any(f"Would place **{ordinal(grade.rank or 0)}** of the leaderboard's 300 teams" in m.value
               for m in at.markdown)
    assert {"Gold ≥", "Silver ≥", "Bronze ≥", "Median >"} <= set(shown)
    assert len(at.get("plotly_chart")) == 2  # the best score so far, and the leaderboard


def test_a_grade_round_trips_through_json() -> None:
    grade = CompetitionGrade("c", "accuracy", "Accuracy", True, score=0.9, notes=["x"], leaderboard=[1.0, 0.5])
    assert CompetitionGrade.from_dict(json.loads(json.dumps(grade.to_dict()))) == grade
    assert "leaderboard" not in grade.to_dict(with_leaderboard=False)
