"""LLMBrain: every MLE-STAR role as prompt -> model -> parsed answer.

One brain serves Gemini, OpenAI-compatible servers and cassette replay; only the client
differs. Each call is retried with exponential backoff on transient failures, re-asked with
the parse error when its answer is unusable, priced, scrubbed of secrets and reported to the
pipeline (which stores it) before the answer is used. When a call cannot succeed the brain
raises BrainUnavailable and the pipeline pauses the run with that reason.
"""

from __future__ import annotations

import json
import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from ... import prompts
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
from ...script import block_names, get_block
from ..base import (
    Brain,
    BrainCallRecord,
    BrainContext,
    BrainUnavailable,
    CostCapReached,
    RoleFailed,
    call_index,
    count_call,
    current_step,
    note_fallback,
    take_fallback,
)
from . import answers
from .answers import AnswerError
from .budget import CostMeter, Reservation, actual_cost, worst_case
from .clients import ChatClient, ClientError, Completion, FatalError, Request, ToolRefused, TransientError
from .pricing import price_book
from .secrets import redact
from .settings import LLMSettings

T = TypeVar("T")

MAX_RETRY_WAIT = 300.0  # seconds: a longer delay asked by the service pauses the run instead (after the retries)

_REASK = """

## Your previous answer could not be used
{error}

Your previous answer began:
<previous_answer>
{previous}
</previous_answer>

Answer again, following the answer format above exactly."""

_STRING = {"type": "string"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "retrieve_models": {"type": "array", "items": {"type": "object", "properties": {
        "model_name": _STRING, "family": _STRING, "why": _STRING, "example_code": _STRING, "source": _STRING},
        "required": ["model_name", "why", "example_code"]}},
    "write_ablation": {"type": "array", "items": {"type": "object", "properties": {
        "block": _STRING, "description": _STRING, "code": _STRING}, "required": ["block", "description", "code"]}},
    "extract_block": {"type": "object", "properties": {"block": _STRING, "code_span": _STRING, "span_name": _STRING,
                                                       "plan": _STRING, "reason": _STRING},
                      "required": ["block", "plan"]},
}


class LLMBrain(Brain):
    reviews_every_script = True
    def __init__(self, client: ChatClient, settings: LLMSettings, *, name: str, default_model: str,
                 secrets: list[str] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.client = client
        self.settings = settings
        self.name = name
        self.default_model = default_model
        self.description = f"{name} ({settings.model or default_model})"
        self._secrets = [s for s in (secrets or []) if s]
        self._prices = price_book(name, settings)  # the run's rates: the table, the user's prices, local = free
        self.meter = CostMeter(None)  # the pipeline sets cost_cap and spent (the properties below)
        self._sleep = sleep
        self._lock = threading.Lock()

    def label(self) -> str:
        return f"{self.name} · {self.settings.model or self.default_model}"

    # The cap and what was spent live in the meter, which also holds the worst case of every call in flight.
    @property  # type: ignore[override]
    def cost_cap(self) -> float | None:
        return self.meter.cap

    @cost_cap.setter
    def cost_cap(self, value: float | None) -> None:
        self.meter.cap = value

    @property  # type: ignore[override]
    def spent(self) -> float:
        return self.meter.spent

    @spent.setter
    def spent(self, value: float) -> None:
        self.meter.spent = value

    def cost_cap_reached(self) -> bool:
        return self.meter.exhausted

    # ------------------------------------------------------------------------------ plumbing

    def _fields(self, ctx: BrainContext, **extra: Any) -> dict[str, Any]:
        # The run's folds (ctx.n_folds / n_repeats) and, when the context has them, the limits reach
        # the prompts' {protocol} section.
        return prompts.context_fields(ctx, **extra)

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else redact(text, self._secrets)

    def _check_cap(self) -> None:
        with self._lock:
            if self.cost_cap_reached():
                raise CostCapReached(f"cost cap ${self.cost_cap:.2f} reached (spent ${self.spent:.4f})")

    def _wait(self, seconds: float) -> None:
        left = seconds
        while left > 0:  # in slices, so a stop does not wait for a long backoff to end
            if self.interrupted is not None and self.interrupted():
                raise BrainUnavailable("stopped by the user while waiting to retry")
            self._sleep(min(0.5, left))
            left -= 0.5

    def _call(self, role: str, prompt: str, *, schema: Any = None, search: bool = False) -> Completion:
        """One answered call, retrying transient failures; every try is reported."""
        self._check_cap()
        model = self.settings.model_for(role, self.default_model)
        request = Request(role=role, prompt=prompt, model=model, schema=schema, search=search,
                          step=current_step(), index=call_index(role))
        stored = self.recall(request.step, role, request.index, self._clean(prompt) or "") \
            if self.recall is not None else None
        if stored is not None:  # a step redone after a crash: this call was answered (and paid for) before
            count_call(role)
            grounding = json.loads(stored.get("grounding_json") or "{}")
            return Completion(text=stored["answer"] or "", tokens_in=int(stored["tokens_in"] or 0),
                              tokens_out=int(stored["tokens_out"] or 0), model=stored["model"] or model,
                              sources=json.loads(stored["sources_json"] or "[]"), prompt=prompt,
                              index=request.index, search_queries=list(grounding.get("queries") or []),
                              supports=list(grounding.get("supports") or []),
                              search_entry_point=str(grounding.get("entry_point") or ""),
                              tool_refused=str(grounding.get("tool_refused") or ""))
        tries = max(0, self.settings.max_retries) + 1
        delay = max(0.0, self.settings.backoff)
        refused = ""
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            held = self.meter.reserve(worst_case(model, request.prompt, self.settings.max_output_tokens,
                                                 request.search, self._prices), f"{role} on {model}")
            try:
                completion = self.client.complete(request)
            except ToolRefused as e:
                self.meter.release(held)
                error = self._clean(str(e)) or ""
                self.record(role, self._clean(prompt) or "", None, started, model=model, error=error,
                            call_index=request.index, outcome="failed")
                if not request.search:
                    raise BrainUnavailable(f"{self.name} refused the {role} call: {error}") from None
                # The model will not search: the same question without the tool, said wherever it shows.
                refused = f"the model refused the search tool ({error}); answered without web search"
                request = replace(request, search=False)
                attempt -= 1  # the refusal is not a failed try
                continue
            except ClientError as e:
                self.meter.release(held)
                error = self._clean(str(e)) or ""
                self.record(role, self._clean(prompt) or "", None, started, model=model, error=error,
                            call_index=request.index, outcome="failed")
                if isinstance(e, FatalError):
                    raise BrainUnavailable(f"{self.name} refused the {role} call: {error}") from None
                if attempt == tries:
                    raise BrainUnavailable(f"{self.name} failed {tries} times in a row on {role} "
                                           f"(last: {error}); resume the run when the service is back") from None
                wait = delay * (1 + random.random() * 0.25)
                if isinstance(e, TransientError) and e.retry_after:
                    wait = max(wait, e.retry_after)  # the service said how long: never sooner
                self._wait(min(MAX_RETRY_WAIT, wait))
                delay = delay * 2 if delay else 0.0
                continue
            except Exception as e:
                self.meter.release(held)
                # Our own bug (or the SDK's types rejecting what we built): retrying will not cure it and the
                # service is not to blame. Recorded with its traceback; the step fails.
                trace = self._clean("".join(traceback.format_exception(e))) or ""
                self.record(role, self._clean(prompt) or "", None, started, model=model,
                            error=f"local error (not the service): {trace[-4000:]}", call_index=request.index,
                            outcome="failed")
                raise
            count_call(role)
            completion.text = self._clean(completion.text) or ""
            completion.tool_refused = refused
            return self._priced(completion, model, started, prompt, request.index, held)

    def _priced(self, c: Completion, model: str, started: float, prompt: str, index: int,
                held: Reservation) -> Completion:
        c.model = c.model or model
        # The model version the server reports, else the one asked for; a replay's book prices everything at 0.
        # tokens_in includes the tool-use prompt tokens, tokens_out the thinking tokens.
        c.cost = actual_cost(c.model, c.tokens_in, c.tokens_out, len(c.search_queries),
                             bool(c.search_queries or c.sources), self._prices, fallback_model=model)
        self.meter.settle(held, c.cost)
        c.latency, c.prompt, c.index = time.monotonic() - started, prompt, index
        return c

    def _report(self, role: str, c: Completion, error: str | None = None) -> None:
        if self.on_call is not None:
            grounding = _grounding(c)
            self.on_call(BrainCallRecord(
                role=role, prompt=self._clean(c.prompt) or "", answer=c.text, tokens_in=c.tokens_in,
                tokens_out=c.tokens_out, latency=c.latency, cost=c.cost, error=error, model=c.model,
                step_key=current_step(), call_index=c.index, sources=c.sources,
                outcome="unusable" if error else "ok", grounding=grounding,
                thoughts_tokens=c.thoughts_tokens, tool_tokens=c.tool_tokens,
                search_queries=len(c.search_queries)))

    def _ask(self, role: str, prompt: str, parse: Callable[[Completion], T], *, schema: Any = None,
             search: bool = False, fallback: Callable[[AnswerError], T] | None = None,
             fallback_note: str = "") -> T:
        """Ask until the answer parses (re-asking with the error), then return the parsed value.

        When every answer was unusable, `fallback` (the role's honest degradation, recorded as a
        note) gives the value; without one the brain gives up and the run pauses."""
        take_fallback()  # a note left by an earlier role call is not this one's
        asked = prompt
        last: AnswerError | None = None
        for _ in range(max(0, self.settings.format_retries) + 1):
            c = self._call(role, asked, schema=schema, search=search)
            try:
                if not c.text.strip():
                    why = f" (finish reason: {c.finish_reason})" if c.finish_reason else ""
                    raise AnswerError(f"the answer was empty{why}")
                value = parse(c)
            except AnswerError as e:
                self._report(role, c, error=f"answer not usable: {e}")
                last = e
                asked = prompt + _REASK.format(error=e, previous=c.text[:3000])
                continue
            self._report(role, c)
            return value
        tries = self.settings.format_retries + 1
        assert last is not None
        if fallback is None:
            raise BrainUnavailable(f"{self.name} gave {tries} unusable answers to {role}; last problem: {last}")
        # A failure, recorded as one: no model answer is used from here on. Its index (-1) is never a
        # model call's, so a cassette never mistakes it for an answer.
        reason = f"{tries} answers to {role} could not be used (last problem: {last})"
        self.record(role, f"(no model call: {reason})", f"Fallback: {fallback_note}", time.monotonic(),
                    model="fallback", error=f"fallback: {reason}; instead: {fallback_note}", call_index=-1,
                    outcome="fallback")
        note_fallback(f"{reason}; instead: {fallback_note}")
        return fallback(last)

    # ---------------------------------------------------------------- 1. retrieval and initial solutions

    def retrieve_models(self, ctx: BrainContext, m: int) -> list[ModelCard]:
        if not (self.client.supports_search and self.settings.search):
            return self._retrieve_from_knowledge_base(ctx, m)
        prompt = prompts.render("retrieve_models", **self._fields(ctx, m=m))

        def parse(c: Completion) -> list[ModelCard]:
            source = "Google Search" if c.sources else "model knowledge"
            if c.tool_refused:
                source = f"model knowledge, no web search ({c.tool_refused})"
            cards = answers.parse_model_cards(c.text, m, default_source=source)
            # Each card keeps the sources whose grounding supports fall inside its part of the answer.
            for card, sources in zip(cards, answers.card_sources(c.text, cards, c.sources, c.supports), strict=True):
                card.sources = sources
            if c.tool_refused:  # a source the model typed from memory is not a search result: say so
                for card in cards:
                    cited = f"; the model cited {card.source} from memory" if card.source != source else ""
                    card.source = source + cited
                note_fallback(c.tool_refused)
            return cards

        return self._ask("retrieve_models", prompt, parse, search=True,
                         fallback=lambda e: self._knowledge_cards(ctx, m, "the model's answers could not be read"),
                         fallback_note="the bundled model knowledge base's cards")

    def _knowledge_cards(self, ctx: BrainContext, m: int, why: str) -> list[ModelCard]:
        from ..offline import OfflineBrain

        cards = OfflineBrain().retrieve_models(ctx, m)
        for card in cards:
            card.source = f"bundled knowledge base ({why})"
        return cards

    def _retrieve_from_knowledge_base(self, ctx: BrainContext, m: int) -> list[ModelCard]:
        started = time.monotonic()
        why = ("this brain has no web-search tool" if not self.client.supports_search
               else "web search is turned off in the brain settings")
        cards = self._knowledge_cards(ctx, m, why)
        self.record("retrieve_models", f"(no model call: {why}; retrieval falls back to the bundled model "
                    f"knowledge base, top {m} for task {ctx.task.name})",
                    "\n".join(f"{c.name}: {c.why}" for c in cards), started, model="knowledge base",
                    error=None)
        return cards

    def write_initial_solution(self, ctx: BrainContext, card: ModelCard) -> str:
        # The template puts the example in a python fence: the reason goes in as comment lines.
        example = card.example_code.strip().strip("`").removeprefix("python\n").strip() or "# (no example given)"
        if card.why:
            example = "\n".join(f"# {line}" for line in f"Why it suits the task: {card.why}".splitlines()) + \
                "\n" + example
        prompt = prompts.render("write_initial_solution", **self._fields(ctx, model_name=card.name,
                                                                          model_example=example))
        return self._ask("write_initial_solution", prompt, lambda c: answers.parse_script(c.text),
                         fallback=lambda e: self._offline_initial(ctx, card),
                         fallback_note=f"the offline expert wrote the candidate for {card.name}")

    def _offline_initial(self, ctx: BrainContext, card: ModelCard) -> str:
        from ..offline import OfflineBrain

        return OfflineBrain().write_initial_solution(ctx, card)

    def merge(self, ctx: BrainContext, base_code: str, reference_code: str) -> str:
        prompt = prompts.render("merge", **self._fields(ctx, base_code=base_code, reference_code=reference_code))
        return self._ask("merge", prompt, lambda c: answers.parse_script(c.text), fallback=_role_failed,
                         fallback_note="no merge: the base solution goes on unchanged")

    # -------------------------------------------------------------------------- 2. checks and repair

    def check_data_usage(self, ctx: BrainContext, code: str) -> CheckResult:
        prompt = prompts.render("check_data_usage", **self._fields(ctx, code=code))
        return self._ask("check_data_usage", prompt, lambda c: answers.parse_check(c.text, code, "data_usage"),
                         fallback=lambda e: _unchecked(code, "data-usage", e), fallback_note="the script kept as is")

    def check_leakage(self, ctx: BrainContext, code: str) -> CheckResult:
        prompt = prompts.render("check_leakage", **self._fields(ctx, code=code))
        return self._ask("check_leakage", prompt, lambda c: answers.parse_check(c.text, code, "leakage"),
                         fallback=lambda e: _unchecked(code, "leakage", e), fallback_note="the script kept as is")

    def debug(self, ctx: BrainContext, code: str, error: str, failure: str = "error") -> str:
        prompt = prompts.render("debug", **self._fields(ctx, code=code, error=error[-6000:],
                                                          failure_advice=prompts.debug_advice(failure)))
        return self._ask("debug", prompt, lambda c: answers.parse_script(c.text), fallback=_role_failed,
                         fallback_note="no repair: the script stays failed")

    # ----------------------------------------------------------------------- 3. targeted refinement

    def write_ablation(self, ctx: BrainContext, code: str, previous: list[str] | None = None
                       ) -> list[AblationVariant]:
        earlier = "\n\n".join(f"Study {i + 1}:\n{summary.strip()}" for i, summary in enumerate(previous or []))
        prompt = prompts.render("write_ablation", **self._fields(
            ctx, code=code, previous_ablations=earlier or "(none: this is the first study)"))
        return self._ask("write_ablation", prompt, lambda c: answers.parse_ablation(c.text, code),
                         schema=SCHEMAS["write_ablation"], fallback=lambda e: [],
                         fallback_note="no ablation variants in this step; the block is chosen without them")

    def summarize_ablation(self, ctx: BrainContext, results: list[AblationResult]) -> str:
        prompt = prompts.render("summarize_ablation", **self._fields(
            ctx, ablation_results=prompts.format_ablation_results(results)))
        return self._ask("summarize_ablation", prompt, lambda c: answers.parse_text(c.text, "summary"),
                         fallback=lambda e: "Ablation results:\n" + prompts.format_ablation_results(results),
                         fallback_note="the ablation results as a list")

    def extract_block(self, ctx: BrainContext, code: str, results: list[AblationResult], summary: str,
                      refined_blocks: list[str]) -> BlockChoice:
        prompt = prompts.render("extract_block", **self._fields(
            ctx, code=code, ablation_results=prompts.format_ablation_results(results),
            ablation_summary=summary, refined_blocks=prompts.format_blocks(refined_blocks)))
        return self._ask("extract_block", prompt, lambda c: answers.parse_block_choice(c.text, code),
                         schema=SCHEMAS["extract_block"], fallback=lambda e: _fallback_choice(code, results,
                                                                                             refined_blocks),
                         fallback_note="the block the ablation found most impactful, with a generic plan")

    def plan_refinement(self, ctx: BrainContext, code: str, block: str, history: list[AttemptSummary]) -> str:
        prompt = prompts.render("plan_refinement", **self._fields(
            ctx, code=code, block=block, block_code=get_block(code, block),
            history=prompts.format_attempts(history)))
        return self._ask("plan_refinement", prompt, lambda c: answers.parse_text(c.text, "plan"),
                         fallback=lambda e: _generic_plan(block), fallback_note="a generic plan")

    def implement_refinement(self, ctx: BrainContext, code: str, block: str, plan: str) -> str:
        prompt = prompts.render("implement_refinement", **self._fields(
            ctx, code=code, block=block, block_code=get_block(code, block), plan=plan))
        def give_up(e: AnswerError) -> str:
            raise AnswerError(f"no usable code for the `{block}` block: {e}")  # the attempt fails, the loop goes on

        original = get_block(code, block)
        return self._ask("implement_refinement", prompt,
                         lambda c: answers.parse_block_body(c.text, block, original),
                         fallback=give_up, fallback_note="none: this attempt fails")

    # --------------------------------------------------------------------------------- 4. ensemble

    def plan_ensemble(self, ctx: BrainContext, solutions: list[SolutionSummary],
                      history: list[EnsembleAttempt]) -> str:
        prompt = prompts.render("plan_ensemble", **self._fields(
            ctx, solutions=prompts.format_solutions(solutions), history=prompts.format_ensemble_history(history)))
        return self._ask("plan_ensemble", prompt, lambda c: answers.parse_text(c.text, "plan"),
                         fallback=lambda e: "Average the solutions' predicted probabilities (or values) with equal "
                                            "weights.", fallback_note="equal-weight averaging")

    def implement_ensemble(self, ctx: BrainContext, solutions: list[SolutionSummary], plan: str) -> str:
        prompt = prompts.render("implement_ensemble", **self._fields(
            ctx, solutions=prompts.format_solutions(solutions), plan=plan))
        def give_up(e: AnswerError) -> str:
            raise AnswerError(f"no usable ensemble script: {e}")  # the round fails, the run goes on

        return self._ask("implement_ensemble", prompt, lambda c: answers.parse_script(c.text),
                         fallback=give_up, fallback_note="none: this ensemble round fails")



def _grounding(c: Completion) -> dict[str, Any]:
    """What brain_calls.grounding_json keeps of a searched call; {} when the call did not search. Its
    presence tells the pages that the sources were matched to cards (runs before that kept none)."""
    out: dict[str, Any] = {}
    if c.sources or c.search_queries or c.supports or c.search_entry_point:
        out = {"queries": list(c.search_queries), "supports": list(c.supports), "entry_point": c.search_entry_point}
    if c.tool_refused:
        out["tool_refused"] = c.tool_refused
    return out


def _role_failed(error: AnswerError) -> Any:
    raise RoleFailed(str(error))


def _unchecked(code: str, check: str, error: AnswerError) -> CheckResult:
    return CheckResult(code=code, changed=False, checked=False,
                       findings=[f"The {check} checker's answers could not be read ({error}); the script is kept "
                                 "as it is, unchecked."])


def _generic_plan(block: str) -> str:
    return (f"Improve the `{block}` block: replace its main choice with a stronger, well-tuned alternative "
            "suited to this data, fitted on the training part only.")


def _fallback_choice(code: str, results: list[AblationResult], refined: list[str]) -> BlockChoice:
    """The unrefined block whose ablation hurt most, else the first unrefined block (model first)."""
    names = block_names(code)
    ranked = sorted((r for r in results if r.block in names and r.delta is not None), key=lambda r: -(r.delta or 0))
    fresh = [r.block for r in ranked if r.block not in refined]
    order = fresh or [n for n in (["model"] if "model" in names else []) + names if n not in refined] or names
    block = order[0]
    return BlockChoice(block=block, plan=_generic_plan(block),
                       reason="chosen by the ablation deltas: the model's answer could not be read")
