"""The engine's side of every script execution: the run's folds, scores measured from predictions.

A mixin of `Pipeline`. Before the first search script the engine writes the folds (sized by a
measured probe fit); after each search script it reads the script's oof.csv, computes the score
with the shared metric, keeps the printed score as a claim (a disagreement is an event), stores
the predictions for the ensembles, and, while an attempt runs, says when it can no longer catch up.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import evaluation
from .executor import ExecResult, Job
from .rundata import RunData
from .steps import Scored

if TYPE_CHECKING:
    from .pipeline import Pipeline


class EngineScoring:
    def _engine_score(self: Pipeline, script_id: int, job: Job, res: ExecResult) -> ExecResult:
        """The engine's score from the script's oof.csv replaces the one it printed (kept as its claim)."""
        claimed = res.score
        if res.exit_code != 0 or self.scorer is None:
            return dataclasses.replace(res, claimed_score=claimed, score=None if self.scorer else res.score,
                                       score_note=res.early_stop)
        ev, pred = self.scorer.evaluate_workdir(job.workdir)
        if ev.error is not None:
            return dataclasses.replace(res, claimed_score=claimed, score=None, protocol_error=ev.error,
                                       fold_scores=ev.fold_scores, score_note=ev.error)
        note = None
        if evaluation.claim_disagrees(claimed, ev.score):
            note = (f"the script printed {claimed!r}; the engine measured {ev.score!r} from its "
                    f"{evaluation.OOF_FILE} and uses that")
            self.emit("score_disagreement", {"script_id": script_id, "claimed": claimed, "measured": ev.score})
        preds = self.run_dir / "preds"
        preds.mkdir(exist_ok=True)
        np.save(preds / f"{script_id}.npy", pred)
        return dataclasses.replace(res, claimed_score=claimed, score=ev.score, fold_scores=ev.fold_scores,
                                   score_note=note)

    def _stored_preds(self: Pipeline, script_id: int) -> np.ndarray | None:
        path = self.run_dir / "preds" / f"{script_id}.npy"
        return np.load(path) if path.is_file() else None

    def _protocol(self: Pipeline, data: RunData) -> evaluation.RunProtocol:
        """The run's folds, written once before any search script runs (resume reads them back)."""
        data_dir = data.search_dir.parent
        existing = evaluation.load_protocol(data_dir)
        if existing is not None:
            return existing
        search_task = data.task_for(self.task, "search")
        probe = None
        if self.config.time_budget is not None:
            job = self._job(0, evaluation.probe_script(search_task), "probe", data.search_dir, timeout=60.0)
            shutil.rmtree(job.workdir, ignore_errors=True)
            res = self._run_many([job])[0]
            probe = evaluation.probe_seconds(res.stdout)
        k, repeats, reason = evaluation.choose_folds(
            search_task.n_train_rows or data.n_search, probe, self.config.time_budget, self.config.workers)
        if self.config.n_folds is not None:
            k, repeats, reason = self.config.n_folds, self.config.n_fold_repeats, "set for this run"
        n_rows = search_task.n_train_rows or data.n_search
        k, repeats = max(1, min(int(k), 20, max(1, n_rows // 2))), max(1, min(int(repeats), 10))
        protocol = evaluation.Protocol(self.task.task_type, self.task.metric, self.hib, k, repeats, [], 0,
                                       self.config.seed, self.config.valid_fraction, probe, reason)
        extra = [d for d in [data.holdout_dir] if d is not None]
        return evaluation.write_protocol(search_task, data_dir, data.search_dir, extra, protocol, data.full_dir)

    def _set_protocol(self: Pipeline, rp: evaluation.RunProtocol) -> None:
        self.protocol = rp
        self.scorer = evaluation.Scorer(rp)
        self.ctx.n_folds, self.ctx.n_repeats = rp.protocol.n_folds, rp.protocol.n_repeats
        run = self.store.get_run(self.run_id) or {}
        if not run.get("protocol_json"):
            self.store.update_run(self.run_id, protocol_json=json.dumps(rp.protocol.to_dict()))
            self.emit("protocol", {"description": rp.protocol.describe(), "reason": rp.protocol.reason,
                                   "n_folds": rp.protocol.n_folds, "n_repeats": rp.protocol.n_repeats})

    def _hopeless_check(self: Pipeline, baseline: Scored) -> Callable[[str], str | None] | None:
        """Stops an attempt early once its printed fold scores show it cannot beat its baseline."""
        if self.protocol is None or len(baseline.fold_scores) < 2:
            return None
        keys, folds, hib = self.protocol.unit_keys(), list(baseline.fold_scores), self.hib
        if len(keys) != len(folds):
            return None
        return lambda stdout: evaluation.hopeless(stdout, folds, keys, hib)
