"""What the Predict page (and the explanation on the run pages) shows: plain data, no Streamlit.

Page flow this module serves (issue 12):

- `predictable_runs(store, owner)`: the finished runs to choose from, with whether each kept its model;
- `predict_form(store, run_id)`: the columns new rows need, a template CSV to download, whether the
  prediction will use the kept model or refit, or why the run cannot predict;
- `check_upload(store, run_id, data, filename)`: the uploaded CSV checked before anything runs (the same
  messages as the CLI and the New run page), with a preview;
- `run_prediction(store, run_id, data, filename)`: the prediction itself (blocks for seconds to
  minutes: run it with a spinner or in a thread), with the CSV to download;
- `explanation_view(store, run_id)` / `compute_explanation(store, run_id)`: "What drives the model" as
  stored, or computed on demand; `studio/explain_charts.py` draws it.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import explain, kept
from .executor import LocalExecutor
from .predict import PredictError, PredictFailed, input_layout, predict_rows, read_new_rows
from .task import read_csv

PREVIEW_ROWS = 20


# ------------------------------------------------------------------ choosing a run


def predictable_runs(store: Any, owner: str | None = None) -> list[dict[str, Any]]:
    """Finished runs, newest first: id, name, label (for a select box), kept (a fitted model to predict with)."""
    out = []
    for r in store.list_runs(owner):
        if r["status"] != "finished":
            continue
        has_model = kept.kept_model(store.run_dir(r["id"]), "full") is not None
        score = "" if r.get("best_score") is None else f", validation {r['best_score']:.4g}"
        out.append({"id": r["id"], "name": r["name"], "kept": has_model,
                    "label": f"{r['name']} ({r['id']}{score}){'' if has_model else ' — will refit'}"})
    return out


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


def predict_form(store: Any, run_id: str) -> PredictForm:
    try:
        fr = kept.finished_run(store, run_id)
    except kept.RunNotUsable as exc:
        return PredictForm(run_id=run_id, ready=False, reason=str(exc))
    lay = input_layout(fr)
    km = kept.kept_model(fr.run_dir, "full", fr.script_id)
    if km is not None:
        mode = f"Uses the model the run kept ({km.describe()}): nothing is refitted."
    else:
        row = store.finished_execution(fr.script_id, "full") or {}
        took = f" (its final run took {float(row['wall_time']):.0f} s)" if row.get("wall_time") else ""
        mode = ("This run kept no fitted model: the final solution is refitted on the full training data first"
                f"{took}; that fit is kept, so the next prediction is quick.")
    source = fr.data.full_dir / (fr.data.test_file or fr.data.train_file)
    example = read_csv(source, nrows=5, dtype=str, keep_default_na=False)
    template = pd.DataFrame({c: example[c] if c in example.columns else "" for c in lay.layout})
    return PredictForm(
        run_id=run_id, ready=True, task_name=fr.task.name, target=fr.task.target,
        required_columns=list(lay.required), optional_columns=[c for c in lay.layout if c not in lay.required],
        id_column=lay.id_column, submission_columns=list(fr.task.submission_columns), kept=km is not None,
        mode_text=mode, template_csv=template.to_csv(index=False).encode(),
        template_name=f"{fr.task.name}_new_rows.csv")


# ------------------------------------------------------------------ the upload and the prediction


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


def check_upload(store: Any, run_id: str, data: bytes, filename: str, *, drop_extra: bool = False) -> UploadCheck:
    """The uploaded CSV against the run's training columns, before anything runs."""
    try:
        fr = kept.finished_run(store, run_id)
        with tempfile.TemporaryDirectory(prefix="mlestar-upload-") as tmp:
            rows, warnings = read_new_rows(fr, _as_file(data, filename, Path(tmp)), drop_extra=drop_extra)
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


def run_prediction(store: Any, run_id: str, data: bytes, filename: str, *, drop_extra: bool = False,
                   refit: bool = False, executor: LocalExecutor | None = None) -> PredictOutcome:
    """Predict the uploaded rows (runs the final solution in the sandbox: seconds to minutes)."""
    try:
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


# ------------------------------------------------------------------ what drives the model


@dataclass
class FeatureImportance:
    rank: int
    name: str
    mean: float  # how much worse the metric gets when the feature is shuffled (metric units)
    std: float  # spread over the shuffles
    importances: list[float]


@dataclass
class PDPCurve:
    feature: str
    kind: str  # numeric | datetime | categorical
    grid: list[Any]  # floats for numeric, text otherwise
    series: dict[str, list[float]]  # "prediction", or a class label -> average probability per grid point
    y_title: str


@dataclass
class ExplanationView:
    run_id: str
    available: bool
    reason: str = ""  # why not available (or "" )
    computed: bool = False  # False: never computed for this run (offer to compute it)
    script_id: int | None = None
    metric_title: str = ""
    higher_is_better: bool = True
    x_title: str = ""  # the importance axis, in words
    rows_text: str = ""
    model_text: str = ""
    baseline: float | None = None
    holdout_score: float | None = None
    n_repeats: int = 0
    features: list[FeatureImportance] = field(default_factory=list)  # most important first
    pdp: list[PDPCurve] = field(default_factory=list)
    summary_markdown: str = ""  # the report's section, for st.markdown
    note: str = ""


def _view(run_id: str, ex: dict[str, Any] | None, run_dir: Path) -> ExplanationView:
    section = "\n".join(explain.report_lines(run_dir, run_id)).strip()
    if ex is None:
        return ExplanationView(run_id=run_id, available=False, computed=False,
                               reason="not computed yet for this run", summary_markdown=section)
    if ex.get("status") != "ok":
        return ExplanationView(run_id=run_id, available=False, computed=True, reason=str(ex.get("reason") or ""),
                               script_id=ex.get("script_id"), summary_markdown=section)
    output = ex["output"]
    pdp = []
    for p in ex["partial_dependence"]:
        if output == "prediction":
            y_title = "average prediction"
        else:
            y_title = ("average probability of " + ", ".join(repr(k) for k in p["values"])) if len(p["values"]) == 1 \
                else "average probability per class"
        pdp.append(PDPCurve(feature=p["feature"], kind=p["kind"], grid=list(p["grid"]),
                            series={k: list(v) for k, v in p["values"].items()}, y_title=y_title))
    rows = ex["rows"]
    return ExplanationView(
        run_id=run_id, available=True, computed=True, script_id=ex["script_id"], metric_title=ex["metric_title"],
        higher_is_better=ex["higher_is_better"],
        x_title=f"how much worse {ex['metric_title']} gets when the feature is shuffled",
        rows_text=f"{rows['used']} of the {rows['available']} locked hold-out rows (never used to fit the model)",
        model_text=f"model {ex['model']}", baseline=ex["baseline_score"], holdout_score=ex.get("holdout_score"),
        n_repeats=ex["n_repeats"],
        features=[FeatureImportance(rank=i, name=f["name"], mean=f["importance_mean"], std=f["importance_std"],
                                    importances=list(f["importances"]))
                  for i, f in enumerate(ex["features"], start=1)],
        pdp=pdp, summary_markdown=section, note=ex.get("note") or "")


def explanation_view(store: Any, run_id: str) -> ExplanationView:
    """The stored explanation of a run (nothing is computed)."""
    run_dir = store.run_dir(run_id)
    return _view(run_id, explain.load_explanation(run_dir), run_dir)


def compute_explanation(store: Any, run_id: str, *, executor: LocalExecutor | None = None) -> ExplanationView:
    """Compute (or recompute) a finished run's explanation now, in the sandbox; blocks for seconds to minutes."""
    run_dir = store.run_dir(run_id)
    try:
        ex = explain.explain_run(store, run_id, executor=executor)
    except (kept.RunNotUsable, explain.ExplainFailed) as exc:
        view = _view(run_id, explain.load_explanation(run_dir), run_dir)
        view.available, view.reason = False, str(exc)
        return view
    return _view(run_id, ex, run_dir)


def importance_frame(view: ExplanationView) -> pd.DataFrame:
    """The importance table (for st.dataframe): rank, feature, importance, ± spread."""
    return pd.DataFrame({"rank": [f.rank for f in view.features], "feature": [f.name for f in view.features],
                         "importance": [f.mean for f in view.features], "±": [f.std for f in view.features]})


def explanation_json(view: ExplanationView, store: Any) -> bytes:
    """The stored explanation as a download (explain.json)."""
    ex = explain.load_explanation(store.run_dir(view.run_id))
    return json.dumps(ex or {}, indent=1).encode()
