"""The MLE-STAR algorithm, phase by phase.

    retrieve M models -> initial candidates (run, debug) -> per solution track:
        merge candidates while the score improves -> data-usage and leakage checks ->
        T x [ablation -> extract the most impactful unrefined block -> K x (plan, code, run)]
    -> R ensemble rounds over the L refined tracks -> final: locked hold-out + submission

Every phase is a memoised step (see Store.step_result): after a crash, `run()` replays
completed steps from the store and redoes only the one in flight. Redoing it is exact and
cheap: the step asks the same questions in the same order, so every script it writes maps to
the one it wrote before (`_add_script`), a script whose execution completed is not run again
(`_run_recorded`), a brain call that was answered is answered from the store (`_recall`), and
events carry a key so none is written twice. Each script and each execution is stored before
the event that announces it. One process at a time drives a run (`lease.RunLease`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from . import evaluation, grading
from .brains import Brain, BrainUnavailable, CostCapReached, make_brain
from .brains.base import BrainCallRecord, BrainContext, RoleFailed, current_step, step_scope, take_fallback
from .brains.offline.templates import baseline_script
from .budget_clock import DECISION, PAUSED, AgentClock, fmt_duration
from .config import RunConfig, check_config
from .dask_executor import DaskExecutor, make_executor
from .engine_scoring import EngineScoring
from .ensemble_phase import EnsemblePhase
from .executor import ExecResult, Job, LocalExecutor
from .lease import LeaseLost, RunLease
from .metrics import best_index, improvement, is_better
from .model import (
    AblationResult,
    AttemptSummary,
    ModelCard,
    Task,
    task_from_dict,
)
from .report import write_report
from .rundata import RunData, prepare_run_data
from .script import ScriptError, get_block, replace_block, split_block
from .steps import _EXCEPTION_LINE, BudgetExhausted, NoWorkingSolution, Scored, StopRequested, _failure_reason
from .store import Store

EventListener = Callable[[str, dict[str, Any]], None]

# For the crash-recovery tests: "<step key>|<event kind>" makes this process kill itself (SIGKILL, no
# clean-up) right after it first stores such an event, so every phase can be crashed in deterministically.
_CRASH_AFTER = os.environ.get("MLESTAR_CRASH_AFTER", "")


@dataclasses.dataclass
class UserEdit:
    """A human's edited block (a decision "edited" with code) on its way through `_run_scripts`, and what
    became of it."""

    block: str
    original: str  # the block before the edit: what a repair must not simply put back
    edited: str  # the block as the human wrote it
    where: dict[str, int]  # track / outer / inner
    script_id: int | None = None  # the script holding the edit exactly as written
    error: str | None = None  # the first error line when it failed
    repaired: bool = False  # the debugger repaired the human's code (keeping the edit) and that ran
    refused: str | None = None  # why a debugger's fix was not used

    def refusal(self, fixed: str) -> str | None:
        """Why the debugger's `fixed` script does not repair the edit (None: it does). A repair keeps the
        human's block, changed as little as needed: it may not drop the block, put the original back, or
        rewrite it into something closer to the original than to what the human wrote."""
        try:
            body = get_block(fixed, self.block)
        except ScriptError:
            return f"the debugger's fix lost the `{self.block}` block, so it does not repair your edit"
        if body.strip() == self.original.strip() and self.edited.strip() != self.original.strip():
            return (f"the debugger's fix put the original `{self.block}` block back instead of repairing your "
                    "edit, so it was not run")
        if body.strip() != self.edited.strip():
            to_edit = difflib.SequenceMatcher(None, body, self.edited).ratio()
            to_original = difflib.SequenceMatcher(None, body, self.original).ratio()
            if to_edit <= to_original:
                return (f"the debugger rewrote the `{self.block}` block instead of repairing your edit, so its fix "
                        "was not run")
        return None


class Pipeline(EngineScoring, EnsemblePhase):
    """The MLE-STAR loop for one run; evaluation plumbing and the ensemble phase live in their mixins."""


    def __init__(self, store: Store, run_id: str, *, executor: LocalExecutor | DaskExecutor | None = None,
                 brain: Brain | None = None, listener: EventListener | None = None,
                 api_key: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        run = store.get_run(run_id)
        if run is None:
            raise ValueError(f"no run {run_id!r} in {store.root}")
        self.config = RunConfig.from_dict(json.loads(run["config_json"]))
        self.task: Task = task_from_dict(json.loads(run["task_json"]))
        self.out_dir = Path(run["out_dir"]) if run["out_dir"] else store.run_dir(run_id) / "output"
        self.run_dir = store.run_dir(run_id)
        self.hib = self.task.higher_is_better
        # config.executor: this machine, or a Dask cluster (an unreachable one raises ExecutorError, said plainly)
        self.executor = executor or make_executor(self.config.executor, workers=self.config.workers,
                                                  timeout=self.config.script_timeout,
                                                  memory_mb=self.config.memory_mb)
        self._own_executor = executor is None
        # The key (if any) stays inside the brain's client: it is not stored, logged or passed to scripts.
        self.brain = brain or make_brain(self.config.brain, self.config.llm, api_key=api_key)
        self.brain.on_call = self._record_brain_call
        self.brain.recall = self._recall
        self.brain.cost_cap = self.config.cost_cap
        self.brain.spent = store.brain_spent(run_id)
        self.brain.interrupted = self._cancelled
        self._halt: str | None = None  # set when the brain gave up: the other track stops too
        self.listener = listener
        self.ctx = BrainContext(task=self.task, seed=self.config.seed,
                                valid_fraction=self.config.valid_fraction,
                                constraints=list(self.config.constraints),
                                script_timeout=self.config.script_timeout, memory_mb=self.config.memory_mb,
                                threads=getattr(self.executor, "threads_per_job", None),
                                python=getattr(self.executor, "python", None))
        self._prior_time_used = float(run["time_used"] or 0.0)
        # The budget clock (budget_clock.py): agent time, which stops while every live track waits for a human
        # decision or is paused; runs.time_used and every budget check use it, so waiting never costs budget.
        self.clock = AgentClock(self._prior_time_used, float(run.get("time_waiting") or 0.0),
                                on_change=self._clock_changed)
        self._slowest = 0.0  # slowest successful solution run: sizes the reserve for the final step
        self._lock = threading.Lock()
        self.data: RunData | None = None
        self.protocol: evaluation.RunProtocol | None = None
        self.scorer: evaluation.Scorer | None = None
        self._track_best: dict[int, Scored] = {}
        self.exec_wall = 0.0
        self.budget_hit = False
        self._outer_costs: list[float] = []  # wall time of each finished outer step (sizes further ones)
        # How many times this process has written each kind of record within each step: a redone step's
        # n-th script/row/event is matched to the n-th one it wrote before the crash.
        self._counts: dict[tuple[Any, ...], int] = {}
        self.lease: RunLease | None = None
        # Leakage review of every script that is scored (LLM brains): code hash -> the reviewed code, so
        # unchanged code is never asked about twice.
        self._leak_reviewed: dict[str, str] = {}
        self._leak_loaded = False

    # -- plumbing --------------------------------------------------------------------
    # Events about this session, not about the work: written every time.
    _SESSION_EVENTS = frozenset({"run_started", "paused", "resumed", "run_paused", "run_stopped", "run_failed",
                                 "lease_lost", "budget_clock"})

    def _nth(self, *key: Any) -> int:
        """0, 1, 2... for successive calls with the same key in this process: the `nth` of a per-step row
        (model card, ablation, attempt, ensemble round), so a redone step rewrites its rows in place."""
        with self._lock:
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
            return n

    def emit(self, kind: str, payload: dict[str, Any] | None = None, key: str | None = None) -> None:
        """Store an event (once per key) and tell the listener. Events inside a step are keyed by the step and
        their order in it, so a redone step does not announce its work twice."""
        payload = payload or {}
        if key is None and kind not in self._SESSION_EVENTS:
            step = current_step()
            if step:
                key = f"{step}#{kind}#{self._nth('event', step, kind)}"
        seq = self.store.emit(self.run_id, kind, payload, key=key)
        if seq and _CRASH_AFTER and _CRASH_AFTER == f"{current_step()}|{kind}":
            os.kill(os.getpid(), signal.SIGKILL)  # the crash-recovery tests' kill -9 at an exact moment
        if seq and self.listener is not None:
            self.listener(kind, payload)

    def _record_brain_call(self, call: BrainCallRecord) -> None:
        step = call.step_key or current_step()
        cid = self.store.nth_brain_call(self.run_id, step, call.role, call.prompt,
                                        self._nth("brain_call", step, call.role, call.prompt))
        if cid is None:  # not recorded before the crash: a new call
            cid = self.store.add_brain_call(self.run_id, call)
        self.emit("brain_call", {"id": cid, "role": call.role, "latency": call.latency, "cost": call.cost,
                                 "tokens_in": call.tokens_in, "tokens_out": call.tokens_out,
                                 "error": call.error, "outcome": call.outcome}, key=f"brain_call#{cid}")
        if call.outcome == "fallback":  # a degraded path is named where the user reads the run's story
            self.emit("fallback", {"role": call.role, "step": step, "brain_call_id": cid,
                                   "note": call.error}, key=f"fallback#{cid}")

    def _recall(self, step: str, role: str, index: int, prompt: str) -> dict[str, Any] | None:
        """The stored answer to a call a redone step asks again (paid calls are not repeated)."""
        return self.store.answered_call(self.run_id, step, role, index, prompt) if step else None

    def _add_script(self, role: str, code: str, *, label: str = "", parent_id: int | None = None) -> int:
        """Store a script, or find the same one this step stored before it was interrupted."""
        step = current_step()
        n = self._nth("script", step, role, label, code)
        found = self.store.nth_script(self.run_id, step, role, label, code, n)
        if found is not None:
            return found
        return self.store.add_script(self.run_id, role, code, label=label, parent_id=parent_id, step_key=step)

    def _add_attempt(self, **row: Any) -> int:
        return self.store.add_attempt(self.run_id, nth=self._nth("attempts", row["track"], row["outer_step"],
                                                                     row["inner_step"]), **row)

    @property
    def _lease_lost(self) -> bool:
        """Another process took this run over: this one must stop writing."""
        return self.lease is not None and self.lease.lost.is_set()


    def time_used(self) -> float:
        """Agent time: wall time of every session minus the time the budget clock stood still (every live track
        waiting for a human decision or paused; see budget_clock.py)."""
        return self.clock.used()

    def _clock_fields(self) -> dict[str, Any]:
        """The budget clock as the runs row keeps it (time_used never includes waiting for a human). Written by a
        thread that is working, so the clock runs (it stops only while every live track holds)."""
        return {"time_used": self.clock.used(), "time_waiting": self.clock.waiting(), "clock_at": time.time(),
                "clock_stopped_since": None, "clock_hold": None}

    def _clock_changed(self, stopped: bool, reason: str, used: float, waiting: float, interval: float) -> None:
        """The budget clock stopped (every live track waits for a human or is paused) or runs again: stored so
        the dashboard can say so, and told in the event log."""
        if self._lease_lost:
            return
        now = time.time()
        self.store.update_run(self.run_id, time_used=used, time_waiting=waiting, clock_at=now,
                              clock_stopped_since=now if stopped else None, clock_hold=reason if stopped else None)
        if stopped:
            why = "waiting for your decision" if reason == DECISION else "the run is paused"
            message = (f"Budget clock stopped: {why}; this time is not counted against the budget "
                       f"(agent time so far {fmt_duration(used)})")
        else:
            message = (f"Budget clock running again: {fmt_duration(interval)} of waiting not counted "
                       f"({fmt_duration(waiting)} in all)")
        self.emit("budget_clock", {"stopped": stopped, "reason": reason or None, "agent_time": used,
                                   "waiting_total": waiting, "stopped_for": None if stopped else interval,
                                   "message": message})

    def time_left(self) -> float:
        if self.config.time_budget is None:
            return float("inf")
        return self.config.time_budget - self.time_used()

    def _reserve(self) -> float:
        """Time kept back for the final step (hold-out and full-data runs, in parallel): enough for the
        tracks' solutions in turn, i.e. an ensemble of the L tracks (a larger ensemble is only written
        when the time left still fits its members: see _ensemble_library)."""
        final = sum(s.wall_time for s in self._track_best.values())
        return 5.0 + 1.3 * max(final, self._slowest)

    def _room_for_another_outer(self, t: int) -> bool:
        """With a time budget: does one more outer step (its measured cost so far) still fit?"""
        if self.config.time_budget is None or self.budget_hit or self._halt is not None:
            return False
        with self._lock:
            costs = list(self._outer_costs)
        if not costs:
            return False
        # Tracks share the cores: another outer step of this track costs about the mean seen so far.
        return self.time_left() - self._reserve() > statistics.fmean(costs)

    def _check_control(self) -> None:
        """Honour pause and stop between steps."""
        if self._halt is not None:
            raise BrainUnavailable(self._halt)
        if self._lease_lost:
            raise LeaseLost()
        paused = False
        with contextlib.ExitStack() as held:
            while True:
                run = self.store.get_run(self.run_id) or {}
                if run.get("config_json"):  # constraints pinned while the run goes on reach the next planner
                    self.ctx.constraints = list(json.loads(run["config_json"]).get("constraints") or [])
                control = run.get("control", "run")
                if control == "stop":
                    raise StopRequested()
                if control != "pause":
                    break
                if not paused:
                    paused = True
                    # A paused track holds the budget clock, like one waiting for a decision: once every live
                    # track is paused (or waiting), the clock stops.
                    held.enter_context(self.clock.hold(PAUSED))
                    self.store.update_run(self.run_id, status="paused")
                    self.emit("paused", {})
                time.sleep(0.3)
        if paused:
            self.store.update_run(self.run_id, status="running")
            self.emit("resumed", {})

    def _step(self, key: str, phase: str, fn: Callable[[], Any], *, final: bool = False,
              cheap: bool = False) -> Any:
        """Run (or replay) one memoised step. `cheap` steps (engine-scored ensemble rounds, writing a
        script) need only a few seconds, not the reserve kept for the final runs."""
        done, result = self.store.step_result(self.run_id, key)
        if done:
            return result
        self._check_control()
        if not final and self.time_left() < (5.0 if cheap else self._reserve()):
            self._budget_hit("budget_exhausted", {"at_step": key, "time_left": self.time_left()})
            raise BudgetExhausted(key)
        if not final and self.brain.cost_cap_reached():
            self._cost_cap_hit(key)
            raise BudgetExhausted(key)
        self.store.start_step(self.run_id, key, phase)
        self.store.update_run(self.run_id, phase=phase)
        self.emit("step_started", {"key": key, "phase": phase}, key=f"{key}#step_started")
        try:
            with step_scope(key):
                result = fn()
        except LeaseLost:
            raise  # the run is another process's now: write nothing more
        except StopRequested:
            if self._lease_lost:
                raise LeaseLost() from None
            self.store.finish_step(self.run_id, key, None, status="stopped")
            raise
        except BudgetExhausted:
            self.store.finish_step(self.run_id, key, None, status="skipped")
            raise
        except CostCapReached:
            self.store.finish_step(self.run_id, key, None, status="skipped")
            self._cost_cap_hit(key)
            raise BudgetExhausted(key) from None
        except BrainUnavailable as exc:
            self.store.finish_step(self.run_id, key, None, status="interrupted", error=str(exc))
            with self._lock:
                self._halt = self._halt or str(exc)
            raise
        except Exception as exc:
            self.store.finish_step(self.run_id, key, None, status="failed", error=repr(exc))
            raise
        self.store.finish_step(self.run_id, key, result)
        self.store.update_run(self.run_id, **self._clock_fields())
        self.emit("step_done", {"key": key, "phase": phase}, key=f"{key}#step_done")
        return result

    def _budget_hit(self, kind: str, payload: dict[str, Any]) -> None:
        """Announce once that the run wraps up early (time budget or cost cap)."""
        with self._lock:
            first = not self.budget_hit
            self.budget_hit = True
        if first:
            self.emit(kind, payload)

    def _cost_cap_hit(self, key: str) -> None:
        self._budget_hit("cost_cap_reached", {"at_step": key, "spent": self.brain.spent, "cap": self.brain.cost_cap})

    def _timeout(self) -> float:
        left = self.time_left() - self._reserve()
        return max(5.0, min(self.config.script_timeout, left))

    def _job(self, script_id: int, code: str, purpose: str, data_dir: Path, submit: bool = False,
             timeout: float | None = None, env: dict[str, str] | None = None,
             stop_check: Callable[[str], str | None] | None = None) -> Job:
        workdir = self.run_dir / "work" / f"{script_id:05d}-{purpose}"
        return Job(code=code, workdir=workdir, inputs=data_dir,
                   env={"MLESTAR_SUBMIT": "1" if submit else "0", **(env or {})},
                   timeout=timeout if timeout is not None else self._timeout(),
                   label=f"{purpose} #{script_id}", stop_check=stop_check)

    def _record_execution(self, script_id: int, job: Job, res: ExecResult, purpose: str,
                          stored_id: int | None = None) -> None:
        if self._cancelled():
            raise StopRequested()
        eid = stored_id or self.store.add_execution(self.run_id, script_id, res, purpose=purpose,
                                                    workdir=str(job.workdir))
        if res.ok:
            with self._lock:
                self._slowest = max(self._slowest, res.wall_time)
        self.emit("script_executed", {"execution_id": eid, "script_id": script_id, "purpose": purpose,
                                      "score": res.score, "ok": res.ok, "wall_time": res.wall_time,
                                      "stopped_early": res.killed_reason == "early_stop",
                                      "error": None if res.ok else res.error_text(300)}, key=f"execution#{eid}")

    def _run_recorded(self, items: list[tuple[int, Job, str]], *, engine_scored: bool) -> list[ExecResult]:
        """Run (script id, job, purpose) items in parallel and record each execution. A script whose execution
        of that purpose completed before a crash is not run again: its stored result is used."""
        stored = [self.store.finished_execution(sid, purpose) for sid, _, purpose in items]
        todo = [i for i, row in enumerate(stored) if row is None]
        for i in todo:  # a fresh run starts in a clean folder (a crash may have left a half-written one)
            shutil.rmtree(items[i][1].workdir, ignore_errors=True)
        ran = dict(zip(todo, self._run_many([items[i][1] for i in todo]), strict=True))
        results: list[ExecResult] = []
        for i, ((sid, job, purpose), row) in enumerate(zip(items, stored, strict=True)):
            if row is not None:
                res = _stored_result(row)
            else:
                res = self._engine_score(sid, job, ran[i]) if engine_scored else ran[i]
            self._record_execution(sid, job, res, purpose, stored_id=row["id"] if row is not None else None)
            results.append(res)
        return results

    def _cancelled(self) -> bool:
        if self._lease_lost:
            return True  # another process drives the run now: our scripts and waits end
        run = self.store.get_run(self.run_id) or {}
        return run.get("control") == "stop"

    def _run_scripts(self, specs: list[tuple[str, str, int | None, str]], *, debug: bool = True,
                     data_dir: Path | None = None, stop_check: Callable[[str], str | None] | None = None,
                     edit: UserEdit | None = None) -> list[Scored]:
        """Run (code, role, parent_id, label) scripts in parallel; crashing ones go to the debugger.

        `edit`: the (single) script holds a human's edited block. When it fails, that is said at once
        (`edit_failed`, with the first error line, recorded on `edit`); the debugger is given the human's code,
        its fix is labelled "debugger repaired your edit", and a fix that throws the edit away (puts the original
        block back, or rewrites the block) is refused rather than passed off as the human's attempt."""
        data_dir = data_dir or self._data().search_dir
        # Ablation variants are measurements, never kept; the baseline is the engine's own script.
        codes = [self._leak_review(code, label) if role not in ("ablation", "baseline") else code
                 for code, role, _, label in specs]
        ids = [self._add_script(role, code, label=label, parent_id=parent)
               for code, role, parent, label in specs]
        results = self._execute([(sid, code) for sid, code in zip(ids, codes, strict=True)], data_dir,
                                stop_check=stop_check)
        if edit is not None:
            edit.script_id = ids[0]
            if not results[0].ok and results[0].killed_reason not in ("cancelled", "early_stop"):
                edit.error = _first_error_line(results[0])
                self.emit("edit_failed", {**edit.where, "block": edit.block, "script_id": ids[0], "error": edit.error,
                                          "message": f"{_where_text(edit.where)}: your edited `{edit.block}` block "
                                                     f"failed — {edit.error}"})
        for round_ in range(self.config.max_debug_rounds if debug else 0):
            # Nothing to repair in a script the user cancelled or the engine stopped for being hopeless.
            failing = [i for i, r in enumerate(results)
                       if not r.ok and r.killed_reason not in ("cancelled", "early_stop")]
            if not failing:
                break
            retry: list[tuple[int, str]] = []
            for i in failing:
                self._check_control()
                try:
                    fixed = self.brain.debug(self.ctx, codes[i], results[i].error_text(),
                                             failure=results[i].killed_reason or "error")
                except RoleFailed as exc:  # no repair: the failure stands (running it again would fail again)
                    self.emit("debug_failed", {"script_id": ids[i], "label": specs[i][3], "reason": str(exc)})
                    continue
                label = f"{specs[i][3]} (debug {round_ + 1})"
                if edit is not None:
                    label = f"{specs[i][3]} (debugger repaired your edit{f', round {round_ + 1}' if round_ else ''})"
                fixed = self._leak_review(fixed, label)
                refused = edit.refusal(fixed) if edit is not None else None
                if edit is not None and refused is not None:  # the human's attempt stays what the human wrote
                    edit.refused = refused
                    self.emit("debug_failed", {"script_id": ids[i], "label": specs[i][3], "reason": refused})
                    continue
                new_id = self._add_script("debug", fixed, parent_id=ids[i], label=label)
                codes[i], ids[i] = fixed, new_id
                retry.append((new_id, fixed))
            if not retry:
                break
            repaired = [i for i in failing if ids[i] in {sid for sid, _ in retry}]
            for i, res in zip(repaired, self._execute(retry, data_dir, stop_check=stop_check), strict=True):
                results[i] = res
        if edit is not None and edit.error is not None:
            edit.repaired = results[0].ok and ids[0] != edit.script_id
        return [Scored(ids[i], r.score if r.ok else None, r.wall_time, specs[i][3], list(r.fold_scores or []))
                for i, r in enumerate(results)]

    def _leak_review(self, code: str, label: str) -> str:
        """The leakage checker's verdict on a script about to be scored (the code to run: corrected when it
        leaked). LLM-written code is reviewed every time it changes (merges, fixes, attempts, ensembles);
        the offline expert's templates fit inside the folds by construction and are checked once per track."""
        if not (self.config.use_leakage_checker and self.brain.reviews_every_script):
            return code
        digest = hashlib.sha256(code.encode()).hexdigest()
        with self._lock:
            if self._leak_loaded is False:  # a resumed run: the reviews made before the crash still count
                self._leak_loaded = True
                for e in self.store.events_of_kind(self.run_id, "leak_review"):
                    p = e["payload"]
                    self._leak_reviewed[p["digest"]] = p["code"]
                    self._leak_reviewed[hashlib.sha256(p["code"].encode()).hexdigest()] = p["code"]
            known = self._leak_reviewed.get(digest)
        if known is not None:
            return known
        check = self.brain.check_leakage(self.ctx, code)
        if check.changed or not check.checked:
            self.emit("check", {"check": "leakage", "script": label, "changed": check.changed,
                                "findings": check.findings, "checked": check.checked})
        reviewed = check.code if check.changed else code
        # Persisted, so a resumed run does not ask about the same code again.
        self.emit("leak_review", {"digest": digest, "changed": check.changed, "checked": check.checked,
                                  "code": reviewed}, key=f"leak_review#{digest}")
        with self._lock:
            self._leak_reviewed[digest] = reviewed
            self._leak_reviewed[hashlib.sha256(reviewed.encode()).hexdigest()] = reviewed
        return reviewed

    def _execute(self, scripts: list[tuple[int, str]], data_dir: Path, env: dict[str, str] | None = None,
                 stop_check: Callable[[str], str | None] | None = None) -> list[ExecResult]:
        jobs = [self._job(sid, code, "search", data_dir, env=env, stop_check=stop_check) for sid, code in scripts]
        return self._run_recorded([(sid, job, "search") for (sid, _), job in zip(scripts, jobs, strict=True)],
                                  engine_scored=True)

    def _run_many(self, jobs: list[Job]) -> list[ExecResult]:
        started = time.monotonic()
        results = self.executor.run_many(jobs)
        with self._lock:  # time spent waiting on scripts: the rest of a run is orchestration overhead
            self.exec_wall += time.monotonic() - started
        return results

    def _code(self, script_id: int) -> str:
        row = self.store.get_script(script_id)
        if row is None:
            raise ValueError(f"script {script_id} is missing from the store")
        return str(row["code"])

    def _data(self) -> RunData:
        if self.data is None:
            data = prepare_run_data(self.task, self.run_dir, self.config.holdout_fraction, self.config.seed)
            # Scripts see the run folders' file names; a task without a test file still gets one
            # in the hold-out folder, so the scripts look for it (and skip it when it is absent).
            self.ctx.task = dataclasses.replace(
                data.task_for(self.task, "search"), test_file=data.test_file or data.holdout_test_file,
                sample_submission_file=data.sample_submission_file or data.holdout_sample_file)
            self.data = data
            self._set_protocol(self._protocol(data))
        return self.data

    # -- the algorithm -----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) to the end; returns the final summary. Raises lease.RunOwnedElsewhere, before
        touching anything, when another live process drives this run."""
        self.lease = RunLease(self.store, self.run_id).acquire()
        try:
            return self._run_owned()
        except LeaseLost:
            self.emit("lease_lost", {"message": "another process took this run over; this one stopped"})
            return {"status": "lease_lost"}
        finally:
            self.lease.release()

    def _run_owned(self) -> dict[str, Any]:
        self.store.update_run(self.run_id, status="running", error=None, pause_reason=None, **self._clock_fields())
        self.emit("run_started", {"brain": self.brain.label(), "resumed": self._prior_time_used > 0})
        try:
            self._data()
            summary = self._run_phases()
        except StopRequested:
            if self._lease_lost:
                raise LeaseLost() from None
            self.store.update_run(self.run_id, status="stopped", **self._clock_fields())
            self.emit("run_stopped", {})
            return {"status": "stopped"}
        except BrainUnavailable as exc:
            if self._cancelled():
                self.store.update_run(self.run_id, status="stopped", **self._clock_fields())
                self.emit("run_stopped", {})
                return {"status": "stopped"}
            # Paused, not failed: every finished step is kept and `resume` redoes only the one in flight.
            reason = str(exc)
            self.store.pause_with_reason(self.run_id, reason, **self._clock_fields())
            self.emit("run_paused", {"reason": reason})
            return {"status": "paused", "reason": reason}
        except Exception as exc:
            self.store.update_run(self.run_id, status="failed", error=f"{type(exc).__name__}: {exc}",
                                  **self._clock_fields())
            self.emit("run_failed", {"error": f"{type(exc).__name__}: {exc}"})
            raise
        finally:
            if self._own_executor:
                self.executor.close()
        self.store.update_run(self.run_id, status="finished", finished=time.time(),
                              **self._clock_fields(), phase="done")
        self.emit("run_finished", summary, key="run_finished")
        if os.environ.get("MLFLOW_TRACKING_URI", "").strip():  # off by default: mlflow is slow to import
            from .mlflow_log import log_run

            log_run(self.store, self.run_id)  # never raises: a failure is an `mlflow_failed` event
        return summary

    def _run_phases(self) -> dict[str, Any]:
        baseline = self._step("baseline", "baseline", self._baseline, final=True)
        self.store.update_run(self.run_id, baseline_score=baseline["score"])
        solutions: list[Scored] = []
        ensembles: list[Scored] = []
        try:
            cards = self._step("retrieve", "retrieve", self._retrieve)
            candidates = [Scored.from_dict(c) for c in self._step("init", "init",
                                                                  lambda: self._initial(cards))]
            solutions = self._tracks(candidates)
            # The ensemble's library: the refined tracks plus the initial candidates (distinct model families).
            ensembles = self._ensemble(solutions + candidates)
        except BudgetExhausted:
            pass  # recorded in self.budget_hit; wrap up below with what was scored
        if not solutions:  # the budget ran out before the tracks: use what was scored so far
            solutions = self._best_so_far()
        if not self._best_first(solutions) and baseline.get("score") is not None:
            # Nothing but the trivial baseline was scored (a budget too short for one candidate): it still
            # writes a valid submission, and the report says it is only the baseline.
            self.emit("log", {"message": "no candidate was scored in time: the final solution is the trivial "
                                         "baseline"}, key="log#baseline_is_final")
            solutions = [Scored.from_dict({**baseline, "label": "trivial baseline"})]
        return self._step("final", "final", lambda: self._final(solutions, ensembles, baseline, self.budget_hit),
                          final=True)

    def _baseline(self) -> dict[str, Any]:
        (res,) = self._run_scripts([(baseline_script(self.ctx), "baseline", None, "trivial baseline")],
                                   debug=False)
        return res.to_dict()

    def _retrieve(self) -> list[dict[str, Any]]:
        if self.config.start_code is not None:  # a fork: its only candidate is the script it forks
            cards = [ModelCard(name=f"forked script ({self.config.forked_from})",
                               why="A human chose to continue from this script of an earlier run.",
                               example_code="", source=self.config.forked_from or "fork", family="fork")]
        else:
            cards = self.brain.retrieve_models(self.ctx, self.config.num_models)
            note = take_fallback()
            if note and "refused the search tool" in note:  # not a fallback record: the answer was used
                self.emit("fallback", {"role": "retrieve_models", "step": current_step(), "note": note},
                          key="retrieve#search_refused")
        out = []
        for rank, card in enumerate(cards):
            cid = self.store.add_model_card(self.run_id, rank, card, nth=self._nth("model_cards", rank))
            self.emit("model_card", {"id": cid, "name": card.name, "source": card.source})
            out.append({"name": card.name, "why": card.why, "example_code": card.example_code,
                        "source": card.source, "family": card.family, "sources": card.sources})
        return out

    def _initial(self, cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.config.start_code is not None:
            specs = [(self.config.start_code, "initial", None, cards[0]["name"])]
        else:
            specs = []
            for c in cards:
                code = self.brain.write_initial_solution(self.ctx, ModelCard(**c))
                # A candidate the LLM could not write is the offline expert's: its label says so everywhere.
                label = c["name"] + (" (written by the offline expert: the LLM's answers were unusable)"
                                     if take_fallback() else "")
                specs.append((code, "initial", None, label))
        scored = self._run_scripts(specs)
        for s in scored:
            self.emit("candidate_scored", {"label": s.label, "script_id": s.script_id, "score": s.score})
        self._update_best([s.score for s in scored])
        return [s.to_dict() for s in scored]

    def _tracks(self, candidates: list[Scored]) -> list[Scored]:
        ok = self._best_first(candidates)
        if not ok:
            raise NoWorkingSolution.from_candidates(self.store, self.run_id, candidates)
        n_tracks = max(1, min(self.config.num_solutions, len(ok)))
        if n_tracks == 1:
            return [self._track(0, ok)]
        # Tracks run concurrently: while one waits on a script, another's script uses the other core.
        # The budget clock counts n live tracks instead of this thread (which only waits for them): it stops
        # only while every track still going waits for a human.
        self.clock.add_live(n_tracks - 1)
        try:
            with ThreadPoolExecutor(max_workers=n_tracks, thread_name_prefix="track") as pool:
                # Each track starts from its own candidate and merges only candidates no other track starts from,
                # so the tracks stay different solutions (different lead models) and ensembling has something
                # to gain.
                shared = ok[n_tracks:]
                futures = [pool.submit(self._live_track, t, [ok[t], *shared]) for t in range(n_tracks)]
                results: list[Scored] = []
                errors: list[BaseException] = []
                for f in futures:
                    try:
                        results.append(f.result())
                    except BaseException as exc:  # collect: one track's budget stop must not lose the other
                        errors.append(exc)
        finally:
            self.clock.add_live(1)  # the tracks have ended (each took itself off): this thread goes on alone
        for kind in (LeaseLost, StopRequested, BrainUnavailable):  # one track's stop or outage ends the run
            for exc in errors:
                if isinstance(exc, kind):
                    raise exc
        if errors and not results:
            raise errors[0]
        return results

    def _live_track(self, t: int, order: list[Scored]) -> Scored:
        """A track in its own thread: one of the budget clock's live tracks until it ends."""
        try:
            return self._track(t, order)
        finally:
            self.clock.add_live(-1)

    def _track(self, t: int, order: list[Scored]) -> Scored:
        """One solution track: merge, checks, then T outer refinement steps."""
        current = Scored.from_dict(self._step(f"t{t}/merge", "merge", lambda: self._merge(t, order)))
        current = Scored.from_dict(self._step(f"t{t}/checks", "check", lambda: self._checks(t, current)))
        self._track_best[t] = current
        refined: list[str] = []
        best = current
        outer = 0
        try:
            # The default plan is T outer steps; with a time budget the search goes on while the measured
            # cost of an outer step still fits, so the whole budget is used.
            while (outer < self.config.outer_steps or self._room_for_another_outer(t)
                   or self.store.step_result(self.run_id, f"t{t}/o{outer}/ablation")[0]):  # resumed
                # What this outer step costs in agent time, without this track's own waiting for a human while
                # another track kept the budget clock going (it would make further steps look dearer).
                step_started, held_before = self.time_used(), self.clock.held_running()
                abl = self._step(f"t{t}/o{outer}/ablation", "ablate",
                                 partial(self._ablation, t, outer, current))
                choice = self._step(f"t{t}/o{outer}/extract", "refine",
                                    partial(self._extract, t, outer, current, abl, list(refined)))
                block = choice["block"]
                if choice.get("script_id"):  # the same code with the chosen span fenced: same score
                    current = Scored(choice["script_id"], current.score, current.wall_time, current.label,
                                     list(current.fold_scores))
                refined.append(block)
                best = current
                best_attempt: int | None = None
                history: list[AttemptSummary] = []
                for inner in range(self.config.inner_steps):
                    res = self._step(f"t{t}/o{outer}/i{inner}", "refine",
                                     partial(self._attempt, t, outer, inner, current, block, choice["plan"],
                                             list(history)))
                    wins, n = evaluation.paired_wins(res.get("fold_scores") or [], current.fold_scores, self.hib)
                    history.append(AttemptSummary(res["plan"], res["score"], current.score, res["ok"],
                                                  folds_won=wins, folds_compared=n))
                    # Kept when better on the fold mean; a tie keeps the earlier (simpler) code.
                    if res["ok"] and is_better(res["score"], best.score, self.hib):
                        best = Scored(res["script_id"], res["score"], res["wall_time"], f"track {t + 1}",
                                      list(res.get("fold_scores") or []))
                        best_attempt = res["attempt_id"]
                self.store.mark_kept_attempt(self.run_id, t, outer, best_attempt)
                self.emit("block_refined", {"track": t, "outer": outer, "block": block,
                                            "from": current.score, "to": best.score,
                                            "kept_attempt": best_attempt}, key=f"t{t}/o{outer}#block_refined")
                current = best
                self._track_best[t] = current
                self._update_best([current.score])
                cost = self.time_used() - step_started - (self.clock.held_running() - held_before)
                with self._lock:
                    self._outer_costs.append(cost)
                if len(refined) >= 4:  # every block had its turn: the next round may revisit any of them
                    refined = []
                outer += 1
        except BudgetExhausted:
            return best  # the best attempt of the interrupted inner loop is not lost
        return current

    def _merge(self, t: int, order: list[Scored]) -> dict[str, Any]:
        base = order[0]
        for ref in order[1:]:
            self._check_control()
            try:
                merged = self.brain.merge(self.ctx, self._code(base.script_id), self._code(ref.script_id))
            except RoleFailed as exc:
                self.emit("merge", {"track": t, "base": base.label, "reference": ref.label, "skipped": True,
                                    "reason": str(exc), "base_score": base.score, "kept": False})
                break  # no merge happened: nothing was run, nothing was discarded
            (res,) = self._run_scripts([(merged, "merge", base.script_id,
                                         f"track {t + 1}: {base.label} + {ref.label}")])
            improved = is_better(res.score, base.score, self.hib)
            self.emit("merge", {"track": t, "base": base.label, "reference": ref.label,
                                "score": res.score, "base_score": base.score, "kept": improved})
            if not improved:
                break  # MLE-STAR merges while the score improves
            base = Scored(res.script_id, res.score, res.wall_time, f"{base.label} + {ref.label}", res.fold_scores)
        self._update_best([base.score])
        return base.to_dict()

    def _checks(self, t: int, current: Scored) -> dict[str, Any]:
        code = self._code(current.script_id)
        if self.config.use_data_usage_checker:
            check = self.brain.check_data_usage(self.ctx, code)
            self.emit("check", {"track": t, "check": "data_usage", "changed": check.changed,
                                "findings": check.findings, "checked": check.checked})
            if check.changed:
                (res,) = self._run_scripts([(check.code, "data_usage", current.script_id,
                                             f"track {t + 1}: data-usage fix")])
                # Using all the data is only kept when it runs and does not hurt the score.
                if res.score is not None and not is_better(current.score, res.score, self.hib):
                    current, code = res, check.code
        if self.config.use_leakage_checker and not self.brain.reviews_every_script:  # else: done before scoring
            check = self.brain.check_leakage(self.ctx, code)
            self.emit("check", {"track": t, "check": "leakage", "changed": check.changed,
                                "findings": check.findings, "checked": check.checked})
            if check.changed:
                (res,) = self._run_scripts([(check.code, "leakage", current.script_id,
                                             f"track {t + 1}: leakage fix")])
                if res.score is not None:  # a leak fix is kept even when the score drops: it was fake
                    current = res
        return current.to_dict()

    def _ablation(self, t: int, outer: int, current: Scored) -> dict[str, Any]:
        """Each variant switches one block off; repeats over other validation splits give error bars."""
        code = self._code(current.script_id)
        # The writer sees this track's earlier studies (as the paper's does), so it does not repeat itself.
        previous = [r["summary"] for r in (self.store.step_result(self.run_id, f"t{t}/o{k}/ablation")[1]
                                           for k in range(outer)) if r and r.get("summary")]
        variants = self.brain.write_ablation(self.ctx, code, previous)
        repeats = self._ablation_repeats(len(variants))
        label = f"track {t + 1} step {outer + 1}"
        scored = self._run_scripts([(v.code, "ablation", current.script_id, f"{label}: {v.description}")
                                    for v in variants], debug=False)
        # Every delta is paired: the block on and off are scored on the same folds, and the spread of the
        # per-fold deltas gives the error bar. Repeat r > 0 reruns the unablated script and every variant
        # with another model seed (scripts read MLESTAR_SEED), adding its folds to the pairs.
        base_runs: list[float | None] = [current.score]
        var_runs: list[list[float | None]] = [[s.score] for s in scored]
        base_folds: list[float | None] = list(current.fold_scores)
        var_folds: list[list[float | None]] = [_paired(s.fold_scores, len(base_folds)) for s in scored]
        # The rows are written after the first run and updated after each repeat, so the chart shows
        # every block's bar as soon as its first score is in.
        rows = self._write_ablation_rows(t, outer, variants, scored, base_runs, var_runs, base_folds, var_folds,
                                         None)
        for r in range(1, repeats):
            seed = str(self.config.seed + 1000 * r)
            ids = [self._add_script("ablation", c, label=f"{label}: {d} (seed {r + 1})",
                                         parent_id=current.script_id)
                   for c, d in [(code, "no block ablated")] + [(v.code, v.description) for v in variants]]
            results = self._execute(list(zip(ids, [code] + [v.code for v in variants], strict=True)),
                                    self._data().search_dir, env={"MLESTAR_SEED": seed})
            n_units = len(current.fold_scores)
            base_runs.append(results[0].score if results[0].ok else None)
            base_folds += _paired(results[0].fold_scores if results[0].ok else [], n_units)
            for runs, folds, res in zip(var_runs, var_folds, results[1:], strict=True):
                runs.append(res.score if res.ok else None)
                folds += _paired(res.fold_scores if res.ok else [], n_units)
            rows = self._write_ablation_rows(t, outer, variants, scored, base_runs, var_runs, base_folds,
                                             var_folds, [aid for aid, _, _ in rows])
        for aid, res, delta_std in rows:
            self.emit("ablation_result", {"id": aid, "track": t, "outer": outer, "block": res.block,
                                          "score": res.score, "delta": res.delta, "delta_std": delta_std,
                                          "repeats": repeats})
        results_out = [res for _, res, _ in rows]
        summary = self.brain.summarize_ablation(self.ctx, results_out)
        self.emit("ablation_summary", {"track": t, "outer": outer, "summary": summary})
        return {"results": [r.__dict__ for r in results_out], "summary": summary}

    def _write_ablation_rows(self, t: int, outer: int, variants: list[Any], scored: list[Scored],
                             base_runs: list[float | None], var_runs: list[list[float | None]],
                             base_folds: list[float | None], var_folds: list[list[float | None]],
                             row_ids: list[int] | None) -> list[tuple[int, AblationResult, float | None]]:
        """Add (row_ids None) or update one ablation row per variant from the runs so far;
        returns (row id, result, spread of the per-fold deltas) per variant."""
        out = []
        for i, (v, s, runs, folds) in enumerate(zip(variants, scored, var_runs, var_folds, strict=True)):
            deltas_ok = _deltas(base_folds, folds, self.hib) or _deltas(base_runs, runs, self.hib)
            result = AblationResult(v.block, v.description, s.score, base_runs[0],
                                    statistics.fmean(deltas_ok) if deltas_ok else None)
            stats = {"scores": runs, "score_std": _std(runs), "baseline_std": _std(base_runs),
                     "delta_std": _std(deltas_ok)}
            if row_ids is None:
                aid = self.store.add_ablation(self.run_id, t, outer, result, s.script_id, **stats,
                                              nth=self._nth("ablations", t, outer))
            else:
                aid = row_ids[i]
                self.store.update_ablation(aid, result, **stats)
            out.append((aid, result, stats["delta_std"]))
        return out

    def _ablation_repeats(self, n_variants: int) -> int:
        """Fewer repeats when the time budget could not otherwise fit the rest of the run."""
        repeats = max(1, self.config.ablation_repeats)
        if self.config.time_budget is None or self._slowest == 0:
            return repeats
        per_repeat = (n_variants + 1) * self._slowest / max(1, self.config.workers)
        while repeats > 1 and (repeats - 1) * per_repeat > 0.15 * self.time_left():
            repeats -= 1
        return repeats

    def _extract(self, t: int, outer: int, current: Scored, abl: dict[str, Any],
                 refined: list[str]) -> dict[str, Any]:
        results = [AblationResult(**r) for r in abl["results"]]
        code = self._code(current.script_id)
        choice = self.brain.extract_block(self.ctx, code, results, abl["summary"], list(refined))
        out: dict[str, Any] = {"block": choice.block, "plan": choice.plan, "reason": choice.reason}
        if choice.span:
            # The extractor narrowed the target to some lines of a block: they become a block of their own
            # (only fence comments are added, so the script computes exactly what was scored), and the coder
            # rewrites, the Refinement page diffs and the next ablation sees that block.
            fenced, name = split_block(code, choice.block, choice.span, choice.span_name or f"{choice.block}_focus")
            if name != choice.block:
                sid = self._add_script("extract", fenced, label=f"{current.label}: `{name}` fenced in "
                                       f"`{choice.block}`", parent_id=current.script_id)
                out.update(block=name, within=choice.block, script_id=sid)
        self.emit("block_chosen", {"track": t, "outer": outer, "block": out["block"], "plan": choice.plan,
                                   "reason": choice.reason, "within": out.get("within")})
        return out

    def _attempt(self, t: int, outer: int, inner: int, current: Scored, block: str, first_plan: str,
                 history: list[AttemptSummary]) -> dict[str, Any]:
        code = self._code(current.script_id)
        plan = first_plan if inner == 0 else self.brain.plan_refinement(self.ctx, code, block, history)
        decision, edited_code = "auto", None
        rejections: list[AttemptSummary] = []
        while self.config.require_approval:
            d = self._await_decision(f"t{t}/o{outer}/i{inner}/r{len(rejections)}", block, plan,
                                     get_block(code, block))
            if d["status"] != "rejected":
                decision = d["status"]
                if decision == "edited":
                    plan = d["edited_plan"] or plan
                    edited_code = d["edited_code"] or None
                break
            self._add_attempt(track=t, outer_step=outer, inner_step=inner, block=block,
                                   plan=plan, decision="rejected", status="rejected",
                                   parent_script_id=current.script_id, baseline=current.score)
            self.emit("attempt_rejected", {"track": t, "outer": outer, "inner": inner, "plan": plan})
            rejections.append(AttemptSummary(plan, None, current.score, False))
            if len(rejections) >= 5:
                raise StopRequested()  # five rejected plans in a row: the human wants to steer by hand
            plan = self.brain.plan_refinement(self.ctx, code, block, history + rejections)
        try:
            body = edited_code if edited_code is not None else \
                self.brain.implement_refinement(self.ctx, code, block, plan)
            new_code = replace_block(code, block, body)
        except (ValueError, ScriptError) as exc:
            aid = self._add_attempt(track=t, outer_step=outer, inner_step=inner,
                                         block=block, plan=plan, decision=decision, status="failed",
                                         parent_script_id=current.script_id, baseline=current.score,
                                         error=str(exc))
            self.emit("attempt_scored", {"id": aid, "track": t, "outer": outer, "inner": inner,
                                         "score": None, "error": str(exc)})
            return {"attempt_id": aid, "script_id": current.script_id, "score": None, "plan": plan,
                    "ok": False, "wall_time": 0.0, "decision": decision}
        # A human's edited code is run as written; if it fails, the attempt says so (see UserEdit).
        edit = None if edited_code is None else UserEdit(block, get_block(code, block), get_block(new_code, block),
                                                         {"track": t, "outer": outer, "inner": inner})
        (res,) = self._run_scripts([(new_code, "refine", current.script_id,
                                     f"track {t + 1} step {outer + 1}.{inner + 1}: {block}")],
                                   stop_check=self._hopeless_check(current), edit=edit)
        executions = self.store.executions_of(res.script_id)
        stopped = any(e["killed_reason"] == "early_stop" for e in executions)
        status = "ok" if res.score is not None else "stopped early" if stopped else "failed"
        error = None if res.score is not None or stopped or not executions else _failure_reason(executions[-1])
        if edit is not None and edit.error is not None:
            # "edit failed": the human's code failed and nothing kept it alive; "edit repaired": the debugger
            # repaired the human's code (not the original) and that ran.
            ran_repair = res.script_id != edit.script_id
            status = "edit repaired" if ran_repair and res.score is not None else \
                "stopped early" if ran_repair and stopped else "edit failed"
            error = f"your edit failed: {edit.error}" + (
                "; the debugger repaired your edit" if status == "edit repaired" else
                "; the debugger repaired your edit, which was stopped early: it could not catch up"
                if status == "stopped early" else
                f"; {edit.refused}" if edit.refused else
                "; the debugger's repair of your edit failed too" if ran_repair else "")
        aid = self._add_attempt(track=t, outer_step=outer, inner_step=inner, block=block,
                                     plan=plan, decision=decision, status=status, script_id=res.script_id,
                                     parent_script_id=current.script_id, score=res.score,
                                     baseline=current.score, error=error,
                                     edit_script_id=edit.script_id if edit is not None else None)
        self.emit("attempt_scored", {"id": aid, "track": t, "outer": outer, "inner": inner, "block": block,
                                     "score": res.score, "baseline": current.score, "decision": decision,
                                     "status": status, "error": error,
                                     "edit_script_id": edit.script_id if edit is not None else None})
        if edit is not None and status == "edit repaired":
            self.emit("edit_repaired", {
                "track": t, "outer": outer, "inner": inner, "block": block, "edit_script_id": edit.script_id,
                "script_id": res.script_id, "score": res.score,
                "message": f"{_where_text(edit.where)}: the debugger repaired your edit of the `{block}` block "
                           f"(script #{res.script_id}, compare it with your code in script #{edit.script_id}); "
                           f"score {res.score:.6g}"})
        self._update_best([res.score])
        return {"attempt_id": aid, "script_id": res.script_id, "score": res.score, "plan": plan,
                "ok": res.score is not None, "wall_time": res.wall_time, "decision": decision,
                "fold_scores": res.fold_scores}

    def _await_decision(self, key: str, block: str, plan: str, block_code: str) -> dict[str, Any]:
        """Wait for a human decision on a plan. The wait holds the budget clock (it stops once every live track
        waits), and with `auto_approve_after` the plan is approved by the run itself at the decision's deadline
        (stored with it: a restarted run keeps the same deadline)."""
        after = self.config.auto_approve_after
        did = self.store.request_decision(self.run_id, key, block, plan, block_code, auto_approve_after=after)
        d = self.store.get_decision(did) or {}
        where = _decision_where(key)
        if d.get("status") == "pending":
            deadline = d.get("deadline")
            auto = (f"; approved automatically at {time.strftime('%H:%M:%S', time.localtime(deadline))} if "
                    f"nobody answers" if deadline is not None else "")
            self.emit("approval_waiting", {
                "decision_id": did, "key": key, "block": block, **where, "deadline": deadline,
                "auto_approve_after": after,
                "message": f"{_where_text(where)}: a plan for the `{block}` block waits for your decision{auto}; "
                           "the budget clock stops while nothing else is working"}, key=f"approval_waiting#{did}")
            self.store.update_run(self.run_id, status="waiting")
            with self.clock.hold(DECISION):
                while True:
                    self._check_control()
                    d = self.store.get_decision(did) or {}
                    if d.get("status", "pending") != "pending":
                        break
                    if d.get("deadline") is not None and time.time() >= float(d["deadline"]):
                        # First answer wins: a human's decision written a moment earlier is kept.
                        delay = float(d["deadline"]) - float(d["created"])
                        self.store.decide(did, "auto-approved",
                                          decided_by=f"auto: no decision within {fmt_duration(delay)}")
                        continue
                    time.sleep(0.3)
            self.store.update_run(self.run_id, status="running")
        waited = float(d.get("decided") or time.time()) - float(d.get("created") or time.time())
        auto = d["status"] == "auto-approved"
        self.emit("approval_decided", {
            "decision_id": did, "key": key, "block": block, **where, "status": d["status"],
            "decided_by": d.get("decided_by"), "waited": waited,
            "message": (f"{_where_text(where)}: nobody decided within {fmt_duration(waited)}, so the run approved the "
                        "plan itself (auto-approved, not a person's approval)" if auto else
                        f"{_where_text(where)}: plan {d['status']} after {fmt_duration(waited)} of waiting (not "
                        "counted against the budget while nothing else was working)")},
            key=f"approval_decided#{did}")
        return d

    def _best_so_far(self) -> list[Scored]:
        """Every scored solution-like script so far (used when the budget ends early)."""
        tracked = list(self._track_best.values())
        if tracked:
            return tracked
        rows = [r for r in self.store.table("executions", self.run_id)
                if r["score"] is not None and r["purpose"] == "search"]
        scripts = {s["id"]: s for s in self.store.table("scripts", self.run_id)}
        rows = [r for r in rows if scripts[r["script_id"]]["role"] in ("initial", "merge", "debug",
                                                                       "data_usage", "leakage")]
        return [Scored(r["script_id"], r["score"], r["wall_time"] or 0.0, scripts[r["script_id"]]["label"])
                for r in rows]

    def _best_first(self, scored: list[Scored]) -> list[Scored]:
        """The scripts that have a score, best first (direction-aware)."""
        ok = [s for s in scored if s.score is not None]
        return sorted(ok, key=lambda s: s.score if self.hib else -s.score, reverse=True)  # type: ignore[operator]

    def _update_best(self, scores: list[float | None]) -> None:
        with self._lock:
            run = self.store.get_run(self.run_id) or {}
            best = run.get("best_score")
            i = best_index(list(scores) + [best], self.hib)
            if i is not None and i < len(scores):
                self.store.update_run(self.run_id, best_score=scores[i])
                self.emit("best_score", {"score": scores[i], "time": self.time_used()},
                          key=f"best_score#{scores[i]!r}")

    def _final(self, solutions: list[Scored], ensembles: list[Scored], baseline: dict[str, Any],
               budget_hit: bool) -> dict[str, Any]:
        order = self._best_first(solutions + ensembles)
        if not order:
            raise RuntimeError("no solution produced a validation score; see the executions for errors")
        data = self._data()
        for choice in order:
            outcome = self._final_runs(choice, data)
            if outcome is not None:
                break
        else:
            raise RuntimeError("the final solution could not write a submission; see the executions")
        summary = {
            "final_script_id": choice.script_id, "final_label": choice.label,
            "validation_score": choice.score, "holdout_score": outcome["holdout_score"],
            "baseline_score": baseline["score"], "submission": outcome["submission"],
            "solution": outcome["solution"], "budget_exhausted": budget_hit,
            "metric": self.task.metric, "higher_is_better": self.hib,
        }
        self.store.update_run(self.run_id, holdout_score=outcome["holdout_score"],
                              best_score=choice.score)
        from .explain import explain_final  # what drives the model: stored with the run, read by the report

        explain_final(self, choice.script_id, data, outcome["holdout_score"])
        self._grade_competition(outcome["submission"], summary)
        report = write_report(self.store, self.run_id, summary, self.out_dir)
        summary["report"] = str(report)
        self.emit("final", summary)
        return summary

    def _grade_competition(self, submission: str | None, summary: dict[str, Any]) -> None:
        """A task from an MLE-bench folder: the submission graded against its private answers (never seen by any
        script) and placed on its leaderboard; saved as competition.json for the report, the dashboard and the CLI."""
        from .competition import grade_competition, save_grade

        try:
            grade = grade_competition(self.task, submission)
            if grade is None:
                return
            save_grade(self.run_dir, grade)
        except Exception as exc:  # grading is an extra: the run's solution and submission stand without it
            self.emit("log", {"message": f"competition grading failed: {exc}"})
            return
        summary["competition"] = grade.to_dict(with_leaderboard=False)
        self.emit("competition_graded", summary["competition"])

    def _final_runs(self, choice: Scored, data: RunData) -> dict[str, Any] | None:
        from . import kept

        code = self._code(choice.script_id)
        kept.discard_other_models(self.run_dir, choice.script_id)  # an earlier choice that could not finish
        # Both final runs keep their fitted state (MLESTAR_MODEL_DIR, docs/protocol.md): the full-data one predicts
        # new rows (so it runs even without a test file), the hold-out one is explained on the hold-out rows.
        keep = {kept.ENV_MODEL_DIR: kept.JOB_MODEL_DIR}
        jobs: dict[str, Job] = {}
        if data.holdout_dir is not None:
            jobs["holdout"] = self._job(choice.script_id, code, "holdout", data.holdout_dir, submit=True,
                                        timeout=self.config.script_timeout, env=keep)
        jobs["full"] = self._job(choice.script_id, code, "full", data.full_dir, submit=True,
                                 timeout=self.config.script_timeout, env=keep)
        results = dict(zip(jobs, self._run_recorded([(choice.script_id, job, purpose) for purpose, job in jobs.items()],
                                                    engine_scored=False), strict=True))
        for purpose, res in results.items():
            km = kept.keep_model(self.run_dir, purpose, choice.script_id, jobs[purpose].workdir / kept.JOB_MODEL_DIR) \
                if res.exit_code == 0 else None
            if km is not None:
                self.emit("model_kept", {"purpose": purpose, "script_id": choice.script_id, "files": len(km.files),
                                         "bytes": km.bytes})
        holdout_score = None
        if "holdout" in results and results["holdout"].exit_code == 0:
            sub_path = jobs["holdout"].workdir / "submission.csv"
            try:
                sub = grading.read_submission(self.task, sub_path)
                answers = pd.read_csv(data.holdout_answers)
                holdout_score = grading.score_submission(self.task, sub, answers)
            except Exception as exc:  # a malformed hold-out submission is reported, not fatal
                self.emit("log", {"message": f"hold-out scoring failed: {exc}"})
        self.out_dir.mkdir(parents=True, exist_ok=True)
        submission = None
        if self.task.test_file:
            full = results["full"]
            sub_path = jobs["full"].workdir / "submission.csv"
            if full.exit_code != 0 or not sub_path.exists():
                self.emit("log", {"message": f"final run of {choice.label} failed; trying the next best"})
                return None
            shutil.copyfile(sub_path, self.out_dir / "submission.csv")
            submission = str(self.out_dir / "submission.csv")
        (self.out_dir / "solution.py").write_text(code)
        return {"holdout_score": holdout_score, "submission": submission,
                "solution": str(self.out_dir / "solution.py")}


def _stored_result(row: dict[str, Any]) -> ExecResult:
    """An execution as it was recorded (the engine's score, its folds, why it failed)."""
    note = row.get("score_note")
    exit_code, score = row["exit_code"], row["score"]
    return ExecResult(
        exit_code=exit_code, stdout=row["stdout"] or "", stderr=row["stderr"] or "", score=score,
        wall_time=float(row["wall_time"] or 0.0), peak_memory_mb=float(row["peak_memory_mb"] or 0.0),
        timed_out=bool(row["timed_out"]), memory_exceeded=bool(row["memory_exceeded"]),
        killed_reason=row["killed_reason"], claimed_score=row.get("claimed_score"),
        fold_scores=json.loads(row["fold_scores_json"]) if row.get("fold_scores_json") else None,
        # The engine keeps why it could not score a script that exited cleanly in score_note.
        protocol_error=note if exit_code == 0 and score is None and note else None, score_note=note,
        early_stop=note if row["killed_reason"] == "early_stop" else None)


def _decision_where(key: str) -> dict[str, int]:
    """track / outer / inner of a decision key "t{t}/o{o}/i{i}/r{r}" (empty when it is not one)."""
    parts = dict((p[:1], p[1:]) for p in key.split("/") if p[:1] in "toi" and p[1:].isdigit())
    names = {"t": "track", "o": "outer", "i": "inner"}
    return {names[k]: int(v) for k, v in parts.items() if k in names}


def _where_text(where: dict[str, int]) -> str:
    if not {"track", "outer", "inner"} <= set(where):
        return "A refinement attempt"
    return f"Track {where['track'] + 1}, attempt {where['outer'] + 1}.{where['inner'] + 1}"


def _first_error_line(res: ExecResult) -> str:
    """The line that says why a script failed: the exception line of its traceback when there is one."""
    text = res.error_text(4000)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    exc = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
    line = exc[-1] if exc else (lines[-1] if lines else "it failed without an error message")
    where = [m.group(1) for ln in lines if (m := re.match(r'File "[^"]*", line (\d+)', ln))]
    if exc and where:
        line += f" (line {where[-1]} of the script)"
    return line if len(line) <= 300 else line[:297] + "..."


def _deltas(base_runs: list[float | None], runs: list[float | None], hib: bool) -> list[float]:
    """The paired deltas (block on minus block off, direction-aware) of the splits where both scored."""
    deltas = [improvement(b, x, hib) for b, x in zip(base_runs, runs, strict=True)]
    return [d for d in deltas if d is not None]


def _paired(fold_scores: list[float | None], n: int) -> list[float | None]:
    """Per-fold scores padded to n units (a failed run pairs with nothing)."""
    return list(fold_scores) if len(fold_scores) == n else [None] * n


def _std(values: list[float | None]) -> float | None:
    ok = [v for v in values if v is not None]
    return statistics.stdev(ok) if len(ok) >= 2 else None


def create_run(store: Store, task: Task, config: RunConfig, *, name: str | None = None,
               out_dir: Path | None = None, owner: str | None = None) -> str:
    """Register a new run in the store (it starts when a Pipeline runs it); `owner` is the signed-in user.
    Raises config.ConfigError when the run could not honour its settings (an unpriced model under a cap)."""
    check_config(config)
    return store.create_run(name or task.name, task, config, config.brain, task_dir=str(task.data_dir),
                            out_dir=str(out_dir) if out_dir else "", owner=owner)
