"""Plotly figures for "What drives the model" (issue 12). Pure builders: an ExplanationView
(mlestar_core.views.explain) in, a figure out; no Streamlit calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

if TYPE_CHECKING:
    from mlestar_core.views.explain import ExplanationView, PDPCurve

MATTERS = "#4c78a8"  # shuffling the feature hurts the model
NO_EFFECT = "#b0b0b0"  # within its own spread of zero, or below: the model does not rely on it
CURVE_COLORS = ["#e4572e", "#4c78a8", "#54a24b", "#f58518", "#b279a2", "#72b7b2", "#ff9da6", "#9d755d"]
LABEL_CHARS = 28


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unique_labels(names: list[str]) -> list[str]:
    """Shortened axis labels that stay distinct (two long names with the same start get a number)."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for name in names:
        label = _short(name)
        if label in seen:
            seen[label] += 1
            label = f"{label} ({seen[label]})"
        else:
            seen[label] = 1
        out.append(label)
    return out


def importance_chart(view: ExplanationView, top: int = 15) -> go.Figure:
    """Permutation importance as horizontal bars, most important on top, error bars = spread over the shuffles.
    A bar whose mean is not above its own spread is grey: shuffling that feature did not clearly hurt."""
    features = view.features[:top]
    shown = list(reversed(features))  # plotly draws the first category at the bottom
    labels = _unique_labels([f.name for f in shown])
    colors = [MATTERS if f.mean > 0 and f.mean > f.std else NO_EFFECT for f in shown]
    fig = go.Figure(go.Bar(
        x=[f.mean for f in shown], y=labels, orientation="h", marker={"color": colors},
        error_x={"type": "data", "array": [f.std for f in shown], "visible": True, "color": "#333"},
        customdata=[[f.name, f.rank, f.std] for f in shown],
        hovertemplate="<b>%{customdata[0]}</b> (rank %{customdata[1]})<br>importance %{x:.4g} "
                      "± %{customdata[2]:.2g}<extra></extra>"))
    fig.add_vline(x=0, line={"color": "#888", "width": 1})
    more = len(view.features) - len(features)
    title = f"What drives the model: permutation importance ({view.n_repeats} shuffles per feature)"
    fig.update_layout(
        title={"text": title, "font": {"size": 14}}, height=max(260, 60 + 26 * len(shown)),
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=False,
        xaxis_title=view.x_title + (f" — top {len(features)} of {len(view.features)}" if more else ""),
        yaxis={"automargin": True})
    return fig


def partial_dependence_chart(curve: PDPCurve, index: int = 0) -> go.Figure:
    """One feature's partial dependence: a line over a numeric or date grid, bars over categories (one series
    per class for a multiclass task)."""
    fig = go.Figure()
    categorical = curve.kind == "categorical"
    x = _unique_labels([str(g) for g in curve.grid]) if categorical else list(curve.grid)
    full = [str(g) for g in curve.grid]
    for i, (label, values) in enumerate(curve.series.items()):
        color = CURVE_COLORS[(index + i) % len(CURVE_COLORS)]
        name = "prediction" if label == "prediction" else f"P({label})"
        hover = "<b>%{customdata}</b><br>" + name + " %{y:.4g}<extra></extra>"
        if categorical:
            fig.add_trace(go.Bar(x=x, y=values, name=name, marker={"color": color}, customdata=full,
                                 hovertemplate=hover))
        else:
            fig.add_trace(go.Scatter(x=x, y=values, mode="lines+markers", name=name, line={"color": color, "width": 3},
                                     customdata=full, hovertemplate=hover))
    fig.update_layout(
        title={"text": f"Partial dependence on {_short(curve.feature, 40)}", "font": {"size": 14}}, height=320,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=len(curve.series) > 1,
        legend={"orientation": "h", "y": -0.3}, xaxis_title=_short(curve.feature, 60), yaxis_title=curve.y_title,
        barmode="group")
    if categorical:
        fig.update_xaxes(tickangle=-30, automargin=True)
    return fig


def partial_dependence_charts(view: ExplanationView) -> list[go.Figure]:
    """One chart per feature with a partial-dependence curve (the top features, most important first)."""
    return [partial_dependence_chart(c, i) for i, c in enumerate(view.pdp)]
