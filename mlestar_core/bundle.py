"""A self-contained zip that reproduces a finished run's submission with one command (issue 13, hand-off).

    python -m mlestar_core export-bundle RUN_ID -o run.zip
    unzip run.zip && cd mlestar-RUN_ID && python reproduce.py     # or: sh reproduce.sh

The zip holds one folder: solution.py, the submission the run wrote, report.md, the notebook (notebook.py),
requirements.txt pinned to the versions of the libraries the solution imports, MANIFEST.json (data SHA-256s,
seeds, the run's config, scores, the environment of the final run), README.md, reproduce.py (mlestar_core/
reproduce_bundle.py, standard library only) and data/: the task's files as the final solution read them, when they
fit in MAX_DATA_BYTES (else the manifest lists them with their hashes and reproduce.py takes `--data DIR`).

What never goes in: the run's locked hold-out answers (only the full-data folder is read, the task's own files plus
the engine's folds.csv), secrets (every text file is scrubbed with hardening.scrub; a data file or submission that
holds a secret value is left out and the manifest says so), the kept model (pickles: loading one runs code).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import platform
import time
import zipfile
from pathlib import Path
from typing import Any

from . import notebook, story
from .executor import _THREAD_VARS
from .exports import output_dir
from .hardening import scrub, scrub_bytes
from .kept import ENV_MODEL_DIR, JOB_MODEL_DIR, FinishedRun, finished_run
from .report import SOLUTION_HEADER_END
from .script import imported_modules
from .store import Store

MAX_DATA_BYTES = 50 * 2**20  # the task's files ride along up to this total; above it the user supplies them
RTOL, ATOL = 1e-6, 1e-9  # a submission equal within these is reproduced (BLAS and thread order move last digits)
FORMAT = "mlestar-bundle/1"
PROJECT_REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements.txt"
REPRODUCE_SOURCE = Path(__file__).with_name("reproduce_bundle.py")


def folder_name(run_id: str) -> str:
    return f"mlestar-{run_id}"


def _project_pins(path: Path = PROJECT_REQUIREMENTS) -> dict[str, str]:
    pins: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return pins
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def requirements(code: str) -> list[str]:
    """`name==version` for each distribution the solution imports: the version installed here (what the run's
    scripts ran with), else the project's pin; a module nobody provides is listed unpinned, with a comment."""
    owners = importlib.metadata.packages_distributions()
    pins = _project_pins()
    lines: dict[str, str] = {}
    for module in imported_modules(code):
        for dist in owners.get(module) or [module]:
            try:
                lines[dist.lower()] = f"{dist}=={importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                pinned = pins.get(dist.lower())
                lines[dist.lower()] = (f"{dist}=={pinned}" if pinned
                                       else f"{dist}  # imported by the solution but not installed where this bundle "
                                            "was made: pin it yourself")
    return [lines[k] for k in sorted(lines)]


def final_env(fr: FinishedRun) -> dict[str, str]:
    """The environment the engine gave the final full-data run (executor.scrubbed_env), seeds included. Threads:
    the engine's share per script (cores // workers) on the machine making the bundle."""
    threads = str(max(1, (os.cpu_count() or 1) // max(1, int(fr.config.workers or 1))))
    env = {"MLESTAR_SUBMIT": "1", ENV_MODEL_DIR: JOB_MODEL_DIR, "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "MPLBACKEND": "Agg",
           "MALLOC_ARENA_MAX": "2", "OMP_WAIT_POLICY": "PASSIVE"}
    env.update(dict.fromkeys(_THREAD_VARS, threads))
    return env


def _solution_text(fr: FinishedRun, out: Path) -> str:
    """solution.py as the run wrote it (with the header report.py puts on it) when it is still the final script,
    else the stored script."""
    path = out / "solution.py"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return fr.code
    body = text.split(SOLUTION_HEADER_END, 1)[-1].lstrip("\n") if SOLUTION_HEADER_END in text else text
    return text if body == fr.code.lstrip("\n") else fr.code


def _has_secret(data: bytes) -> bool:
    return scrub_bytes(data) != data


def _data_files(fr: FinishedRun, limit: int) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(name -> bytes to include, the manifest's data section). Only the full-data folder is read: the task's
    files as the final solution saw them, and the engine's folds.csv (never the hold-out answers)."""
    folder = fr.data.full_dir
    paths = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    listing = {p.name: {"sha256": notebook.sha256_file(p), "bytes": p.stat().st_size,
                        "role": "engine folds" if p.name == notebook.FOLDS else "task file"} for p in paths}
    # The folds are the engine's, not the user's: they ride along whenever they fit, so a user who supplies the
    # task's files with --data does not need them too.
    total = sum(p.stat().st_size for p in paths if p.name != notebook.FOLDS)
    included: dict[str, bytes] = {}
    left_out: dict[str, str] = {}
    for p in paths:
        size = p.stat().st_size if p.name == notebook.FOLDS else total
        if size > limit:
            left_out[p.name] = (f"{'it is' if p.name == notebook.FOLDS else 'the task files total'} "
                                f"{size / 2**20:.1f} MB, above the bundle's {limit / 2**20:g} MB")
            continue
        data = p.read_bytes()
        if _has_secret(data):
            left_out[p.name] = "it holds a value that looks like a secret of the app's environment"
            continue
        included[p.name] = data
    note = ("" if not left_out else
            "put the files listed under `left_out` in a folder and run `python reproduce.py --data FOLDER`; their "
            "SHA-256 must match `files`")
    return included, {"included": not left_out, "files": listing, "left_out": left_out, "note": note,
                      "limit_bytes": limit}


def manifest(store: Store, fr: FinishedRun, data: dict[str, Any], submission: bytes | None,
             now: float | None = None) -> dict[str, Any]:
    run = store.get_run(fr.run_id) or {}
    task = json.loads(run.get("task_json") or "{}")
    split = json.loads((fr.run_dir / "data" / "split.json").read_text(encoding="utf-8")) \
        if (fr.run_dir / "data" / "split.json").is_file() else {}
    protocol = json.loads(run.get("protocol_json") or "null")
    full = store.finished_execution(fr.script_id, "full")
    env = final_env(fr)
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now if now is not None else time.time())),
        "run_id": fr.run_id, "run_name": run.get("name"), "brain": run.get("brain"),
        "run_created": run.get("created"), "run_finished": run.get("finished"),
        "task": {k: task.get(k) for k in ("name", "task_type", "target", "metric", "higher_is_better",
                                          "n_train_rows", "train_file", "test_file", "sample_submission_file",
                                          "id_column", "submission_columns")},
        "config": json.loads(run.get("config_json") or "{}"),
        "protocol": protocol,
        "final_script": {"id": fr.script_id, "label": fr.summary.get("final_label"),
                         "file": "solution.py"},
        "scores": {"metric": task.get("metric"), "higher_is_better": task.get("higher_is_better"),
                   "baseline": fr.summary.get("baseline_score"), "validation": fr.summary.get("validation_score"),
                   "holdout": fr.summary.get("holdout_score"),
                   "printed_full": full.get("score") if full else None},
        "seeds": {"run seed (config.seed; the script's default MLESTAR_SEED, left unset as in the run)": fr.config.seed,
                  "fold seed (folds.csv)": (protocol or {}).get("seed"),
                  "hold-out split seed": split.get("seed"), "PYTHONHASHSEED": env["PYTHONHASHSEED"]},
        "env": env,
        "python": platform.python_version(), "platform": platform.platform(),
        "data": data,
        "submission": {"file": "submission.csv", "sha256": _sha(submission)} if submission is not None else None,
        "compare": {"rtol": RTOL, "atol": ATOL},
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def readme(fr: FinishedRun, man: dict[str, Any]) -> str:
    s = man["scores"]
    data = man["data"]
    where = ("`data/` holds the task's files (SHA-256 in MANIFEST.json)" if data["included"] else
             f"the task's files are not included ({'; '.join(f'{k}: {v}' for k, v in data['left_out'].items())}): "
             "put them in a folder and add `--data FOLDER`")
    return "\n".join([
        f"# Reproduce MLE-STAR run {fr.run_id}",
        "",
        f"Final solution: script #{fr.script_id} ({fr.summary.get('final_label')}); metric {s['metric']}: "
        f"validation {story.fmt(s['validation'])}, locked hold-out {story.fmt(s['holdout'])}, printed when run on "
        f"all training rows {story.fmt(s['printed_full'])}.",
        "",
        "## The one command",
        "",
        "```bash",
        "python reproduce.py              # or: sh reproduce.sh",
        "```",
        "",
        "It checks the data's SHA-256, makes a virtualenv (`.venv`) with the pinned `requirements.txt`, runs "
        "`solution.py` in `reproduction/` with the task's files under `reproduction/input/` and the run's "
        "environment and seeds (MANIFEST.json `env`, `seeds`), and compares the `submission.csv` it writes with "
        "this folder's (the run's): identical, or equal within the tolerance in MANIFEST.json `compare`. It ends "
        "with a `VERDICT:` line; exit 0 reproduced, 1 differs, 2 data missing or not the run's, 3 the environment "
        "or the solution failed.",
        "",
        "- `--no-venv`: use the Python running `reproduce.py` (it needs the packages in requirements.txt).",
        f"- `--data FOLDER`: the task's files are there; {where}.",
        "",
        "## Files",
        "",
        "- `solution.py`: the final solution (its header says what it prints and why that differs from the "
        "headline score); `solution.ipynb`: the same code, one cell per block, with the run's story",
        "- `submission.csv`: the submission the run wrote; `report.md`: the run's report",
        f"- `requirements.txt`: exact pins (Python {man['python']} made this bundle); `MANIFEST.json`: data "
        "hashes, seeds, the run's config and scores",
        "",
    ]) + "\n"


REPRODUCE_SH = """#!/bin/sh
# The one command: sh reproduce.sh [--no-venv] [--data FOLDER]  (the same as: python reproduce.py ...)
cd "$(dirname "$0")" || exit 3
if command -v python3 >/dev/null 2>&1; then exec python3 reproduce.py "$@"; fi
exec python reproduce.py "$@"
"""


def _write(zf: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o755 if executable else 0o644) << 16
    zf.writestr(info, data)


def build_bundle(store: Store, run_id: str, *, max_data_bytes: int = MAX_DATA_BYTES, now: float | None = None) -> bytes:
    """The zip's bytes; kept.RunNotUsable when the run has no final solution."""
    fr = finished_run(store, run_id)
    run = store.get_run(run_id) or {}
    out = output_dir(store, run)
    text: dict[str, str] = {"solution.py": _solution_text(fr, out)}
    report = out / "report.md"
    if report.is_file():
        text["report.md"] = report.read_text(encoding="utf-8")
    files = notebook.run_files(fr)
    nb = notebook.notebook_for(store, fr, files)
    text["solution.ipynb"] = notebook.notebook_json(nb).decode("utf-8")
    text["requirements.txt"] = (f"# The libraries solution.py imports, at the versions the run used (Python "
                                f"{platform.python_version()})\n" + "\n".join(requirements(fr.code)) + "\n")
    included, data = _data_files(fr, max_data_bytes)
    submission = None
    sub_path = out / "submission.csv"
    if fr.task.test_file and sub_path.is_file():
        submission = sub_path.read_bytes()
        if _has_secret(submission):
            data["left_out"]["submission.csv"] = "it holds a value that looks like a secret of the app's environment"
            submission = None
    man = manifest(store, fr, data, submission, now)
    text["MANIFEST.json"] = json.dumps(man, indent=2, default=str) + "\n"
    text["README.md"] = readme(fr, man)
    text["reproduce.py"] = REPRODUCE_SOURCE.read_text(encoding="utf-8")
    top = folder_name(run_id)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in text.items():
            _write(zf, f"{top}/{name}", scrub(content).encode("utf-8"), executable=name == "reproduce.py")
        _write(zf, f"{top}/reproduce.sh", REPRODUCE_SH.encode("utf-8"), executable=True)
        if submission is not None:
            _write(zf, f"{top}/submission.csv", submission)
        for name, content in included.items():
            _write(zf, f"{top}/data/{name}", content)
    return buf.getvalue()
