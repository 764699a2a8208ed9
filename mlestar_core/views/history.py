"""History (app_pages/history.py): the runs filtered, what may be done to the selected one, its downloads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..kept import RunNotUsable, finished_run
from ..store import Store
from .common import ACTIVE_STATUSES, LLM_BRAINS, Row, fmt_score, run_metric

MIME = {"solution.py": "text/x-python", "submission.csv": "text/csv", "report.md": "text/markdown"}
FINAL_FILES = tuple(MIME)  # what a finished run writes, each a download
REPLAY_HINT = ("Replay it offline with `python -m mlestar_core run --brain replay --cassette FILE ...` (same task and "
               "data), or choose **Replay a recorded run** on the New run page.")


def filter_options(runs: Sequence[Row]) -> tuple[list[str], list[str]]:
    """(statuses, brains) present in the runs, for the filters."""
    return sorted({r["status"] for r in runs}), sorted({r["brain"] for r in runs})


def filter_runs(runs: Sequence[Row], statuses: Sequence[str] = (), brains: Sequence[str] = (),
                search: str = "") -> list[Row]:
    """The runs with one of the statuses and brains (none chosen: all) whose name contains `search`."""
    search = search.strip().lower()
    return [r for r in runs
            if (not statuses or r["status"] in statuses)
            and (not brains or r["brain"] in brains)
            and (not search or search in r["name"].lower())]


@dataclass(frozen=True)
class RunActions:
    """What the buttons may do to the selected run."""

    can_resume: bool
    can_stop: bool
    can_delete: bool
    delete_help: str


def run_actions(run: Row, *, engine: bool, alive: bool) -> RunActions:
    """`engine`: this app has a RunManager; `alive`: one of its threads runs the run. A run still going (or
    that the store says is active) must be stopped before it can be deleted."""
    busy = alive or run["status"] in ACTIVE_STATUSES
    return RunActions(can_resume=engine and run["status"] != "finished" and not alive, can_stop=engine and busy,
                      can_delete=not busy,
                      delete_help="Stop the run first." if busy else "Delete the run and its files.")


def scores_text(run: Row) -> str:
    return (f"best **{fmt_score(run['best_score'])}** · hold-out **{fmt_score(run['holdout_score'])}**"
            f" · baseline {fmt_score(run['baseline_score'])}")


def offers_cassette(run: Row) -> bool:
    """An LLM run's answers can be downloaded, to replay it offline."""
    return run["brain"] in LLM_BRAINS


def cassette_help(calls: int) -> str:
    if calls:
        return "Every answer the brain gave in this run, to replay it without a key or network."
    return "The brain has not been asked anything in this run yet."


@dataclass(frozen=True)
class Handoff:
    """The hand-off downloads of a run (notebook.py, bundle.py): offered once it has a final solution."""

    ready: bool
    why_not: str  # the reason when not ready (the buttons' help)
    notebook_name: str
    bundle_name: str


NOTEBOOK_HELP = ("The final solution as a Jupyter notebook: one cell per block, the run's story (models, ablation, "
                 "refinements kept, ensemble, scores) in markdown. Run it in a folder holding the task's files under "
                 "./input/.")
BUNDLE_HELP = ("A zip that reproduces the submission with one command (`python reproduce.py`): solution, "
               "submission, report, notebook, pinned requirements, data and its SHA-256, seeds.")


def handoff(store: Store, run: Row) -> Handoff:
    """Whether the notebook and the reproduction zip can be made for this run, and their file names."""
    names = dict(notebook_name=f"mlestar-{run['id']}.ipynb", bundle_name=f"mlestar-{run['id']}-reproduce.zip")
    if run["status"] != "finished":
        return Handoff(False, "Made once the run has finished (it needs the final solution).", **names)
    try:
        finished_run(store, run["id"])
    except RunNotUsable as exc:
        return Handoff(False, str(exc), **names)
    return Handoff(True, "", **names)


def curve_name(run: Row) -> str:
    """A run's line in the comparison chart."""
    return f"{run['name']} · {run_metric(run)} · {run['id']}"
