"""What the pages show, shaped from store rows and events (no Streamlit here).

One module per page, named like the page file it serves (`views/run.py` serves `app_pages/run.py`, and so
on), and `common.py` for what several pages share: the run row parsed (`RunInfo`), formatting, the phase
timeline, scores over time, the event log in words. A page imports its own module
(`from mlestar_core.views import run as view`). This package re-exports everything in `common` and what
`views.py` offered before it became a package, so `views.run_info(...)` keeps working (tests and scripts
use that); a page's newer helpers are reached through its module (`views.run.controls`).

Every function takes plain rows (dicts from `Store.table`, `Store.events_after`, ...) or a Store, and
returns dataclasses, DataFrames or text that a page only has to draw. Keeping this pure makes it
unit-testable and lets Replay rebuild "the dashboard after N events" from the event feed alone: the
live dashboard and the replay go through the same functions.

Scores are direction-aware throughout (`higher_is_better`): "best", "gain" and an ablation's
"contribution" are positive when something is better, whatever the metric.
"""

from __future__ import annotations

from . import ablation, attempts, brain_calls, common, ensemble, history, home, models, new_run, replay, run
from .ablation import AblationBar, AblationGroup, ablation_groups
from .attempts import (
    AttemptGroup,
    AttemptView,
    BlockDiff,
    PendingPlan,
    TreeNode,
    attempt_groups,
    attempt_trace,
    block_diff,
    decision_history,
    edit_payload,
    lineage,
    pending_plan,
    script_tree,
    side_by_side_html,
)
from .brain_calls import BrainCallView, brain_call_views, brain_calls_summary, matching_calls
from .common import (
    ACTIVE_STATUSES,
    BRAIN_LABELS,
    BRAIN_USAGE_COLUMNS,
    DECISION_KEY_RE,
    DRIFT_THRESHOLD,
    LLM_BRAINS,
    NOISY_KINDS,
    PHASE_BY_KEY,
    PHASES,
    STATUS_ICONS,
    STEP_KEY_RE,
    SUGGESTIONS_HEIGHT,
    TERMINAL_STATUSES,
    BrainUsage,
    Grounding,
    HoldoutCheck,
    PhaseDef,
    PhaseState,
    Row,
    RunInfo,
    ScriptCounts,
    StepState,
    active_seconds,
    any_active,
    brain_in_use,
    brain_label,
    brain_model,
    brain_usage,
    current_phase,
    describe_decision_key,
    describe_event,
    describe_step,
    event_log,
    expected_steps,
    expected_tracks,
    final_summary,
    first_line,
    fmt,
    fmt_duration,
    fmt_score,
    fmt_time,
    fmt_tokens,
    fmt_usd,
    holdout_check,
    md_escape,
    parse_grounding,
    parse_sources,
    phase_of_step,
    phase_timeline,
    run_brain_text,
    run_info,
    run_label,
    run_metric,
    runs_frame,
    score_series,
    script_counts,
    script_counts_from_rows,
    source_links,
    step_progress,
    steps_from_events,
    steps_from_rows,
    suggestions_document,
    time_by_phase_text,
    usage_parts,
)
from .ensemble import EnsembleView, ensemble_view, track_results
from .models import (
    MergeView,
    ModelCardView,
    card_sources_state,
    merges,
    model_cards,
    retrieval_grounding,
    search_suggestions,
)
from .new_run import (
    TYPICAL_PROMPT_CHARS,
    CassetteSummary,
    ModelPrice,
    cassette_summary,
    cost_blocker,
    form_prices,
    key_source_text,
    llm_settings_from_form,
    model_prices,
    new_run_blocker,
    reserve_text,
    role_models_from_records,
    unpriced_text,
)
from .replay import ReplayState, replay_state, status_after
from .run import SpendView, cost_basis, pause_needs_key, shows_brain_usage, spend_view

__all__ = [
    "ablation", "attempts", "brain_calls", "common", "ensemble", "history", "home", "models", "new_run", "replay",
    "run",
    "Row", "TERMINAL_STATUSES", "ACTIVE_STATUSES", "DRIFT_THRESHOLD", "RunInfo", "run_info", "fmt", "BRAIN_LABELS",
    "STATUS_ICONS", "brain_label", "run_brain_text", "fmt_score", "fmt_duration", "fmt_time", "run_metric",
    "runs_frame", "run_label", "any_active", "LLM_BRAINS", "brain_model", "brain_in_use", "fmt_tokens", "fmt_usd",
    "md_escape", "parse_sources", "source_links", "PhaseDef", "PHASES", "PHASE_BY_KEY", "phase_of_step",
    "STEP_KEY_RE", "describe_step", "StepState", "PhaseState", "steps_from_rows", "steps_from_events",
    "expected_tracks", "expected_steps", "phase_timeline", "current_phase", "step_progress", "time_by_phase_text",
    "active_seconds", "score_series", "ScriptCounts", "script_counts", "script_counts_from_rows", "HoldoutCheck",
    "holdout_check", "final_summary", "first_line", "usage_parts", "describe_event", "NOISY_KINDS", "event_log",
    "DECISION_KEY_RE", "describe_decision_key", "Grounding", "parse_grounding", "SUGGESTIONS_HEIGHT",
    "suggestions_document", "BrainUsage", "BRAIN_USAGE_COLUMNS", "brain_usage", "key_source_text",
    "new_run_blocker", "role_models_from_records", "llm_settings_from_form", "TYPICAL_PROMPT_CHARS", "ModelPrice",
    "model_prices", "unpriced_text", "cost_blocker", "form_prices", "reserve_text", "CassetteSummary",
    "cassette_summary", "shows_brain_usage", "pause_needs_key", "cost_basis",
    "SpendView", "spend_view", "ModelCardView", "model_cards", "MergeView", "merges", "retrieval_grounding",
    "search_suggestions", "card_sources_state", "AblationBar", "AblationGroup", "ablation_groups", "PendingPlan",
    "pending_plan", "decision_history", "edit_payload", "AttemptView", "AttemptGroup", "attempt_groups",
    "attempt_trace", "BlockDiff", "block_diff", "side_by_side_html", "TreeNode", "script_tree", "lineage",
    "EnsembleView", "track_results", "ensemble_view", "BrainCallView", "brain_call_views", "brain_calls_summary",
    "matching_calls", "ReplayState", "status_after", "replay_state",
]
