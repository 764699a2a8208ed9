"""Process-wide resources: one Store and one RunManager per store folder, shared by all sessions.

`@st.cache_resource` runs the factory once per process (per argument value); the objects are
shared by every session, which is fine because Store and RunManager are thread-safe. The cache
is keyed on the store folder (`MLESTAR_HOME`, see `cli.default_store_dir`), so tests that point
it at a fresh folder get fresh services.

Runs live in RunManager threads, never in the script thread: a click or a closed tab does not
touch them. If the run machinery cannot even be imported (e.g. the brain is broken), the store
still works and `Services.error` says why runs cannot start; pages show that instead of a
traceback.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from mlestar_core.cli import default_store_dir
from mlestar_core.config import RunConfig
from mlestar_core.model import Task, TaskError
from mlestar_core.store import Store
from mlestar_core.uploads import demo_config, list_demo_tasks, load_uploaded_task

if TYPE_CHECKING:
    from mlestar_core.service import RunManager


@dataclass
class Services:
    store: Store
    manager: RunManager | None
    error: str | None = None  # why runs cannot start or resume, for the user
    resumed: list[str] = field(default_factory=list)  # runs resumed after an app restart


@dataclass(frozen=True)
class DemoStart:
    """What `make run`'s `--demo NAME` did at process start."""

    name: str
    run_id: str | None  # the run started now, or an earlier run of this demo
    started: bool  # True if this process started it
    error: str | None = None


def store_root() -> Path:
    return default_store_dir().resolve()


def _short_error(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last[:500]


@st.cache_resource(show_spinner=False)
def _services(root: str) -> Services:
    store = Store(Path(root))
    try:
        # Imported here, not at module level: the pipeline imports the brains, and a broken
        # brain must show up as a message in the page, not as an ImportError for every page.
        from mlestar_core.service import RunManager

        manager = RunManager(store)
    except Exception as exc:
        return Services(store, None, f"The run engine could not be loaded: {_short_error(exc)}")
    try:
        resumed = manager.resume_interrupted()  # once per process: runs survive an app restart
    except Exception as exc:
        return Services(store, manager, f"Interrupted runs could not be resumed: {_short_error(exc)}")
    return Services(store, manager, None, resumed)


def get_services() -> Services:
    return _services(str(store_root()))


def get_store() -> Store:
    return get_services().store


def start_run(task: Task, config: RunConfig, name: str | None = None, *,
              api_key: str | None = None, owner: str | None = None) -> tuple[str | None, str | None]:
    """Start a run in the background: (run_id, None) or (None, a message saying why not).

    `api_key` (typed on the New run page) goes to the RunManager only, which keeps it in this
    process's memory; it never reaches the run's config, the store or a log. `owner` is the signed-in
    user (`auth.viewer().owner`; None in local mode)."""
    services = get_services()
    if services.manager is None:
        return None, services.error or "The run engine is not available."
    # Passed only when there is one, so the call in local mode is the same as before owners existed.
    owned = {"owner": owner} if owner is not None else {}
    try:
        return services.manager.start(task, config, name=name or None, api_key=api_key or None, **owned), None
    except Exception as exc:  # e.g. the brain fails to build: say so in the page
        return None, f"The run could not start: {_short_error(exc)}"


def start_demo_run(demo: str, *, owner: str | None = None,
                   **config_overrides: object) -> tuple[str | None, str | None]:
    """Load a bundled demo task and start it with the small demo knobs (owned by `owner`, if given)."""
    folder = list_demo_tasks().get(demo)
    if folder is None:
        return None, f"There is no demo task called {demo!r}."
    try:
        task = load_uploaded_task(folder)
    except TaskError as exc:
        return None, str(exc)
    return start_run(task, demo_config(**config_overrides), owner=owner)


# -- `make run -- --demo NAME` ---------------------------------------------------------------


def demo_from_argv(argv: list[str]) -> str | None:
    """The NAME of `--demo NAME` / `--demo=NAME` in the script arguments (after streamlit's `--`)."""
    for i, arg in enumerate(argv):
        if arg == "--demo" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--demo="):
            return arg.split("=", 1)[1]
    return None


def _demo_runs(store: Store, folder: Path) -> list[dict]:
    target = str(folder.resolve())
    return [r for r in store.list_runs() if r["task_dir"] and str(Path(r["task_dir"]).resolve()) == target]


@st.cache_resource(show_spinner=False)
def _demo_autostart(root: str, demo: str) -> DemoStart:
    # Cached per process and store: the demo run starts on the first session only, never on reruns.
    folder = list_demo_tasks().get(demo)
    if folder is None:
        known = ", ".join(list_demo_tasks()) or "none"
        return DemoStart(demo, None, False, f"There is no demo task called {demo!r} (demo tasks: {known}).")
    existing = _demo_runs(_services(root).store, folder)
    if existing:  # list_runs is newest first
        return DemoStart(demo, existing[0]["id"], False)
    run_id, error = start_demo_run(demo)
    return DemoStart(demo, run_id, run_id is not None, error)


def demo_autostart(argv: list[str] | None = None) -> DemoStart | None:
    """Start the `--demo` run once per process if the store has none yet; None without `--demo`."""
    demo = demo_from_argv(sys.argv if argv is None else argv)
    if not demo:
        return None
    return _demo_autostart(str(store_root()), demo)
