"""The store under concurrent writers in several OS processes (the app's server and CLI runs share one store).

Writer processes (each with two threads, each thread its own run, like pipelines) open the store at the same
moment (so their migration checks race too), then emit a few hundred events each and, every tenth event, a
script, an execution and the `script_executed` event announcing it. A reader thread follows every run with
`events_after`, as the app's pages do. Nothing may fail with "database is locked", every event must be stored
exactly once, seqs must increase within a run, and the reader must see each run's events in order without a
gap. The load is `bench/bench_store.py`'s, scaled down.

Opening a store folder that does not exist yet from several processes at once used to fail ("database is
locked" from the switch to WAL, which the busy timeout does not cover): the last test reproduces that moment.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from mlestar_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 5
THREADS = 2
EVENTS = 250  # per thread (= per run)
EXEC_EVERY = 10

WORKER = r"""
import json, sys, threading, time, traceback
from pathlib import Path
from types import SimpleNamespace

from mlestar_core.store import Store

root, start_at = sys.argv[1], float(sys.argv[2])
threads, n, every = (int(a) for a in sys.argv[3:6])
while time.time() < start_at:
    time.sleep(0.002)
store = Store(Path(root))  # every process at once: their migration checks race
out, errors = [], []

def work(t):
    try:
        run_id = store.create_run(f"writer {t}", {}, {}, "test")
        execs, sid = [], None
        for i in range(n):
            store.emit(run_id, "tick", {"i": i})
            if (i + 1) % every == 0:
                if sid is None:
                    sid = store.add_script(run_id, "test", "print(1)\n")
                res = SimpleNamespace(exit_code=0, stdout="ok", stderr="", score=float(i), wall_time=0.0,
                                      peak_memory_mb=0.0, timed_out=False, memory_exceeded=False,
                                      killed_reason=None)
                eid = store.add_execution(run_id, sid, res, purpose="test")
                store.emit(run_id, "script_executed", {"execution_id": eid, "script_id": sid})
                execs.append(eid)
        out.append({"run_id": run_id, "events": n, "executions": execs})
    except BaseException:
        errors.append(traceback.format_exc())

workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps({"runs": out, "errors": errors}))
sys.exit(1 if errors else 0)
"""


class Follower(threading.Thread):
    """Polls events_after for every run in the store, checking order and gaps as it goes."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.last_seq: dict[str, int] = {}
        self.next_i: dict[str, int] = {}
        self.executions: dict[str, list[int]] = {}
        self.problems: list[str] = []
        self.errors: list[str] = []
        self.polls = 0

    def run(self) -> None:
        try:
            store = Store(self.root)
            while True:
                final = self.stop.is_set()  # after the writers exited: one last complete poll
                for run in store.list_runs():
                    self._poll(store, run["id"])
                self.polls += 1
                if final:
                    return
                time.sleep(0.02)
        except Exception as exc:  # reported by the test, not lost in a thread
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _poll(self, store: Store, run_id: str) -> None:
        for e in store.events_after(run_id, self.last_seq.get(run_id, 0)):
            if e["seq"] <= self.last_seq.get(run_id, 0):
                self.problems.append(f"{run_id}: seq {e['seq']} after {self.last_seq[run_id]}")
            self.last_seq[run_id] = e["seq"]
            if e["kind"] == "tick":
                want = self.next_i.get(run_id, 0)
                if e["payload"]["i"] != want:
                    self.problems.append(f"{run_id}: tick {e['payload']['i']} seen where {want} was next")
                self.next_i[run_id] = e["payload"]["i"] + 1
            elif e["kind"] == "script_executed":
                self.executions.setdefault(run_id, []).append(e["payload"]["execution_id"])


def test_processes_write_one_store_concurrently_without_loss_or_lock_errors(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store(root)  # the app or the first CLI command made it (a fresh folder raced by all: the last test)
    follower = Follower(root)
    follower.start()
    start_at = time.time() + 1.5  # every interpreter is up and waiting by then
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(start_at), str(THREADS), str(EVENTS),
                               str(EXEC_EVERY)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for _ in range(PROCESSES)]
    outputs = [p.communicate(timeout=120) for p in procs]
    follower.stop.set()
    follower.join(timeout=30)

    for p, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert "database is locked" not in stdout + stderr, f"a writer hit a lock error:\n{stdout}\n{stderr}"
        assert p.returncode == 0, f"writer failed:\n{stdout}\n{stderr}"
    assert not follower.is_alive() and not follower.errors
    runs = [r for stdout, _ in outputs for r in json.loads(stdout)["runs"]]
    assert len(runs) == PROCESSES * THREADS

    store = Store(root)
    assert {r["id"] for r in store.list_runs()} == {r["run_id"] for r in runs}
    per_run_execs = EVENTS // EXEC_EVERY
    for r in runs:
        rid = r["run_id"]
        events = store.events_after(rid, 0, limit=100_000)
        seqs = [e["seq"] for e in events]
        assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False)), f"{rid}: seqs not increasing"
        assert [e["payload"]["i"] for e in events if e["kind"] == "tick"] == list(range(EVENTS))  # once each
        announced = [e["payload"]["execution_id"] for e in events if e["kind"] == "script_executed"]
        rows = [x["id"] for x in store.table("executions", rid)]
        assert announced == rows == r["executions"] and len(rows) == per_run_execs
        assert len(events) == EVENTS + per_run_execs
        # The reader saw the same events, in order, without a gap.
        assert follower.next_i.get(rid) == EVENTS and follower.last_seq.get(rid) == seqs[-1]
        assert follower.executions.get(rid) == rows
    assert follower.problems == []
    assert follower.polls > 1


def test_opening_a_fresh_store_while_another_process_creates_it(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    # Another process's first connection, mid-way through its first write (its own switch to WAL, its migrations).
    other = sqlite3.connect(root / "mlestar.db", timeout=5, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE t (x)")
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Store(root).emit("run", "opened", {})
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    opener = threading.Thread(target=open_store)
    opener.start()
    time.sleep(0.5)  # the opener is waiting for the other's write lock
    other.execute("COMMIT")
    opener.join(timeout=60)
    other.close()
    if errors:
        raise errors[0]
    assert [e["kind"] for e in Store(root).events_after("run")] == ["opened"]
