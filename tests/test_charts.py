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
