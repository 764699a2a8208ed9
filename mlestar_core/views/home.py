"""Home (app_pages/home.py): what MLE-STAR does, the demo run the app started, the latest runs."""

from __future__ import annotations

from collections.abc import Sequence

from .common import Row

LATEST = 8  # runs in the latest-runs list
DEFAULT_DEMO = "customer-churn"

INTRO = (
    "Watch and steer an ML-engineering agent. **MLE-STAR** builds a solution for a tabular task in "
    "steps you can follow live:\n\n"
    "1. **Retrieve** a handful of suitable models for the task.\n"
    "2. **Initial solutions & merge**: one script per model, run and scored; the best are merged "
    "while the score improves.\n"
    "3. **Checks**: a data-usage check (is all the provided data used?) and a leakage check.\n"
    "4. **Ablation-guided refinement**: an ablation study finds the code block that matters most; "
    "only that block is rewritten, a few attempts at a time, keeping the best.\n"
    "5. **Ensemble** the refined solutions.\n"
    "6. **Submission**: the best solution is scored on a locked hold-out and writes `submission.csv`."
)


def demo_text(name: str, started: bool, status: str) -> str:
    """What became of `make run`'s demo run (`--demo NAME`)."""
    if started:
        return f"The app started a demo run on **{name}** with the offline brain."
    return f"A demo run on **{name}** is in the store ({status})."


def default_demo(demos: Sequence[str]) -> int:
    """Index of the demo task picked first."""
    return list(demos).index(DEFAULT_DEMO) if DEFAULT_DEMO in demos else 0


def latest(runs: Sequence[Row]) -> list[Row]:
    return list(runs[:LATEST])
