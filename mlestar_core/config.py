"""Every knob of a run in one object, each with a default."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from .brains.llm.settings import DEFAULT_GEMINI_MODEL, DEFAULT_OPENAI_MODEL, LLMSettings


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass
class RunConfig:
    num_models: int = 4  # M: models retrieved, one initial candidate each
    outer_steps: int = 2  # T: ablation -> block -> inner loop, per solution track
    inner_steps: int = 3  # K: refinement attempts per chosen block
    num_solutions: int = 2  # L: independent solution tracks later ensembled
    ensemble_rounds: int = 3  # R: ensemble strategies tried
    max_debug_rounds: int = 2  # debugger retries per crashing script
    script_timeout: float = 300.0  # seconds per script execution
    memory_mb: int = 4096  # address-space cap per script
    workers: int = field(default_factory=_default_workers)
    seed: int = 42
    valid_fraction: float = 0.2  # validated share when the protocol is one hold-out split (large data)
    n_folds: int | None = None  # K of the evaluation protocol; None: the engine chooses (evaluation.choose_folds)
    n_fold_repeats: int = 1  # repeats of K-fold when n_folds is set
    holdout_fraction: float = 0.15  # locked second hold-out: no choice is ever made on it
    time_budget: float | None = None  # seconds for the whole run; None = no limit
    brain: str = "offline"  # offline | gemini | openai | replay
    llm: LLMSettings = field(default_factory=LLMSettings)  # settings of the LLM brains (no secrets)
    cost_cap: float | None = None  # USD of brain calls; reaching it wraps the run up cleanly
    require_approval: bool = False  # wait for a human decision before each refinement plan
    # With require_approval: seconds after which a plan nobody answered is approved by the run itself
    # ("auto-approved", never mistaken for a person's approval); None = wait as long as it takes. Waiting never
    # counts against time_budget either way (see budget_clock.py).
    auto_approve_after: float | None = None
    use_data_usage_checker: bool = True
    use_leakage_checker: bool = True
    constraints: list[str] = field(default_factory=list)  # pinned user constraints for planners
    # Error bars of an ablation come from its paired per-fold deltas; each extra repeat reruns the
    # unablated script and every variant with another model seed (MLESTAR_SEED) for seed noise too.
    ablation_repeats: int = 1
    start_code: str | None = None  # a fork starts from this script instead of retrieval
    forked_from: str | None = None  # "run <id> script #<n>" for a fork
    # Where scripts run: "local" (this machine) or "dask://host:port[?shared=1]" (a Dask scheduler's workers,
    # dask_executor.py); a resumed run uses the same place.
    executor: str = "local"
    # What drives the final model (explain.py) is computed at the end of the run; off, the Explain page and
    # `python -m mlestar_core explain RUN_ID` compute it on demand instead.
    explain_at_end: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["llm"] = LLMSettings.from_dict(known.get("llm"))
        return cls(**known)


class ConfigError(ValueError):
    """A run config that cannot be run as it is; the message says what to change."""


def default_model(brain: str) -> str:
    """The model an LLM brain uses for every role unless told otherwise ("" for offline and replay)."""
    return {"gemini": DEFAULT_GEMINI_MODEL, "openai": DEFAULT_OPENAI_MODEL}.get(brain, "")


def cost_problems(config: RunConfig) -> list[str]:
    """Why the config's cost cap could not hold (empty: it can): a malformed price, a cap that is not a positive
    number, or a model in use (per-role models included) without a known price while a cap is set."""
    from .brains.llm.pricing import price_problems, unpriced_models

    problems = price_problems(config.llm.prices)
    if config.cost_cap is None or config.brain not in ("gemini", "openai"):
        return problems
    if not config.cost_cap > 0:
        return [*problems, f"the cost cap must be a positive number of USD, not {config.cost_cap}"]
    for model in unpriced_models(config.brain, config.llm, default_model(config.brain)):
        problems.append(f"model {model} has no known price: give its price (USD per 1M input/output tokens) or "
                        "remove the cost cap")
    return problems


def approval_problems(config: RunConfig) -> list[str]:
    """Why "decide for me after N minutes" cannot be honoured as set (empty: it can)."""
    after = config.auto_approve_after
    if after is None:
        return []
    if not after > 0:
        return [f"the automatic approval delay must be a positive number of seconds, not {after}"]
    if not config.require_approval:
        return ["an automatic approval delay needs approval on (require_approval): without it no plan waits"]
    return []


def check_config(config: RunConfig) -> None:
    """Raise ConfigError with every problem of `config` (called where a run is created)."""
    from .dask_executor import spec_problems  # plain string parsing: distributed is not imported

    problems = cost_problems(config) + approval_problems(config) + spec_problems(config.executor)
    if problems:
        raise ConfigError("; ".join(problems))
