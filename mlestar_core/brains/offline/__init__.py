"""The offline brain: a deterministic, non-LLM ML expert serving every MLE-STAR role.

Scripts are rendered from four config literals (preprocess, features, model, train) plus
fixed, task-independent block code (blocks.py), so every role works on choices, not text:
ablation renders a simpler config, refinement applies a plan's `Set:` line to one config,
a merge extends the model list, the ensemble embeds whole solutions. Modules:

  knowledge.py  model cards + relevance ranking        templates.py  header/blocks/baseline
  defaults.py   starting configs, simpler alternatives  plans.py      the `Set:` plan language
  refine.py     refinement catalogue + planner          ablation.py   variants/summary/choice
  checks.py     data-usage and leakage checks           debugger.py   pattern-based repair
  ensemble.py   ensemble plans and scripts              constraints.py user constraints
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from ...model import (
    AblationResult,
    AblationVariant,
    AttemptSummary,
    BlockChoice,
    CheckResult,
    EnsembleAttempt,
    ModelCard,
    SolutionSummary,
)
from ...script import ScriptError, get_block, replace_block
from ..base import Brain, BrainContext
from . import ablation, checks, debugger, ensemble, refine
from .blocks import CONFIG_NAMES
from .constraints import INTERPRETABLE_FAMILIES, forbidden_columns, wants_interpretable
from .defaults import initial_configs, model_spec
from .knowledge import diverse_ranking, family_of, to_model_card
from .plans import apply_settings, parse_set_line
from .templates import baseline_script, read_config, render_block, render_script

__all__ = ["OfflineBrain", "baseline_script"]


# CPython 3.11's ast constructors are not safe when two threads build trees at once ("SystemError:
# AST constructor recursion depth mismatch"); solution tracks run in threads and share this brain.
# Its calls take milliseconds next to the scripts they write, so one process-wide lock costs nothing.
_AST_LOCK = threading.RLock()


def _serialized(cls: type) -> type:
    for name, fn in list(vars(cls).items()):
        if callable(fn) and not name.startswith("_"):
            setattr(cls, name, _locked(fn))
    return cls


def _locked(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _AST_LOCK:
            return fn(*args, **kwargs)

    return wrapper


@_serialized
class OfflineBrain(Brain):
    name = "offline"
    description = (
        "Deterministic ML expert without an LLM: knowledge-base model cards, config-driven "
        "block scripts, ablation-guided refinement catalogue, honest ensembles."
    )

    # ------------------------------------------------------------ 1. retrieval and initial solutions

    def retrieve_models(self, ctx: BrainContext, m: int) -> list[ModelCard]:
        started = time.monotonic()
        ranked = diverse_ranking(ctx.task, interpretable_only=wants_interpretable(ctx))
        cards = [to_model_card(card, score) for card, score in ranked[: max(0, m)]]
        self.record(
            "retrieve_models",
            f"task {ctx.task.name} ({ctx.task.task_type}, {ctx.task.n_train_rows} rows, "
            f"{len(ctx.task.columns)} columns); top {m} of the knowledge base, spread over kinds of model",
            "\n".join(f"{c.name}: {c.why}" for c in cards),
            started,
        )
        return cards

    def write_initial_solution(self, ctx: BrainContext, card: ModelCard) -> str:
        started = time.monotonic()
        family = family_of(card)
        code = render_script(ctx, initial_configs(ctx, family))
        self.record("write_initial_solution", f"model card {card.name!r} (family {family})", code, started)
        return code

    def merge(self, ctx: BrainContext, base_code: str, reference_code: str) -> str:
        started = time.monotonic()
        base_models = read_config(base_code, "model")
        ref_models = read_config(reference_code, "model")
        merged = base_code
        note = "the reference has no readable model list: kept the base unchanged"
        if isinstance(base_models, list) and isinstance(ref_models, list):
            present = {m["name"] for m in base_models}
            added = [dict(m, weight=1.0) for m in ref_models if m["name"] not in present]
            if added:
                merged = _replace(base_code, "model", base_models + added)
                names = ", ".join(m["name"] for m in added)
                note = f"added {names} to the base's models (equal-weight averaging)"
            else:
                note = "the reference's models are already in the base: kept the base unchanged"
        self.record(
            "merge",
            f"base models {_names(base_models)}; reference models {_names(ref_models)}",
            f"{note}\n\n{merged}",
            started,
        )
        return merged

    # ------------------------------------------------------------ 2. checks and repair

    def check_data_usage(self, ctx: BrainContext, code: str) -> CheckResult:
        started = time.monotonic()
        result = checks.check_data_usage(ctx, code)
        self.record(
            "check_data_usage",
            f"script of {len(code)} chars; task columns "
            f"{[c.name for c in ctx.task.columns]}; constraints {ctx.constraints}",
            _check_answer(result),
            started,
        )
        return result

    def check_leakage(self, ctx: BrainContext, code: str) -> CheckResult:
        started = time.monotonic()
        result = checks.check_leakage(ctx, code)
        self.record("check_leakage", f"script of {len(code)} chars", _check_answer(result), started)
        return result

    def debug(self, ctx: BrainContext, code: str, error: str, failure: str = "error") -> str:
        started = time.monotonic()
        fixed, what = debugger.repair(ctx, code, error)
        self.record("debug", f"error:\n{error[-3000:]}", f"{what}\n\n{fixed}", started)
        return fixed

    # ------------------------------------------------------------ 3. targeted refinement

    def write_ablation(self, ctx: BrainContext, code: str, previous: list[str] | None = None
                       ) -> list[AblationVariant]:
        started = time.monotonic()
        variants = ablation.write_ablation(ctx, code)
        self.record(
            "write_ablation",
            f"script of {len(code)} chars",
            "\n".join(f"{v.block}: {v.description}" for v in variants) or "no variant",
            started,
        )
        return variants

    def summarize_ablation(self, ctx: BrainContext, results: list[AblationResult]) -> str:
        started = time.monotonic()
        summary = ablation.summarize(ctx, results)
        self.record(
            "summarize_ablation",
            "\n".join(f"{r.block}: score {r.score}, baseline {r.baseline}, delta {r.delta}" for r in results),
            summary,
            started,
        )
        return summary

    def extract_block(
        self,
        ctx: BrainContext,
        code: str,
        results: list[AblationResult],
        summary: str,
        refined_blocks: list[str],
    ) -> BlockChoice:
        started = time.monotonic()
        choice = ablation.choose_block(ctx, code, results, refined_blocks)
        self.record(
            "extract_block",
            f"{summary}\nalready refined: {refined_blocks}",
            f"block {choice.block} ({choice.reason})\n{choice.plan}",
            started,
        )
        return choice

    def plan_refinement(self, ctx: BrainContext, code: str, block: str, history: list[AttemptSummary]) -> str:
        started = time.monotonic()
        plan = refine.plan_next(ctx, code, block, history)
        self.record(
            "plan_refinement",
            f"block {block}; earlier attempts:\n"
            + "\n".join(
                f"- score {h.score} vs baseline {h.baseline} ok={h.ok}: "
                f"{h.plan.splitlines()[-1] if h.plan else ''}"
                for h in history
            ),
            plan,
            started,
        )
        return plan

    def implement_refinement(self, ctx: BrainContext, code: str, block: str, plan: str) -> str:
        started = time.monotonic()
        try:
            body = self._implement(ctx, code, block, plan)
        except ValueError as exc:  # recorded too, so a rejected human edit is visible in the call log
            self.record("implement_refinement", f"block {block}; plan:\n{plan}", "", started, error=str(exc))
            raise
        self.record("implement_refinement", f"block {block}; plan:\n{plan}", body, started)
        return body

    def _implement(self, ctx: BrainContext, code: str, block: str, plan: str) -> str:
        if block not in CONFIG_NAMES:
            refinable = ", ".join(CONFIG_NAMES)
            raise ValueError(f"block {block!r} cannot be refined; refinable blocks: {refinable}")
        settings = parse_set_line(plan)  # ValueError on an unparseable plan, with what to write instead
        config = read_config(code, block)
        if config is None:
            try:
                get_block(code, block)
            except ScriptError as exc:
                raise ValueError(str(exc)) from exc
            config = initial_configs(ctx, "hist_gb")[block]  # a foreign block: start from our defaults
        new_config = apply_settings(
            block,
            config,
            settings,
            known_columns={c.name for c in ctx.task.columns},
            banned_columns=forbidden_columns(ctx),
            new_spec=lambda family: model_spec(ctx, family),
        )
        if block == "model" and wants_interpretable(ctx):
            added = {m["name"] for m in new_config} - {m["name"] for m in config}
            blocked = sorted(a for a in added if a not in INTERPRETABLE_FAMILIES)
            if blocked:
                raise ValueError(f"the constraint wants an interpretable model; adding {blocked} breaks that")
        return render_block(block, new_config)

    # ------------------------------------------------------------ 4. ensemble

    def plan_ensemble(
        self, ctx: BrainContext, solutions: list[SolutionSummary], history: list[EnsembleAttempt]
    ) -> str:
        started = time.monotonic()
        text = ensemble.plan(ctx, solutions, history)
        self.record(
            "plan_ensemble",
            "solutions: "
            + ", ".join(f"{s.label}={s.score}" for s in solutions)
            + "\ntried: "
            + "; ".join(f"{h.plan.splitlines()[-1]} -> {h.score}" for h in history),
            text,
            started,
        )
        return text

    def implement_ensemble(self, ctx: BrainContext, solutions: list[SolutionSummary], plan: str) -> str:
        started = time.monotonic()
        try:
            code = ensemble.render(ctx, solutions, ensemble.read_plan(plan, len(solutions)))
        except ValueError as exc:
            self.record("implement_ensemble", f"{len(solutions)} solutions; plan:\n{plan}", "", started,
                        error=str(exc))
            raise
        self.record("implement_ensemble", f"{len(solutions)} solutions; plan:\n{plan}", code, started)
        return code


def _replace(code: str, block: str, config: object) -> str:
    return replace_block(code, block, render_block(block, config))  # type: ignore[arg-type]


def _names(models: object) -> list[str]:
    return [m["name"] for m in models] if isinstance(models, list) else []


def _check_answer(result: CheckResult) -> str:
    head = "changed the script" if result.changed else "no change"
    return head + ("\n- " + "\n- ".join(result.findings) if result.findings else "\n(no findings)")
