"""The ensemble phase of the pipeline: rounds scored on stored predictions, the best written as a script.

A mixin of `Pipeline` (it uses the run's store, brain, scorer and step machinery): each round's plan
names a strategy that the engine scores in milliseconds on the solutions' stored out-of-fold
predictions (evaluation.ensemble); a free-form plan (an LLM's) is implemented and run like any
script. The best round, when it beats every single solution, is written out by the brain as a
real script that embeds its members.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from . import evaluation
from .metrics import is_better
from .model import EnsembleAttempt, SolutionSummary
from .steps import BudgetExhausted, Scored

if TYPE_CHECKING:
    from .pipeline import Pipeline

ENSEMBLE_MEMBERS = 4  # solutions an ensemble may combine (the final script runs each of them)


class EnsemblePhase:
    def _ensemble(self: Pipeline, solutions: list[Scored]) -> list[Scored]:
        """R rounds of ensemble strategies over the refined solutions; the best, if it beats every single
        solution, is written out as a real script (scored on the stored out-of-fold predictions)."""
        library = self._ensemble_library(solutions)
        done, first = self.store.step_result(self.run_id, "ens/r0")
        if done and first and first.get("members"):  # resumed: the rounds already scored keep their members
            by_id = {s.script_id: s for s in solutions}
            library = [by_id[m] for m in first["members"] if m in by_id] or library
        if len(library) < 2 or self.config.ensemble_rounds < 1:
            return []
        sols = [SolutionSummary(s.label or f"solution {i + 1}", self._code(s.script_id), s.score)
                for i, s in enumerate(library)]
        history: list[EnsembleAttempt] = []
        rounds: list[dict[str, Any]] = []
        try:
            for r in range(self.config.ensemble_rounds):
                res = self._step(f"ens/r{r}", "ensemble", partial(self._ensemble_round, r, library, sols,
                                                                  list(history)), cheap=True)
                history.append(EnsembleAttempt(res["plan"], res["score"]))
                rounds.append(res)
            scored = [r for r in rounds if r["score"] is not None]
            best = max(scored, key=lambda r: r["score"] if self.hib else -r["score"], default=None)
            if best is None or not is_better(best["score"], library[0].score, self.hib):
                return [Scored.from_dict(r) for r in scored if r.get("script_id")]
            if best.get("script_id"):  # a free-form round already wrote and ran its script
                return [Scored.from_dict(best)]
            return [Scored.from_dict(self._step("ens/script", "ensemble",
                                                partial(self._ensemble_script, best, library, sols), cheap=True))]
        except BudgetExhausted:
            return [Scored.from_dict(r) for r in rounds if r.get("script_id") and r["score"] is not None]

    def _ensemble_library(self: Pipeline, solutions: list[Scored]) -> list[Scored]:
        """The solutions whose out-of-fold predictions are stored, distinct, best first, as many as the
        final runs of an ensemble of them still fit in the time left (it runs each member in turn)."""
        seen: dict[int, Scored] = {}
        room = (self.time_left() - 5.0) / 1.3
        walls = 0.0
        for s in self._best_first(solutions):
            if len(seen) >= ENSEMBLE_MEMBERS:
                break
            if s.script_id in seen or self._stored_preds(s.script_id) is None:
                continue
            if seen and walls + s.wall_time > room:
                continue
            seen[s.script_id] = s
            walls += s.wall_time
        return list(seen.values())

    def _ensemble_round(self: Pipeline, r: int, library: list[Scored], sols: list[SolutionSummary],
                        history: list[EnsembleAttempt]) -> dict[str, Any]:
        plan = self.brain.plan_ensemble(self.ctx, sols, history)
        strategy = evaluation.strategy_in(plan)
        label = f"ensemble round {r + 1}"
        if strategy is not None and self.scorer is not None:
            # Scored by the engine on the stored out-of-fold predictions: no script runs for this round.
            preds = [self._stored_preds(s.script_id) for s in library]
            ids = [s.script_id for s in library]
            result = evaluation.ensemble(strategy, ids, [p for p in preds if p is not None], self.scorer)
            score = result.evaluation.score
            rid = self.store.add_ensemble_round(self.run_id, r, plan, None, score,
                                                nth=self._nth("ensemble_rounds", r), strategy=strategy,
                                                members=ids, weights=result.weights,
                                                fold_scores=result.evaluation.fold_scores)
            self.emit("ensemble_round", {"id": rid, "round": r, "plan": plan, "score": score, "script_id": None,
                                         "strategy": strategy, "weights": result.weights,
                                         "milliseconds": round(1000 * result.seconds, 1)})
            self._update_best([score])
            return {"script_id": 0, "score": score, "wall_time": sum(s.wall_time for s in library),
                    "label": label, "plan": plan, "strategy": strategy, "weights": result.weights,
                    "members": ids, "round_id": rid, "fold_scores": result.evaluation.fold_scores}
        if self.time_left() < self._reserve():  # a script to run needs the full reserve, unlike the above
            self._budget_hit("budget_exhausted", {"at_step": f"ens/r{r}", "time_left": self.time_left()})
            raise BudgetExhausted(f"ens/r{r}")
        try:  # a free-form plan: the brain writes the script and it runs like any other
            code = self.brain.implement_ensemble(self.ctx, sols, plan)
        except ValueError as exc:  # the brain had no usable script: this round fails, the run goes on
            rid = self.store.add_ensemble_round(self.run_id, r, plan, None, None,
                                                nth=self._nth("ensemble_rounds", r))
            self.emit("ensemble_round", {"id": rid, "round": r, "plan": plan, "score": None, "script_id": None,
                                         "error": str(exc)})
            return {"script_id": None, "score": None, "wall_time": 0.0, "label": label, "plan": plan}
        (res,) = self._run_scripts([(code, "ensemble", None, label)])
        rid = self.store.add_ensemble_round(self.run_id, r, plan, res.script_id, res.score,
                                            nth=self._nth("ensemble_rounds", r),
                                            fold_scores=res.fold_scores)
        self.emit("ensemble_round", {"id": rid, "round": r, "plan": plan, "score": res.score,
                                     "script_id": res.script_id})
        self._update_best([res.score])
        return {**res.to_dict(), "plan": plan}

    def _ensemble_script(self: Pipeline, best: dict[str, Any], library: list[Scored], sols: list[SolutionSummary]
                         ) -> dict[str, Any]:
        """Write the chosen ensemble as a runnable script. Every library member stays in it (even at weight 0),
        so the script refits the weights on the same predictions and reproduces the engine's score."""
        weights = best.get("weights")
        keep = list(range(len(library)))
        settings = f"strategy={best['strategy']!r}"
        if weights is not None:
            settings += f", weights={[round(w, 4) for w in weights]!r}"
        plan = f"{best['plan'].rstrip()}\nSet: {settings}"
        members = [sols[i] for i in keep]
        code = self.brain.implement_ensemble(self.ctx, members, plan)
        sid = self._add_script("ensemble", code, label=f"ensemble ({best['strategy']})")
        self.store.set_ensemble_script(best["round_id"], sid)
        self.emit("ensemble_written", {"script_id": sid, "strategy": best["strategy"], "score": best["score"],
                                       "members": [library[i].script_id for i in keep]})
        return {"script_id": sid, "score": best["score"], "label": f"ensemble ({best['strategy']})",
                "wall_time": sum(library[i].wall_time for i in keep), "fold_scores": best.get("fold_scores") or []}
