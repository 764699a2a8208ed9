"""Plotly figures shared by the run pages. Pure builders: data from mlestar_core.views in, figure out."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from mlestar_core.views import AblationGroup, BrainUsage, EnsembleView, RunInfo
from mlestar_core.views.run import CompetitionView, leaderboard_frame

CHOSEN = "#e4572e"  # the block chosen for refinement / the final choice
NEUTRAL = "#4c78a8"
MEMBER = "#9ecae9"
KEPT = "#54a24b"
FAILED = "#b0b0b0"
KIND_COLORS = {"candidate_scored": "#72b7b2", "merge": "#b279a2", "attempt_scored": NEUTRAL,
               "ensemble_round": "#f58518"}
KIND_NAMES = {"candidate_scored": "initial candidate", "merge": "merge", "attempt_scored": "refinement attempt",
              "ensemble_round": "ensemble round"}


def _layout(fig: go.Figure, height: int = 360, **kw: object) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.22}, **kw)
    return fig


def best_score_chart(series: pd.DataFrame, info: RunInfo, x_max: float | None = None) -> go.Figure:
    """Every scored solution as a dot, the best so far as a step line (direction-aware)."""
    fig = go.Figure()
    for kind, rows in series.groupby("kind", sort=False):
        fig.add_trace(go.Scatter(x=rows["seconds"], y=rows["score"], mode="markers", name=KIND_NAMES.get(kind, kind),
                                 marker={"color": KIND_COLORS.get(kind, NEUTRAL), "size": 7, "opacity": 0.6},
                                 text=rows["label"], hovertemplate="%{text}<br>%{y:.5g} at %{x:.0f} s<extra></extra>"))
    if not series.empty:
        fig.add_trace(go.Scatter(x=series["seconds"], y=series["best"], mode="lines", line_shape="hv",
                                 name="best so far", line={"color": CHOSEN, "width": 3},
                                 hovertemplate="best %{y:.5g} at %{x:.0f} s<extra></extra>"))
    _layout(fig, xaxis_title="run time (s)", yaxis_title=f"{info.axis_title}")
    if x_max:
        fig.update_xaxes(range=[0, x_max * 1.02])
    return fig


def compare_runs_chart(curves: Sequence[tuple[str, pd.DataFrame]]) -> go.Figure:
    """Best validation score so far of several runs over their agent time (`exports.best_score_curve`): a step
    line per run with a dot at each improvement, flat from the last improvement to the run's end (or now)."""
    fig = go.Figure()
    for name, curve in curves:
        improved = [bool(i) for i in curve["improved"]]
        fig.add_trace(go.Scatter(
            x=curve["seconds"], y=curve["best_score"], mode="lines+markers", line_shape="hv", name=name,
            marker={"size": [8 if i else 0 for i in improved]},
            text=["new best" if i else "no better score since: the run's end (or now)" for i in improved],
            hovertemplate="%{y:.5g} at %{x:.0f} s<br>%{text}<extra></extra>"))
    return _layout(fig, 380, xaxis_title="agent time (s)", yaxis_title="best validation score so far")


def ablation_chart(group: AblationGroup, info: RunInfo) -> go.Figure:
    """Each block's contribution (positive = it helps), error bars over repeats, the chosen block in colour."""
    bars = sorted(group.bars, key=lambda b: (b.delta is None, -(b.delta or 0.0)))
    errors = [b.error for b in bars]
    # The chosen block is coloured and starred on the axis too: a bar of height ~0 shows no colour.
    ticks = [f"★ {b.block}" if b.chosen else b.block for b in bars]
    fig = go.Figure(go.Bar(
        x=ticks, y=[b.delta for b in bars],
        marker={"color": [CHOSEN if b.chosen else NEUTRAL for b in bars]},
        error_y={"type": "data", "array": [e if e is not None else 0.0 for e in errors], "visible": True,
                 "color": "#333"} if group.has_error_bars else None,
        customdata=[[b.description, b.score if b.score is not None else float("nan"), b.repeats] for b in bars],
        hovertemplate="<b>%{x}</b>: %{customdata[0]}<br>contribution %{y:.4g}<br>"
                      "score without it %{customdata[1]:.5g} (%{customdata[2]} runs)<extra></extra>"))
    # Value labels sit beyond the end of each error bar (a label "outside" the bar would be printed over it).
    ends = [(b.delta or 0.0) + (1 if (b.delta or 0.0) >= 0 else -1) * ((b.error or 0.0) if group.has_error_bars
                                                                          else 0.0) for b in bars]
    fig.add_trace(go.Scatter(
        x=ticks, y=ends, mode="text", text=[f"{b.delta:+.3g}" if b.delta is not None else "failed" for b in bars],
        textposition=["top center" if (b.delta or 0.0) >= 0 else "bottom center" for b in bars],
        hoverinfo="skip", cliponaxis=False))
    fig.add_hline(y=0, line_color="#888", line_width=1)
    fig.update_yaxes(exponentformat="none")
    return _layout(fig, 320, showlegend=False, xaxis_title="block switched to a simpler version (★ = chosen)",
                   yaxis_title=f"contribution to {info.metric_title}<br>(+ = the block helps)")


def attempt_trace_chart(trace: pd.DataFrame, info: RunInfo) -> go.Figure:
    """Scores through all refinement attempts of the run, kept ones marked, with each attempt's baseline."""
    fig = go.Figure()
    for track, rows in trace.groupby("track", sort=True):
        fig.add_trace(go.Scatter(
            x=rows["n"], y=rows["score"], mode="markers+lines", name=str(track), text=rows["label"],
            marker={"size": [13 if k else 8 for k in rows["kept"]],
                    "symbol": ["star" if k else "circle" for k in rows["kept"]]},
            hovertemplate="%{text}<br>%{y:.5g}<extra></extra>"))
    if not trace.empty:
        fig.add_trace(go.Scatter(x=trace["n"], y=trace["baseline"], mode="markers", name="start of the block",
                                 marker={"symbol": "line-ew-open", "size": 14, "color": "#888"},
                                 hovertemplate="started from %{y:.5g}<extra></extra>"))
    fig.update_xaxes(tickmode="linear", dtick=1, tick0=1)  # attempts are whole numbers: no tick at 1.5
    return _layout(fig, xaxis_title="attempt (in the order they ran; ★ = kept)", yaxis_title=info.axis_title)


def ensemble_chart(view: EnsembleView, info: RunInfo) -> go.Figure:
    """The single solutions the ensemble combined, then each ensemble round; the final choice in colour."""
    final_id = (view.final or {}).get("final_script_id")
    labels, scores, colors, hover = [], [], [], []
    for _, m in view.members.iterrows():
        labels.append(str(m["label"]))
        scores.append(m["score"])
        colors.append(CHOSEN if m["script_id"] == final_id else MEMBER)
        hover.append(f"single solution, script #{m['script_id']}")
    for _, r in view.rounds.iterrows():
        labels.append(f"ensemble {r['round']}")
        scores.append(r["score"])
        colors.append(CHOSEN if r["script_id"] == final_id else (FAILED if pd.isna(r["score"]) else NEUTRAL))
        hover.append(str(r["strategy"]).splitlines()[0][:120] if r["strategy"] else "")
    fig = go.Figure(go.Bar(x=labels, y=scores, marker={"color": colors}, text=[f"{s:.4g}" if s == s and s is not None
                                                                                  else "failed" for s in scores],
                           customdata=hover, hovertemplate="<b>%{x}</b><br>%{y:.5g}<br>%{customdata}<extra></extra>"))
    valid = [s for s in scores if s is not None and s == s]
    if valid:  # zoom on the differences: scores of a run are usually close together
        lo, hi = min(valid), max(valid)
        pad = max((hi - lo) * 0.6, abs(hi) * 0.01, 1e-6)
        fig.update_yaxes(range=[lo - pad, hi + pad])
    return _layout(fig, 340, showlegend=False, yaxis_title=info.axis_title)


def brain_usage_chart(usage: BrainUsage) -> go.Figure:
    """Per role: estimated cost, or tokens in and out (stacked) when nothing cost anything (local models)."""
    t = usage.table
    fig = go.Figure()
    if usage.chart_value == "cost":
        fig.add_trace(go.Bar(x=t["role"], y=t["cost (USD)"], marker={"color": NEUTRAL}, customdata=t["calls"],
                             hovertemplate="<b>%{x}</b><br>$%{y:.4f} over %{customdata} calls<extra></extra>"))
        return _layout(fig, 300, showlegend=False, yaxis_title="estimated cost (USD)", yaxis_tickprefix="$")
    fig.add_trace(go.Bar(x=t["role"], y=t["tokens in"], name="tokens in", marker={"color": NEUTRAL}))
    fig.add_trace(go.Bar(x=t["role"], y=t["tokens out"], name="tokens out", marker={"color": "#f58518"}))
    return _layout(fig, 300, barmode="stack", yaxis_title="tokens")


MEDAL_COLORS = {"gold": "#d4af37", "silver": "#9ea3a8", "bronze": "#cd7f32", "median": "#7f7f7f"}


def leaderboard_chart(view: CompetitionView, info: RunInfo) -> go.Figure:
    """The leaderboard's scores by position (best first), the medal and median thresholds across it, and the
    run's submission placed where it would rank."""
    board = leaderboard_frame(view)
    fig = go.Figure(go.Scatter(x=board["position"], y=board["score"], mode="lines", name="leaderboard teams",
                               line={"color": NEUTRAL}, hovertemplate="position %{x}: %{y:.5g}<extra></extra>"))
    for name, value, _ in view.thresholds:
        fig.add_hline(y=value, line={"color": MEDAL_COLORS[name], "dash": "dot" if name == "median" else "dash"},
                      annotation_text=f"{name} {value:.5g}",
                      annotation_position="top left")
    if view.score is not None and view.rank is not None:
        fig.add_trace(go.Scatter(x=[view.rank], y=[view.score], mode="markers", name="this run", marker={
            "symbol": "star", "size": 16, "color": CHOSEN}, hovertemplate="this run: %{y:.5g}<extra></extra>"))
    # Kaggle's last places are often far off (a failed submission's score): the chart keeps to the best 90%
    # of the teams, the thresholds and the run, so the part that decides a medal stays readable.
    keep = board["score"].iloc[: max(1, int(len(board) * 0.9))].tolist()
    shown = keep + [v for _, v, _ in view.thresholds] + ([view.score] if view.score is not None else [])
    lo, hi = min(shown), max(shown)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    return _layout(fig, height=340, xaxis_title="leaderboard position (1 = best)", yaxis_title=info.axis_title,
                   yaxis_range=[lo - pad, hi + pad])
