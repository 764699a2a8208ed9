"""The budget clock: time waiting for a human (a decision, a pause) never counts against the time budget."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from mlestar_core import budget_clock as bc
from mlestar_core.budget_clock import AgentClock
from mlestar_core.config import ConfigError, RunConfig
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.report import agent_time_text
from mlestar_core.store import Store
from mlestar_core.task import load_task

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ROOT / "demo_tasks"


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_live_thread_holding_stops_the_clock() -> None:
    now, changes = FakeTime(), []
    clock = AgentClock(10.0, 2.0, now=now, on_change=lambda *a: changes.append(a))
    now.t += 5
    assert clock.used() == 15.0 and not clock.stopped
    with clock.hold(bc.DECISION):
        assert clock.stopped
        now.t += 100  # a teacher explains for 100 s
        assert clock.used() == 15.0 and clock.waiting() == 102.0
        with clock.hold(bc.PAUSED):  # paused while the plan waits: still one holding thread
            now.t += 10
    now.t += 1
    assert clock.used() == 16.0 and clock.waiting() == 112.0
    assert [(c[0], c[1]) for c in changes] == [(True, "decision"), (False, "")]
    assert changes[-1][4] == 110.0  # how long it stood still


def test_with_two_tracks_the_clock_stops_only_when_both_hold() -> None:
    now = FakeTime()
    clock = AgentClock(now=now)
    clock.add_live(1)  # two tracks (the main thread handed its share over)
    ready, release, done = threading.Event(), threading.Event(), threading.Event()

    def track_a() -> None:
        with clock.hold(bc.DECISION):
            ready.set()
            release.wait(5)
        done.set()

    thread = threading.Thread(target=track_a)
    thread.start()
    ready.wait(5)
    now.t += 30  # track B works while track A waits: real agent time
    assert not clock.stopped and clock.used() == 30.0
    assert clock.held_running() == 0.0  # this (B's) thread did not wait
    with clock.hold(bc.DECISION):  # now B waits too: nothing works, the clock stops
        assert clock.stopped
        now.t += 50
    assert clock.used() == 30.0 and clock.waiting() == 50.0
    clock.add_live(-1)  # track B ends while A still waits: the clock stops again
    assert clock.stopped
    now.t += 20
    release.set()
    done.wait(5)
    thread.join(5)
    assert not clock.stopped and clock.used() == 30.0 and clock.waiting() == 70.0


def test_a_waiting_tracks_own_wait_is_left_out_of_its_step_cost() -> None:
    now = FakeTime()
    clock = AgentClock(now=now)
    clock.add_live(1)  # another track keeps working meanwhile
    before = clock.held_running()
    with clock.hold(bc.DECISION):
        now.t += 40
    assert clock.used() == 40.0  # the other track's work counted...
    assert clock.held_running() - before == 40.0  # ...but not as this track's cost


def _run_row(**fields: object) -> dict:
    row = {"status": "running", "time_used": 100.0, "time_waiting": 0.0, "clock_at": 1000.0,
           "clock_stopped_since": None, "config_json": json.dumps({"time_budget": 240}), "control": "run"}
    row.update(fields)
    return row


def test_dashboard_helpers_say_the_clock_stopped_and_for_how_long() -> None:
    decision = {"id": 3, "status": "pending", "created": 1000.0, "deadline": 1000.0 + 300}
    run = _run_row(clock_stopped_since=1000.0, clock_hold="decision", status="waiting", time_waiting=20.0)
    state = bc.clock_state(run, [decision], now=1130.0)
    assert state.stopped and state.reason == "decision" and state.pending == 1
    assert state.text == ("Budget clock stopped: waiting for your decision (2 min 10 s so far); time waiting for "
                          "decisions is not counted against the budget.")
    assert state.agent_seconds == 100.0  # frozen while stopped
    assert state.waiting_seconds == 150.0
    assert state.auto_text is not None and "approved automatically at" in state.auto_text
    assert "(in 2 min 50 s)" in state.auto_text
    assert state.budget_text.startswith("Agent time 1 min 40 s of 4 min (42 %)")
    assert "2 min 30 s waiting for decisions or paused, not counted" in state.budget_text
    # Running: the time since the engine last stored it is added, like the dashboard's live bar.
    assert bc.agent_seconds(_run_row(), now=1010.0) == 110.0
    # A plan waits but another track works: the clock runs, and the text says why.
    running = bc.clock_state(_run_row(), [decision], now=1040.0)
    assert not running.stopped and "keeps running while another track is still working" in (running.text or "")
    paused = bc.clock_state(_run_row(clock_stopped_since=1000.0, control="pause", status="paused"), now=1065.0)
    assert paused.text is not None and paused.text.startswith("Budget clock stopped: the run is paused (1 min 5 s")
    # A finished run, or one the brain paused (its thread ended), adds nothing.
    assert bc.agent_seconds(_run_row(status="finished"), now=5000.0) == 100.0
    assert bc.agent_seconds(_run_row(status="paused", pause_reason="no key"), now=5000.0) == 100.0


def test_decision_texts_tell_an_automatic_approval_from_a_person() -> None:
    auto = {"status": "auto-approved", "created": 0.0, "decided": 300.0, "decided_by": "auto: no decision within 5 min"}
    assert bc.decision_status_text(auto) == "approved automatically, not by a person: nobody answered within 5 min"
    human = {"status": "approved", "created": 0.0, "decided": 75.0, "decided_by": "human"}
    assert bc.decision_status_text(human) == "approved by you after 1 min 15 s"
    assert bc.describe_message_event("budget_clock", {"message": "Budget clock stopped"}) == "Budget clock stopped"
    assert bc.describe_message_event("step_done", {}) is None
    assert [bc.fmt_duration(s) for s in (0.4, 59, 60, 130, 3600, 3725)] == \
        ["0 s", "59 s", "1 min", "2 min 10 s", "1 h", "1 h 2 min"]


def test_auto_approve_needs_approval_and_a_positive_delay(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    task = load_task(DEMOS / "breast-cancer")
    with pytest.raises(ConfigError, match="needs approval on"):
        create_run(store, task, RunConfig(auto_approve_after=60))
    with pytest.raises(ConfigError, match="positive number of seconds"):
        create_run(store, task, RunConfig(require_approval=True, auto_approve_after=0))
    from mlestar_core.cli import main

    assert main(["--store", str(tmp_path / "store"), "run", "--task", str(DEMOS / "breast-cancer"), "--out",
                 str(tmp_path / "out"), "--auto-approve-after", "5"]) == 2


def _pipeline(tmp_path: Path, **config: object) -> tuple[Store, str, Pipeline]:
    store = Store(tmp_path / "store")
    run_id = create_run(store, load_task(DEMOS / "breast-cancer"), RunConfig(require_approval=True, **config))
    return store, run_id, Pipeline(store, run_id)


def test_a_deadline_survives_a_restart_and_a_passed_one_approves_at_once(tmp_path: Path) -> None:
    store, run_id, pipeline = _pipeline(tmp_path, auto_approve_after=600.0)
    did = store.request_decision(run_id, "t0/o0/i0/r0", "model", "a plan", "code", auto_approve_after=600.0)
    first = store.get_decision(did)
    assert first["deadline"] == pytest.approx(first["created"] + 600.0)
    # A restarted run asks for the same decision: same row, same deadline (from its creation time).
    assert store.request_decision(run_id, "t0/o0/i0/r0", "model", "a plan", "code", auto_approve_after=600.0) == did
    assert store.get_decision(did)["deadline"] == first["deadline"]
    # The app was down past the deadline: the restarted pipeline approves it itself, at once.
    with store.atomic() as c:
        c.execute("UPDATE decisions SET created = created - 700, deadline = deadline - 700 WHERE id = ?", (did,))
    started = time.monotonic()
    d = pipeline._await_decision("t0/o0/i0/r0", "model", "a plan", "code")
    assert time.monotonic() - started < 5
    assert d["status"] == "auto-approved" and d["decided_by"] == "auto: no decision within 10 min"
    decided = store.events_of_kind(run_id, "approval_decided")[0]["payload"]
    assert decided["status"] == "auto-approved" and decided["waited"] >= 700
    assert "not a person's approval" in decided["message"]
    # A human's answer that came first wins over the automatic one.
    assert store.decide(did, "rejected") is False and store.get_decision(did)["status"] == "auto-approved"


def test_waiting_for_a_decision_and_a_pause_are_not_agent_time(tmp_path: Path) -> None:
    store, run_id, pipeline = _pipeline(tmp_path)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(pipeline._await_decision("t0/o0/i0/r0", "model", "p", "c")))
    used_before = pipeline.time_used()
    thread.start()
    pending = _wait(lambda: store.pending_decisions(run_id))[0]
    _wait(lambda: store.get_run(run_id)["clock_stopped_since"] is not None)
    time.sleep(2.0)
    run = store.get_run(run_id)
    assert bc.clock_state(run, store.table("decisions", run_id)).text.startswith(
        "Budget clock stopped: waiting for your decision")
    store.set_control(run_id, "pause")  # paused while waiting: still not counted
    time.sleep(1.0)
    store.set_control(run_id, "run")
    store.decide(pending["id"], "approved")
    thread.join(10)
    assert out["status"] == "approved"
    assert pipeline.time_used() - used_before < 1.0  # three seconds of waiting, none of it agent time
    assert pipeline.clock.waiting() > 2.5
    kinds = [(e["kind"], e["payload"].get("stopped")) for e in store.events_after(run_id)
             if e["kind"] in ("budget_clock", "approval_waiting", "approval_decided")]
    assert kinds == [("approval_waiting", None), ("budget_clock", True), ("budget_clock", False),
                     ("approval_decided", None)]
    run = store.get_run(run_id)
    assert run["clock_stopped_since"] is None and run["time_waiting"] > 2.5
    assert run["time_used"] < 1.0  # what a resumed run starts from: no waiting leaked into it
    assert "waiting for human decisions or paused, not counted against the budget" in agent_time_text(run)


def _wait(fn, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")
