"""What leaves the app: a run's final files, a zip of its artifacts, its best-score curve.

No Streamlit here; the History page turns these into download buttons and a chart.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from . import budget_clock
from .metrics import is_better
from .store import Store

FINAL_FILES = ("solution.py", "submission.csv", "report.md")
# run_dir/data holds the run's copy of the task data (the user has it already, and it can be
# hundreds of MB); workdirs link their inputs to it, and links are never followed.
_SKIP_DIRS = {"data", "data.partial"}


def output_dir(store: Store, run: dict[str, Any]) -> Path:
    """Where the pipeline writes solution.py, submission.csv and report.md for this run."""
    return Path(run["out_dir"]) if run.get("out_dir") else store.run_dir(run["id"]) / "output"


def final_files(store: Store, run_id: str) -> dict[str, Path]:
    """The final files that exist, by name (a run that has not finished has none or some)."""
    run = store.get_run(run_id)
    if run is None:
        return {}
    out = output_dir(store, run)
    return {name: out / name for name in FINAL_FILES if (out / name).is_file()}


def zip_run_artifacts(store: Store, run_id: str) -> bytes:
    """A zip of everything a run produced: its folder (without the data copy), final files,
    every script it generated, and its store row.
    """
    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    run_dir = store.run_dir(run_id)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        meta = {k: v for k, v in run.items() if not k.endswith("_json")}
        meta["task"] = json.loads(run["task_json"])
        meta["config"] = json.loads(run["config_json"])
        zf.writestr("run.json", json.dumps(meta, indent=2, default=str))
        for script in store.table("scripts", run_id):
            label = "".join(c if c.isalnum() or c in "-_" else "_" for c in (script["label"] or ""))[:60]
            zf.writestr(f"scripts/{script['id']:05d}-{script['role']}{'-' + label if label else ''}.py",
                        script["code"])
        if run_dir.is_dir():
            for root, dirs, files in os.walk(run_dir):  # os.walk does not follow links by default
                rel_root = Path(root).relative_to(run_dir)
                if rel_root == Path("."):
                    dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
                for fname in sorted(files):
                    path = Path(root) / fname
                    if path.is_symlink() or not path.is_file():
                        continue
                    zf.write(path, str(Path("run") / rel_root / fname))
        out = output_dir(store, run)
        if not _inside(out, run_dir):  # an --out folder elsewhere: add its final files too
            for name, path in final_files(store, run_id).items():
                zf.write(path, f"output/{name}")
    return buf.getvalue()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def best_score_curve(store: Store, run_id: str, now: float | None = None) -> pd.DataFrame:
    """Best validation score so far over run time: columns `seconds`, `best_score` and `improved` (one row per
    improvement, then the run's end).

    From the run's `best_score` events (time = the run's agent time, so waiting for humans, pauses and restarts
    do not stretch the curve; parallel tracks can announce out of order, so points are sorted); a run without
    them (an older store) falls back to its search executions, timed from the run's creation. The curve goes on,
    flat, to where the run is now: its agent time (`budget_clock.agent_seconds`, live for a running run), in a last
    row with `improved` False, so a run whose last improvement came at 10 s of 226 s is not drawn as a dot at 10 s.
    """
    run = store.get_run(run_id)
    columns = ["seconds", "best_score", "improved"]
    if run is None:
        return pd.DataFrame(columns=columns)
    higher = bool(json.loads(run["task_json"]).get("higher_is_better", True))
    events = store.events_after(run_id)
    raw: list[tuple[float, float]] = []
    for e in events:
        if e["kind"] == "best_score" and e["payload"].get("score") is not None:
            t = e["payload"].get("time")
            raw.append((float(t) if t is not None else e["ts"] - float(run["created"]), float(e["payload"]["score"])))
    if not raw:
        raw = [(float(ex["created"]) - float(run["created"]), float(ex["score"]))
               for ex in store.table("executions", run_id) if ex["purpose"] == "search" and ex["score"] is not None]
    points: list[tuple[float, float, bool]] = []
    best: float | None = None
    for t, score in sorted(raw):
        if is_better(score, best, higher):
            best = score
            points.append((t, score, True))
    end = budget_clock.agent_seconds(run, events, now)
    if points and end > points[-1][0]:
        points.append((end, points[-1][1], False))
    return pd.DataFrame(points, columns=columns)


def cassette_json(store: Store, run_id: str) -> bytes:
    """The run's brain answers as a cassette (`--brain replay --cassette FILE` replays it)."""
    from .brains.llm.replay import make_cassette

    run = store.get_run(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    cassette = make_cassette(run, store.table("brain_calls", run_id))
    return json.dumps(cassette, indent=1, ensure_ascii=False).encode("utf-8")
