"""The orchestrator end to end on demo tasks, with small knobs and real script executions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from waiting import wait_for

from mlestar_core.config import RunConfig
from mlestar_core.metrics import is_better
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.script import get_block
from mlestar_core.service import RunManager
from mlestar_core.store import Store
from mlestar_core.task import load_task

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ROOT / "demo_tasks"
SMALL = dict(num_models=2, outer_steps=1, inner_steps=2, num_solutions=2, ensemble_rounds=1, workers=2,
             script_timeout=120, ablation_repeats=1, n_folds=3,
             explain_at_end=False)  # what drives the model: tests/test_explain.py


ABLATION_SNAPSHOTS: list[list[list[float | None]]] = []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, str, dict, Path]:
    root = tmp_path_factory.mktemp("e2e")
    store = Store(root / "store")
    task = load_task(DEMOS / "breast-cancer")
    out = root / "out"
    # Three candidates for two tracks: each track starts from its own and may merge the third.
    run_id = create_run(store, task, RunConfig(**{**SMALL, "num_models": 3, "ablation_repeats": 2}), out_dir=out)

    def watch(kind: str, payload: dict) -> None:  # what the Ablation page could show while the rerun goes
        if kind == "script_executed" and "(seed 2)" in (store.get_script(payload["script_id"]) or {})["label"]:
            ABLATION_SNAPSHOTS.append([json.loads(r["scores_json"]) for r in store.table("ablations", run_id)])

    summary = Pipeline(store, run_id, listener=watch).run()
    return store, run_id, summary, out


def test_end_to_end_writes_submission_solution_and_report(finished_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, summary, out = finished_run
    assert store.get_run(run_id)["status"] == "finished"
    sub = pd.read_csv(out / "submission.csv")
    sample = pd.read_csv(DEMOS / "breast-cancer" / "sample_submission.csv")
    assert list(sub.columns) == list(sample.columns)
    assert sub.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()  # rows in the sample's order
    assert sub.iloc[:, 1].between(0, 1).all()  # ROC-AUC wants probabilities
    assert "Final Validation Performance" in (out / "solution.py").read_text()
    report = (out / "report.md").read_text()
    assert "trivial baseline" in report and "locked hold-out" in report
    # the trivial baseline is far worse than the final solution, and the hold-out was scored
    assert is_better(summary["validation_score"], summary["baseline_score"], True)
    assert summary["holdout_score"] is not None and summary["holdout_score"] > 0.9


def test_every_phase_is_in_the_store(finished_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, summary, _ = finished_run
    roles = [s["role"] for s in store.table("scripts", run_id)]
    assert roles.count("initial") == 3
    assert "baseline" in roles and "merge" in roles and "ablation" in roles and "refine" in roles
    # Ensemble rounds are scored by the engine on stored out-of-fold predictions (no script per round).
    (rnd,) = store.table("ensemble_rounds", run_id)
    assert rnd["strategy"] == "caruana" and rnd["score"] is not None and json.loads(rnd["weights_json"])
    assert len(store.table("model_cards", run_id)) == 3
    execs = store.table("executions", run_id)
    assert all(e["stdout"] is not None and e["wall_time"] is not None for e in execs)
    assert {"search", "holdout", "full"} <= {e["purpose"] for e in execs}
    attempts = store.table("attempts", run_id)
    assert len(attempts) == SMALL["num_solutions"] * SMALL["outer_steps"] * SMALL["inner_steps"]
    assert all(a["decision"] == "auto" for a in attempts)
    assert len(store.table("ablations", run_id)) >= 2
    assert len(store.table("ensemble_rounds", run_id)) == 1
    calls = {c["role"] for c in store.table("brain_calls", run_id)}
    assert {"retrieve_models", "write_initial_solution", "write_ablation", "implement_refinement",
            "plan_ensemble"} <= calls
    kinds = {e["kind"] for e in store.events_after(run_id)}
    assert {"run_started", "candidate_scored", "ablation_result", "attempt_scored", "final",
            "run_finished"} <= kinds


def test_final_is_at_least_as_good_as_the_best_initial_candidate(finished_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, summary, _ = finished_run
    scripts = {s["id"]: s for s in store.table("scripts", run_id)}
    initial = [e["score"] for e in store.table("executions", run_id)
               if scripts[e["script_id"]]["role"] == "initial" and e["score"] is not None]
    assert initial
    assert not is_better(max(initial), summary["validation_score"], True)
    # every kept attempt really improved on the script it started from
    for a in store.table("attempts", run_id):
        if a["kept"]:
            assert is_better(a["score"], a["baseline"], True)


def _start_in_thread(store: Store, run_id: str) -> threading.Thread:
    thread = threading.Thread(target=lambda: Pipeline(store, run_id).run(), daemon=True)
    thread.start()
    return thread


def test_approval_gate_waits_and_obeys_reject_then_edit(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    task = load_task(DEMOS / "breast-cancer")
    config = RunConfig(**{**SMALL, "num_solutions": 1, "inner_steps": 1, "ensemble_rounds": 0,
                          "require_approval": True})
    run_id = create_run(store, task, config, out_dir=tmp_path / "out")
    thread = _start_in_thread(store, run_id)

    first = wait_for(lambda: store.pending_decisions(run_id), what="the first plan")[0]
    assert store.get_run(run_id)["status"] == "waiting"
    time.sleep(1.0)
    assert store.table("attempts", run_id) == []  # nothing is implemented while waiting

    store.decide(first["id"], "rejected")
    second = wait_for(lambda: store.pending_decisions(run_id), what="a new plan after rejection")[0]
    assert second["id"] != first["id"] and second["plan"] != first["plan"]
    rejected = store.table("attempts", run_id)
    assert [a["status"] for a in rejected] == ["rejected"] and rejected[0]["plan"] == first["plan"]

    edited_plan = second["plan"] + "\n(edited by a human)"
    store.decide(second["id"], "edited", edited_plan=edited_plan)
    thread.join(timeout=300)
    assert not thread.is_alive()
    attempts = [a for a in store.table("attempts", run_id) if a["status"] != "rejected"]
    assert len(attempts) == 1
    assert attempts[0]["decision"] == "edited" and attempts[0]["plan"] == edited_plan
    assert store.get_run(run_id)["status"] == "finished"


def test_edited_block_code_is_used_verbatim(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    task = load_task(DEMOS / "breast-cancer")
    config = RunConfig(**{**SMALL, "num_models": 1, "num_solutions": 1, "inner_steps": 1,
                          "ensemble_rounds": 0, "require_approval": True})
    run_id = create_run(store, task, config, out_dir=tmp_path / "out")
    thread = _start_in_thread(store, run_id)
    pending = wait_for(lambda: store.pending_decisions(run_id), what="a plan")[0]
    new_code = pending["block_code"] + "\n# human edit: keep this line\n"
    store.decide(pending["id"], "edited", edited_plan=pending["plan"], edited_code=new_code)
    thread.join(timeout=300)
    attempt = [a for a in store.table("attempts", run_id) if a["status"] != "rejected"][0]
    script = store.get_script(attempt["script_id"])
    assert "# human edit: keep this line" in get_block(script["code"], pending["block"])


def test_time_budget_wraps_up_with_a_submission(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    task = load_task(DEMOS / "breast-cancer")
    budget = 30.0
    config = RunConfig(num_models=4, outer_steps=4, inner_steps=4, num_solutions=2, ensemble_rounds=3,
                       workers=2, time_budget=budget)
    run_id = create_run(store, task, config, out_dir=tmp_path / "out")
    started = time.monotonic()
    summary = Pipeline(store, run_id).run()
    elapsed = time.monotonic() - started
    assert summary["budget_exhausted"] is True
    assert elapsed < budget + 25  # the final runs may pass the budget by a little
    assert (tmp_path / "out" / "submission.csv").exists()
    assert "budget_exhausted" in {e["kind"] for e in store.events_after(run_id)}


def test_stop_from_the_run_manager(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    manager = RunManager(store)
    run_id = manager.start(load_task(DEMOS / "breast-cancer"), RunConfig(**SMALL), out_dir=tmp_path / "out")
    wait_for(lambda: store.table("executions", run_id), what="a first execution")
    manager.stop(run_id)
    manager.join(run_id, timeout=60)
    assert not manager.is_alive(run_id)
    assert store.get_run(run_id)["status"] == "stopped"


def test_resume_after_sigkill_does_not_redo_completed_steps(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    cmd = [sys.executable, "-m", "mlestar_core", "--store", str(store_dir), "run",
           "--task", str(DEMOS / "breast-cancer"), "--out", str(tmp_path / "out"),
           "-M", "2", "-T", "1", "-K", "3", "-L", "1", "-R", "0", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        store = Store(store_dir)

        def first_attempt_done() -> str | None:
            runs = store.list_runs()
            if not runs:
                return None
            done, _ = store.step_result(runs[0]["id"], "t0/o0/i0")
            return runs[0]["id"] if done else None

        run_id = wait_for(first_attempt_done, timeout=240, what="the first refinement attempt")
        os.killpg(proc.pid, signal.SIGKILL)  # a crash mid-refinement, no clean-up at all
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = {s["key"]: s for s in store.steps(run_id) if s["status"] == "done"}
    initial_before = [s["id"] for s in store.table("scripts", run_id) if s["role"] == "initial"]
    assert "init" in before and "t0/o0/i0" in before
    assert store.get_run(run_id)["status"] == "running"  # the killed process never said otherwise

    resumed = subprocess.run([sys.executable, "-m", "mlestar_core", "--store", str(store_dir), "resume", run_id],
                             cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = {s["key"]: s for s in store.steps(run_id)}
    for key, row in before.items():  # completed steps were replayed from the store, not redone
        assert after[key]["started"] == row["started"] and after[key]["ended"] == row["ended"], key
    assert [s["id"] for s in store.table("scripts", run_id) if s["role"] == "initial"] == initial_before
    assert json.loads(after["final"]["result_json"])["submission"]
    assert store.get_run(run_id)["status"] == "finished"
    assert len([a for a in store.table("attempts", run_id)]) == 3


def test_ablation_repeats_give_paired_scores_and_spread(finished_run) -> None:  # type: ignore[no-untyped-def]
    store, run_id, _, _ = finished_run
    rows = store.table("ablations", run_id)
    assert rows
    for row in rows:
        scores = json.loads(row["scores_json"])
        assert len(scores) == 2  # the first run and one rerun with another model seed
        assert scores[0] == row["score"]
        # the error bar: the spread of the paired per-fold deltas (5 folds x 2 runs here)
        assert row["delta_std"] is not None
    # the rerun reran the unablated script and every variant with another seed
    reruns = [s for s in store.table("scripts", run_id) if s["role"] == "ablation" and "(seed 2)" in s["label"]]
    assert len(reruns) == len(rows) + len({(r["track"], r["outer_step"]) for r in rows})
    seeds = {e["workdir"] for e in store.table("executions", run_id)}
    assert seeds
    # The rows were there, with the first split's scores, before the second split's scripts finished.
    assert ABLATION_SNAPSHOTS and ABLATION_SNAPSHOTS[0] and all(len(s) == 1 for s in ABLATION_SNAPSHOTS[0])


def test_fork_starts_from_the_chosen_script(finished_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, run_id, summary, _ = finished_run
    manager = RunManager(store)
    source = summary["final_script_id"]
    fork_id = manager.fork(run_id, source)
    manager.join(fork_id, timeout=5)  # let it get going; the fork is stopped below
    wait_for(lambda: store.step_result(fork_id, "init")[0], what="the fork's initial step")
    manager.stop(fork_id)
    manager.join(fork_id, timeout=60)
    initial = [s for s in store.table("scripts", fork_id) if s["role"] == "initial"]
    assert [s["code"] for s in initial] == [store.get_script(source)["code"]]
    cards = store.table("model_cards", fork_id)
    assert len(cards) == 1 and f"script #{source}" in cards[0]["source"]
    assert "retrieve_models" not in {c["role"] for c in store.table("brain_calls", fork_id)}


def test_constraints_pinned_mid_run_reach_the_planner(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    task = load_task(DEMOS / "breast-cancer")
    config = RunConfig(**{**SMALL, "num_models": 1, "num_solutions": 1, "inner_steps": 1, "ensemble_rounds": 0,
                          "require_approval": True})
    run_id = create_run(store, task, config, out_dir=tmp_path / "out")
    thread = _start_in_thread(store, run_id)
    pending = wait_for(lambda: store.pending_decisions(run_id), what="a plan")[0]
    store.set_constraints(run_id, ["do not use column mean_radius", ""])
    store.decide(pending["id"], "approved")
    thread.join(timeout=300)
    assert json.loads(store.get_run(run_id)["config_json"])["constraints"] == ["do not use column mean_radius"]
    assert "constraints" in {e["kind"] for e in store.events_after(run_id)}
    # the data-usage check ran before the pin; the final report still reads the stored config
    assert store.get_run(run_id)["status"] == "finished"


def test_a_users_failing_edit_is_said_and_only_their_code_is_repaired(tmp_path: Path) -> None:
    """Approval on, one track, three attempts: a broken edit the debugger repairs (an LLM-like fix of the user's
    own code), a broken edit it cannot repair without throwing it away, and a plan nobody answers (approved by
    the run itself). The first plan waits 3 s for its human: none of the waiting is agent time."""
    from mlestar_core.brains import make_brain
    from mlestar_core.script import unified_diff

    store = Store(tmp_path / "store")
    task = load_task(DEMOS / "breast-cancer")
    config = RunConfig(**{**SMALL, "num_models": 1, "num_solutions": 1, "inner_steps": 3, "ensemble_rounds": 0,
                          "require_approval": True, "auto_approve_after": 8.0,
                          "n_folds": 1})  # one split: no early stop of an attempt that ties its baseline
    run_id = create_run(store, task, config, out_dir=tmp_path / "out")
    brain = make_brain("offline")
    offline_debug = brain.debug

    def debug(ctx, code, error, failure="error"):  # type: ignore[no-untyped-def]
        if "MARKER_FIX = = 1" in code:  # what an LLM debugger does: the smallest fix of the code it was given
            return code.replace("MARKER_FIX = = 1", "MARKER_FIX = 1")
        return offline_debug(ctx, code, error, failure)  # the offline one regenerates the block from its config

    brain.debug = debug  # type: ignore[method-assign]
    started = time.monotonic()
    thread = threading.Thread(target=lambda: Pipeline(store, run_id, brain=brain).run(), daemon=True)
    thread.start()
    first = wait_for(lambda: store.pending_decisions(run_id), what="the first plan")[0]
    time.sleep(3.0)  # the teacher explains the plan
    store.decide(first["id"], "edited", edited_plan=first["plan"],
                 edited_code=first["block_code"] + "MARKER_FIX = = 1  # my edit\n")
    second = wait_for(lambda: [d for d in store.pending_decisions(run_id) if d["id"] != first["id"]],
                      what="the second plan")[0]
    store.decide(second["id"], "edited", edited_plan=second["plan"],
                 edited_code=second["block_code"] + "broken = = 2  # my edit\n")
    thread.join(timeout=300)
    elapsed = time.monotonic() - started
    assert not thread.is_alive() and store.get_run(run_id)["status"] == "finished"
    a1, a2, a3 = sorted(store.table("attempts", run_id), key=lambda a: a["inner_step"])

    # 1: the user's edit failed, the debugger repaired *their* code, and the diff against it is only the repair.
    assert (a1["decision"], a1["status"]) == ("edited", "edit repaired") and a1["score"] is not None
    assert a1["error"].startswith("your edit failed: SyntaxError") and "debugger repaired your edit" in a1["error"]
    mine, repaired = store.get_script(a1["edit_script_id"]), store.get_script(a1["script_id"])
    assert repaired["parent_id"] == mine["id"] and repaired["label"].endswith("(debugger repaired your edit)")
    diff = unified_diff(get_block(mine["code"], a1["block"]), get_block(repaired["code"], a1["block"]))
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == ["-MARKER_FIX = = 1  # my edit", "+MARKER_FIX = 1  # my edit"]

    # 2: the offline debugger could only put the original block back: refused, the attempt says the edit failed.
    assert (a2["decision"], a2["status"], a2["score"]) == ("edited", "edit failed", None)
    assert a2["script_id"] == a2["edit_script_id"] and "broken = = 2" in store.get_script(a2["script_id"])["code"]
    assert a2["error"].startswith("your edit failed: SyntaxError") and "instead of repairing your edit" in a2["error"]
    labels = [s["label"] for s in store.table("scripts", run_id) if s["parent_id"] == a2["script_id"]]
    assert labels == []  # nothing was run in the user's name
    events = store.events_after(run_id)
    failed = [e["payload"] for e in events if e["kind"] == "edit_failed"]
    assert [p["script_id"] for p in failed] == [a1["edit_script_id"], a2["edit_script_id"]]
    assert all(p["error"].startswith("SyntaxError") and "your edited" in p["message"] for p in failed)
    assert [e["payload"]["status"] for e in events if e["kind"] == "attempt_scored"] == \
        ["edit repaired", "edit failed", a3["status"]]
    assert any(e["kind"] == "debug_failed" and "instead of repairing your edit" in e["payload"]["reason"]
               for e in events)

    # 3: nobody answered: the run approved it itself, and says so everywhere.
    third = store.table("decisions", run_id)[-1]
    assert third["status"] == "auto-approved" and third["decided_by"] == "auto: no decision within 8 s"
    assert a3["decision"] == "auto-approved"
    decided = [e["payload"] for e in events if e["kind"] == "approval_decided"]
    assert [p["status"] for p in decided] == ["edited", "edited", "auto-approved"]
    assert "not a person's approval" in decided[-1]["message"]

    # The waiting (3 s + 8 s) stopped the budget clock: it is not in time_used, which a resume starts from.
    run = store.get_run(run_id)
    assert run["time_waiting"] >= 10.5
    assert run["time_used"] <= elapsed - 10.0
    assert run["time_used"] + run["time_waiting"] == pytest.approx(elapsed, abs=5.0)
    clock = [e["payload"]["stopped"] for e in events if e["kind"] == "budget_clock"]
    assert clock[:2] == [True, False] and len(clock) >= 6
    report = (tmp_path / "out" / "report.md").read_text()
    assert "waiting for human decisions or paused, not counted against the budget" in report
    assert "| auto-approved |" in report


def test_solution_py_explains_its_number_and_runs_on_its_own(finished_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The header says what solution.py prints (a K-fold score on all training rows) against the headline (the
    engine's score on the search rows) and how to run it; run that way, it works and prints that number."""
    import re
    import shutil

    from mlestar_core.report import SOLUTION_HEADER_END, SOLUTION_HEADER_START

    store, run_id, summary, out = finished_run
    code = (out / "solution.py").read_text()
    assert code.startswith(SOLUTION_HEADER_START) and code.count(SOLUTION_HEADER_END) == 1
    header = code[: code.index(SOLUTION_HEADER_END)]
    flat = " ".join(ln.lstrip("# ").strip() for ln in header.splitlines())
    assert f"The headline validation score, {summary['validation_score']:.6g}" in flat
    assert "search rows" in flat and "hold-out rows included" in flat and "python solution.py" in flat
    assert f"cd {out}" in header and "mkdir -p input && cp " in header and "scikit-learn" in flat
    printed = re.search(r"in this run's own full-data run it printed ([-+]?\d[\d.e+-]*\d)", flat)
    assert printed is not None
    report = (out / "report.md").read_text()
    assert "## Running the final solution yourself" in report and "hold-out rows included" in report
    assert re.search(r"agent time \d+ s", report)
    # The stored script is unchanged: the header is comments only, and the run's script is what was scored.
    body = code[code.index(SOLUTION_HEADER_END) + len(SOLUTION_HEADER_END):].lstrip("\n")
    assert body == store.get_script(summary["final_script_id"])["code"]

    # Laid out as the header says: the task's own files under ./input/ (no folds.csv), then python solution.py.
    folder = tmp_path / "mine"
    (folder / "input").mkdir(parents=True)
    shutil.copy(out / "solution.py", folder / "solution.py")
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        shutil.copy(DEMOS / "breast-cancer" / name, folder / "input" / name)
    proc = subprocess.run([sys.executable, "solution.py"], cwd=folder, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = re.search(r"^Final Validation Performance: (\S+)$", proc.stdout, re.M)
    assert line is not None
    assert float(line.group(1)) == pytest.approx(float(printed.group(1)), abs=0.01)  # the number the header gives
    sub = pd.read_csv(folder / "submission.csv")
    assert list(sub.columns) == list(pd.read_csv(DEMOS / "breast-cancer" / "sample_submission.csv").columns)


def test_report_and_dashboard_agree_on_agent_time(finished_run) -> None:  # type: ignore[no-untyped-def]
    import re

    from mlestar_core.budget_clock import agent_seconds, clock_state

    store, run_id, _, out = finished_run
    run = store.get_run(run_id)
    reported = float(re.search(r"agent time (\d+) s", (out / "report.md").read_text()).group(1))
    shown = agent_seconds(run, store.events_after(run_id))
    # The report is written inside the final step, a moment before the run's last time_used: same clock.
    assert shown - 5 <= reported <= shown + 0.5
    assert clock_state(run).budget_text.startswith("Agent time")
