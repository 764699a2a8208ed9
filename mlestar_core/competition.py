"""MLE-bench competitions: the private answers and the leaderboard of a prepared folder, the final submission
graded with the task's metric and placed against the leaderboard's Kaggle medal thresholds.

MLE-bench's `prepare` writes `<competition>/prepared/public/` (all a run ever sees: `load_task` reads only
there) and `<competition>/prepared/private/` (the answers: `test.csv`, `answers.csv`, `gold_submission.csv`).
Its `leaderboard.csv` (Kaggle's final private leaderboard) may sit in the competition folder, `prepared/` or
`prepared/private/`. Scores come from `grading.score_submission`, the metric code the scripts and the engine
run (metrics.py); medals follow `mlebench/grade_helpers.py` (`Grader.rank_score`), which follows
kaggle.com/progression. The functions that decide are pure; reading files is kept at the edges.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import grading, metrics
from .model import Task, TaskError
from .task import is_private_dir, label_str, match_column, read_csv, sorted_classes

COMPETITION_FILE = "competition.json"  # in the run folder
LEADERBOARD_NAME = "leaderboard.csv"
# Preferred first: MLE-bench's answers live in private/test.csv or private/answers.csv (its configs' `answers`);
# gold_submission.csv is the same answers in the submission's form.
ANSWER_NAMES = ("answers.csv", "test.csv", "gold_submission.csv", "solution.csv", "test_answers.csv")
# Kaggle's leaderboard exports (MLE-bench's leaderboard.csv: scoreNullable, teamId, hasTeamName, submissionDate,
# score, teamName); the first column found holds the score, the others fill its gaps.
SCORE_COLUMNS = ("score", "scorenullable", "privatescore", "private_score", "privatescorenullable")
ROUND_DIGITS = 5  # MLE-bench rounds a score to 5 decimals before comparing it with the thresholds
MEDALS = ("gold", "silver", "bronze")


class CompetitionError(ValueError):
    """An answers file or a leaderboard that cannot be used; the message says why."""


# ----------------------------------------------------------------------------------------------
# Locating the competition's files
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompetitionFiles:
    name: str  # the competition folder's name (its MLE-bench id)
    root: Path  # the competition folder
    public: Path  # the task's data folder: the only one a run reads
    private: Path | None
    answers: tuple[Path, ...]  # candidate answer files, preferred first
    leaderboard: Path | None
    searched: tuple[Path, ...]  # where a leaderboard was looked for (for the message when there is none)


def _child(folder: Path | None, name: str) -> Path | None:
    """`folder/name` compared without case (MLE-bench folders come from many hands)."""
    if folder is None or not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir()) if p.name.lower() == name.lower()), None)


def answer_candidates(private: Path) -> list[Path]:
    """The CSV files of private/ that may hold the answers: the known names first, then any other CSV."""
    csvs = [p for p in sorted(private.iterdir()) if p.is_file() and p.suffix.lower() == ".csv"
            and not p.name.lower().startswith(("leaderboard", "sample_submission", "samplesubmission"))]
    rank = {n: i for i, n in enumerate(ANSWER_NAMES)}
    return sorted(csvs, key=lambda p: (rank.get(p.name.lower(), len(rank)), p.name))


def find_competition(data_dir: str | Path) -> CompetitionFiles | None:
    """The competition around a task's data folder, or None when it is not MLE-bench's `public/` (an ordinary
    task folder: nothing to grade against)."""
    public = Path(data_dir)
    if public.name.lower() != "public" or not public.is_dir():
        return None
    prepared = public.parent
    private = next((p for p in sorted(prepared.iterdir()) if p.is_dir() and is_private_dir(p)), None)
    in_prepared = prepared.name.lower() == "prepared"
    if private is None and not in_prepared:
        return None  # a plain task folder with its files under public/
    root = prepared.parent if in_prepared else prepared
    searched = tuple(dict.fromkeys(d for d in (root, prepared, private, public) if d is not None))
    leaderboard = next((lb for d in searched if (lb := _child(d, LEADERBOARD_NAME)) is not None and lb.is_file()),
                       None)
    return CompetitionFiles(name=root.name, root=root, public=public, private=private,
                            answers=tuple(answer_candidates(private)) if private else (), leaderboard=leaderboard,
                            searched=searched)


# ----------------------------------------------------------------------------------------------
# Answers and grading
# ----------------------------------------------------------------------------------------------


def _names(cols: Sequence[str], limit: int = 12) -> str:
    return ", ".join(cols[:limit]) + (", ..." if len(cols) > limit else "")


def answers_frame(task: Task, raw: pd.DataFrame, name: str = "the answers") -> pd.DataFrame:
    """The answers as `grading.score_submission` takes them: the id column (when the submission carries ids)
    and the target. Accepts the test rows plus the target column, or the sample submission's columns (one
    prediction column, or one column per class holding a one-hot answer)."""
    cols = [str(c) for c in raw.columns]
    raw = raw.set_axis(cols, axis=1)
    id_col = task.id_column if task.id_column and task.id_column in task.submission_columns else None
    out = pd.DataFrame(index=raw.index)
    if id_col is not None:
        found = match_column(id_col, cols)
        if found is None:
            raise CompetitionError(f"{name} has no {id_col!r} column to match the submission's rows by "
                                   f"(columns: {_names(cols)})")
        out[id_col] = raw[found]
    pred_cols = grading.prediction_columns(task)
    target = next((c for c in (match_column(task.target, cols),
                               match_column(pred_cols[0], cols) if len(pred_cols) == 1 else None)
                   if c is not None and c != id_col), None)
    if target is not None:
        y = raw[target]
    elif task.submission_kind == "proba_per_class" and all(match_column(c, cols) for c in pred_cols):
        onehot = raw[[match_column(c, cols) for c in pred_cols]].apply(pd.to_numeric, errors="coerce")
        if onehot.isna().any().any():
            raise CompetitionError(f"{name}: the class columns {_names(pred_cols)} hold values that are not numbers")
        y = pd.Series([task.classes[i] for i in onehot.to_numpy().argmax(axis=1)], index=raw.index)
    else:
        wanted = " or ".join(dict.fromkeys([task.target, *pred_cols]))
        raise CompetitionError(f"{name} has no answer column ({wanted}); columns: {_names(cols)}")
    out[task.target] = _as_task_labels(task, y)
    if id_col is None:
        out[grading.ROW_COLUMN] = range(len(out))  # no ids: rows are matched in test-file order
    elif out[task.target].isna().any():
        out = out[out[task.target].notna()]  # ids say which rows are scored: unanswered rows are not
    return out.reset_index(drop=True)


def _as_task_labels(task: Task, y: pd.Series) -> pd.Series:
    """Binary answers written 0/1 for classes with other names (a P(positive) column's gold file)."""
    if task.task_type != "binary" or y.isna().any():
        return y
    labels = {label_str(v) for v in y}
    if labels <= set(task.classes) or not labels <= {"0", "1"}:
        return y
    order = sorted_classes(task.classes)  # index 1 is the positive class, as in a P(positive) submission
    return y.map(lambda v: order[int(float(v))])


def _read_table(path: Path) -> pd.DataFrame:
    """A competition CSV (answers, leaderboard) read like the task's own files; its problems as CompetitionError."""
    try:
        return read_csv(path)
    except TaskError as e:
        raise CompetitionError(str(e)) from None


def load_answers(task: Task, path: str | Path) -> pd.DataFrame:
    """`answers_frame` of an answers CSV; raises CompetitionError when it cannot be used."""
    path = Path(path)
    return answers_frame(task, _read_table(path), path.name)


def grade_submission(task: Task, submission_path: str | Path, answers_path: str | Path) -> float:
    """The task's metric of a submission against a competition's answers, by the engine's own metric code.
    Raises grading.SubmissionError (the submission) or CompetitionError (the answers)."""
    answers = load_answers(task, answers_path)
    return grading.score_submission(task, grading.read_submission(task, submission_path), answers)


# ----------------------------------------------------------------------------------------------
# Leaderboard and medals (MLE-bench's rules)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaderboard:
    scores: tuple[float, ...]  # best first, by the task's metric
    notes: tuple[str, ...] = ()


def leaderboard_scores(frame: pd.DataFrame, higher_is_better: bool, name: str = "the leaderboard") -> Leaderboard:
    """The teams' scores, best first by the metric's direction (not by the file's order, which MLE-bench trusts:
    a file sorted the other way is said in a note)."""
    cols = {str(c).lower().replace(" ", ""): c for c in frame.columns}
    present = [cols[c] for c in SCORE_COLUMNS if c in cols]
    if not present:
        raise CompetitionError(f"{name} has no score column (looked for score or scoreNullable; columns: "
                               f"{_names([str(c) for c in frame.columns])})")
    score = pd.to_numeric(frame[present[0]], errors="coerce")
    for other in present[1:]:
        score = score.fillna(pd.to_numeric(frame[other], errors="coerce"))
    valid = score[np.isfinite(score.to_numpy(dtype=float))].to_numpy(dtype=float)
    if len(valid) == 0:
        raise CompetitionError(f"{name} holds no numeric score")
    notes: list[str] = []
    if len(valid) < len(frame):
        notes.append(f"{len(frame) - len(valid)} of the {len(frame)} leaderboard rows have no score and are left out")
    if len(valid) > 1 and valid[0] != valid[-1] and (valid[0] < valid[-1]) == higher_is_better:
        notes.append(f"{name} lists {'lower' if higher_is_better else 'higher'} scores first, but the task's metric "
                     f"is {'higher' if higher_is_better else 'lower'}-is-better: the thresholds follow the metric. "
                     "If the leaderboard is right, the task's metric is not the competition's.")
    ordered = sorted(valid.tolist(), reverse=higher_is_better)
    return Leaderboard(tuple(float(s) for s in ordered), tuple(notes))


def read_leaderboard(path: str | Path, higher_is_better: bool) -> Leaderboard:
    path = Path(path)
    return leaderboard_scores(_read_table(path), higher_is_better, path.name)


def medal_positions(n_teams: int) -> tuple[int, int, int]:
    """The leaderboard positions (1 = best) whose scores are the gold, silver and bronze thresholds for a
    competition of `n_teams` teams (kaggle.com/progression, as `mlebench.grade_helpers.Grader.rank_score`)."""
    if n_teams < 1:
        raise ValueError("a leaderboard needs at least one team")
    if n_teams < 100:
        return max(1, int(n_teams * 0.1)), max(1, int(n_teams * 0.2)), max(1, int(n_teams * 0.4))
    if n_teams < 250:
        return 10, max(1, int(n_teams * 0.2)), max(1, int(n_teams * 0.4))
    if n_teams < 1000:
        return 10 + int(n_teams * 0.002), 50, 100
    return 10 + int(n_teams * 0.002), max(1, int(n_teams * 0.05)), max(1, int(n_teams * 0.1))


@dataclass(frozen=True)
class MedalThresholds:
    gold: float
    silver: float
    bronze: float
    median: float
    n_teams: int
    positions: tuple[int, int, int]  # gold, silver, bronze positions on the leaderboard


def medal_thresholds(scores_best_first: Sequence[float]) -> MedalThresholds:
    """The score to reach for each medal: the score at its position, and the median of all teams' scores."""
    scores = list(scores_best_first)
    positions = medal_positions(len(scores))
    gold, silver, bronze = (float(scores[p - 1]) for p in positions)
    return MedalThresholds(gold, silver, bronze, float(np.median(scores)), len(scores), positions)


def medal_for(score: float, t: MedalThresholds, higher_is_better: bool) -> tuple[str | None, bool]:
    """(the medal, above the median): reaching a threshold wins it; above the median is strictly better."""
    thresholds = (t.gold, t.silver, t.bronze)
    medal = next((m for m, thr in zip(MEDALS, thresholds, strict=True) if reaches(score, thr, higher_is_better)), None)
    s = round(score, ROUND_DIGITS)
    return medal, (s > t.median if higher_is_better else s < t.median)


def reaches(score: float, threshold: float, higher_is_better: bool) -> bool:
    """The score (rounded as MLE-bench rounds it) is at least as good as the threshold."""
    s = round(score, ROUND_DIGITS)
    return s >= threshold if higher_is_better else s <= threshold


def would_be_rank(score: float, scores: Sequence[float], higher_is_better: bool) -> int:
    """The place the score would take on the leaderboard: 1 + the teams strictly better (ties share a place)."""
    s = round(score, ROUND_DIGITS)
    return 1 + sum(1 for x in scores if (x > s if higher_is_better else x < s))


# ----------------------------------------------------------------------------------------------
# The grade of a run
# ----------------------------------------------------------------------------------------------


@dataclass
class CompetitionGrade:
    competition: str
    metric: str  # a key of metrics.METRICS
    metric_title: str
    higher_is_better: bool
    score: float | None = None
    answers_file: str | None = None
    leaderboard_file: str | None = None
    n_teams: int | None = None
    gold_threshold: float | None = None
    silver_threshold: float | None = None
    bronze_threshold: float | None = None
    median_threshold: float | None = None
    medal: str | None = None  # gold, silver, bronze, or None
    above_median: bool | None = None
    rank: int | None = None  # the would-be place among the n_teams
    submission: str | None = None
    graded_at: float = 0.0
    notes: list[str] = field(default_factory=list)  # what is missing or was decided, in words
    leaderboard: list[float] = field(default_factory=list)  # the teams' scores, best first (for the chart)

    @property
    def graded(self) -> bool:
        return self.score is not None

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def thresholds(self) -> list[tuple[str, float]]:
        """(name, score to reach) for gold, silver, bronze and the median, when there is a leaderboard."""
        values = (self.gold_threshold, self.silver_threshold, self.bronze_threshold, self.median_threshold)
        return [(n, v) for n, v in zip((*MEDALS, "median"), values, strict=True) if v is not None]

    def headline(self) -> str:
        """The grade in one sentence (CLI, event log, report)."""
        return grade_text(self.to_dict(with_leaderboard=False))

    def to_dict(self, *, with_leaderboard: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not with_leaderboard:
            d.pop("leaderboard")
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompetitionGrade:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


def fmt_score(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def grade_text(d: dict[str, Any]) -> str:
    """`CompetitionGrade.headline` on its dict (an event payload), so readers need no dataclass."""
    name = d.get("competition") or "the competition"
    title = d.get("metric_title") or d.get("metric") or "score"
    if d.get("score") is None:
        why = next(iter(d.get("notes") or []), "it could not be graded")
        return f"{name}: not graded — {why}"
    score = f"{title} {fmt_score(d['score'])} on the competition's answers"
    if not d.get("n_teams"):
        return f"{name}: {score} (no leaderboard, so no medal comparison)"
    medal = d.get("medal")
    verdict = f"{medal} medal" if medal else ("no medal, above the median" if d.get("above_median")
                                             else "no medal, not above the median")
    cmp = "≥" if d.get("higher_is_better", True) else "≤"
    rank = f", would place {ordinal(int(d['rank']))} of {d['n_teams']} teams" if d.get("rank") else ""
    return (f"{name}: {verdict} — {score}{rank} (gold {cmp} {fmt_score(d.get('gold_threshold'))}, silver {cmp} "
            f"{fmt_score(d.get('silver_threshold'))}, bronze {cmp} {fmt_score(d.get('bronze_threshold'))}, median "
            f"{fmt_score(d.get('median_threshold'))})")


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def grade_competition(task: Task, submission: str | Path | None,
                      files: CompetitionFiles | None = None) -> CompetitionGrade | None:
    """Grade a submission of a task that came from an MLE-bench folder; None when it did not. Never raises for
    what the folder lacks or the submission gets wrong: the grade's notes say it."""
    files = files or find_competition(task.data_dir)
    if files is None:
        return None
    m = metrics.get_metric(task.metric)
    # The task's name: the competition folder's, or the zip's for an upload (unpacked into a folder named "task").
    grade = CompetitionGrade(competition=task.name or files.name, metric=task.metric, metric_title=m.title,
                             higher_is_better=task.higher_is_better, graded_at=time.time(),
                             submission=str(submission) if submission else None)
    hib = task.higher_is_better
    if task.metric_defaulted:
        grade.notes.append(f"the description names no metric, so the score is {m.title}, the default for a "
                           f"{task.task_type} task; the leaderboard may use another metric, so compare with care")
    board: Leaderboard | None = None
    if files.leaderboard is None:
        where = ", ".join(_rel(d, files.root) + "/" for d in files.searched)
        grade.notes.append(f"no {LEADERBOARD_NAME} (looked in {where}): the score is shown without medal thresholds")
    else:
        grade.leaderboard_file = str(files.leaderboard)
        try:
            board = read_leaderboard(files.leaderboard, hib)
        except CompetitionError as e:
            grade.notes.append(f"the leaderboard cannot be used ({e}): no medal comparison")
    thresholds = medal_thresholds(board.scores) if board is not None else None
    if board is not None and thresholds is not None:
        grade.notes += list(board.notes)
        grade.n_teams, grade.leaderboard = thresholds.n_teams, list(board.scores)
        grade.gold_threshold, grade.silver_threshold = thresholds.gold, thresholds.silver
        grade.bronze_threshold, grade.median_threshold = thresholds.bronze, thresholds.median

    if not files.answers:
        where = (f"in {_rel(files.private, files.root)}/" if files.private
                 else f"(no private/ folder beside {_rel(files.public, files.root)}/)")
        grade.notes.insert(0, f"no answers found {where}, so the submission is not graded")
        return grade
    if not submission or not Path(submission).is_file():
        grade.notes.insert(0, "no submission was written (the task has no test file, or the final run failed)")
        return grade
    problems: list[str] = []
    for path in files.answers:
        try:
            grade.score = grade_submission(task, submission, path)
        except (CompetitionError, grading.SubmissionError) as e:
            problems.append(f"{path.name}: {e}")
            continue
        grade.answers_file = str(path)
        break
    if grade.score is None:
        grade.notes.insert(0, "the submission could not be graded against the answers ("
                           + "; ".join(problems) + ")")
        return grade
    if board is not None and thresholds is not None:
        grade.medal, grade.above_median = medal_for(grade.score, thresholds, hib)
        grade.rank = would_be_rank(grade.score, board.scores, hib)
    return grade


def save_grade(run_dir: str | Path, grade: CompetitionGrade) -> Path:
    path = Path(run_dir) / COMPETITION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(grade.to_dict(), indent=2), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a file
    return path


def load_grade(run_dir: str | Path) -> CompetitionGrade | None:
    """The run's grade as saved, or None (not an MLE-bench task, not graded yet, or an unreadable file)."""
    try:
        return CompetitionGrade.from_dict(json.loads((Path(run_dir) / COMPETITION_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def report_lines(grade: CompetitionGrade | None) -> list[str]:
    """The report.md section; nothing for a task that did not come from an MLE-bench folder."""
    if grade is None:
        return []
    lines = ["## Competition grade (MLE-bench)", ""]
    if not grade.graded:
        lines += [f"**Not graded.** {grade.notes[0] if grade.notes else ''}".rstrip(), ""]
        if grade.thresholds():
            lines += [f"The leaderboard ({grade.n_teams} teams) would have asked for: "
                      + ", ".join(f"{n} {fmt_score(v)}" for n, v in grade.thresholds()) + ".", ""]
        lines += [f"- {n}" for n in grade.notes[1:]]
        return [*lines, ""] if grade.notes[1:] else lines
    answers = Path(grade.answers_file).name if grade.answers_file else "the answers"
    lines += [f"The final submission scores **{fmt_score(grade.score)}** ({grade.metric_title}, {grade.direction}) "
              f"against the competition's private answers (`{answers}`), computed by the same metric code as every "
              "validation score of this run.", ""]
    if grade.n_teams is None:
        lines += ["**Score only: no leaderboard**, so no medal comparison.", ""]
    else:
        verdict = f"**{grade.medal.capitalize()} medal**" if grade.medal else "**No medal**"
        median = "above" if grade.above_median else "not above"
        lines += [f"{verdict}, {median} the median; it would place {ordinal(grade.rank or 0)} of the leaderboard's "
                  f"{grade.n_teams} teams. Thresholds by MLE-bench's Kaggle medal rules for {grade.n_teams} teams:",
                  "", "| | score to reach | this run |", "|---|---|---|"]
        hib = grade.higher_is_better
        for name, value in grade.thresholds():
            if name == "median":
                ok, cmp = bool(grade.above_median), ">" if hib else "<"
            else:
                ok, cmp = reaches(grade.score, value, hib), "≥" if hib else "≤"
            lines.append(f"| {name} | {cmp} {fmt_score(value)} | {'✓' if ok else '✗'} |")
        lines.append("")
    lines += [f"- {n}" for n in grade.notes]
    return [*lines, ""] if grade.notes else lines
