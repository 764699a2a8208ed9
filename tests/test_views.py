"""mlestar_core.views: what the run pages show, on a real finished run and on hand-made edge cases."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest
from conftest import FinishedRun, RunBuilder

from mlestar_core import views
from mlestar_core.metrics import is_better
from mlestar_core.script import fence


@pytest.fixture(scope="module")
def real(finished_run_store: FinishedRun) -> dict:
    """Everything the pages read, loaded once."""
    s, rid = finished_run_store.store, finished_run_store.run_id
    return {"store": s, "id": rid, "run": s.get_run(rid), "info": views.run_info(s.get_run(rid)),
            "events": s.events_after(rid), "steps": views.steps_from_rows(s.steps(rid)),
            **{t: s.table(t, rid) for t in ("scripts", "executions", "ablations", "attempts", "model_cards",
                                             "ensemble_rounds", "decisions")}}


# -- run and phases ------------------------------------------------------------------------------


def test_run_info_reads_metric_and_direction(real: dict) -> None:
    info = real["info"]
    assert info.metric == "roc_auc" and info.metric_title == "ROC-AUC" and info.higher_is_better
    assert info.axis_title == "ROC-AUC (higher is better ↑)"
    assert info.status == "finished" and not info.active
    assert info.config["num_models"] == 2 and info.constraints == []


def test_every_phase_has_a_two_sentence_explanation() -> None:
    assert [p.key for p in views.PHASES] == ["baseline", "retrieve", "init", "merge", "check", "refine",
                                             "ensemble", "final"]
    for p in views.PHASES:
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", p.explanation.strip()) if s]
        assert len(sentences) == 2, (p.key, sentences)
        assert p.explanation.endswith(".")


def test_timeline_of_a_finished_run_is_all_done(real: dict) -> None:
    timeline = views.phase_timeline(real["steps"], real["info"].config, "finished")
    by = {p.key: p for p in timeline}
    assert all(p.status == "done" for p in timeline), [(p.key, p.status) for p in timeline]
    assert by["merge"].total == 2 and by["check"].total == 2  # L = 2 tracks
    assert by["refine"].total == 2 * 1 * (2 + 2)  # L x T x (ablation + extract + K attempts)
    written = any(s.key == "ens/script" for s in real["steps"])  # the best round beat every single solution
    assert by["ensemble"].total == 1 + written and by["final"].done == 1
    assert views.current_phase(timeline) is None and views.step_progress(timeline) == 1.0


def test_timeline_of_a_running_run_shows_the_current_step(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = b.run("running", num_solutions=3)
    b.step(rid, "baseline", "baseline", result={"script_id": 1, "score": 0.5})
    b.step(rid, "retrieve", "retrieve", result=[])
    # only two candidates ran, so only two of the three tracks can exist
    b.step(rid, "init", "init", result=[{"script_id": 2, "score": 0.9}, {"script_id": 3, "score": 0.8},
                                        {"script_id": 4, "score": None}])
    b.step(rid, "t0/merge", "merge", status="running")
    steps = views.steps_from_rows(b.store.steps(rid))
    config = views.run_info(b.store.get_run(rid)).config
    timeline = views.phase_timeline(steps, config, "running")
    by = {p.key: p for p in timeline}
    assert [by[k].status for k in ("baseline", "retrieve", "init")] == ["done"] * 3
    assert by["merge"].status == "running" and by["merge"].total == 2
    assert by["merge"].current == ["track 1 · merge"]
    assert all(by[k].status == "pending" for k in ("check", "refine", "ensemble", "final"))
    now = views.current_phase(timeline)
    assert now is not None and now.key == "merge"
    assert 0 < views.step_progress(timeline) < 1
    # the same run waiting for a human: the refine phase says so
    b.step(rid, "t0/o0/i0", "refine", status="running")
    waiting = views.phase_timeline(views.steps_from_rows(b.store.steps(rid)), config, "waiting")
    assert {p.key: p for p in waiting}["refine"].status == "waiting"


def test_steps_from_events_agree_with_the_steps_table(real: dict) -> None:
    from_events = {s.key: s.status for s in views.steps_from_events(real["events"])}
    from_table = {s.key: s.status for s in real["steps"]}
    assert from_events == from_table


@pytest.mark.parametrize(("key", "words"), [
    ("baseline", "trivial baseline"), ("init", "initial candidates"), ("t0/merge", "track 1 · merge"),
    ("t1/checks", "track 2 · data-usage & leakage checks"),
    ("t0/o1/ablation", "track 1 · outer step 2 · ablation study"),
    ("t1/o0/extract", "track 2 · outer step 1 · choose the block"), ("t0/o1/i2", "track 1 · outer step 2 · attempt 3"),
    ("ens/r1", "ensemble round 2"), ("weird", "weird")])
def test_describe_step(key: str, words: str) -> None:
    assert views.describe_step(key) == words


# -- time, scores, counts ---------------------------------------------------------------------------


def test_budget_clock_state(real: dict, run_builder: RunBuilder) -> None:
    from mlestar_core import budget_clock

    done = budget_clock.clock_state(real["run"], (), real["events"])
    assert done.budget is None and done.fraction is None
    assert done.agent_seconds == pytest.approx(real["run"]["time_used"])
    b = run_builder
    rid = b.run("running", time_budget=100)
    b.step(rid, "baseline", "baseline")
    b.store.update_run(rid, time_used=30.0)
    events = b.store.events_after(rid)
    now = events[-1]["ts"] + 10.0  # ten seconds after the last step finished
    live = budget_clock.clock_state(b.store.get_run(rid), (), events, now=now)
    assert live.agent_seconds == pytest.approx(40.0) and live.fraction == pytest.approx(0.4)
    assert live.budget_text == "Agent time 40 s of 1 min 40 s (40 %)"


def test_run_progress_reads_the_budget_clock(run_builder: RunBuilder) -> None:
    """The dashboard's bar is agent time (waiting for a decision excluded), with the clock's sentence."""
    from mlestar_core import budget_clock

    b = run_builder
    rid = b.run("waiting", time_budget=240, require_approval=True, auto_approve_after=300)
    did = b.store.request_decision(rid, "t0/o0/i0/r0", "model", "a plan", "m = 1\n", auto_approve_after=300)
    created = b.store.get_decision(did)["created"]
    b.store.update_run(rid, time_used=100.0, time_waiting=20.0, clock_at=created, clock_stopped_since=created,
                       clock_hold="decision")
    clock = budget_clock.clock_state(b.store.get_run(rid), b.store.table("decisions", rid), now=created + 130)
    progress = views.run.run_progress(clock, [])
    assert progress.fraction == pytest.approx(100 / 240)
    assert progress.text.startswith("Agent time 1 min 40 s of 4 min (42 %)")
    assert progress.clock_text is not None and progress.clock_text.startswith(
        "Budget clock stopped: waiting for your decision (2 min 10 s so far)")
    assert progress.auto_text is not None and "(in 2 min 50 s)" in progress.auto_text
    # Without a budget: the share of the planned steps, and the agent time.
    no_budget = views.run.run_progress(budget_clock.clock_state({"status": "finished", "time_used": 30.0}), [])
    assert no_budget.text == "0 % of the planned steps done · Agent time 30 s · no time budget"
    assert no_budget.clock_text is None and no_budget.auto_text is None


def test_active_seconds_skip_the_gap_before_a_resume() -> None:
    ev = [{"kind": "run_started", "ts": 100.0}, {"kind": "step_started", "ts": 110.0},
          {"kind": "run_stopped", "ts": 120.0}, {"kind": "run_started", "ts": 1000.0},
          {"kind": "step_done", "ts": 1005.0}]
    assert views.active_seconds(ev) == [0.0, 10.0, 20.0, 20.0, 25.0]


def test_score_series_is_the_best_so_far(real: dict) -> None:
    series = views.score_series(real["events"], True)
    assert not series.empty and set(series["kind"]) >= {"candidate_scored", "attempt_scored", "ensemble_round"}
    assert series["seconds"].is_monotonic_increasing
    assert series["best"].is_monotonic_increasing
    assert (series["best"] >= series["score"]).all()
    assert series["best"].iloc[-1] == pytest.approx(real["run"]["best_score"])


def test_score_series_lower_is_better() -> None:
    ev = [{"kind": "candidate_scored", "ts": float(i), "payload": {"label": f"m{i}", "score": s}}
          for i, s in enumerate([0.5, 0.7, 0.4, None, 0.45])]
    series = views.score_series(ev, higher_is_better=False)
    assert list(series["score"]) == [0.5, 0.7, 0.4, 0.45]  # the unscored one is left out
    assert list(series["best"]) == [0.5, 0.5, 0.4, 0.4]


def test_script_counts_match_the_executions(real: dict) -> None:
    counts = views.script_counts(real["events"])
    assert counts.run == len(real["executions"]) > 0
    assert counts == views.script_counts_from_rows(real["executions"])
    assert counts.ok == counts.run - counts.failed - counts.stopped  # stopped early: neither ok nor failed


# -- validation vs hold-out ---------------------------------------------------------------------------


@pytest.mark.parametrize(("val", "hold", "hib", "drift"), [
    (0.90, 0.80, True, True),  # 11 % worse on the hold-out
    (0.90, 0.88, True, False),  # 2 %: noise
    (0.90, 0.95, True, False),  # better on the hold-out
    (1.00, 1.20, False, True),  # lower is better: 20 % worse
    (1.00, 0.90, False, False),
])
def test_holdout_drift_rule(val: float, hold: float, hib: bool, drift: bool) -> None:
    check = views.holdout_check(val, hold, hib)
    assert check.drift is drift
    assert (check.gap > 0) == is_better(val, hold, hib)  # type: ignore[operator]
    if drift:
        assert "overfitted the validation split" in check.message


def test_holdout_check_without_scores() -> None:
    assert not views.holdout_check(0.9, None, True).drift
    assert "when the run finishes" in views.holdout_check(0.9, None, True).message


def test_final_summary_of_the_real_run(real: dict) -> None:
    final = views.final_summary(real["events"])
    assert final is not None and final["holdout_score"] == pytest.approx(real["run"]["holdout_score"])
    check = views.holdout_check(final["validation_score"], final["holdout_score"], True)
    assert check.validation == final["validation_score"]


# -- event log ---------------------------------------------------------------------------------------


def test_event_log_is_newest_first_and_readable(real: dict) -> None:
    log = views.event_log(real["events"], limit=500, include_noisy=True)
    assert list(log["seq"]) == sorted(log["seq"], reverse=True)
    assert len(log) == len(real["events"])
    known = {e["kind"] for e in real["events"]}
    for kind in known:  # every kind the pipeline wrote has its own sentence, not the raw fallback
        sentence = log.loc[log["kind"] == kind, "what"].iloc[0]
        assert not sentence.startswith(f"{kind}:"), (kind, sentence)
    quiet = views.event_log(real["events"], limit=10)
    assert len(quiet) == 10 and not set(quiet["kind"]) & set(views.NOISY_KINDS)
    assert log["what"].iloc[0] == "Run finished"


def test_describe_event_examples() -> None:
    assert views.describe_event("merge", {"track": 0, "base": "a", "reference": "b", "score": 0.9,
                                          "base_score": 0.8, "kept": True}) == \
        "Track 1: merged b into a → 0.9 vs 0.8, kept"
    assert views.describe_event("attempt_scored", {"track": 1, "outer": 0, "inner": 2, "block": "model",
                                                   "score": 0.91, "baseline": 0.9, "decision": "edited"}) == \
        "Track 2, attempt 1.3 on model: 0.91 vs 0.9 [edited]"
    assert views.describe_event("constraints", {"constraints": ["no xgboost"]}) == "Constraints pinned: no xgboost"
    # The budget clock, the approval gate and human edits: each event carries its sentence.
    assert views.describe_event("budget_clock", {"stopped": True, "message": "Budget clock stopped"}) == \
        "Budget clock stopped"
    assert views.describe_event("edit_failed", {"message": "your edited `model` block failed — boom"}).endswith("boom")
    assert views.describe_event("decision", {"decision_id": 3, "status": "auto-approved", "decided_by": "auto"}) == \
        "Plan approved automatically: nobody decided in time, not a person's approval (decision #3)"
    assert views.describe_event("decision", {"decision_id": 4, "status": "approved", "decided_by": "human"}) == \
        "Plan approved (decision #4)"
    assert views.describe_event("attempt_scored", {"track": 0, "outer": 0, "inner": 0, "block": "model", "score": 0.9,
                                                   "baseline": 0.8, "decision": "edited", "status": "edit repaired"}) \
        .endswith("[edited] — your edit failed, the debugger repaired it")
    assert views.describe_event("control", {"control": "pause"}) == "Pause requested"
    assert views.describe_event("something_new", {"a": 1}).startswith("something_new:")


# -- models and merges ---------------------------------------------------------------------------------


def test_model_cards_carry_their_initial_score(real: dict) -> None:
    cards = views.model_cards(real["model_cards"], real["events"], real["scripts"])
    assert [c.rank for c in cards] == [0, 1] and all(c.why and c.example_code for c in cards)
    scored = {e["payload"]["label"]: e["payload"]["score"] for e in real["events"] if e["kind"] == "candidate_scored"}
    for c in cards:
        assert c.state == "scored" and c.score == scored[c.name]
        script = real["store"].get_script(c.script_id)
        assert script["label"] == c.name and script["role"] in ("initial", "debug")


def test_model_cards_before_the_candidates_ran(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = b.run()
    b.store.add_model_card(rid, 0, {"name": "xgb", "why": "fast", "example_code": "x", "source": "kb"})
    (card,) = views.model_cards(b.store.table("model_cards", rid), b.store.events_after(rid))
    assert card.state == "pending" and card.score is None


def test_merges_per_track(real: dict) -> None:
    merges = views.merges(real["events"], real["steps"])
    assert [m.track for m in merges] == [0, 1]
    for m in merges:
        done, result = real["store"].step_result(real["id"], f"t{m.track}/merge")
        assert done and m.result_script_id == result["script_id"] and m.result_score == result["score"]
        assert list(m.tries.columns) == ["base", "reference", "score", "base_score", "kept", "note"]


# -- ablation -----------------------------------------------------------------------------------------


def test_ablation_groups_of_the_real_run(real: dict) -> None:
    groups = views.ablation_groups(real["ablations"], real["events"])
    assert [(g.track, g.outer) for g in groups] == [(0, 0), (1, 0)]
    for g in groups:
        chosen = [b for b in g.bars if b.chosen]
        assert len(chosen) == 1 and chosen[0].block == g.chosen_block
        assert {a["block"] for a in real["attempts"] if a["track"] == g.track} == {g.chosen_block}
        assert g.summary and g.has_error_bars  # the spread of the paired per-fold deltas
        assert all(b.repeats == 1 for b in g.bars)  # one run per variant (ablation_repeats = 1 by default)


def test_ablation_rows_without_spread_have_no_error_bars(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = b.run()
    assert views.ablation_groups(b.store.table("ablations", rid), b.store.events_after(rid)) == []  # none yet
    for block, delta in [("model", 0.05), ("features", -0.01)]:
        b.store.add_ablation(rid, 0, 0, {"block": block, "description": f"simpler {block}", "score": 0.8,
                                         "baseline": 0.85, "delta": delta}, None)  # an older row: NULL spreads
    (g,) = views.ablation_groups(b.store.table("ablations", rid), b.store.events_after(rid))
    assert not g.has_error_bars and all(x.error is None and x.repeats == 1 for x in g.bars)
    assert g.chosen_block is None and g.summary is None  # the study is still running
    b.event(rid, "block_chosen", track=0, outer=0, block="model", plan="p", reason="helps most")
    (g,) = views.ablation_groups(b.store.table("ablations", rid), b.store.events_after(rid))
    assert [x.block for x in g.bars if x.chosen] == ["model"] and g.reason == "helps most"


def test_ablation_error_prefers_the_paired_spread(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = b.run()
    b.store.add_ablation(rid, 0, 0, {"block": "model", "delta": 0.05}, None, scores=[0.8, 0.82],
                         score_std=0.03, baseline_std=0.04, delta_std=0.01)
    b.store.add_ablation(rid, 0, 0, {"block": "train", "delta": 0.02}, None, scores=[0.8, 0.82],
                         score_std=0.03, baseline_std=0.04)
    (g,) = views.ablation_groups(b.store.table("ablations", rid), [])
    assert [x.error for x in g.bars] == [pytest.approx(0.01), pytest.approx(0.05)]  # sqrt(.03² + .04²)
    assert [x.repeats for x in g.bars] == [2, 2]


# -- attempts, diffs, tree ---------------------------------------------------------------------------------


def test_attempt_groups_of_the_real_run(real: dict) -> None:
    groups = views.attempt_groups(real["attempts"], True)
    assert [(g.track, g.outer) for g in groups] == [(0, 0), (1, 0)]
    for g in groups:
        assert [a.inner for a in g.attempts] == [0, 1]
        assert sum(a.kept for a in g.attempts) <= 1
        for a in g.attempts:
            assert a.decision == "auto" and a.status in ("ok", "stopped early")
            if a.gain is not None:
                assert (a.gain > 0) == is_better(a.score, a.baseline, True)
        if g.kept:
            assert is_better(g.kept.score, g.baseline, True)
    trace = views.attempt_trace(real["attempts"], True)
    assert list(trace["n"]) == list(range(1, len(real["attempts"]) + 1))


def test_block_diff_of_an_attempt(real: dict) -> None:
    a = next(a for a in real["attempts"] if a["script_id"])
    parent, child = real["store"].get_script(a["parent_script_id"]), real["store"].get_script(a["script_id"])
    diff = views.block_diff(parent["code"], child["code"], a["block"])
    assert diff.before and diff.after and diff.changed
    assert diff.unified.startswith(f"--- {a['block']} (before)")
    html = views.side_by_side_html(diff.before, diff.after, "before", "after")
    assert "<table" in html and "diff_" in html and "before" in html


def test_block_diff_without_a_script() -> None:
    code = fence("model", "m = 1")
    diff = views.block_diff(code, None, "model")
    assert diff.before == "m = 1\n" and diff.after == "" and diff.changed
    assert views.block_diff("no blocks", code, "model").before == ""


def test_attempts_with_rejected_plans(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = b.run(higher_is_better=False)
    b.store.add_attempt(rid, track=0, outer_step=0, inner_step=0, block="model", plan="bad", decision="rejected",
                        status="rejected", baseline=0.5)
    b.store.add_attempt(rid, track=0, outer_step=0, inner_step=0, block="model", plan="good", decision="edited",
                        status="ok", script_id=7, parent_script_id=6, score=0.4, baseline=0.5, kept=1)
    (g,) = views.attempt_groups(b.store.table("attempts", rid), False)
    assert [a.decision for a in g.attempts] == ["rejected", "edited"]
    assert g.kept is not None and g.kept.gain == pytest.approx(0.1)  # lower is better: 0.4 beats 0.5
    trace = views.attempt_trace(b.store.table("attempts", rid), False)
    assert list(trace["label"]) == ["t1 1.1 model"]  # rejected plans never ran


def test_attempt_diffs_of_failed_and_repaired_edits(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = b.run()
    start, mine, repair = fence("model", "m = 1"), fence("model", "m = oops"), fence("model", "m = 2")
    row = dict(track=0, outer_step=0, inner_step=0, block="model", plan="p", decision="edited", parent_script_id=1,
               baseline=0.5)
    b.store.add_attempt(rid, status="edit failed", script_id=2, edit_script_id=2, error="your edit failed: boom",
                        **row)
    b.store.add_attempt(rid, nth=1, status="edit repaired", script_id=3, edit_script_id=2, score=0.6,
                        error="your edit failed: boom; the debugger repaired your edit", **{**row, "inner_step": 1})
    b.store.add_attempt(rid, status="failed", script_id=None, error="ScriptError: no block `model`",
                        **{**row, "inner_step": 2, "decision": "approved"})
    (g,) = views.attempt_groups(b.store.table("attempts", rid), True)
    failed, repaired, plain = g.attempts
    assert [r["status"] for r in g.rows()] == ["edit failed: your edited code did not run",
                                               "edit repaired: your edit failed, the debugger repaired it", "failed"]
    assert g.rows()[2]["error"] == "ScriptError: no block `model`"

    d = views.attempts.attempt_diffs(failed, start, mine, mine)  # what the user wrote, against the start
    assert d.failed and d.error == "your edit failed: boom" and d.more is None
    assert (d.main.diff.before, d.main.diff.after) == ("m = 1\n", "m = oops\n")
    assert d.main.right == "your edit (script #2)"

    d = views.attempts.attempt_diffs(repaired, start, repair, mine)  # the repair, against what the user wrote
    assert not d.failed and d.main.title == "debugger repaired your edit: diff against what you wrote"
    assert (d.main.diff.before, d.main.diff.after) == ("m = oops\n", "m = 2\n")
    assert "model (your edit)" in d.main.diff.unified and "model (debugger's repair)" in d.main.diff.unified
    assert d.more is not None and (d.more.diff.before, d.more.diff.after) == ("m = 1\n", "m = oops\n")

    d = views.attempts.attempt_diffs(plain, start, None)
    assert d.failed and d.main.title == "" and d.main.diff.after == "" and d.error.startswith("ScriptError")
    assert "edit failed" in failed.label


def test_script_tree_of_the_real_run(real: dict) -> None:
    scripts = real["scripts"]
    tree = views.script_tree(scripts, real["executions"], ensemble_rounds=real["ensemble_rounds"])
    assert sorted(n.id for n in tree) == sorted(s["id"] for s in scripts)
    position = {n.id: i for i, n in enumerate(tree)}
    depth = {n.id: n.depth for n in tree}
    for n in tree:
        if n.parent_id is not None:
            assert position[n.parent_id] < position[n.id] and depth[n.id] == depth[n.parent_id] + 1
        else:
            assert n.depth == 0
    roles = {n.role for n in tree}
    assert {"baseline", "initial", "ablation", "refine"} <= roles  # (M = L = 2: no candidate left to merge)
    # An ensemble becomes a script only when its engine-scored round beat every single solution.
    assert ("ensemble" in roles) == any(s.key == "ens/script" for s in real["steps"])
    assert all(n.role == "ensemble" or n.role in ("baseline", "initial") for n in tree if n.depth == 0)
    final = views.final_summary(real["events"])
    node = next(n for n in tree if n.id == final["final_script_id"])
    assert node.score == pytest.approx(final["validation_score"])
    assert f"#{node.id} {node.role}" in node.text


def test_script_tree_role_filter_keeps_it_connected(real: dict) -> None:
    scripts = real["scripts"]
    tree = views.script_tree(scripts, real["executions"], roles=["initial", "refine"])
    assert {n.role for n in tree} <= {"initial", "refine"}
    by = {n.id: n for n in tree}
    for n in tree:
        if n.role == "refine":  # attached to its nearest shown ancestor: an initial candidate or an attempt
            ancestors = [s["id"] for s in views.lineage(scripts, n.id)][:-1]
            assert any(a in by for a in ancestors) and n.depth >= 1


def test_lineage_is_root_first(real: dict) -> None:
    refine = next(s for s in real["scripts"] if s["role"] == "refine")
    chain = views.lineage(real["scripts"], refine["id"])
    assert chain[-1]["id"] == refine["id"] and chain[0]["parent_id"] is None
    assert chain[0]["role"] == "initial"


# -- ensemble -------------------------------------------------------------------------------------------


def test_ensemble_view_of_the_real_run(real: dict) -> None:
    view = views.ensemble_view(real["ensemble_rounds"], real["steps"], real["attempts"], real["events"])
    assert list(view.rounds["round"]) == [1] and view.rounds["strategy"].iloc[0]
    assert len(view.members) == 2 and view.members["script_id"].is_unique
    for _, m in view.members.iterrows():  # each member is its track's refined script or the checked one
        track = int(str(m["label"]).split()[1]) - 1
        kept = [a for a in real["attempts"] if a["track"] == track and a["kept"]]
        _, checks = real["store"].step_result(real["id"], f"t{track}/checks")
        assert m["script_id"] == (kept[-1]["script_id"] if kept else checks["script_id"])
    assert view.final is not None and view.final["final_label"]
    # With the scripts at hand, the members are the ones the engine scored the round on, with its weights.
    full = views.ensemble_view(real["ensemble_rounds"], real["steps"], real["attempts"], real["events"],
                               real["scripts"], real["executions"])
    (rnd,) = real["ensemble_rounds"]
    assert full.members["script_id"].tolist() == json.loads(rnd["members_json"])
    assert full.rounds["method"].iloc[0] == "caruana" and full.rounds["weights"].iloc[0]


def test_ensemble_view_before_any_round(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = b.run()
    view = views.ensemble_view([], [], [], b.store.events_after(rid))
    assert view.rounds.empty and view.members.empty and view.final is None


# -- human in the loop ----------------------------------------------------------------------------------


def test_pending_plan_and_decision_history(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = b.run("waiting")
    parent = b.store.add_script(rid, "initial", fence("model", "m = 1"), label="xgb")
    variant = b.store.add_script(rid, "ablation", fence("model", "m = 0"), parent_id=parent)
    b.store.add_ablation(rid, 1, 0, {"block": "model", "delta": 0.1}, variant)
    assert views.pending_plan(b.store.table("decisions", rid), [], []) is None
    first = b.store.request_decision(rid, "t1/o0/i1/r0", "model", "more trees", "m = 1\n")
    b.store.decide(first, "rejected")
    second = b.store.request_decision(rid, "t1/o0/i1/r1", "model", "fewer trees", "m = 1\n")
    plan = views.pending_plan(b.store.table("decisions", rid), b.store.table("ablations", rid),
                              b.store.table("scripts", rid))
    assert plan is not None and plan.decision_id == second and plan.retry == 1
    assert (plan.track, plan.outer, plan.inner) == (1, 0, 1) and plan.script_id == parent
    assert plan.where == "track 2 · outer step 1 · attempt 2"
    assert plan.auto_text is None  # no automatic approval: the plan waits as long as it takes
    b.store.decide(second, "approved")
    third = b.store.request_decision(rid, "t1/o0/i2/r0", "model", "a plan", "m = 1\n", auto_approve_after=120)
    plan = views.pending_plan(b.store.table("decisions", rid), [], [])
    assert plan is not None and plan.decision_id == third
    assert plan.auto_text is not None and plan.auto_text.startswith("If nobody answers, the plan is approved")
    history = views.decision_history(b.store.table("decisions", rid))
    assert list(history["decision"]) == ["approved", "rejected"] and history["plan"].iloc[1] == "more trees"
    assert history["who decided"].iloc[1].startswith("rejected by you after")
    # The time each decision was taken, as a time of day (not epoch seconds shown as milliseconds: 1970).
    decided = b.store.get_decision(first)["decided"]
    assert history["decided"].iloc[1] == pd.Timestamp.fromtimestamp(decided)
    assert history["decided"].iloc[1].year >= 2026


def test_edit_payload_sends_code_only_when_changed() -> None:
    assert views.edit_payload("new plan", "old", "m = 1\n", "m = 1") == ("new plan", None)
    assert views.edit_payload("  ", "old", None, "m = 1") == ("old", None)
    assert views.edit_payload("p", "old", "m = 2\n", "m = 1\n") == ("p", "m = 2\n")


# -- replay ---------------------------------------------------------------------------------------------


def test_replay_at_the_end_matches_the_live_dashboard(real: dict) -> None:
    events, info = real["events"], real["info"]
    end = views.replay_state(events, len(events), info.config, True)
    assert end.status == "finished" and end.n == end.total == len(events)
    live = views.phase_timeline(real["steps"], info.config, "finished")
    assert [(p.key, p.status, p.done) for p in end.timeline] == [(p.key, p.status, p.done) for p in live]
    assert end.best == pytest.approx(real["run"]["best_score"])
    assert end.counts == views.script_counts(events) and end.event == "Run finished"


def test_replay_in_the_middle_and_at_the_start(real: dict) -> None:
    events, info = real["events"], real["info"]
    start = views.replay_state(events, 0, info.config, True)
    assert start.status == "created" and start.best is None and start.counts.run == 0 and start.log.empty
    assert all(p.status in ("pending", "not needed") for p in start.timeline)
    mid_n = next(i for i, e in enumerate(events) if e["kind"] == "ablation_result") + 1
    mid = views.replay_state(events, mid_n, info.config, True)
    assert mid.status == "running" and mid.log["seq"].iloc[0] == events[mid_n - 1]["seq"]
    by = {p.key: p for p in mid.timeline}
    assert by["init"].status == "done" and by["refine"].status == "running" and by["final"].status == "pending"
    assert 0 < mid.counts.run < views.script_counts(events).run
    assert len(mid.series) < len(views.score_series(events, True))
    assert views.replay_state(events, 10**6, info.config, True).n == len(events)  # clamped


def test_status_after_follows_the_feed() -> None:
    def ev(*kinds: str) -> list[dict]:
        return [{"kind": k, "ts": time.time(), "payload": {}} for k in kinds]

    assert views.status_after(ev()) == "created"
    assert views.status_after(ev("run_started", "approval_needed")) == "waiting"
    assert views.status_after(ev("run_started", "approval_needed", "decision")) == "running"
    assert views.status_after(ev("run_started", "paused")) == "paused"
    assert views.status_after(ev("run_started", "run_stopped")) == "stopped"


# -- brains: which one, what it cost, every call ----------------------------------------------------


def _llm_run(b: RunBuilder, brain: str = "gemini", **config: object) -> str:
    return b.run("running", brain=brain, **config)


def test_brain_in_use_names_the_model(run_builder: RunBuilder) -> None:
    from mlestar_core.brains.llm.settings import LLMSettings

    b = run_builder
    gemini = views.run_info(b.store.get_run(_llm_run(b)))
    assert gemini.brain_label == "gemini · gemini-3.5-flash" and gemini.cost_cap is None
    custom = views.run_info(b.store.get_run(_llm_run(b, llm=LLMSettings(model="gemini-3.1-pro-preview"),
                                                     cost_cap=2.5)))
    assert custom.brain_label == "gemini · gemini-3.1-pro-preview" and custom.cost_cap == 2.5
    assert views.brain_in_use("openai", {}) == "openai · llama3.1"
    assert views.brain_in_use("replay", {"llm": {"cassette": "/x/cassettes/ab12.json"}}) == \
        "replay · cassette ab12.json"
    assert views.brain_in_use("offline", {"llm": {"model": "ignored"}}) == "offline"
    assert views.run_info(b.store.get_run(b.run())).brain_label == "offline"


def test_money_and_token_formats() -> None:
    assert views.fmt_tokens(1234567) == "1 234 567" and views.fmt_tokens(None) == "0"
    assert [views.fmt_usd(x) for x in (0, 0.0012, 0.1234, 12.345, 1234.5)] == \
        ["$0", "$0.0012", "$0.123", "$12.35", "$1,234.50"]
    assert views.md_escape("$1 of $2 [x]") == "\\$1 of \\$2 \\[x\\]"


def _calls(b: RunBuilder, rid: str) -> list[int]:
    return [
        b.brain_call(rid, "retrieve_models", tokens_in=1000, tokens_out=200, cost=0.003, latency=4.0,
                     step_key="retrieve", model="gemini-3.5-flash",
                     sources=[{"title": "XGBoost docs", "uri": "https://xgboost.readthedocs.io/"}]),
        b.brain_call(rid, "plan_refinement", answer=None, error="Gemini HTTP 503 UNAVAILABLE: overloaded",
                     latency=1.0, step_key="t0/o1/i2", model="gemini-3.5-flash"),
        b.brain_call(rid, "plan_refinement", tokens_in=1234, tokens_out=567, cost=0.0012, latency=2.34,
                     step_key="t0/o1/i2", call_index=1, model="gemini-3.5-flash"),
    ]


def test_brain_usage_per_role_and_against_the_cap(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = _llm_run(b, cost_cap=0.01)
    _calls(b, rid)
    usage = views.brain_usage(b.store.brain_usage(rid), views.run_info(b.store.get_run(rid)).cost_cap)
    assert list(usage.table.columns) == views.BRAIN_USAGE_COLUMNS
    assert list(usage.table["role"]) == ["retrieve_models", "plan_refinement"]
    assert list(usage.table["calls"]) == [1, 2] and list(usage.table["failed"]) == [0, 1]
    assert (usage.calls, usage.failed, usage.tokens_in, usage.tokens_out) == (3, 1, 2234, 767)
    assert usage.cost == pytest.approx(0.0042) and usage.cap_fraction == pytest.approx(0.42)
    assert usage.cost_text == "$0.0042 of the $0.010 cost cap (42 %)" and usage.chart_value == "cost"
    assert views.shows_brain_usage("gemini", usage)
    free = views.brain_usage([{"role": "merge", "calls": 2, "failed": 0, "tokens_in": 10, "tokens_out": 5,
                               "cost": 0.0, "latency": 1.0}])
    assert free.chart_value == "tokens" and free.cost_text == "$0 (no cost cap)" and free.cap_fraction is None
    assert views.shows_brain_usage("offline", free)  # tokens were counted
    nothing = views.brain_usage([])
    assert nothing.calls == 0 and not views.shows_brain_usage("offline", nothing)
    assert views.shows_brain_usage("openai", nothing)


def test_brain_call_list_titles_filters_and_limit(run_builder: RunBuilder) -> None:
    b = run_builder
    rid = _llm_run(b)
    first, failed, last = _calls(b, rid)
    calls = views.brain_call_views(b.store.brain_call_list(rid))
    assert [c.id for c in calls] == [last, failed, first]  # newest first
    assert [c.n for c in calls] == [3, 2, 1]
    assert calls[0].title == "#3 · plan_refinement · t0/o1/i2 · 1 234→567 tokens · 2.3 s · $0.0012"
    # A call that metered nothing (the offline expert's) says so, not "0→0 tokens · $0".
    (offline,) = views.brain_call_views([{"id": 9, "role": "debug", "step_key": "init", "latency": 0.02,
                                          "tokens_in": 0, "tokens_out": 0, "cost": 0.0, "answer": "x"}])
    assert offline.title == "#1 · debug · init · 0.0 s · no LLM tokens"
    assert calls[1].title.startswith("⚠ #2 · plan_refinement") and calls[1].failed and not calls[1].answered
    assert calls[0].step_text == "track 1 · outer step 2 · attempt 3"
    assert calls[2].sources == [{"title": "XGBoost docs", "uri": "https://xgboost.readthedocs.io/"}]
    assert "prompt" not in b.store.brain_call_list(rid)[0]  # the list never loads the texts
    assert b.store.get_brain_call(failed)["prompt"] == "the prompt"

    only = views.brain_call_views(b.store.brain_call_list(rid, roles=["retrieve_models"]))
    assert [(c.id, c.n) for c in only] == [(first, 1)]  # numbered in the run, not in the filtered list
    assert [c.id for c in views.brain_call_views(b.store.brain_call_list(rid, failed_only=True))] == [failed]
    assert [c.id for c in views.brain_call_views(b.store.brain_call_list(rid, limit=1))] == [last]

    usage = b.store.brain_usage(rid)
    assert views.brain_calls_summary(usage) == \
        "3 calls · 2 234→767 tokens · $0.0042 estimated · 7.3 s waiting · 1 failed"
    assert views.brain_calls_summary(usage, ["retrieve_models"]).startswith("1 call · 1 000→200 tokens")
    assert views.brain_calls_summary(usage, failed_only=True) == "1 failed call of 3"
    assert views.matching_calls(usage) == 3 and views.matching_calls(usage, ["plan_refinement"], True) == 1


def test_brain_events_read_well() -> None:
    assert views.describe_event("run_paused", {"reason": "gemini refused the merge call: HTTP 400"}) == \
        "Run paused by the brain: gemini refused the merge call: HTTP 400 — resume it on the Run dashboard"
    assert views.describe_event("cost_cap_reached", {"at_step": "t0/o1/i2", "spent": 5.0123, "cap": 5}) == \
        ("Cost cap reached: $5.01 spent of the $5.00 cap at track 1 · outer step 2 · attempt 3; no more brain "
         "calls, wrapping up with the best so far")
    assert views.describe_event("brain_call", {"role": "merge", "tokens_in": 1234, "tokens_out": 56,
                                               "latency": 2.25, "cost": 0.0004}) == \
        "Brain call: merge · 1 234→56 tokens · 2.2 s · $0.0004"
    assert views.describe_event("brain_call", {"role": "merge", "error": "HTTP 503"}).endswith("— failed: HTTP 503")
    assert views.describe_event("run_started", {"brain": "gemini · gemini-3.5-flash"}) == \
        "Run started · brain: gemini · gemini-3.5-flash"
    assert views.status_after([{"kind": "run_started", "payload": {}}, {"kind": "run_paused", "payload": {}}]) == \
        "paused"


@pytest.mark.parametrize(("reason", "needs_key"), [
    ("the brain cannot start: no Gemini API key: set GEMINI_API_KEY", True),
    ("gemini refused the retrieve_models call: Gemini HTTP 400 INVALID_ARGUMENT: API key not valid", True),
    ("openai refused the merge call: http://x/v1 HTTP 401: Unauthorized", True),
    ("gemini failed 5 times in a row on merge (last: HTTP 503); resume the run when the service is back", False),
    ("gemini gave 3 unusable answers to plan_refinement", False),
    (None, False),
])
def test_pause_needs_key(reason: str | None, needs_key: bool) -> None:
    assert views.pause_needs_key(reason) is needs_key


def test_new_run_blockers() -> None:
    assert "needs an API key" in views.new_run_blocker("gemini", key_source="none found")
    assert views.new_run_blocker("gemini", key_source="environment variable GEMINI_API_KEY") is None
    assert views.new_run_blocker("gemini", key_source="entered on this page (kept in memory only)") is None
    assert views.new_run_blocker("gemini", vertex=True, project="my-proj") is None  # no key needed
    assert "Google Cloud project" in views.new_run_blocker("gemini", vertex=True, project=" ")
    assert views.new_run_blocker("openai", base_url="http://localhost:11434/v1", model="llama3.1") is None
    assert "base URL" in views.new_run_blocker("openai", base_url="", model="m")
    assert "Upload a cassette" in views.new_run_blocker("replay")
    assert views.new_run_blocker("replay", cassette=True) is None
    assert views.new_run_blocker("offline") is None


def test_key_source_text_never_needs_the_key() -> None:
    assert views.key_source_text("gemini", "environment variable GEMINI_API_KEY").startswith(
        "Using GEMINI_API_KEY from the environment.")
    assert views.key_source_text("gemini", ".streamlit/secrets.toml").startswith("Using the key in .streamlit")
    assert views.key_source_text("openai", "none found").startswith("No key found: type one, or set OPENAI_API_KEY")
    assert "memory only" in views.key_source_text("gemini", "entered on this page (kept in memory only)")


def test_llm_settings_from_the_form() -> None:
    s = views.llm_settings_from_form(
        "gemini", model=" gemini-3.5-flash ", vertex=True, project="p", location="", search=False, timeout=60,
        max_retries=2, price=(1.5, 9.0), default_price=(1.5, 9.0),
        role_models=views.role_models_from_records([{"role": "merge", "model": " gemini-2.5-pro "},
                                                    {"role": "debug", "model": ""}, {"role": "x", "model": None}]))
    assert (s.model, s.vertex, s.project, s.location, s.search, s.timeout, s.max_retries) == \
        ("gemini-3.5-flash", True, "p", "us-central1", False, 60.0, 2)
    assert s.role_models == {"merge": "gemini-2.5-pro"}
    assert s.prices == {}  # the table's price: not stored
    changed = views.llm_settings_from_form("gemini", model="", price=(1.0, 2.0), default_price=(1.5, 9.0),
                                           price_model="gemini-3.5-flash")
    assert changed.prices == {"gemini-3.5-flash": [1.0, 2.0]} and changed.model == ""
    local = views.llm_settings_from_form("openai", model="qwen3", base_url="http://h:8000/v1", vertex=True,
                                         price=(0.0, 0.0), default_price=None)
    assert local.base_url == "http://h:8000/v1" and not local.vertex and local.prices == {}
    replay = views.llm_settings_from_form("replay", cassette="/s/cassettes/a.json")
    assert replay.cassette == "/s/cassettes/a.json"
    assert views.llm_settings_from_form("offline", model="x").model == ""
    assert "api_key" not in s.to_dict() and "key" not in " ".join(s.to_dict())  # no field could hold a key


def test_cassette_summary_of_a_recorded_run(run_builder: RunBuilder) -> None:
    from mlestar_core.brains.llm.replay import make_cassette

    b = run_builder
    rid = _llm_run(b)
    b.store.update_run(rid, best_score=0.98765)
    _calls(b, rid)
    cassette = make_cassette(b.store.get_run(rid), b.store.table("brain_calls", rid))
    summary = views.cassette_summary(cassette)
    assert (summary.brain, summary.run_id, summary.task, summary.calls) == ("gemini", rid, "breast-cancer", 2)
    assert summary.text == (f"Recorded with the **gemini** brain on task **breast-cancer** (run `{rid}`): "
                            "2 answered calls, best score 0.98765 (roc_auc).")
    assert summary.knobs_text == "M = 2, T = 1, K = 2, L = 2, R = 1, seed = 42"


def test_sources_become_safe_links(run_builder: RunBuilder) -> None:
    import json

    raw = json.dumps([{"title": "A [great] guide", "uri": "https://example.com/a(1)"},
                      {"title": "", "uri": "https://example.com/b"}, {"title": "bad", "uri": "javascript:alert(1)"}])
    sources = views.parse_sources(raw)
    assert [s["uri"] for s in sources] == ["https://example.com/a(1)", "https://example.com/b"]
    assert views.source_links(sources) == \
        "[A \\[great\\] guide](https://example.com/a%281%29) · [https://example.com/b](https://example.com/b)"
    assert views.parse_sources("not json") == [] and views.parse_sources(None) == []
    b = run_builder
    rid = b.run()
    b.store.add_model_card(rid, 0, {"name": "xgb", "why": "w", "example_code": "x", "source": "Google Search",
                                    "sources": [{"title": "XGBoost", "uri": "https://xgboost.ai"}]})
    (card,) = views.model_cards(b.store.table("model_cards", rid), [])
    assert card.sources == [{"title": "XGBoost", "uri": "https://xgboost.ai"}]


def test_brain_usage_names_the_roles_that_fell_back() -> None:
    rows = [{"role": "merge", "calls": 4, "failed": 4, "fallbacks": 1, "tokens_in": 10, "tokens_out": 5, "cost": 0.1,
             "latency": 1.0},
            {"role": "debug", "calls": 2, "failed": 0, "fallbacks": 0, "tokens_in": 1, "tokens_out": 1, "cost": 0.0,
             "latency": 0.5}]
    usage = views.brain_usage(rows)
    assert usage.fallbacks == {"merge": 1} and "merge ×1" in usage.degraded_text and "FALLBACK" in usage.degraded_text
    assert views.brain_usage(rows[1:]).degraded_text == ""


# -- the page modules: what a page decides, without Streamlit -------------------------------------------


def test_each_page_has_its_own_view_module() -> None:
    from pathlib import Path

    root = Path(views.__file__).parent
    app_pages = root.parents[1] / "app_pages"
    pages = {p.stem for p in app_pages.glob("*.py")}
    assert pages <= {p.stem for p in root.glob("*.py")}  # app_pages/run.py -> views/run.py, ...
    for page in pages:
        assert f"from mlestar_core.views import {page} as view" in (app_pages / f"{page}.py").read_text()


def test_run_controls_follow_the_run_and_who_drives_it() -> None:
    run = {"status": "running", "control": "run", "pause_reason": None}
    c = views.run.controls(run, engine=True, alive=True)
    assert (c.can_pause, c.can_resume, c.can_stop, c.locked, c.note) == (True, False, True, None, "")
    c = views.run.controls({**run, "control": "pause"}, engine=True, alive=True)
    assert not c.can_pause and c.can_resume and c.unpause and c.note.startswith("Pause requested")
    c = views.run.controls(run, engine=True, alive=False)  # the app restarted: Resume relaunches it
    assert c.can_resume and not c.unpause and "interrupted" in c.note
    c = views.run.controls(run, engine=True, alive=False, elsewhere="pid 12 on host")
    assert not (c.can_pause or c.can_resume or c.can_stop) and "pid 12 on host" in c.locked
    c = views.run.controls(run, engine=False, engine_error="broken brain")
    assert not (c.can_pause or c.can_resume or c.can_stop) and c.locked == "broken brain"
    assert not views.run.controls({**run, "status": "finished"}, engine=True).can_resume
    assert views.run.constraints_with(["a"], "  b ") == ["a", "b"] and views.run.constraints_with(["a"], " ") is None
    assert views.run.constraints_without(["a", "b", "c"], 1) == ["a", "c"]


def test_history_filters_and_actions() -> None:
    runs = [{"id": "1", "name": "Churn", "status": "finished", "brain": "offline"},
            {"id": "2", "name": "wine", "status": "running", "brain": "gemini"}]
    assert views.history.filter_options(runs) == (["finished", "running"], ["gemini", "offline"])
    assert [r["id"] for r in views.history.filter_runs(runs, search=" CHU ")] == ["1"]
    assert [r["id"] for r in views.history.filter_runs(runs, ["running"], ["gemini"])] == ["2"]
    going = views.history.run_actions(runs[1], engine=True, alive=True)
    assert not going.can_resume and going.can_stop and not going.can_delete
    assert going.delete_help == "Stop the run first."
    done = views.history.run_actions(runs[0], engine=True, alive=False)
    assert not done.can_resume and not done.can_stop and done.can_delete


def test_new_run_config_from_the_form() -> None:
    from mlestar_core.brains.llm.settings import LLMSettings

    knobs = views.new_run.Knobs(2, 1, 1, 1, 0, 0, 2, 7, 60, True, False)
    config = views.new_run.run_config(knobs, brain="offline", settings=LLMSettings(), cost_cap=None,
                                      approval=True, constraints=" no trees \n\n keep it small ")
    assert config.time_budget is None and config.require_approval and config.seed == 7
    assert config.constraints == ["no trees", "keep it small"] and not config.use_leakage_checker
    replayed = views.new_run.run_config(knobs, brain="replay", settings=LLMSettings(), cost_cap=None,
                                        approval=False, constraints="", cassette={"config": {"num_models": 4}})
    assert replayed.num_models == 4 and replayed.brain == "replay"  # the recording's knobs win
    assert views.new_run.start_blocker(None, engine=False) == "The run engine is not available."
    assert views.new_run.start_blocker("Set a key", engine=False) == "Set a key"
