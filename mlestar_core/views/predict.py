"""Predict (app_pages/predict.py): new rows through a finished run's final solution. Plain data, no Streamlit.

The page's flow, one function per step:

- `predictable_runs(store, viewer)`: the finished runs this viewer may use, with whether each kept its model;
- `predict_form(store, run_id, viewer)`: the columns new rows need (`columns_frame` as a table), a template
  CSV to download, whether the prediction will use the kept model or refit, or why the run cannot predict;
- `check_upload(store, run_id, data, filename, viewer)`: the uploaded bytes checked before anything runs (the
  same messages as the CLI and the New run page), with a preview;
- `run_prediction(store, run_id, data, filename, viewer)`: the prediction itself (blocks for seconds to
  minutes: the page runs it under a spinner), with the CSV to download in the submission format.

Every entry point takes the viewer (`mlestar_core.access.Viewer`) and refuses a run that viewer may not see with
the same words as a run that does not exist: another user's run cannot be predicted with, even by a forged id.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import access, kept
from ..executor import LocalExecutor
from ..predict import PredictError, PredictFailed, input_layout, predict_rows, read_new_rows
from ..task import read_csv

PREVIEW_ROWS = 20
DROP_HINT = "tick “Drop extra columns” to ignore them"  # the page's way to drop extra columns


def _finished(store: Any, run_id: str, viewer: access.Viewer) -> kept.FinishedRun:
    """The run as kept.finished_run gives it, or RunNotUsable; another user's run reads as no run at all."""
    if not access.can_see(viewer, store.get_run(run_id) if run_id else None):
        raise kept.RunNotUsable(f"Run `{run_id}` is not in the store (it may have been deleted).")
    return kept.finished_run(store, run_id)


# ------------------------------------------------------------------ choosing a run


def predictable_runs(store: Any, viewer: access.Viewer) -> list[dict[str, Any]]:
    """Finished runs the viewer may see, newest first: id, name, label (for a select box), kept (a fitted model
    to predict with)."""
    out = []
    for r in access.visible(viewer, store.list_runs()):
        if r["status"] != "finished":
            continue
        has_model = kept.kept_model(store.run_dir(r["id"]), "full") is not None
        score = "" if r.get("best_score") is None else f", validation {r['best_score']:.4g}"
        out.append({"id": r["id"], "name": r["name"], "kept": has_model,
                    "label": f"{r['name']} ({r['id']}{score}){'' if has_model else ' — will refit'}"})
    return out


def default_run(runs: Sequence[dict[str, Any]], selected: str | None) -> int:
    """The picker's first choice: the run in view when it is finished, else the newest finished run."""
    ids = [r["id"] for r in runs]
    return ids.index(selected) if selected in ids else 0


def not_finished_text(run: dict[str, Any] | None) -> str:
    """Why the run in view is not offered (empty when it is, or when no run is in view)."""
    if run is None or run["status"] == "finished":
        return ""
    return (f"The run in view, **{run['name']}**, is {run['status']}: predicting needs a finished run's final "
            "solution, so a finished run is picked instead.")


@dataclass
class PredictForm:
    run_id: str
    ready: bool  # False: `reason` says why this run cannot predict
    reason: str = ""
    task_name: str = ""
    target: str = ""
    required_columns: list[str] = field(default_factory=list)  # every one must be in the upload
    optional_columns: list[str] = field(default_factory=list)  # accepted, filled in when absent
    id_column: str | None = None  # names each row of the predictions
    submission_columns: list[str] = field(default_factory=list)
    kept: bool = False
    mode_text: str = ""  # what will happen: the kept model, or a refit (and why)
    template_csv: bytes = b""  # header + a few example rows (the run's test rows, or its training rows minus target)
    template_name: str = "new_rows.csv"
    refit_seconds: float | None = None  # how long the final full-data run took (a refit costs about that)


def predict_form(store: Any, run_id: str, viewer: access.Viewer) -> PredictForm:
    try:
        fr = _finished(store, run_id, viewer)
    except kept.RunNotUsable as exc:
        return PredictForm(run_id=run_id, ready=False, reason=str(exc))
    lay = input_layout(fr)
    km = kept.kept_model(fr.run_dir, "full", fr.script_id)
    took = None
    if km is not None:
        mode = f"Uses the model the run kept ({km.describe()}): nothing is refitted."
    else:
        row = store.finished_execution(fr.script_id, "full") or {}
        took = float(row["wall_time"]) if row.get("wall_time") else None
        mode = ("This run kept no fitted model: the final solution is refitted on the full training data first"
                f"{f' (its final run took {took:.0f} s)' if took else ''}; that fit is kept, so the next prediction "
                "is quick.")
    source = fr.data.full_dir / (fr.data.test_file or fr.data.train_file)
    example = read_csv(source, nrows=5, dtype=str, keep_default_na=False)
    template = pd.DataFrame({c: example[c] if c in example.columns else "" for c in lay.layout})
    return PredictForm(
        run_id=run_id, ready=True, task_name=fr.task.name, target=fr.task.target,
        required_columns=list(lay.required), optional_columns=[c for c in lay.layout if c not in lay.required],
        id_column=lay.id_column, submission_columns=list(fr.task.submission_columns), kept=km is not None,
        mode_text=mode, template_csv=template.to_csv(index=False).encode(),
        template_name=f"{fr.task.name}_new_rows.csv", refit_seconds=took)


def columns_frame(form: PredictForm) -> pd.DataFrame:
    """The columns new rows need, for st.dataframe: column, needed (id / required / optional), what it is."""
    rows = []
    for c in form.required_columns:
        if c == form.id_column:
            rows.append((c, "id", "names each row: the predictions are matched to the rows by it"))
        else:
            rows.append((c, "required", "a column the model was trained with"))
    rows += [(c, "optional", "not used by the model: may be left out") for c in form.optional_columns]
    return pd.DataFrame(rows, columns=["column", "needed", "what"])


def columns_text(form: PredictForm) -> str:
    """One sentence above the table: how many columns, and the target to leave out."""
    n_id = 1 if form.id_column else 0
    return (f"New rows need the **{len(form.required_columns) - n_id} columns the model was trained with**"
            + (f" and the id column **{form.id_column}**" if form.id_column else "")
            + f", in any order; leave out **{form.target}**, which is what the model predicts. The predictions come "
            f"back as {', '.join(form.submission_columns)}, one row per new row, in your rows' order.")


def spinner_text(form: PredictForm) -> str:
    if form.kept:
        return "Predicting with the kept model (the final solution runs in the sandbox)…"
    took = f", about {form.refit_seconds:.0f} s" if form.refit_seconds else ""
    return f"Refitting the final solution on the full training data, then predicting{took}…"


# ------------------------------------------------------------------ the upload and the prediction


def upload_key(run_id: str, data: bytes, drop_extra: bool) -> str:
    """What a prediction's result belongs to: this run, these bytes, this option (a new upload clears it)."""
    return f"{run_id}:{int(drop_extra)}:{hashlib.sha256(data).hexdigest()}"


@dataclass
class UploadCheck:
    ok: bool
    error: str = ""  # one clear message (missing / extra columns, unreadable CSV)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    preview: pd.DataFrame | None = None  # the first rows as the solution will see them


def _as_file(data: bytes, filename: str, folder: Path) -> Path:
    name = Path(filename or "new_rows.csv").name or "new_rows.csv"
    path = folder / name
    path.write_bytes(data)
    return path


def check_upload(store: Any, run_id: str, data: bytes, filename: str, viewer: access.Viewer, *,
                 drop_extra: bool = False) -> UploadCheck:
    """The uploaded CSV against the run's training columns, before anything runs."""
    try:
        fr = _finished(store, run_id, viewer)
        with tempfile.TemporaryDirectory(prefix="mlestar-upload-") as tmp:
            rows, warnings = read_new_rows(fr, _as_file(data, filename, Path(tmp)), drop_extra=drop_extra,
                                           drop_hint=DROP_HINT)
    except (kept.RunNotUsable, PredictError) as exc:
        return UploadCheck(ok=False, error=str(exc))
    return UploadCheck(ok=True, warnings=warnings, rows=len(rows), preview=rows.head(PREVIEW_ROWS))


@dataclass
class PredictOutcome:
    ok: bool
    error: str = ""
    bad_input: bool = False  # True: the upload or the run is the problem (fix and retry); False: the solution failed
    mode: str = ""  # predict.KEPT_MODEL or predict.REFITTED
    summary: str = ""  # one sentence: how many rows, how, how long
    refit_note: str = ""
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    preview: pd.DataFrame | None = None
    csv: bytes = b""  # the predictions, for st.download_button
    file_name: str = "predictions.csv"


def run_prediction(store: Any, run_id: str, data: bytes, filename: str, viewer: access.Viewer, *,
                   drop_extra: bool = False, refit: bool = False,
                   executor: LocalExecutor | None = None) -> PredictOutcome:
    """Predict the uploaded rows (runs the final solution in the sandbox: seconds to minutes)."""
    try:
        _finished(store, run_id, viewer)
        with tempfile.TemporaryDirectory(prefix="mlestar-upload-") as tmp:
            result = predict_rows(store, run_id, _as_file(data, filename, Path(tmp)), drop_extra=drop_extra,
                                  refit=refit, executor=executor)
    except (kept.RunNotUsable, PredictError) as exc:
        return PredictOutcome(ok=False, error=str(exc), bad_input=True)
    except PredictFailed as exc:
        return PredictOutcome(ok=False, error=str(exc))
    buf = io.StringIO()
    result.frame.to_csv(buf, index=False)
    stem = Path(filename or "new_rows").stem or "new_rows"
    return PredictOutcome(ok=True, mode=result.mode, summary=result.describe(), refit_note=result.note,
                          warnings=list(result.warnings), rows=result.rows, seconds=result.seconds,
                          preview=result.frame.head(PREVIEW_ROWS), csv=buf.getvalue().encode(),
                          file_name=f"{stem}_predictions.csv")


def split_error(text: str) -> tuple[str, str]:
    """A failure's first line (for st.error) and the rest (the solution's output, for st.code)."""
    head, _, rest = str(text).strip().partition("\n")
    return head, rest.strip()
