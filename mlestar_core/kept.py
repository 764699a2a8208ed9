"""The fitted model a run keeps, and the finished run that predicting and explaining start from.

The convention (docs/protocol.md, "The kept model"): while the final solution runs, the engine sets
`MLESTAR_MODEL_DIR=model`, and a script that honours it saves there (relative to its working folder)
what predicting new rows needs. Run again with `MLESTAR_PREDICT_FROM=<that folder>` and new rows as
its test file, the same script loads that state instead of fitting and writes its submission. The
engine never loads such a file itself (unpickling runs code): it only moves the folder, lists it and
hands it, read-only, to the script in the sandbox.

Layout in the run folder:

    model/full/        the full-data run's state (predicting new rows)
    model/full.json    the engine's manifest: which script, which files, how many bytes, when
    model/holdout/     the hold-out run's state (fitted on the search rows only: explaining on hold-out rows)
    model/holdout.json
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .model import Task, task_from_dict
from .rundata import RunData, load_run_data

ENV_MODEL_DIR = "MLESTAR_MODEL_DIR"
ENV_PREDICT_FROM = "MLESTAR_PREDICT_FROM"
JOB_MODEL_DIR = "model"  # what MLESTAR_MODEL_DIR says during a final run: ./model in the job's working folder
MODEL_ROOT = "model"  # runs/<id>/model/
PURPOSES = ("full", "holdout")


class RunNotUsable(ValueError):
    """A run that cannot be predicted with or explained (unknown, unfinished, its files gone); the message
    says which and what to do."""


@dataclass
class KeptModel:
    purpose: str  # "full" (fitted on every training row) or "holdout" (fitted on the search rows only)
    script_id: int
    folder: Path
    files: list[str]
    bytes: int
    created: float
    origin: str = "final run"  # or "prediction" (kept when a prediction had to refit)

    def describe(self) -> str:
        size = f"{self.bytes / 2**20:.1f} MB" if self.bytes >= 2**20 else f"{self.bytes / 1024:.0f} KB"
        return f"script #{self.script_id}'s fitted state, {len(self.files)} file(s), {size}, kept by the {self.origin}"


def model_folder(run_dir: Path, purpose: str) -> Path:
    return Path(run_dir) / MODEL_ROOT / purpose


def _manifest(run_dir: Path, purpose: str) -> Path:
    return Path(run_dir) / MODEL_ROOT / f"{purpose}.json"


def kept_model(run_dir: Path, purpose: str, script_id: int | None = None) -> KeptModel | None:
    """The model the run kept for `purpose` (of `script_id` when given), or None."""
    path = _manifest(run_dir, purpose)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        km = KeptModel(purpose=purpose, script_id=int(meta["script_id"]), folder=model_folder(run_dir, purpose),
                       files=[str(f) for f in meta["files"]], bytes=int(meta["bytes"]),
                       created=float(meta["created"]), origin=str(meta.get("origin") or "final run"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if script_id is not None and km.script_id != script_id:
        return None
    if not km.files or not all((km.folder / f).is_file() for f in km.files):
        return None
    return km


def discard_model(run_dir: Path, purpose: str) -> None:
    _manifest(run_dir, purpose).unlink(missing_ok=True)
    shutil.rmtree(model_folder(run_dir, purpose), ignore_errors=True)


def discard_other_models(run_dir: Path, script_id: int) -> None:
    """Drop kept models of other scripts (an earlier final choice that could not finish)."""
    for purpose in PURPOSES:
        path = _manifest(run_dir, purpose)
        if path.exists() and kept_model(run_dir, purpose, script_id) is None:
            discard_model(run_dir, purpose)


def _regular_files(folder: Path) -> tuple[list[str], int]:
    """The regular files under folder (relative, sorted) and their bytes; links and special files are removed
    (the engine only ever moves and lists what a script left, it never follows it)."""
    files: list[str] = []
    total = 0
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        for name in list(dirs):
            if (here / name).is_symlink():
                (here / name).unlink()
                dirs.remove(name)
        for name in names:
            path = here / name
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):
                path.unlink()
                continue
            files.append(str(path.relative_to(folder)))
            total += st.st_size
    return sorted(files), total


def keep_model(run_dir: Path, purpose: str, script_id: int, job_model_dir: Path,
               origin: str = "final run") -> KeptModel | None:
    """Move what a script saved in its MLESTAR_MODEL_DIR into the run folder and write the manifest; a redone
    final step finds the model it moved before. None when the script kept nothing."""
    src = Path(job_model_dir)
    if src.is_dir() and not src.is_symlink():
        files, total = _regular_files(src)
        if not files:
            return kept_model(run_dir, purpose, script_id)
        dest = model_folder(run_dir, purpose)
        staging = dest.with_name(f".{purpose}.{os.getpid()}.{time.monotonic_ns()}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(staging))
            discard_model(run_dir, purpose)
            staging.rename(dest)
            meta = {"script_id": script_id, "purpose": purpose, "files": files, "bytes": total,
                    "created": time.time(), "origin": origin}
            tmp = _manifest(run_dir, purpose).with_suffix(".json.tmp")
            tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
            tmp.replace(_manifest(run_dir, purpose))
        except OSError:  # keeping is a service on top of the run: a failure only means none is kept
            shutil.rmtree(staging, ignore_errors=True)
            return None
    return kept_model(run_dir, purpose, script_id)


def stage_files(src: Path, dest: Path, *, skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Put src's files (recursively) under dest for a job's read-only inputs: hard links where the file system
    allows (no copy of a big table), copies otherwise. Inputs are bound into the sandbox, so they must be real
    files inside the folder, not links out of it."""
    src = Path(src)
    for root, _, names in os.walk(src):
        rel = Path(root).relative_to(src)
        if rel.parts and rel.parts[0] in skip:
            continue
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in names:
            if not rel.parts and name in skip:
                continue
            source, target = Path(root) / name, dest / rel / name
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)


# ------------------------------------------------------------------ the finished run


@dataclass
class FinishedRun:
    run_id: str
    run_dir: Path
    task: Task  # as derived from the user's files (data_dir is the original folder)
    config: RunConfig
    data: RunData
    summary: dict[str, Any]  # the final step's result
    script_id: int
    code: str

    @property
    def test_name(self) -> str:
        """The test file's name inside the run folders (what the solution reads from ./input/)."""
        return self.data.test_file or self.data.holdout_test_file

    @property
    def sample_name(self) -> str:
        return self.data.sample_submission_file or self.data.holdout_sample_file


def finished_run(store: Any, run_id: str) -> FinishedRun:
    """A finished run with its final solution; RunNotUsable says why not."""
    run = store.get_run(run_id)
    if run is None:
        raise RunNotUsable(f"no run {run_id!r} in {store.root}; list the runs with `python -m mlestar_core runs`")
    if run["status"] != "finished":
        hint = (f"; continue it with `python -m mlestar_core resume {run_id}`"
                if run["status"] in ("paused", "stopped", "failed", "created") else "; wait until it finishes")
        raise RunNotUsable(f"run {run_id} is {run['status']}, not finished: it has no final solution yet{hint}")
    done, summary = store.step_result(run_id, "final")
    if not done or not summary or not summary.get("final_script_id"):
        raise RunNotUsable(f"run {run_id} has no final solution recorded")
    run_dir = store.run_dir(run_id)
    data = load_run_data(run_dir)
    if data is None:
        raise RunNotUsable(f"run {run_id}'s data folder ({run_dir / 'data'}) is missing: the run's files were "
                           "moved or deleted")
    script = store.get_script(int(summary["final_script_id"]))
    if script is None:
        raise RunNotUsable(f"run {run_id}'s final script #{summary['final_script_id']} is missing from the store")
    return FinishedRun(run_id=run_id, run_dir=run_dir, task=task_from_dict(json.loads(run["task_json"])),
                       config=RunConfig.from_dict(json.loads(run["config_json"])), data=data, summary=summary,
                       script_id=int(script["id"]), code=str(script["code"]))


def kept_summary(run_dir: Path) -> dict[str, Any]:
    """What the run kept, as plain data (views, report)."""
    out: dict[str, Any] = {}
    for purpose in PURPOSES:
        km = kept_model(run_dir, purpose)
        out[purpose] = None if km is None else {**asdict(km), "folder": str(km.folder), "text": km.describe()}
    return out
