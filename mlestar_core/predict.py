"""Predict new rows with a finished run's final solution (issue 12, "Predict").

    python -m mlestar_core predict RUN_ID --input new.csv --output predictions.csv

The new rows are checked against the columns the model was trained with before anything runs (a
missing or an extra column is a clear error naming it; an unreadable CSV gets the same messages as
the New run page). Then the final solution itself runs, in the sandbox like every script, on a copy
of the run's full data with the new rows as its test file:

- with the fitted state the final run kept (`MLESTAR_PREDICT_FROM`, see kept.py): nothing is refitted;
- otherwise (a run from before models were kept, a solution that keeps nothing, or a kept state that
  fails to load) the solution is run as it was in the final run, refitting on the full training data,
  and the result says so. That run keeps its state, so the next prediction does not refit.

The submission it writes is validated by the engine like any submission (columns, one row per new
row, ids, NaN, probabilities in [0, 1]) and returned in the run's submission format, in input order.
"""

from __future__ import annotations

import collections
import difflib
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import grading, kept
from .executor import ExecResult, Job, LocalExecutor
from .kept import FinishedRun, RunNotUsable, finished_run
from .model import Task, TaskError
from .task import MAX_FILE_BYTES, normalize_ids, read_csv

KEPT_MODEL = "kept model"
REFITTED = "refitted"
# What a kept-model prediction prints (the offline templates): the proof that nothing was fitted.
KEPT_MARKER = "Predicted with the kept model: nothing was fitted"


class PredictError(ValueError):
    """New rows that cannot be predicted as they are; the message says what to change."""


class PredictFailed(RuntimeError):
    """The solution ran but produced no usable predictions; the message says why and where its files are."""


@dataclass
class PredictResult:
    run_id: str
    script_id: int
    rows: int
    mode: str  # KEPT_MODEL or REFITTED
    note: str  # why it refitted (empty for the kept model)
    seconds: float
    frame: pd.DataFrame  # the predictions, as text, in the submission format and input order
    output: Path | None = None
    warnings: list[str] = field(default_factory=list)
    stdout_tail: str = ""

    @property
    def refitted(self) -> bool:
        return self.mode == REFITTED

    def describe(self) -> str:
        how = ("with the model the final run kept (nothing was refitted)" if not self.refitted
               else f"by refitting the solution on the full training data ({self.note})")
        return f"{self.rows} row(s) predicted by script #{self.script_id} {how} in {self.seconds:.1f} s"


# ------------------------------------------------------------------ what the new rows must look like


@dataclass
class InputLayout:
    """The columns new rows must (and may) have, in the order the solution's test file had them."""

    layout: list[str]  # the test file's columns (the train file's minus the target without a test file)
    required: list[str]  # the training feature columns, plus the id when the submission needs it
    id_column: str | None  # the id column of the submission format, if it needs one
    target: str


def input_layout(fr: FinishedRun) -> InputLayout:
    task = fr.task
    if fr.data.test_file:
        layout = [str(c) for c in read_csv(fr.data.full_dir / fr.data.test_file, nrows=0).columns]
    else:
        layout = [str(c) for c in read_csv(fr.data.full_dir / fr.data.train_file, nrows=0).columns
                  if str(c) != task.target]
    id_needed = task.id_column if task.id_column and task.id_column in task.submission_columns else None
    features = [c.name for c in task.columns if c.name != task.id_column]
    required = [c for c in layout if c in features or c == id_needed]
    required += [c for c in features if c not in required]
    if id_needed and id_needed not in required:
        required.append(id_needed)
    return InputLayout(layout=layout + [c for c in required if c not in layout], required=required,
                       id_column=id_needed, target=task.target)


def _names(cols: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(c) for c in cols[:limit])
    return shown + (f" and {len(cols) - limit} more" if len(cols) > limit else "")


def read_new_rows(fr: FinishedRun, path: Path, *, drop_extra: bool = False,
                  drop_hint: str = "drop them with --drop-extra-columns") -> tuple[pd.DataFrame, list[str]]:
    """The new rows as text (values exactly as written), in the solution's test-file layout, and warnings.
    PredictError names every problem: unreadable CSV (the New run page's words), missing or extra columns
    (`drop_hint` says how to drop extra ones: the CLI's flag, or the Predict page's option)."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise PredictError(f"{path} does not exist; pass the CSV of the rows to predict.")
    size = path.stat().st_size
    if size == 0:
        raise PredictError(f"{name} is empty (0 bytes); add a header row and data rows.")
    if size > MAX_FILE_BYTES:
        raise PredictError(f"{name} is {size / 2**30:.1f} GB, over the {MAX_FILE_BYTES / 2**30:.0f} GB limit; "
                           "predict it in smaller parts.")
    try:
        frame = read_csv(path, dtype=str, keep_default_na=False)
    except TaskError as exc:
        raise PredictError(str(exc)) from None
    except OSError as exc:
        raise PredictError(f"cannot read {path}: {exc}") from None
    frame.columns = [str(c) for c in frame.columns]
    lay = input_layout(fr)
    have = list(frame.columns)
    missing = [c for c in lay.required if c not in have]
    extra = [c for c in have if c not in lay.layout]
    warnings: list[str] = []
    if missing or (extra and not drop_extra):
        parts = []
        if missing:
            why = (f" ({lay.id_column!r} names each row in the predictions)" if lay.id_column in missing else "")
            parts.append(f"{name} lacks the column(s) {_names(missing)} that the model was trained with{why}")
        target_extra = [c for c in extra if c == lay.target]
        other_extra = [c for c in extra if c != lay.target]
        if target_extra:
            parts.append(f"{'it' if parts else name} has the target column {lay.target!r}, which is what the "
                         "model predicts: remove it")
        if other_extra:
            parts.append(f"{'it' if parts else name} has the column(s) {_names(other_extra)}, which the training "
                         f"data does not have: remove them (or {drop_hint})")
        lower = {c.lower(): c for c in missing}
        renames = [f"{c} → {lower[m[0]]}" for c in extra
                   if (m := difflib.get_close_matches(c.lower(), list(lower), n=1, cutoff=0.6))]
        hint = f" Renamed columns? {', '.join(renames)}." if renames else ""
        need = f" The columns it needs: {_names(lay.required, 40)}."
        raise PredictError("; ".join(parts) + "." + hint + need)
    if extra:
        warnings.append(f"dropped the column(s) {_names(extra)}, which the training data does not have")
    if len(frame) == 0:
        raise PredictError(f"{name} has a header but no rows; add the rows to predict.")
    if lay.id_column:
        ids = normalize_ids(frame[lay.id_column])
        dup = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
        if dup:
            raise PredictError(f"{name} repeats {lay.id_column} values ({_names(dup, 5)}): each row needs its own "
                               "id, the predictions are matched to the rows by it.")
        if any(i == "" for i in ids):
            raise PredictError(f"{name} has rows without a {lay.id_column} value; give every row an id.")
    out = pd.DataFrame(index=range(len(frame)))
    for c in lay.layout:
        # A column the model does not use (a test-only or id column the submission does not need) may be absent.
        out[c] = frame[c].to_numpy() if c in frame.columns else [str(i) for i in range(len(frame))] \
            if c == fr.task.id_column else ""
    return out, warnings


def _sample_submission(task: Task, fr: FinishedRun, rows: pd.DataFrame, id_column: str | None) -> pd.DataFrame:
    """A sample submission for the new rows: their ids and a placeholder per prediction column (the values of the
    run's own sample submission when it has one), so a solution that fills in the sample finds the right rows."""
    sample_path = fr.data.full_dir / fr.sample_name
    first: dict[str, str] = {}
    if sample_path.is_file():
        head = read_csv(sample_path, nrows=1, dtype=str, keep_default_na=False)
        if len(head):
            first = {str(c): str(head.iloc[0][c]) for c in head.columns}
    pred_cols = [c for c in task.submission_columns if c != id_column]
    out = pd.DataFrame(index=range(len(rows)))
    for c in task.submission_columns:
        if c == id_column:
            out[c] = rows[c].to_numpy()
        elif c in first:
            out[c] = first[c]
        elif task.submission_kind == "value":
            out[c] = "0.0"
        elif task.submission_kind == "proba_positive":
            out[c] = "0.5"
        elif task.submission_kind == "proba_per_class":
            out[c] = repr(1 / max(1, len(pred_cols)))
        else:
            out[c] = task.classes[0] if task.classes else ""
    return out


# ------------------------------------------------------------------ running the solution


def make_executor(fr: FinishedRun) -> LocalExecutor:
    """One sandboxed job at a time, with the run's own limits."""
    return LocalExecutor(workers=1, timeout=fr.config.script_timeout, memory_mb=fr.config.memory_mb)


def _tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _read_output(fr: FinishedRun, workdir: Path, rows: pd.DataFrame, lay: InputLayout) -> pd.DataFrame:
    """The script's submission.csv checked like any submission, as text, in input order; PredictFailed if not."""
    task = fr.task
    path = workdir / "submission.csv"
    if path.is_symlink() or not path.is_file():
        raise PredictFailed("it wrote no submission.csv")
    try:
        typed = grading.read_submission(task, path)
        text = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (grading.SubmissionError, ValueError) as exc:
        raise PredictFailed(f"its submission.csv cannot be read: {exc}") from None
    expected: Any = list(rows[lay.id_column]) if lay.id_column else len(rows)
    problems = grading.validate_submission(task, typed, expected)
    if problems:
        raise PredictFailed("its predictions failed the engine's checks: " + "; ".join(problems))
    text.columns = [str(c) for c in text.columns]
    text = text[list(task.submission_columns)]
    if lay.id_column:
        position = {v: i for i, v in enumerate(normalize_ids(text[lay.id_column]))}
        text = text.iloc[[position[v] for v in normalize_ids(rows[lay.id_column])]]
    return text.reset_index(drop=True)


def _attempt(fr: FinishedRun, executor: LocalExecutor, work: Path, rows: pd.DataFrame, lay: InputLayout,
             *, from_model: kept.KeptModel | None) -> tuple[ExecResult, Path]:
    """One sandboxed run of the final solution on the new rows; returns its result and working folder."""
    tag = "kept" if from_model is not None else "refit"
    inputs = work / f"input-{tag}"
    kept.stage_files(fr.data.full_dir, inputs, skip={fr.test_name, fr.sample_name})
    rows.to_csv(inputs / fr.test_name, index=False)
    _sample_submission(fr.task, fr, rows, lay.id_column).to_csv(inputs / fr.sample_name, index=False)
    env = {"MLESTAR_SUBMIT": "1"}
    if from_model is not None:
        kept.stage_files(from_model.folder, inputs / kept.MODEL_ROOT)
        env[kept.ENV_PREDICT_FROM] = f"./input/{kept.MODEL_ROOT}"
    else:  # a refit keeps its state, so the next prediction of this run need not refit
        env[kept.ENV_MODEL_DIR] = kept.JOB_MODEL_DIR
    job = Job(code=fr.code, workdir=work / f"job-{tag}", inputs=inputs, env=env,
              timeout=fr.config.script_timeout, script_name="solution.py", label=f"predict {fr.run_id} ({tag})")
    return executor.run(job), job.workdir


def predict_rows(store: Any, run_id: str, input_path: Path, output_path: Path | None = None, *,
                 drop_extra: bool = False, refit: bool = False,
                 executor: LocalExecutor | None = None) -> PredictResult:
    """Predict the rows of `input_path` with run `run_id`'s final solution; write them to `output_path` when
    given. Raises RunNotUsable (unknown / unfinished run), PredictError (bad input) or PredictFailed."""
    fr = finished_run(store, run_id)
    rows, warnings = read_new_rows(fr, Path(input_path), drop_extra=drop_extra)
    lay = input_layout(fr)
    started = time.monotonic()
    model = None if refit else kept.kept_model(fr.run_dir, "full", fr.script_id)
    work = fr.run_dir / "predict" / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    work.mkdir(parents=True)
    own = executor is None
    ex = executor or make_executor(fr)
    failures: list[str] = []
    try:
        attempts: list[kept.KeptModel | None] = [model] if model is not None else []
        attempts.append(None)
        note = ("asked to refit" if refit else
                "this run kept no fitted model: it finished before models were kept, or its solution does not "
                "save one (MLESTAR_MODEL_DIR)")
        for from_model in attempts:
            res, workdir = _attempt(fr, ex, work, rows, lay, from_model=from_model)
            if res.exit_code != 0:
                failures.append(f"{'with the kept model' if from_model else 'refitting'}: {res.error_text(1500)}")
                if from_model is not None:
                    note = "the kept model could not predict (see the first error below), so the solution refitted"
                continue
            try:
                frame = _read_output(fr, workdir, rows, lay)
            except PredictFailed as exc:
                failures.append(f"{'with the kept model' if from_model else 'refitting'}: the solution ran but {exc}")
                if from_model is not None:
                    note = "the kept model's predictions failed the checks, so the solution refitted"
                continue
            refitted = from_model is None or (workdir / "oof.csv").exists()
            if from_model is not None and refitted:
                note = ("the solution does not honour MLESTAR_PREDICT_FROM: it refitted on the training rows "
                        "instead of loading the kept model")
            if from_model is None:
                kept.keep_model(fr.run_dir, "full", fr.script_id, workdir / kept.JOB_MODEL_DIR, origin="prediction")
            result = PredictResult(run_id=run_id, script_id=fr.script_id, rows=len(frame),
                                   mode=REFITTED if refitted else KEPT_MODEL, note=note if refitted else "",
                                   seconds=time.monotonic() - started, frame=frame, warnings=warnings,
                                   stdout_tail=_tail(res.stdout))
            if failures:
                result.warnings.append("the kept model failed first: " + failures[0][:500])
            if output_path is not None:
                output_path = Path(output_path)
                output_path.parent.mkdir(parents=True, exist_ok=True)
                frame.to_csv(output_path, index=False)
                result.output = output_path
            shutil.rmtree(work, ignore_errors=True)
            return result
    finally:
        if own:
            ex.close()
    raise PredictFailed(f"run {run_id}'s solution (script #{fr.script_id}) could not predict {Path(input_path).name}"
                        f"; its files are in {work}.\n" + "\n".join(failures))


__all__ = ["KEPT_MODEL", "REFITTED", "InputLayout", "PredictError", "PredictFailed", "PredictResult",
           "RunNotUsable", "input_layout", "predict_rows", "read_new_rows"]
