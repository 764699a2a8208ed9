"""The app's pages, named once: app.py registers them, pages switch and link to them by path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageDef:
    path: str  # relative to app.py; also what st.switch_page / st.page_link take
    title: str
    icon: str


HOME = PageDef("app_pages/home.py", "Home", ":material/home:")
NEW_RUN = PageDef("app_pages/new_run.py", "New run", ":material/add_circle:")
RUN = PageDef("app_pages/run.py", "Run dashboard", ":material/monitoring:")
MODELS = PageDef("app_pages/models.py", "Retrieved models", ":material/travel_explore:")
ABLATION = PageDef("app_pages/ablation.py", "Ablation", ":material/science:")
ATTEMPTS = PageDef("app_pages/attempts.py", "Refinement", ":material/tune:")
ENSEMBLE = PageDef("app_pages/ensemble.py", "Ensemble", ":material/join_inner:")
EXPLAIN = PageDef("app_pages/explain.py", "What drives the model", ":material/insights:")
PREDICT = PageDef("app_pages/predict.py", "Predict", ":material/batch_prediction:")
BRAIN_CALLS = PageDef("app_pages/brain_calls.py", "Brain calls", ":material/forum:")
HISTORY = PageDef("app_pages/history.py", "History", ":material/history:")
REPLAY = PageDef("app_pages/replay.py", "Replay", ":material/replay:")

# Sidebar sections, in order.
SECTIONS: dict[str, list[PageDef]] = {
    "Start": [HOME, NEW_RUN],
    # In the order a run goes: its phases, then what its final model relies on, then using it on new rows.
    "Current run": [RUN, MODELS, ABLATION, ATTEMPTS, ENSEMBLE, EXPLAIN, PREDICT, BRAIN_CALLS],
    "Past runs": [HISTORY, REPLAY],
}
