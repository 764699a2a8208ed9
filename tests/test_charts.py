"""The Studio's plotly figures: what a reader of the chart must not be misled by."""

from __future__ import annotations

import pandas as pd
from conftest import RunBuilder

from mlestar_core import views
from studio.charts import attempt_trace_chart


def test_refinement_chart_ticks_only_whole_attempts(run_builder: RunBuilder) -> None:
    rid = run_builder.run("finished")
    info = views.run_info(run_builder.store.get_run(rid))
    trace = pd.DataFrame({"track": ["track 1"] * 3, "n": [1, 2, 3], "score": [0.8, 0.82, 0.81],
                          "label": ["a", "b", "c"], "kept": [False, True, False], "baseline": [0.79] * 3})
    fig = attempt_trace_chart(trace, info)
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tick0 == 1  # no tick at 1.5 or 2.5
    assert [list(t.x) for t in fig.data][0] == [1, 2, 3]


def test_ablation_value_labels_sit_beyond_the_error_bars(run_builder: RunBuilder) -> None:
    """Labels placed "outside" the bar were printed over the error bar; they go past its end instead."""
    from studio.charts import ablation_chart

    rid = run_builder.run("finished")
    info = views.run_info(run_builder.store.get_run(rid))
    bars = [views.AblationBar("model", "a stump", 0.05, 0.02, 0.90, 0.95, 3, 1, True),
            views.AblationBar("features", "no features", -0.01, 0.03, 0.96, 0.95, 3, 2, False)]
    group = views.AblationGroup(0, 0, bars, "model", None, None)
    assert group.has_error_bars
    fig = ablation_chart(group, info)
    bar, labels = fig.data[0], fig.data[1]
    assert bar.text is None  # no label on the bar itself
    assert list(labels.text) == ["+0.05", "-0.01"]
    assert list(labels.y) == [0.05 + 0.02, -0.01 - 0.03]  # at the far end of each error bar
    assert list(labels.textposition) == ["top center", "bottom center"]


def test_compare_chart_draws_dots_only_where_a_run_improved() -> None:
    """The flat stretch to a run's end is a line, not a dot: a dot at 226 s would read as an improvement there."""
    from studio.charts import compare_runs_chart

    curve = pd.DataFrame({"seconds": [10.0, 226.0], "best_score": [0.95, 0.95], "improved": [True, False]})
    (trace,) = compare_runs_chart([("a run", curve)]).data
    assert list(trace.x) == [10.0, 226.0] and trace.line.shape == "hv"
    assert list(trace.marker.size) == [8, 0]
