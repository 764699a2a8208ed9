"""Kill -9 in every phase, resume, and end where an uninterrupted run ends.

Real CLI processes on a real store. Each session of the crashed run dies by SIGKILL at a chosen
moment inside a phase (`MLESTAR_CRASH_AFTER`: right after the process first stores a given event
in a given step), or, while a plan waits for approval, by an external kill -9 of its process
group. After the last resume the run must have written the same submission as an uninterrupted
run with the same seed, executed no script twice, asked the brain nothing twice and announced
nothing twice.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlestar_core.lease import STALE_AFTER, RunLease, RunOwnedElsewhere, lease_state
from mlestar_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "demo_tasks" / "breast-cancer"
# Two candidates merged into one track, one refinement step of two attempts that each wait for approval,
# two ensemble rounds, two folds: every phase of the method, small enough for a test.
KNOBS = ["-M", "2", "-T", "1", "-K", "2", "-L", "1", "-R", "2", "--folds", "2", "--workers", "2",
         "--require-approval", "--seed", "7", "--no-explain"]
# (where the session dies, in pipeline order); "approval" = killed from outside while a plan waits.
CRASHES = ["retrieve|model_card", "init|script_executed", "t0/merge|script_executed", "t0/checks|check",
           "t0/o0/ablation|script_executed", "approval", "t0/o0/i0|script_executed", "t0/o0/i1|brain_call",
           "ens/r0|ensemble_round", "final|script_executed"]
# Events about a session, not the work (Pipeline._SESSION_EVENTS): a killed session leaves its own, e.g. the
# budget clock stopped for the plan it died waiting on.
SESSION_KINDS = {"run_started", "paused", "resumed", "run_paused", "run_stopped", "run_failed", "control",
                 "budget_clock"}


def _cli(store: Path, *args: str, crash: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLESTAR_CRASH_AFTER": crash}
    return subprocess.Popen([sys.executable, "-m", "mlestar_core", "--store", str(store), *args], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _drive(proc: subprocess.Popen[bytes], store: Store, *, kill_on_approval: bool, timeout: float = 300) -> int:
    """Wait for the session to end, approving plans as a human would (or killing it at the first one)."""
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the session did not end in time"
            for d in store.pending_decisions():
                if kill_on_approval:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
                    return proc.returncode
                store.decide(d["id"], "approved")
            time.sleep(0.2)
        return proc.returncode
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _summary(store: Store, run_id: str) -> dict[str, object]:
    execs = store.table("executions", run_id)
    scripts = {s["id"]: s for s in store.table("scripts", run_id)}
    events = [e for e in store.events_after(run_id) if e["kind"] not in SESSION_KINDS]
    return {
        "executions": sorted((scripts[e["script_id"]]["label"], e["purpose"], e["score"]) for e in execs),
        "scripts": sorted((s["role"], s["label"]) for s in scripts.values()),
        "brain_calls": sorted((c["role"], c["step_key"]) for c in store.table("brain_calls", run_id)),
        "events": collections.Counter(e["kind"] for e in events),
        "attempts": sorted((a["inner_step"], a["status"], a["score"]) for a in store.table("attempts", run_id)),
        "ablations": sorted((a["block"], a["score"]) for a in store.table("ablations", run_id)),
        "rounds": sorted((r["round"], r["strategy"], r["score"]) for r in store.table("ensemble_rounds", run_id)),
        "cards": [c["name"] for c in store.table("model_cards", run_id, order="rank")],
    }


@pytest.mark.timeout(1500)
def test_kill_9_in_every_phase_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    # The uninterrupted run.
    ref_store_dir = tmp_path / "ref"
    proc = _cli(ref_store_dir, "run", "--task", str(TASK), "--out", str(tmp_path / "ref-out"), *KNOBS)
    ref_store = Store(ref_store_dir)
    assert _drive(proc, ref_store, kill_on_approval=False) == 0, proc.stderr.read().decode()[-2000:]
    (ref_id,) = [r["id"] for r in ref_store.list_runs()]

    # The same run, killed once in every phase.
    store_dir = tmp_path / "crashed"
    store = Store(store_dir)
    out = tmp_path / "out"
    died_in: list[str] = []
    run_id = ""
    for i, crash in enumerate(CRASHES):
        args = ["run", "--task", str(TASK), "--out", str(out), *KNOBS] if i == 0 else ["resume", run_id]
        proc = _cli(store_dir, *args, crash="" if crash == "approval" else crash)
        code = _drive(proc, store, kill_on_approval=crash == "approval")
        assert code == -signal.SIGKILL, f"session {i} ({crash}) was not killed: exit {code}, " \
            f"{proc.stderr.read().decode()[-1500:]}"
        (run_id,) = [r["id"] for r in store.list_runs()]
        run = store.get_run(run_id)
        assert run["status"] in ("running", "waiting", "created"), run["status"]  # nobody said it ended
        assert not lease_state(store, run_id).live  # a dead holder frees the run at once
        died_in.append(run["phase"] or "")
    proc = _cli(store_dir, "resume", run_id)
    assert _drive(proc, store, kill_on_approval=False) == 0, proc.stderr.read().decode()[-2000:]
    assert store.get_run(run_id)["status"] == "finished"
    # The sessions really died inside each phase of the method.
    assert died_in[:5] == ["retrieve", "init", "merge", "check", "ablate"] and "ensemble" in died_in \
        and died_in[-1] == "final", died_in

    # Same submission as the uninterrupted run.
    ref_sub = pd.read_csv(tmp_path / "ref-out" / "submission.csv")
    sub = pd.read_csv(out / "submission.csv")
    pd.testing.assert_frame_equal(sub, ref_sub)
    assert store.get_run(run_id)["best_score"] == ref_store.get_run(ref_id)["best_score"]
    assert store.get_run(run_id)["holdout_score"] == ref_store.get_run(ref_id)["holdout_score"]

    # No script executed twice, no call asked twice, no event written twice: the record is the uninterrupted one.
    execs = store.table("executions", run_id)
    keys = collections.Counter((e["script_id"], e["purpose"]) for e in execs)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    got, want = _summary(store, run_id), _summary(ref_store, ref_id)
    for part in want:
        assert got[part] == want[part], f"{part} differ after crashes"
    dkeys = [e for e in store.events_after(run_id) if e["kind"] == "step_done"]
    assert len(dkeys) == len({e["payload"]["key"] for e in dkeys})
    # The approval asked before the kill was answered once and not asked again.
    assert len(store.table("decisions", run_id)) == len(ref_store.table("decisions", ref_id))


def test_a_second_driver_is_refused_and_a_dead_ones_lease_expires(tmp_path: Path) -> None:
    store = Store(tmp_path)
    run_id = store.create_run("r", {"name": "t"}, {}, "offline")
    first = RunLease(store, run_id).acquire()
    try:
        with pytest.raises(RunOwnedElsewhere, match="driven by another process"):
            RunLease(store, run_id).acquire()
        state = lease_state(store, run_id)
        assert state.live and str(os.getpid()) in state.description
        # The CLI refuses to resume it, changing nothing.
        res = subprocess.run([sys.executable, "-m", "mlestar_core", "--store", str(tmp_path), "resume", run_id],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "being driven by another process" in res.stderr, res.stderr
        assert store.get_run(run_id)["lease_holder"] == first.holder
    finally:
        first.release()
    assert not lease_state(store, run_id).live
    # A holder on another machine that stopped beating is stale after STALE_AFTER seconds.
    store.swap_lease(run_id, None, "elsewhere:1:0.00:abcd")
    assert lease_state(store, run_id).live
    assert not lease_state(store, run_id, now=time.time() + STALE_AFTER + 1).live
    # A holder process of this machine that is gone frees the run at once.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket
    store.swap_lease(run_id, "elsewhere:1:0.00:abcd", f"{socket.gethostname()}:{dead.stdout.strip()}:1.00:ef01")
    assert not lease_state(store, run_id).live
    RunLease(store, run_id).acquire().release()


def test_lease_lost_to_another_process_stops_this_one(tmp_path: Path) -> None:
    store = Store(tmp_path)
    run_id = store.create_run("r", {"name": "t"}, {}, "offline")
    lease = RunLease(store, run_id)
    lease.acquire()
    try:
        assert store.swap_lease(run_id, lease.holder, "elsewhere:1:0.00:beef")  # someone took it over
        deadline = time.monotonic() + 15
        while not lease.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lease.lost.is_set()
    finally:
        lease.release()
    assert store.get_run(run_id)["lease_holder"] == "elsewhere:1:0.00:beef"  # release does not steal it back


def test_the_app_starting_while_a_cli_run_goes_on_follows_it_instead_of_taking_it_over(tmp_path: Path) -> None:
    from mlestar_core.service import RunManager
    store = Store(tmp_path)
    run_id = store.create_run("r", {"name": "t"}, {}, "offline")
    store.update_run(run_id, status="running")  # what a live CLI run looks like in the store
    cli_lease = RunLease(store, run_id).acquire()
    try:
        manager = RunManager(store)
        assert manager.resume_interrupted() == []  # the restarted app leaves it to its driver
        assert not manager.is_alive(run_id)
        assert "process" in (manager.driven_elsewhere(run_id) or "")
        assert store.get_run(run_id)["lease_holder"] == cli_lease.holder
    finally:
        cli_lease.release()
