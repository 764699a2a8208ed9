"""The brain interface: one method per MLE-STAR agent role.

A brain never runs code and never touches the store: the pipeline runs what it writes and
records what it answers. Every role call is reported through `on_call` (set by the
pipeline) so each one is persisted with its prompt, answer, tokens and latency.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

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
    constraints: list[str] = field(default_factory=list)  # pinned by the user, planners obey


@dataclass
class BrainCallRecord:
    role: str
    prompt: str
    answer: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency: float = 0.0
    cost: float = 0.0
    error: str | None = None


class Brain(ABC):
    name: str = "abstract"
    description: str = ""

    def __init__(self) -> None:
        self.on_call: Callable[[BrainCallRecord], None] | None = None

    def record(self, role: str, prompt: str, answer: str, started: float, **extra: object) -> None:
        """Report one role call (the pipeline persists it before acting on the answer)."""
        if self.on_call is not None:
            self.on_call(
                BrainCallRecord(role=role, prompt=prompt, answer=answer,
                                latency=time.monotonic() - started, **extra)  # type: ignore[arg-type]
            )

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
    def debug(self, ctx: BrainContext, code: str, error: str) -> str: ...

    # 3. Targeted refinement
    @abstractmethod
    def write_ablation(self, ctx: BrainContext, code: str) -> list[AblationVariant]: ...

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
