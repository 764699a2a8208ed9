"""What drives the model (app_pages/explain.py): the final solution's permutation importance and partial dependence,
as the engine stored them (mlestar_core/explain.py), or computed on demand. Plain data, no Streamlit;
studio/explain_charts.py draws an ExplanationView.

- `explain_page(store, run)`: what the page shows for the run in view: an empty state (the run has not finished),
  the explanation, or why there is none and whether "Compute it now" can help;
- `compute_explanation(store, run_id, viewer)`: the sandboxed job (seconds to minutes: the page runs it under a
  spinner), refused for a run the viewer may not see;
- `importance_frame`, `rows_caption`, `top_text`, `report_markdown`: the table and the words around the charts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import access, explain, kept
from ..executor import LocalExecutor
from .common import fmt_score

TOP = 3  # features named above the chart (explain.TOP_FEATURES have a partial-dependence curve)


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
    sentence: str = ""  # the curve in words (the report's line: where the average prediction is lowest/highest)


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
                            series={k: list(v) for k, v in p["values"].items()}, y_title=y_title,
                            sentence=explain.pdp_sentence(p, output)))
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


def compute_explanation(store: Any, run_id: str, viewer: access.Viewer, *,
                        executor: LocalExecutor | None = None) -> ExplanationView:
    """Compute (or recompute) a finished run's explanation now, in the sandbox; blocks for seconds to minutes.
    A run the viewer may not see is refused with the words used for a run that does not exist."""
    if not access.can_see(viewer, store.get_run(run_id)):
        return ExplanationView(run_id=run_id, available=False,
                               reason=f"Run `{run_id}` is not in the store (it may have been deleted).")
    run_dir = store.run_dir(run_id)
    try:
        ex = explain.explain_run(store, run_id, executor=executor)
    except (kept.RunNotUsable, explain.ExplainFailed) as exc:
        view = _view(run_id, explain.load_explanation(run_dir), run_dir)
        view.available, view.reason = False, str(exc)
        return view
    return _view(run_id, ex, run_dir)


# ------------------------------------------------------------------ the page


@dataclass
class ExplainPage:
    state: str  # "unfinished" (no final solution yet), "ready" (the explanation), "missing" (none stored)
    message: str = ""  # the empty state, or why there is no explanation (markdown)
    explanation: ExplanationView | None = None
    can_compute: bool = False  # "Compute it now" can produce one


def explain_page(store: Any, run: dict[str, Any]) -> ExplainPage:
    """What the page shows for the run in view (a store row the viewer may see)."""
    if run["status"] != "finished":
        return ExplainPage("unfinished", "What drives the model is measured on the run's final solution, once the "
                           f"run has finished: this run is **{run['status']}**. At the end of a run it is computed "
                           "when the time budget leaves room for it, and can be computed here otherwise.")
    ex = explanation_view(store, run["id"])
    if ex.available:
        return ExplainPage("ready", explanation=ex)
    try:
        data = kept.finished_run(store, run["id"]).data
    except kept.RunNotUsable as exc:
        return ExplainPage("missing", f"Not available: {exc}.", ex)
    if data.holdout_dir is None or not data.n_holdout:
        return ExplainPage("missing", f"Not available: {ex.reason or 'the run has no locked hold-out'}.", ex)
    why = ("**Not computed yet** for this run." if not ex.computed else f"**Not computed:** {ex.reason}.")
    return ExplainPage("missing", why + " It is measured on the locked hold-out rows by running the final solution "
                       "in the sandbox: a few seconds to a few minutes.", ex, can_compute=True)


def rows_caption(view: ExplanationView) -> str:
    """Which rows, which metric, which model: what the numbers below were computed on."""
    direction = "higher" if view.higher_is_better else "lower"
    base = f"; on these rows as they are it scores {fmt_score(view.baseline)}" if view.baseline is not None else ""
    hold = (f" (the run's locked hold-out score: {fmt_score(view.holdout_score)})"
            if view.holdout_score is not None else "")
    return (f"Computed on {view.rows_text}, scored with **{view.metric_title}** ({direction} is better), "
            f"{view.model_text}; each feature's values were shuffled {view.n_repeats} times among these rows{base}"
            f"{hold}. An importance is how much worse the score gets when the feature is shuffled (± its spread "
            "over the shuffles); near 0 means the model does not rely on it, or a correlated feature stands in for "
            "it." + (f" Note: {view.note}" if view.note else ""))


def top_text(view: ExplanationView, n: int = TOP) -> str:
    names = [f"**{f.name}**" for f in view.features[:n]]
    return "Top features: " + ", ".join(names) if names else "No features."


def report_markdown(view: ExplanationView) -> str:
    """The report's section with its headings made small, to sit inside the page."""
    return "\n".join("##### " + line[3:] if line.startswith("## ") else line
                     for line in view.summary_markdown.splitlines())


def importance_frame(view: ExplanationView) -> pd.DataFrame:
    """The importance table (for st.dataframe): rank, feature, importance, ± spread."""
    return pd.DataFrame({"rank": [f.rank for f in view.features], "feature": [f.name for f in view.features],
                         "importance": [f.mean for f in view.features], "±": [f.std for f in view.features]})


def explanation_json(view: ExplanationView, store: Any) -> bytes:
    """The stored explanation as a download (explain.json)."""
    ex = explain.load_explanation(store.run_dir(view.run_id))
    return json.dumps(ex or {}, indent=1).encode()
