"""RunManager: runs live in background threads owned by the process, not by a browser tab.

Pages (or the CLI) call `start`, `pause`, `unpause`, `stop`; they never touch a thread.
Controls go through the store, so a decision written by any tab or process is seen by the
run's thread at its next step boundary.
"""

from __future__ import annotations

import json
import threading
import traceback
from pathlib import Path

from .brains import BrainConfigError
from .config import RunConfig, check_config
from .dask_executor import ExecutorError
from .lease import RunOwnedElsewhere, lease_state
from .model import Task, task_from_dict
from .pipeline import Pipeline, create_run
from .store import Store

ACTIVE_STATUSES = ("created", "running", "waiting", "paused")


class RunManager:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._threads: dict[str, threading.Thread] = {}
        self._pipelines: dict[str, Pipeline] = {}
        # API keys typed into the UI, per run: in this process's memory only, never in the store.
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self, task: Task, config: RunConfig, *, name: str | None = None,
              out_dir: Path | None = None, api_key: str | None = None, owner: str | None = None) -> str:
        check_config(config)  # e.g. a cost cap with an unpriced model: refused before a run exists
        run_id = create_run(self.store, task, config, name=name, out_dir=out_dir, owner=owner)
        self._remember_key(run_id, api_key)
        self._launch(run_id)
        return run_id

    def _remember_key(self, run_id: str, api_key: str | None) -> None:
        if api_key and api_key.strip():
            with self._lock:
                self._keys[run_id] = api_key.strip()

    def fork(self, run_id: str, script_id: int, *, name: str | None = None, owner: str | None = None) -> str:
        """A new run with the same task and config that starts from one script of an earlier run.

        `owner`: the signed-in user forking it; None keeps the parent's owner (a fork is the same person's work)."""
        run = self.store.get_run(run_id)
        script = self.store.get_script(script_id)
        if run is None or script is None or script["run_id"] != run_id:
            raise ValueError(f"run {run_id!r} has no script #{script_id}")
        config = RunConfig.from_dict(json.loads(run["config_json"]))
        config.start_code = script["code"]
        config.forked_from = f"run {run_id} script #{script_id}"
        task = task_from_dict(json.loads(run["task_json"]))
        # out_dir left unset: the fork writes into its own run folder, never over the parent's files
        new_id = create_run(self.store, task, config, name=name or f"{run['name']} (fork of #{script_id})",
                            owner=owner if owner is not None else run.get("owner"))
        self._remember_key(new_id, self._keys.get(run_id))
        self._launch(new_id)
        return new_id

    def resume(self, run_id: str, api_key: str | None = None) -> None:
        """Continue a run from its last completed step (after a stop, a crash, a restart or a
        brain outage that paused it)."""
        run = self.store.get_run(run_id)
        if run is None:
            raise ValueError(f"no run {run_id!r}")
        self._remember_key(run_id, api_key)
        if run["status"] == "finished" or self.is_alive(run_id):
            return
        other = self.driven_elsewhere(run_id)
        if other is not None:  # refuse before changing anything of a run another process drives
            raise RunOwnedElsewhere(f"run {run_id} is being driven by another {other}; it can be followed "
                                    "read-only here")
        self.store.update_run(run_id, control="run")
        self._launch(run_id)

    def resume_interrupted(self) -> list[str]:
        """Runs the store says are active but no thread of this process owns (the app restarted)."""
        resumed = []
        for run in self.store.list_runs():
            # A run the brain paused (pause_reason) waits for the user: its cause may need a key or a fix.
            if run["status"] in ACTIVE_STATUSES and run["control"] != "stop" and not run.get("pause_reason") \
                    and not self.is_alive(run["id"]):
                try:
                    self._launch(run["id"])
                except RunOwnedElsewhere:  # a CLI (or another app) drives it: follow, do not take it over
                    continue
                except Exception:  # _launch recorded why (paused for a key, or failed); go on with the rest
                    continue
                resumed.append(run["id"])
        return resumed

    def pause(self, run_id: str) -> None:
        self.store.set_control(run_id, "pause")

    def unpause(self, run_id: str, api_key: str | None = None) -> None:
        """Let a paused run go on; one whose thread ended (brain outage, restart) is relaunched."""
        self.store.set_control(run_id, "run")
        if not self.is_alive(run_id):
            self.resume(run_id, api_key)

    def stop(self, run_id: str) -> None:
        self.store.set_control(run_id, "stop")
        with self._lock:
            pipeline = self._pipelines.get(run_id)
        if pipeline is not None:
            pipeline.executor.cancel_all()  # scripts in flight die now, not at their timeout
        if not self.is_alive(run_id):
            run = self.store.get_run(run_id)
            if run is not None and run["status"] in ACTIVE_STATUSES:
                self.store.update_run(run_id, status="stopped")

    def reserved_usd(self, run_id: str) -> float | None:
        """USD the run's brain holds for calls in flight (its cost meter) when this process drives the run;
        None when it does not (another process, or a brain without a meter)."""
        with self._lock:
            pipeline = self._pipelines.get(run_id)
        meter = getattr(getattr(pipeline, "brain", None), "meter", None)
        return None if meter is None else float(meter.reserved)

    def is_alive(self, run_id: str) -> bool:
        with self._lock:
            thread = self._threads.get(run_id)
        return thread is not None and thread.is_alive()

    def join(self, run_id: str, timeout: float | None = None) -> None:
        with self._lock:
            thread = self._threads.get(run_id)
        if thread is not None:
            thread.join(timeout)

    def driven_elsewhere(self, run_id: str) -> str | None:
        """Who drives this run when it is another process (a CLI run, a second app): pages follow it
        read-only. None when nobody else does."""
        if self.is_alive(run_id):
            return None
        state = lease_state(self.store, run_id)
        return state.description if state.live else None

    def _launch(self, run_id: str) -> None:
        other = self.driven_elsewhere(run_id)
        if other is not None:  # checked here for a clear message; Pipeline.run takes the lease atomically
            raise RunOwnedElsewhere(f"run {run_id} is being driven by another {other}; it can be followed "
                                    "read-only here")
        with self._lock:
            if run_id in self._threads and self._threads[run_id].is_alive():
                return
            try:
                pipeline = Pipeline(self.store, run_id, api_key=self._keys.get(run_id))
            except BrainConfigError as exc:  # e.g. the key was typed into a UI before a restart: ask again
                reason = f"the brain cannot start: {exc}"
                self.store.pause_with_reason(run_id, reason)
                self.store.emit(run_id, "run_paused", {"reason": reason})
                raise
            except ExecutorError as exc:  # e.g. the Dask scheduler is down: nothing is lost, resume when it is up
                reason = f"scripts cannot run: {exc}"
                self.store.pause_with_reason(run_id, reason)
                self.store.emit(run_id, "run_paused", {"reason": reason})
                raise
            except Exception as exc:  # e.g. unreadable run data: say so once, never relaunch it
                self.store.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
                self.store.emit(run_id, "run_failed", {"error": f"{type(exc).__name__}: {exc}"})
                raise
            thread = threading.Thread(target=self._work, args=(run_id, pipeline), daemon=True,
                                      name=f"run-{run_id}")
            self._threads[run_id] = thread
            self._pipelines[run_id] = pipeline
        thread.start()

    def _work(self, run_id: str, pipeline: Pipeline) -> None:
        try:
            pipeline.run()
        except RunOwnedElsewhere:  # another process won the race for the lease: it drives, we follow
            pass
        except Exception:  # the pipeline already marked the run failed; keep the trace for the log
            self.store.emit(run_id, "log", {"message": traceback.format_exc(limit=5)})
        finally:
            with self._lock:
                self._pipelines.pop(run_id, None)
