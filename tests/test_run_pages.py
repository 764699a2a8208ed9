"""AppTest tests for the run pages: Run dashboard, Retrieved models, Ablation, Refinement, Ensemble, Brain calls,
Replay.

Three kinds of runs: none selected (each page's guard), the real finished run of the session fixture
(`finished_run_store`), hand-made rows (a run in flight, `run_builder`), and a real pipeline waiting for
approval in a background thread, steered from the Refinement page by key.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apptest_helpers
import pytest
from apptest_helpers import texts
from conftest import FinishedRun, RunBuilder
from streamlit.testing.v1 import AppTest
from waiting import wait_for

from mlestar_core import views
from mlestar_core.config import RunConfig
from mlestar_core.lease import RunLease, RunOwnedElsewhere
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.script import get_block
from mlestar_core.service import RunManager
from mlestar_core.store import Store
from mlestar_core.task import load_task
from studio import state
from studio.runpages import AttemptKeys, BrainCallKeys, ReplayKeys, RunKeys

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 60
RUN_PAGES = ["app_pages/run.py", "app_pages/models.py", "app_pages/ablation.py", "app_pages/attempts.py",
             "app_pages/ensemble.py", "app_pages/explain.py", "app_pages/brain_calls.py", "app_pages/replay.py"]


def open_page(page: str, run_id: str | None = None) -> AppTest:
    return apptest_helpers.open_page(page, run_id, TIMEOUT)


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return str(m.value)
    raise AssertionError(f"no metric {label!r} in {[m.label for m in at.metric]}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    monkeypatch.setenv("MLESTAR_HOME", str(root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])
    return root


@pytest.fixture
def finished(finished_run_store: FinishedRun, monkeypatch: pytest.MonkeyPatch) -> FinishedRun:
    monkeypatch.setenv("MLESTAR_HOME", str(finished_run_store.root))
    monkeypatch.setattr(sys, "argv", ["streamlit"])
    return finished_run_store


def boot_services() -> None:
    """Run the app once on the empty store: its RunManager resumes runs that look interrupted (active,
    no thread) when it is created, which must not happen to hand-made rows or to a test's own thread."""
    AppTest.from_file(APP, default_timeout=TIMEOUT).run()


@pytest.fixture
def builder(home: Path) -> RunBuilder:
    boot_services()
    return RunBuilder(Store(home))


# -- no run selected ----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", RUN_PAGES)
def test_every_run_page_guards_without_a_run(home: Path, page: str) -> None:
    at = open_page(page)
    assert "No run selected yet" in texts(at.info)
    assert at.title and not at.get("plotly_chart") and not at.metric  # the title, then only the guard


# -- the real finished run ----------------------------------------------------------------------------


def test_dashboard_of_a_finished_run(finished: FinishedRun) -> None:
    at = open_page("app_pages/run.py", finished.run_id)
    store, rid = finished.store, finished.run_id
    run = store.get_run(rid)
    assert at.title[0].value == "Run dashboard"
    assert len(at.get("plotly_chart")) == 1  # best score so far
    assert metric(at, "Scripts run") == str(len(store.table("executions", rid)))
    assert metric(at, "Scripts failed") == "0"  # an attempt the engine stopped early is not a failure
    assert metric(at, "Locked hold-out score") == f"{run['holdout_score']:.5g}"
    assert metric(at, "Final validation score") == f"{run['best_score']:.5g}"
    assert metric(at, "Brain") == "offline"
    assert "100 % of the planned steps done" in str(at.get("progress")[0].proto.text)
    log = at.dataframe[0].value
    assert log["what"].iloc[0] == "Run finished"
    # a finished run: Pause and Stop are off, Resume too (nothing left to do)
    assert at.button(key=RunKeys.PAUSE).disabled and at.button(key=RunKeys.STOP).disabled
    assert at.button(key=RunKeys.RESUME).disabled
    assert "What MLE-STAR does in each phase" in str(at.expander[0].label)


def test_models_page_shows_cards_with_scores_and_merges(finished: FinishedRun) -> None:
    at = open_page("app_pages/models.py", finished.run_id)
    cards = finished.store.table("model_cards", finished.run_id)
    md = texts(at.markdown)
    for c in cards:
        assert c["name"] in md and c["why"] in md
    assert len(at.code) >= len(cards)  # example code of each card
    values = [m.value for m in at.metric if m.label.startswith("initial")]
    assert len(values) == len(cards) and all(v not in ("pending", "failed") for v in values)
    assert "Track 1" in md and "Track 2" in md  # merged result per track


def test_ablation_page_charts_each_study(finished: FinishedRun) -> None:
    at = open_page("app_pages/ablation.py", finished.run_id)
    groups = views.ablation_groups(finished.store.table("ablations", finished.run_id),
                                   finished.store.events_after(finished.run_id))
    charts = at.get("plotly_chart")
    assert len(charts) == len(groups) == 2
    md = texts(at.markdown)
    assert all(f"Chosen for refinement: `{g.chosen_block}`" in md for g in groups)
    assert "error bars: spread of the paired per-fold contributions" in texts(at.caption)
    assert all(g.summary in texts(at.info) for g in groups)


def test_attempts_page_shows_history_diff_and_tree(finished: FinishedRun) -> None:
    at = open_page("app_pages/attempts.py", finished.run_id)
    assert "This run does not ask for approval" in texts(at.caption)
    assert len(at.get("plotly_chart")) == 1  # scores through all attempts
    assert len(at.expander) >= 2 and len(at.dataframe) >= 2  # one table per track / outer step / block
    assert at.get("html"), "side-by-side diff"
    assert any(c.language == "diff" for c in at.code)
    tree = at.selectbox(key=AttemptKeys.TREE_NODE)
    final = views.final_summary(finished.store.events_after(finished.run_id))
    assert tree.value == final["final_script_id"]  # the final solution is opened first
    assert "the final solution" in texts(at.markdown)
    scripts = finished.store.table("scripts", finished.run_id)
    first = next(s for s in scripts if s["role"] == "initial")
    tree.set_value(first["id"]).run()
    assert not at.exception
    assert any(c.value.strip() == first["code"].strip() for c in at.code)  # the node's code


def test_fork_from_a_tree_node_opens_the_new_run(finished: FinishedRun, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int, str | None]] = []

    def fake_fork(self: RunManager, run_id: str, script_id: int, *, name: str | None = None) -> str:
        calls.append((run_id, script_id, name))
        return run_id  # the fixture store stays as it is; opening "the new run" is what is checked

    monkeypatch.setattr(RunManager, "fork", fake_fork)
    at = open_page("app_pages/attempts.py", finished.run_id)
    node = at.selectbox(key=AttemptKeys.TREE_NODE).value
    at.button(key=AttemptKeys.FORK).click().run()
    assert not at.exception
    assert calls == [(finished.run_id, node, f"breast-cancer (fork of #{node})")]
    assert at.title[0].value == "Run dashboard"  # open_run switched to the dashboard


def test_ensemble_page_compares_rounds_with_members(finished: FinishedRun) -> None:
    at = open_page("app_pages/ensemble.py", finished.run_id)
    final = views.final_summary(finished.store.events_after(finished.run_id))
    assert len(at.get("plotly_chart")) == 1
    assert f"**{final['final_label']}** (script #{final['final_script_id']}" in texts(at.markdown)
    assert metric(at, "Locked hold-out") == f"{final['holdout_score']:.5g}"
    assert "Round 1" in texts(at.markdown)
    members = at.dataframe[0].value
    (rnd,) = finished.store.table("ensemble_rounds", finished.run_id)
    # The solutions the engine scored the round on: the refined tracks and the initial candidates.
    assert members["script_id"].tolist() == json.loads(rnd["members_json"]) and len(members) >= 2


def test_replay_slider_and_step_buttons(finished: FinishedRun) -> None:
    at = open_page("app_pages/replay.py", finished.run_id)
    total = len(finished.store.events_after(finished.run_id))
    slider = at.slider(key=ReplayKeys.N)
    assert slider.value == total and len(at.get("plotly_chart")) == 1
    assert "After event" in texts(at.markdown) and "Run finished" in texts(at.markdown)
    at.button(key=ReplayKeys.PREV).click().run()
    assert at.slider(key=ReplayKeys.N).value == total - 1
    at.button(key=ReplayKeys.START).click().run()
    assert at.slider(key=ReplayKeys.N).value == 0
    assert metric(at, "Scripts run") == "0" and not at.get("plotly_chart")
    middle = next(i for i, e in enumerate(finished.store.events_after(finished.run_id))
                  if e["kind"] == "attempt_scored") + 1
    at.slider(key=ReplayKeys.N).set_value(middle).run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert int(metric(at, "Scripts run")) < total
    at.button(key=ReplayKeys.PLAY).click().run()
    assert not at.exception and at.session_state[ReplayKeys.PLAYING]
    at.run()  # a tick of the player: the fragment advances the slider
    assert at.slider(key=ReplayKeys.N).value > middle
    at.button(key=ReplayKeys.PAUSE).click().run()
    assert not at.session_state[ReplayKeys.PLAYING]


# -- a run in flight (hand-made rows) ---------------------------------------------------------------------


def running_run(b: RunBuilder) -> str:
    rid = b.run("running", time_budget=600)
    b.step(rid, "baseline", "baseline", result={"script_id": 1, "score": 0.5})
    b.store.update_run(rid, baseline_score=0.5, time_used=12.0)
    b.step(rid, "retrieve", "retrieve", result=[])
    b.store.add_model_card(rid, 0, {"name": "xgb", "why": "strong on tables", "example_code": "XGB()", "source": "kb"})
    b.step(rid, "init", "init", status="running")
    return rid


def test_pages_of_a_running_run(builder: RunBuilder) -> None:
    rid = running_run(builder)
    at = open_page("app_pages/run.py", rid)
    assert "Now: Initial candidates" in texts(at.info)
    bar = str(at.get("progress")[0].proto.text)
    assert bar.startswith("Agent time ") and " of 10 min (" in bar  # the budget clock's agent time
    assert "No solution scored yet" in texts(at.caption)
    assert not at.button(key=RunKeys.PAUSE).disabled and not at.button(key=RunKeys.STOP).disabled
    at = open_page("app_pages/models.py", rid)
    assert metric(at, "initial candidate") == "pending"
    at = open_page("app_pages/ablation.py", rid)
    assert "No ablation yet — it starts after the merge" in texts(at.info)
    at = open_page("app_pages/attempts.py", rid)
    assert "No refinement attempt yet" in texts(at.info)
    at = open_page("app_pages/ensemble.py", rid)
    assert "No ensemble yet" in texts(at.info)
    at = open_page("app_pages/replay.py", rid)
    assert "still running" in texts(at.info)

    # rows arrive: the next poll (a rerun) shows them
    builder.store.add_ablation(rid, 0, 0, {"block": "model", "description": "defaults", "score": 0.8,
                                           "baseline": 0.85, "delta": 0.05}, None)
    at = open_page("app_pages/ablation.py", rid)
    assert len(at.get("plotly_chart")) == 1
    assert "no error bars" in texts(at.caption) and "The study is running" in texts(at.caption)


def test_pause_resume_stop_buttons(builder: RunBuilder, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = running_run(builder)
    resumed: list[str] = []
    monkeypatch.setattr(RunManager, "resume", lambda self, run_id: resumed.append(run_id))
    at = open_page("app_pages/run.py", rid)
    at.button(key=RunKeys.PAUSE).click().run()
    assert not at.exception and builder.store.get_run(rid)["control"] == "pause"
    assert "Pause requested" in texts(at.success)
    assert at.button(key=RunKeys.PAUSE).disabled and not at.button(key=RunKeys.RESUME).disabled
    at.button(key=RunKeys.RESUME).click().run()  # no thread owns this run: resume it from its last step
    assert not at.exception and resumed == [rid]
    at.button(key=RunKeys.STOP).click().run()
    assert not at.exception
    run = builder.store.get_run(rid)
    assert run["control"] == "stop" and run["status"] == "stopped"  # no thread: stopped at once
    assert at.button(key=RunKeys.STOP).disabled and not at.button(key=RunKeys.RESUME).disabled


def test_a_run_driven_by_another_process_is_followed_read_only(builder: RunBuilder) -> None:
    rid = running_run(builder)
    lease = RunLease(builder.store, rid).acquire()  # this test process plays the CLI that drives the run
    try:
        at = open_page("app_pages/run.py", rid)
        assert "Running in another process" in texts(at.caption)
        assert f"process {os.getpid()}" in texts(at.caption)
        for key in (RunKeys.PAUSE, RunKeys.RESUME, RunKeys.STOP):
            assert at.button(key=key).disabled, key
        assert RunManager(builder.store).driven_elsewhere(rid) is not None
        with pytest.raises(RunOwnedElsewhere):
            RunManager(builder.store).resume(rid)
        assert builder.store.get_run(rid)["control"] == "run"  # the refusal changed nothing
    finally:
        lease.release()
    at = open_page("app_pages/run.py", rid)  # the driver ended: this app may take the run over
    assert "Running in another process" not in texts(at.caption)
    assert not at.button(key=RunKeys.RESUME).disabled


def test_constraints_can_be_added_and_removed(builder: RunBuilder) -> None:
    rid = running_run(builder)
    at = open_page("app_pages/run.py", rid)
    assert "No constraints pinned." in texts(at.caption)
    at.text_input(key=RunKeys.CONSTRAINT_NEW).set_value("no neural networks")
    at.button(key=RunKeys.CONSTRAINT_ADD).click().run()
    at.text_input(key=RunKeys.CONSTRAINT_NEW).set_value("train under a minute")
    at.button(key=RunKeys.CONSTRAINT_ADD).click().run()
    assert not at.exception
    assert views.run_info(builder.store.get_run(rid)).constraints == ["no neural networks", "train under a minute"]
    assert "- no neural networks" in texts(at.markdown)
    at.button(key=f"{RunKeys.CONSTRAINT_REMOVE}0").click().run()
    assert views.run_info(builder.store.get_run(rid)).constraints == ["train under a minute"]
    kinds = [e["kind"] for e in builder.store.events_after(rid)]
    assert kinds.count("constraints") == 3


def test_waiting_run_shows_the_plan_on_the_dashboard(builder: RunBuilder) -> None:
    rid = running_run(builder)
    builder.store.update_run(rid, status="waiting")
    builder.store.request_decision(rid, "t0/o0/i0/r0", "model", "Use 500 trees.", "m = XGB()\n")
    at = open_page("app_pages/run.py", rid)
    assert "waiting for your approval" in texts(at.warning)
    assert "Use 500 trees." in texts(at.markdown)
    assert any(p.proto.page == "attempts" and rid in p.proto.query_string for p in at.get("page_link"))


# -- the budget clock, automatic approvals, failed edits (hand-made rows) ------------------------------------


def test_dashboard_says_the_budget_clock_stopped_while_a_plan_waits(builder: RunBuilder) -> None:
    import time

    rid = running_run(builder)
    builder.store.update_run(rid, config_json=json.dumps({**json.loads(builder.store.get_run(rid)["config_json"]),
                                                          "require_approval": True, "auto_approve_after": 600}))
    did = builder.store.request_decision(rid, "t0/o0/i0/r0", "model", "Use 500 trees.", "m = XGB()\n",
                                         auto_approve_after=600)
    since = time.time() - 130  # the clock stopped 2 min 10 s ago, with 12 s of agent time used
    builder.store.update_run(rid, status="waiting", clock_stopped_since=since, clock_hold="decision",
                             clock_at=since, time_waiting=0.0)
    at = open_page("app_pages/run.py", rid)
    info = texts(at.info)
    assert "Budget clock stopped: waiting for your decision (2 min 1" in info  # 2 min 10 s, give or take a second
    assert "time waiting for decisions is not counted against the budget" in info
    bar = str(at.get("progress")[0].proto.text)
    assert bar.startswith("Agent time 12 s of 10 min (2 %)") and "waiting for decisions or paused, not counted" in bar
    assert "If nobody answers, the plan is approved automatically at" in texts(at.caption)
    assert builder.store.get_decision(did)["deadline"] is not None


def _edit_rows(b: RunBuilder, status: str) -> tuple[str, dict[str, int]]:
    """A finished run with one attempt whose block a human edited: the start, the human's code, (a repair)."""
    from mlestar_core.script import fence

    rid = b.run("finished", require_approval=True)
    start = b.store.add_script(rid, "merge", fence("model", "model = XGB(n_estimators=100)"), label="xgb")
    mine = b.store.add_script(rid, "refine", fence("model", "model = XGB(n_estimators=500, depth=oops)"),
                              parent_id=start, label="track 1 step 1.1: model")
    ids = {"start": start, "mine": mine, "script": mine}
    error = "your edit failed: NameError: name 'oops' is not defined"
    if status == "edit repaired":
        ids["script"] = b.store.add_script(rid, "debug", fence("model", "model = XGB(n_estimators=500, depth=6)"),
                                           parent_id=mine, label="model (debugger repaired your edit)")
        error += "; the debugger repaired your edit"
    did = b.store.request_decision(rid, "t0/o0/i0/r0", "model", "More trees.", "model = XGB(n_estimators=100)\n")
    b.store.decide(did, "edited", "More trees, deeper.", "model = XGB(n_estimators=500, depth=oops)\n")
    b.store.add_attempt(rid, track=0, outer_step=0, inner_step=0, block="model", plan="More trees, deeper.",
                        decision="edited", status=status, script_id=ids["script"], parent_script_id=start,
                        score=0.97 if status == "edit repaired" else None, baseline=0.95, error=error,
                        edit_script_id=mine)
    return rid, ids


def test_refinement_page_shows_an_edit_that_failed_with_its_error(builder: RunBuilder) -> None:
    rid, ids = _edit_rows(builder, "edit failed")
    at = open_page("app_pages/attempts.py", rid)
    table = at.dataframe[0].value  # the attempts of track 1, outer step 1
    assert table["status"].iloc[0] == "edit failed: your edited code did not run"
    assert table["error"].iloc[0] == "your edit failed: NameError: name 'oops' is not defined"
    assert "your edit failed: NameError: name 'oops' is not defined" in texts(at.error)  # with the diff
    assert "Your edit, as you wrote it: diff against the script the attempt started from" in texts(at.markdown)
    html = "\n".join(str(h.proto.body) for h in at.get("html"))
    assert "depth=oops" in html and f"your edit (script #{ids['mine']})" in html  # what the human wrote
    unified = next(c.value for c in at.code if c.language == "diff")
    assert "+model = XGB(n_estimators=500, depth=oops)" in unified


def test_refinement_page_diffs_a_repair_against_what_you_wrote(builder: RunBuilder) -> None:
    rid, ids = _edit_rows(builder, "edit repaired")
    at = open_page("app_pages/attempts.py", rid)
    assert "Debugger repaired your edit: diff against what you wrote" in texts(at.markdown)
    unified = next(c.value for c in at.code if c.language == "diff")
    assert "-model = XGB(n_estimators=500, depth=oops)" in unified  # the human's line...
    assert "+model = XGB(n_estimators=500, depth=6)" in unified  # ...and the debugger's, not the original's
    assert "the debugger repaired your edit" in texts(at.warning)
    assert any("your edit, as you wrote it" in e.label.lower() for e in at.expander)


def test_an_automatic_approval_reads_as_automatic(builder: RunBuilder) -> None:
    rid = builder.run("finished", require_approval=True, auto_approve_after=300)
    auto = builder.store.request_decision(rid, "t0/o0/i0/r0", "model", "More trees.", "m = 1\n",
                                          auto_approve_after=300)
    builder.store.decide(auto, "auto-approved", decided_by="auto: no decision within 5 min")
    human = builder.store.request_decision(rid, "t0/o0/i1/r0", "model", "Fewer trees.", "m = 1\n")
    builder.store.decide(human, "approved")
    at = open_page("app_pages/attempts.py", rid)
    history = at.dataframe[-1].value  # "Your decisions", newest first
    assert list(history["decision"]) == ["approved", "auto-approved"]
    who = list(history["who decided"])
    assert who[0].startswith("approved by you after")
    assert who[1].startswith("approved automatically, not by a person: nobody answered within")


# -- LLM brains: usage, every call, a run the brain paused --------------------------------------------------


def gemini_run(b: RunBuilder, status: str = "running", **config: Any) -> str:
    rid = b.run(status, brain="gemini", **config)
    b.step(rid, "baseline", "baseline", result={"script_id": 1, "score": 0.5})
    b.step(rid, "retrieve", "retrieve", result=[])
    b.store.add_model_card(rid, 0, {"name": "xgb", "why": "strong on tables", "example_code": "XGB()",
                                    "source": "Google Search",
                                    "sources": [{"title": "XGBoost docs", "uri": "https://xgboost.readthedocs.io/"}]})
    return rid


def with_calls(b: RunBuilder, rid: str) -> list[int]:
    return [
        b.brain_call(rid, "retrieve_models", prompt="Find models for breast-cancer", answer="[xgb, lgbm]",
                     tokens_in=1000, tokens_out=200, cost=0.003, latency=4.0, step_key="retrieve",
                     model="gemini-3.5-flash", sources=[{"title": "XGBoost docs",
                                                          "uri": "https://xgboost.readthedocs.io/"}]),
        b.brain_call(rid, "plan_refinement", answer=None, error="Gemini HTTP 503 UNAVAILABLE: overloaded",
                     latency=1.0, step_key="t0/o1/i2", model="gemini-3.5-flash"),
        b.brain_call(rid, "plan_refinement", prompt="Plan the model block", answer="Use 500 trees.",
                     tokens_in=1234, tokens_out=567, cost=0.0012, latency=2.34, step_key="t0/o1/i2", call_index=1,
                     model="gemini-3.5-flash"),
    ]


def test_brain_calls_page_lists_every_call(builder: RunBuilder) -> None:
    rid = gemini_run(builder, "finished", cost_cap=1.0)
    first, failed, last = with_calls(builder, rid)
    at = open_page("app_pages/brain_calls.py", rid)
    assert at.title[0].value == "Brain calls"
    assert "3 calls · 2 234→767 tokens · \\$0.0042 estimated · 7.3 s waiting · 1 failed" in texts(at.markdown)
    titles = [e.label for e in at.expander]
    assert titles == ["#3 · plan_refinement · t0/o1/i2 · 1 234→567 tokens · 2.3 s · $0.0012",
                      "⚠ #2 · plan_refinement · t0/o1/i2 · 1.0 s · no LLM tokens",
                      "#1 · retrieve_models · retrieve · 1 000→200 tokens · 4.0 s · $0.0030"]
    assert not at.code  # collapsed: no prompt or answer is drawn until a call is opened
    assert "Showing the newest 3 of 3 calls." in texts(at.caption)

    at.session_state[f"{BrainCallKeys.CALL}{first}"] = True  # open the retrieval call
    at.run()
    assert not at.exception, at.exception
    codes = [c.value for c in at.code]
    assert codes == ["[xgb, lgbm]", "Find models for breast-cancer"] and all(c.language == "text" for c in at.code)
    assert "[XGBoost docs](https://xgboost.readthedocs.io/)" in texts(at.markdown)
    assert "retrieve models · model gemini-3.5-flash · call 1 of the run" in texts(at.caption)

    at.session_state[f"{BrainCallKeys.CALL}{failed}"] = True
    at.run()
    assert "Gemini HTTP 503 UNAVAILABLE: overloaded" in texts(at.error)
    assert "No answer: the call failed before the brain replied." in texts(at.caption)

    at.multiselect(key=BrainCallKeys.ROLES).select("retrieve_models").run()
    assert [e.label.split(" · ")[0] for e in at.expander] == ["#1"]
    assert "Matching the filters: 1 call · 1 000→200 tokens" in texts(at.caption)
    at.multiselect(key=BrainCallKeys.ROLES).unselect("retrieve_models").run()
    at.toggle(key=BrainCallKeys.FAILED).set_value(True).run()
    assert [e.label for e in at.expander] == [titles[1]]
    assert "Matching the filters: 1 failed call of 3" in texts(at.caption)
    at.multiselect(key=BrainCallKeys.ROLES).select("retrieve_models").run()
    assert "No call matches these filters." in texts(at.info)


def test_brain_calls_page_shows_more_on_demand(builder: RunBuilder) -> None:
    rid = gemini_run(builder, "finished")
    with_calls(builder, rid)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params[state.QUERY_RUN] = rid
    at.session_state[f"{BrainCallKeys.LIMIT}{rid}"] = 2  # as if the page size were 2
    at.run()
    at.switch_page("app_pages/brain_calls.py").run()
    assert len(at.expander) == 2 and "Showing the newest 2 of 3 calls." in texts(at.caption)
    assert at.button(key=BrainCallKeys.MORE).label == "Show 1 more"
    at.button(key=BrainCallKeys.MORE).click().run()
    assert len(at.expander) == 3 and not [b for b in at.button if b.key == BrainCallKeys.MORE]


def test_brain_calls_empty_state(builder: RunBuilder) -> None:
    rid = builder.run("finished")
    at = open_page("app_pages/brain_calls.py", rid)
    assert "This run has no brain calls recorded. Every run records its calls, the offline brain's too" \
        in texts(at.info)
    live_run = gemini_run(builder, "running")
    at = open_page("app_pages/brain_calls.py", live_run)
    assert "No brain calls yet" in texts(at.info)


def test_models_page_shows_grounding_sources(builder: RunBuilder) -> None:
    rid = gemini_run(builder)
    at = open_page("app_pages/models.py", rid)
    assert "**Grounded on** (1 web source): [XGBoost docs](https://xgboost.readthedocs.io/)" in texts(at.markdown)


def test_dashboard_shows_brain_usage(builder: RunBuilder) -> None:
    rid = gemini_run(builder, "finished", cost_cap=0.01)
    with_calls(builder, rid)
    at = open_page("app_pages/run.py", rid)
    brain = next(m for m in at.metric if m.label == "Brain")
    assert (brain.value, brain.delta) == ("gemini", "gemini-3.5-flash")  # the brain, its model below
    assert metric(at, "Brain calls") == "3" and metric(at, "Failed calls") == "1"
    assert metric(at, "Tokens in → out") == "2 234 → 767" and metric(at, "Estimated cost") == "$0.0042"
    assert "Spend \\$0.0042 of \\$0.010 cap (reserved \\$0 in flight)" in \
        "\n".join(str(p.proto.text) for p in at.get("progress"))  # a finished run holds nothing in flight
    assert "Estimate: gemini-3.5-flash at \\$1.50/\\$9.00 per 1M tokens in/out, search \\$14 per 1000 queries; " \
        "thinking billed as output" in texts(at.caption)
    table = next(d.value for d in at.dataframe if "tokens in" in d.value.columns)
    assert list(table["role"]) == ["retrieve_models", "plan_refinement"] and list(table["calls"]) == [1, 2]
    charts = at.get("plotly_chart")
    assert len(charts) == 1 and "estimated cost (USD)" in charts[0].proto.spec  # (no score yet: no best chart)
    assert any(p.proto.page == "brain_calls" for p in at.get("page_link"))
    at.toggle(key=RunKeys.NOISY).set_value(True).run()
    log = at.dataframe[-1].value
    assert "Brain call: plan_refinement · 1 234→567 tokens · 2.3 s · $0.0012" in list(log["what"])


def test_offline_dashboard_has_no_brain_usage(builder: RunBuilder) -> None:
    rid = running_run(builder)
    at = open_page("app_pages/run.py", rid)
    assert "Brain usage" not in texts(at.subheader)


def test_paused_run_shows_the_reason_and_resumes(builder: RunBuilder, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = gemini_run(builder)
    reason = "gemini refused the retrieve_models call: Gemini HTTP 400 INVALID_ARGUMENT: API key not valid"
    builder.store.update_run(rid, status="paused", control="pause", pause_reason=reason)
    builder.event(rid, "run_paused", reason=reason)
    unpaused: list[tuple[str, str | None]] = []
    monkeypatch.setattr(RunManager, "unpause",
                        lambda self, run_id, api_key=None: unpaused.append((run_id, api_key)))
    at = open_page("app_pages/run.py", rid)
    warning = texts(at.warning)
    assert "The run is paused: the brain could not go on." in warning and "API key not valid" in warning
    assert any(w.startswith("Run paused by the brain: gemini refused the retrieve_models call")
               for w in at.dataframe[-1].value["what"])
    key = at.text_input(key=RunKeys.API_KEY)
    assert key.proto.type == key.proto.PASSWORD
    key.input("a-new-key-123456")
    at.button(key=RunKeys.RESUME_PAUSED).click().run()
    assert not at.exception, at.exception
    assert unpaused == [(rid, "a-new-key-123456")]
    assert "Run resumed." in texts(at.success)

    # A pause that is not about the key: no key field, Resume alone.
    builder.store.update_run(rid, pause_reason="gemini failed 5 times in a row on merge (last: HTTP 503)")
    at = open_page("app_pages/run.py", rid)
    assert "failed 5 times in a row" in texts(at.warning)
    assert not [t for t in at.text_input if t.key == RunKeys.API_KEY]
    at.button(key=RunKeys.RESUME_PAUSED).click().run()
    assert unpaused[-1] == (rid, None)


def test_cost_cap_event_reads_well_in_the_log(builder: RunBuilder) -> None:
    rid = gemini_run(builder, "finished", cost_cap=0.004)
    with_calls(builder, rid)
    builder.event(rid, "cost_cap_reached", at_step="t0/o1/i2", spent=0.0042, cap=0.004)
    at = open_page("app_pages/run.py", rid)
    assert any(w.startswith("Cost cap reached: $0.0042 spent of the $0.0040 cap at track 1 · outer step 2")
               for w in at.dataframe[-1].value["what"])


# -- human in the loop with a real pipeline ----------------------------------------------------------------


@pytest.fixture
def gated_run(home: Path) -> Iterator[tuple[Store, str, threading.Thread]]:
    """A real run that asks for approval before each plan, going in a background thread."""
    boot_services()
    store = Store(home)
    config = RunConfig(num_models=1, outer_steps=1, inner_steps=2, num_solutions=1, ensemble_rounds=0,
                       workers=2, ablation_repeats=1, require_approval=True, script_timeout=120, n_folds=3)
    rid = create_run(store, load_task(ROOT / "demo_tasks" / "breast-cancer"), config, out_dir=home.parent / "out")
    thread = threading.Thread(target=lambda: Pipeline(store, rid).run(), daemon=True)
    thread.start()
    yield store, rid, thread
    if thread.is_alive():
        store.set_control(rid, "stop")
        thread.join(timeout=60)


def test_approve_edit_and_reject_from_the_refinement_page(gated_run: tuple[Store, str, threading.Thread]) -> None:
    store, rid, thread = gated_run
    first = wait_for(lambda: store.pending_decisions(rid), what="the first plan")[0]
    at = open_page("app_pages/attempts.py", rid)
    assert "A plan is waiting for your decision" in texts(at.warning)
    assert first["plan"] in texts(at.markdown)
    assert any(c.value.strip() == first["block_code"].strip() for c in at.code)

    # Reject: the planner proposes another plan for the same attempt
    at.button(key=AttemptKeys.REJECT).click().run()
    assert not at.exception and store.get_decision(first["id"])["status"] == "rejected"
    second = wait_for(lambda: [d for d in store.pending_decisions(rid) if d["id"] != first["id"]],
                      what="a new plan after the rejection")[0]
    assert second["plan"] != first["plan"] and second["key"].endswith("/r1")
    at.run()  # the watcher's poll
    assert second["plan"] in texts(at.markdown) and "after 1 rejected plan" in texts(at.warning)

    # Edit: a new plan text and a change in the block editor (streamlit-ace: its value is set by key)
    edited = second["plan"] + "\nAlso: keep it simple (human edit)."
    new_code = second["block_code"] + "\n# human edit: keep this line\n"
    at.text_area(key=f"{AttemptKeys.EDIT_PLAN}{second['id']}").set_value(edited)
    at.session_state[f"{AttemptKeys.EDIT_CODE}{second['id']}"] = new_code
    at.button(key=AttemptKeys.EDIT).click().run()
    assert not at.exception
    d = store.get_decision(second["id"])
    assert d["status"] == "edited" and d["edited_plan"] == edited and d["edited_code"] == new_code

    # Approve the plan of the second attempt
    third = wait_for(lambda: [d for d in store.pending_decisions(rid) if d["key"].startswith("t0/o0/i1")],
                     what="the plan of the second attempt")[0]
    at.run()
    at.button(key=AttemptKeys.APPROVE).click().run()
    assert not at.exception and store.get_decision(third["id"])["status"] == "approved"

    thread.join(timeout=240)
    assert not thread.is_alive() and store.get_run(rid)["status"] == "finished"
    attempts = store.table("attempts", rid)
    assert [a["decision"] for a in attempts] == ["rejected", "edited", "approved"]
    assert attempts[1]["plan"] == edited
    block = get_block(store.get_script(attempts[1]["script_id"])["code"], second["block"])
    assert "# human edit: keep this line" in block  # the human's code ran, not the coder's
    at.run()
    assert "No plan is waiting" in texts(at.caption)
    history = at.dataframe[-1].value  # "Your decisions"
    assert list(history["decision"]) == ["approved", "edited", "rejected"]
