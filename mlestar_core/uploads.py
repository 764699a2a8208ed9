"""Uploads: bytes from a browser (or anywhere) -> a task folder in the store -> a `Task`.

Pure functions, no Streamlit: the New run page hands over what the user uploaded and gets back
a folder `load_task` understands, plus data for the preview (head, column kinds and missing
values, target distribution). Everything a user can get wrong ends in a `TaskError` whose
message says what to fix.

The `store_root` the functions take is the folder uploads live under: the store folder, or on a shared server
the user's own data folder (`access.upload_root`). No name a user gave (file names, zip members) becomes a
path unchecked: files are saved under fixed names, zip members are vetted by `extract_task_zip`.

Upload folders are content-addressed (`<store>/uploads/<sha256 prefix>/`): a Streamlit page
re-runs its script on every click, and hashing makes "save this upload" idempotent, so the
same bytes are written once, not once per rerun. A folder is written under a temporary name
and renamed into place when complete, so a half-written upload is never mistaken for a task.
Runs copy the data into their own folder (rundata), so an upload folder is never modified
after it is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .access import safe_join
from .config import RunConfig
from .model import Task, TaskError
from .task import (
    MAX_FILE_BYTES,
    SNIFF_BYTES,
    _fmt_bytes,
    _resolve_data_dir,
    check_csv_bytes,
    extract_task_zip,
    label_str,
    load_task,
    profile_column,
    read_csv,
)

MAX_UPLOAD_MB = 200  # per file; matches [server] maxUploadSize in .streamlit/config.toml
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_UNZIPPED_BYTES = 2_000_000_000  # what a task zip may unpack to
PREVIEW_ROWS = 50_000  # rows read for the column table and the target chart
DEMO_TASKS_DIR = Path(__file__).resolve().parents[1] / "demo_tasks"
_COMPLETE = ".complete"  # marker written last into a finished upload folder


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file: its name as the user had it and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class TargetDistribution:
    """Data for the target chart: raw values for a histogram, or counts per class for a bar chart."""

    kind: Literal["histogram", "bar"]
    frame: pd.DataFrame  # histogram: one column `value`; bar: columns `class`, `count`
    target: str


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def check_size(name: str, n_bytes: int, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
    """Reject empty and too-large files with a message naming the file and the limit."""
    if n_bytes == 0:
        raise TaskError(f"{name} is empty (0 bytes); upload a file with a header row and data rows.")
    if n_bytes > max_bytes:
        raise TaskError(f"{name} is {_fmt_bytes(n_bytes)}, over the {_fmt_bytes(max_bytes)} limit per file; "
                        "upload a smaller sample of the data.")


def check_csv_upload(upload: UploadedFile, role: str, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
    """A CSV by name and by content: not empty, not too big, and none of the format problems
    `check_csv_bytes` catches (binary, not UTF-8, another delimiter, duplicate names, long rows).

    The same check `load_task` makes, run on the upload so the message names the user's file
    (saved, it is train.csv) and nothing is saved for a file that cannot be used.
    """
    if not upload.name.lower().endswith(".csv"):
        suffix = Path(upload.name).suffix or "no extension"
        hint = " (an Excel workbook: save it as CSV first)" if suffix.lower() in (".xls", ".xlsx") else ""
        raise TaskError(f"{upload.name} is not a CSV file ({suffix}){hint}; the {role} must be a .csv file.")
    check_size(upload.name, len(upload.data), max_bytes)
    check_csv_bytes(upload.data[:SNIFF_BYTES], upload.name, complete=len(upload.data) <= SNIFF_BYTES)


def check_zip_upload(upload: UploadedFile, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
    if not upload.name.lower().endswith(".zip"):
        raise TaskError(f"{upload.name} is not a .zip file; zip the task folder (train.csv, optional "
                        "test.csv, sample_submission.csv, description.md) and upload the .zip.")
    check_size(upload.name, len(upload.data), max_bytes)


# ----------------------------------------------------------------------------------------------
# Saving uploads into the store
# ----------------------------------------------------------------------------------------------


def uploads_dir(store_root: str | Path) -> Path:
    return Path(store_root) / "uploads"


def _upload_id(kind: str, parts: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256(kind.encode())
    for role, data in parts:
        h.update(f"\x00{role}\x00{len(data)}\x00".encode())
        h.update(data)
    return h.hexdigest()[:16]


def _materialise(store_root: str | Path, upload_id: str, write: Callable[[Path], None]) -> Path:
    """Create <uploads>/<id>/ with `write(tmp_folder)` unless it already exists complete."""
    base = uploads_dir(store_root)
    final = safe_join(base, upload_id)  # a hex digest today; checked so no caller can ever pass a name through
    if (final / _COMPLETE).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{upload_id}-", dir=base))
    try:
        write(tmp)
        (tmp / _COMPLETE).write_text("")
        if final.exists():  # an incomplete leftover of a crashed save
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another session saved the same bytes at the same moment: theirs is as good as ours.
            if not (final / _COMPLETE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_csv_upload(store_root: str | Path, train: UploadedFile, test: UploadedFile | None = None,
                    sample_submission: UploadedFile | None = None,
                    max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Write train.csv (+ test.csv, sample_submission.csv) into an upload folder; return the folder.

    The folder has the MLE-bench layout, so `load_task(folder, ...)` finds every file. The
    description is not written: pass it to `load_task(description=...)` (editing it must not
    copy the data again).
    """
    check_csv_upload(train, "training data", max_bytes)
    files = [("train.csv", train)]
    if test is not None:
        check_csv_upload(test, "test data", max_bytes)
        files.append(("test.csv", test))
    if sample_submission is not None:
        check_csv_upload(sample_submission, "sample submission", max_bytes)
        files.append(("sample_submission.csv", sample_submission))
    upload_id = _upload_id("csv", [(role, f.data) for role, f in files])

    def write(folder: Path) -> None:
        for role, f in files:
            (folder / role).write_bytes(f.data)

    return _materialise(store_root, upload_id, write)


def save_zip_upload(store_root: str | Path, archive: UploadedFile, max_bytes: int = MAX_UPLOAD_BYTES,
                    max_unzipped_bytes: int = MAX_UNZIPPED_BYTES) -> Path:
    """Unpack a zip of a task folder (safely: see `extract_task_zip`); return the task folder."""
    check_zip_upload(archive, max_bytes)
    upload_id = _upload_id("zip", [("archive", archive.data)])

    def write(folder: Path) -> None:
        zip_path = folder / "upload.zip"
        zip_path.write_bytes(archive.data)
        try:
            extract_task_zip(zip_path, folder / "task", max_total_bytes=max_unzipped_bytes)
        except TaskError as e:  # name the user's file, not our temporary copy
            raise TaskError(str(e).replace("upload.zip", archive.name)) from None
        zip_path.unlink()
        _check_unpacked(folder / "task", archive.name)

    folder = _materialise(store_root, upload_id, write)
    return folder / "task"


def save_zip_file(store_root: str | Path, zip_path: str | Path, max_bytes: int | None = None,
                  max_unzipped_bytes: int = MAX_UNZIPPED_BYTES) -> Path:
    """`save_zip_upload` for a zip on disk (the CLI's `--task task.zip`), streamed rather than held in memory.

    Same checks, same content-addressed folder (the same bytes uploaded in the app share it);
    `max_bytes` defaults to load_task's per-file limit, since there is no browser upload limit here.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise TaskError(f"{zip_path} does not exist; pass a task folder, a CSV file or a .zip of a task folder.")
    size = zip_path.stat().st_size
    check_size(zip_path.name, size, MAX_FILE_BYTES if max_bytes is None else max_bytes)
    h = hashlib.sha256(b"zip")  # the hash _upload_id gives the same bytes uploaded
    h.update(f"\x00archive\x00{size}\x00".encode())
    with open(zip_path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)

    def write(folder: Path) -> None:
        extract_task_zip(zip_path, folder / "task", max_total_bytes=max_unzipped_bytes)
        _check_unpacked(folder / "task", zip_path.name)

    return _materialise(store_root, h.hexdigest()[:16], write) / "task"


def _check_unpacked(task_dir: Path, archive_name: str) -> None:
    """No train.csv: say so now, with the file names found, naming the zip rather than our temporary folder."""
    try:
        _resolve_data_dir(task_dir)
    except TaskError as e:
        raise TaskError(str(e).replace(f"in {task_dir}", f"in {archive_name}")) from None


# ----------------------------------------------------------------------------------------------
# Loading, with overrides
# ----------------------------------------------------------------------------------------------


def load_uploaded_task(folder: str | Path, *, name: str | None = None, description: str | None = None,
                       target: str | None = None, task_type: str | None = None,
                       metric: str | None = None) -> Task:
    """`load_task` on an upload (or demo) folder; blank strings mean "derive it"."""
    return load_task(Path(folder), name=name or None, description=description or None,
                     target=target or None, task_type=task_type or None, metric=metric or None)


def train_csv_path(folder: str | Path) -> Path:
    """The training CSV of a task folder (directly or under public/), for previews."""
    data_dir = _resolve_data_dir(Path(folder))
    return next(p for p in data_dir.iterdir() if p.name.lower() == "train.csv")


def test_csv_path(folder: str | Path) -> Path | None:
    data_dir = _resolve_data_dir(Path(folder))
    return next((p for p in data_dir.iterdir() if p.name.lower() == "test.csv"), None)


# ----------------------------------------------------------------------------------------------
# Preview data
# ----------------------------------------------------------------------------------------------


def preview_head(csv_path: str | Path, n: int = 10) -> pd.DataFrame:
    """The first n rows (a broken CSV raises TaskError, like load_task would)."""
    df = read_csv(Path(csv_path), nrows=n)
    if len(df.columns) == 0:
        raise TaskError(f"{Path(csv_path).name} has no columns; add a header row.")
    return df


def csv_columns(csv_path: str | Path) -> list[str]:
    return [str(c) for c in read_csv(Path(csv_path), nrows=0).columns]


def column_table(csv_path: str | Path, *, target: str | None = None, id_column: str | None = None,
                 test_columns: list[str] | None = None, nrows: int = PREVIEW_ROWS) -> pd.DataFrame:
    """One row per column: role, kind, dtype, distinct values, missing count and share, example."""
    df = read_csv(Path(csv_path), nrows=nrows)
    rows = []
    for col in df.columns:
        name = str(col)
        p = profile_column(name, df[col], id_column)
        if name == target:
            role = "target"
        elif name == id_column:
            role = "id"
        elif test_columns is not None and name not in test_columns:
            role = "not in test (unused)"
        else:
            role = "feature"
        missing = int(df[col].isna().sum())
        rows.append({"column": name, "role": role, "kind": p.kind, "dtype": p.dtype,
                     "distinct": p.n_unique, "missing": missing,
                     "missing %": round(100 * missing / len(df), 1) if len(df) else 0.0,
                     "example": p.example})
    return pd.DataFrame(rows, columns=["column", "role", "kind", "dtype", "distinct", "missing",
                                       "missing %", "example"])


def target_distribution(csv_path: str | Path, target: str, task_type: str,
                        nrows: int = PREVIEW_ROWS) -> TargetDistribution:
    """Histogram data for a regression target, counts per class otherwise (missing values dropped)."""
    y = read_csv(Path(csv_path), usecols=[target], nrows=nrows)[target].dropna()
    if task_type == "regression":
        values = pd.to_numeric(y, errors="coerce").dropna()
        return TargetDistribution("histogram", pd.DataFrame({"value": values.to_numpy()}), target)
    counts = y.map(label_str).value_counts()
    frame = pd.DataFrame({"class": counts.index.astype(str), "count": counts.to_numpy()})
    return TargetDistribution("bar", frame, target)


def cassettes_dir(store_root: str | Path) -> Path:
    return Path(store_root) / "cassettes"


def save_cassette_upload(store_root: str | Path, upload: UploadedFile,
                         max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[Path, dict[str, Any]]:
    """Check an uploaded cassette (`--brain replay`) and save it as <store>/cassettes/<sha256 prefix>.json.

    Returns (path, cassette). Raises CassetteError naming the user's file when it is not a cassette;
    nothing is kept then. Content-addressed, so re-saving the same bytes on every rerun is a no-op.
    """
    from .brains.llm.replay import CassetteError, load_cassette

    if not upload.name.lower().endswith(".json"):
        raise CassetteError(f"{upload.name} is not a .json file; a cassette is the .json a run's "
                            "'Download cassette' gives.")
    try:
        check_size(upload.name, len(upload.data), max_bytes)
    except TaskError as e:
        raise CassetteError(str(e).replace("a header row and data rows", "a recorded run")) from None
    folder = cassettes_dir(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    final = safe_join(folder, f"{hashlib.sha256(upload.data).hexdigest()[:16]}.json")  # never the user's name
    if not final.is_file():
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}-", suffix=".json", dir=folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(upload.data)
            cassette = _load_named(load_cassette, CassetteError, tmp, upload.name)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return final, cassette
    return final, _load_named(load_cassette, CassetteError, final, upload.name)


def _load_named(load: Callable[[Path], dict[str, Any]], error: type[Exception], path: Path,
                name: str) -> dict[str, Any]:
    try:
        return load(path)
    except error as e:  # name the user's file, not our copy
        raise error(str(e).replace(str(path), name)) from None


# ----------------------------------------------------------------------------------------------
# Bundled demo tasks
# ----------------------------------------------------------------------------------------------


def list_demo_tasks(root: str | Path = DEMO_TASKS_DIR) -> dict[str, Path]:
    """Demo task folders by name; folders starting with `_` hold answers, not tasks."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith((".", "_")) and (p / "train.csv").is_file()}


def demo_config(**overrides: object) -> RunConfig:
    """Small knobs that finish a demo task in a few minutes with the offline brain."""
    config = RunConfig(num_models=3, outer_steps=1, inner_steps=2, num_solutions=2, ensemble_rounds=1,
                       script_timeout=120.0, time_budget=300.0)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config
