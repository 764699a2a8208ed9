"""The brain interface: one method per MLE-STAR agent role.

A brain never runs code and never touches the store: the pipeline runs what it writes and
records what it answers. Every role call is reported through `on_call` (set by the
pipeline) so each one is persisted with its prompt, answer, tokens and latency.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..model import (
    AblationResult,
    AblationVariant,
    AttemptSummary,
    BlockChoice,
    CheckResult,
    EnsembleAttempt,
    ModelCard,
    SolutionSummary,
    Task,
)


@dataclass
class BrainContext:
    """What every role may read about the run."""

    task: Task
    seed: int = 42
    valid_fraction: float = 0.2
    n_folds: int = 5  # the run's evaluation protocol (evaluation.Protocol): K folds ...
    n_repeats: int = 1  # ... repeated this many times; K == 1 is one hold-out split of valid_fraction
    script_timeout: float | None = None  # the limits a script runs under (prompts state them)
    memory_mb: int | None = None
    threads: int | None = None  # cores per script
    python: str | None = None  # the scripts' interpreter (its installed packages are what scripts may use)
    constraints: list[str] = field(default_factory=list)  # pinned by the user, planners obey


@dataclass
class BrainCallRecord:
    role: str
    prompt: str
    answer: str | None  # None: the call got no answer (transport failure)
    tokens_in: int = 0
    tokens_out: int = 0
    latency: float = 0.0
    cost: float = 0.0
    error: str | None = None
    model: str = ""
    step_key: str = ""  # the pipeline step that asked (set by step_scope)
    call_index: int = 0  # this call's number for its role within the step (replay matches on it)
    sources: list[dict[str, str]] = field(default_factory=list)  # web sources grounding the answer
    # "ok" (answer used), "unusable" (answered, but could not be read: re-asked), "failed" (no answer:
    # transport or service error), "fallback" (no model answer was used: the role's degraded substitute)
    outcome: str = ""
    # Grounding with search: {"queries": [...], "supports": [...], "entry_point": "<html>"} (Gemini)
    grounding: dict[str, Any] = field(default_factory=dict)
    thoughts_tokens: int = 0  # included in tokens_out
    tool_tokens: int = 0  # included in tokens_in
    search_queries: int = 0  # web searches billed with this call


class BrainUnavailable(Exception):
    """The brain cannot go on (service down, key rejected, answers unusable): the run pauses
    with this message and can be resumed; nothing already done is lost."""


class RoleFailed(Exception):
    """The role produced nothing usable and has no honest substitute (a merge, a debugger's fix): the
    caller skips what it needed it for and says so. The failed calls are recorded with their reasons."""


class CostCapReached(Exception):
    """The run's cost cap is spent: no more brain calls; the run wraps up with what it has."""


# Which pipeline step the current thread is in, and how many calls each role made in it.
_scope = threading.local()


@contextmanager
def step_scope(key: str) -> Iterator[None]:
    """Mark brain calls made by this thread as belonging to step `key` (the pipeline wraps each step)."""
    prev = (getattr(_scope, "key", ""), getattr(_scope, "counts", {}))
    _scope.key, _scope.counts = key, {}
    try:
        yield
    finally:
        _scope.key, _scope.counts = prev


def note_fallback(note: str) -> None:
    """Record, for this thread, that the role just called answered with its degraded substitute."""
    _scope.fallback = note


def take_fallback() -> str | None:
    """The degradation note of the last role call in this thread (then cleared); None when it was answered."""
    note = getattr(_scope, "fallback", None)
    _scope.fallback = None
    return note


def current_step() -> str:
    return getattr(_scope, "key", "")


def call_index(role: str) -> int:
    """The number the next answered call of `role` gets in the current step."""
    return getattr(_scope, "counts", {}).get(role, 0)


def count_call(role: str) -> None:
    counts = getattr(_scope, "counts", None)
    if counts is None:
        counts = _scope.counts = {}
    counts[role] = counts.get(role, 0) + 1


class Brain(ABC):
    name: str = "abstract"
    description: str = ""
    # True: the leakage checker reviews every script before it is scored (code an LLM wrote or rewrote);
    # False: once per track (the offline expert's templates fit inside the folds by construction).
    reviews_every_script: bool = False

    def __init__(self) -> None:
        self.on_call: Callable[[BrainCallRecord], None] | None = None
        # Set by the pipeline: (step, role, index, prompt) -> the stored answer of a call a redone step asks
        # again (a dict with the brain_calls row's columns), so an answered call is never paid for twice.
        self.recall: Callable[[str, str, int, str], dict[str, Any] | None] | None = None

    def record(self, role: str, prompt: str, answer: str | None, started: float, **extra: object) -> None:
        """Report one role call (the pipeline persists it before acting on the answer)."""
        if self.on_call is not None:
            extra.setdefault("step_key", current_step())
            self.on_call(
                BrainCallRecord(role=role, prompt=prompt, answer=answer,
                                latency=time.monotonic() - started, **extra)  # type: ignore[arg-type]
            )

    # Set by the pipeline: the run's cost cap (USD) and what it has spent so far.
    cost_cap: float | None = None
    spent: float = 0.0
    # Set by the pipeline: True once the user stopped the run (ends retry waits early).
    interrupted: Callable[[], bool] | None = None

    def cost_cap_reached(self) -> bool:
        return self.cost_cap is not None and self.spent >= self.cost_cap

    def label(self) -> str:
        """What the UI shows as the brain in use."""
        return self.name

    # 1. Retrieval and initial solutions
    @abstractmethod
    def retrieve_models(self, ctx: BrainContext, m: int) -> list[ModelCard]: ...

    @abstractmethod
    def write_initial_solution(self, ctx: BrainContext, card: ModelCard) -> str: ...

    @abstractmethod
    def merge(self, ctx: BrainContext, base_code: str, reference_code: str) -> str: ...

    # 2. Checks and repair
    @abstractmethod
    def check_data_usage(self, ctx: BrainContext, code: str) -> CheckResult: ...

    @abstractmethod
    def check_leakage(self, ctx: BrainContext, code: str) -> CheckResult: ...

    @abstractmethod
    def debug(self, ctx: BrainContext, code: str, error: str, failure: str = "error") -> str:
        """A repaired script. `failure` is how it failed: "error" (a crash), or the executor's kill reason
        ("timeout", "memory", "cpu", "disk", ...). Raises RoleFailed when no repair can be offered."""

    # 3. Targeted refinement
    @abstractmethod
    def write_ablation(self, ctx: BrainContext, code: str, previous: list[str] | None = None
                       ) -> list[AblationVariant]:
        """Variants of `code`, each with one block simplified. `previous`: the summaries of this track's
        earlier ablation studies, oldest first (the writer should not repeat them)."""

    @abstractmethod
    def summarize_ablation(self, ctx: BrainContext, results: list[AblationResult]) -> str: ...

    @abstractmethod
    def extract_block(
        self, ctx: BrainContext, code: str, results: list[AblationResult], summary: str,
        refined_blocks: list[str],
    ) -> BlockChoice: ...

    @abstractmethod
    def plan_refinement(
        self, ctx: BrainContext, code: str, block: str, history: list[AttemptSummary]
    ) -> str: ...

    @abstractmethod
    def implement_refinement(self, ctx: BrainContext, code: str, block: str, plan: str) -> str:
        """Return the new body of `block` only (the pipeline splices it into the script)."""

    # 4. Ensemble
    @abstractmethod
    def plan_ensemble(
        self, ctx: BrainContext, solutions: list[SolutionSummary], history: list[EnsembleAttempt]
    ) -> str: ...

    @abstractmethod
    def implement_ensemble(
        self, ctx: BrainContext, solutions: list[SolutionSummary], plan: str
    ) -> str: ...
