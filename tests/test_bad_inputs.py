"""Every bad input gets one clear message, on the command line and in the app, and leaves nothing behind.

The corpus is tests/data/bad/ (a task folder or a zip per case; README.md there lists them). For each
case the CLI exits with code 2 and prints a single `error: ...` line on stderr, no traceback, and the
store holds no run (everything is checked before `create_run`). The app path is the functions the New
run page calls (`save_csv_upload` / `save_zip_upload`, `preview_head`, `csv_columns`,
`load_uploaded_task`): they raise a TaskError with the same message, naming the user's file.

Real subprocesses for a representative subset; `cli.main` in-process for the rest (keeps the file fast).
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlestar_core import cli
from mlestar_core.brains.base import BrainContext
from mlestar_core.brains.offline import OfflineBrain
from mlestar_core.model import ModelCard, TaskError
from mlestar_core.steps import NoWorkingSolution
from mlestar_core.store import Store
from mlestar_core.uploads import (
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_MB,
    UploadedFile,
    csv_columns,
    load_uploaded_task,
    preview_head,
    save_csv_upload,
    save_zip_upload,
    train_csv_path,
)

ROOT = Path(__file__).resolve().parents[1]
BAD = Path(__file__).resolve().parent / "data" / "bad"
DEMOS = ROOT / "demo_tasks"


@dataclass(frozen=True)
class Case:
    name: str  # a folder (or zips/<name>.zip) under tests/data/bad
    message: str  # a regex; {train} / {test} / {zip} stand for the file names the message must use
    args: tuple[str, ...] = ("--target", "label")  # CLI task arguments besides --task
    at_upload: bool = False  # the app rejects it when the file is uploaded (before anything is saved)

    @property
    def path(self) -> Path:
        return BAD / self.name

    def pattern(self, train: str = "train.csv", test: str = "test.csv", zip_name: str = "") -> str:
        return self.message.format(train=re.escape(train), test=re.escape(test), zip=re.escape(zip_name))


CASES = [
    Case("empty", r"{train} is empty \(0 bytes\); (add|upload a file with) a header row and data rows", at_upload=True),
    Case("binary_junk", r"{train} is not a text CSV \(it looks like a zip archive or an Excel \.xlsx workbook\); "
                        r"export the table as a CSV file \(comma-separated, UTF-8\)", at_upload=True),
    Case("semicolon", r"{train} separates its columns with semicolons \(;\), not commas \(its header reads "
                      r"'id;size;colour;label'\).*pd\.read_csv\('.*', sep=';'\)\.to_csv", at_upload=True),
    Case("tab", r"{train} separates its columns with tabs, not commas.*sep='\\t'", at_upload=True),
    Case("pipe", r"{train} separates its columns with pipes \(\|\), not commas.*sep='\|'", at_upload=True),
    Case("latin1", r"{train} is not UTF-8 text: line 13 \(12,3,crème brûlée,0\) has byte 0xe8, which is 'è' in "
                   r"Latin-1 / Windows-1252.*Re-save it as UTF-8.*encoding='cp1252'", at_upload=True),
    Case("duplicate_columns", r"{train} has duplicate column names: 'size' \(columns 2, 3\)\. pandas would "
                              r"silently rename the second one to 'size\.1'; rename the columns", at_upload=True),
    Case("ragged_rows", r"{train} is not a valid CSV at line 2: that row has 5 fields but the header \(line 1\) "
                        r"has 4\. Check that row for an extra comma", at_upload=True),
    Case("missing_target", r"target column 'price' is not in train\.csv; columns: id, size, colour, label\. Name "
                           r"the column to predict with --target", args=("--target", "price")),
    Case("target_all_missing", r"target column 'label' has no values in train\.csv: all 30 rows are empty\. "
                               r"Fill in the target values"),
    Case("single_class", r"target column 'label' has a single value in train\.csv: 'yes' in all 30 rows with a "
                         r"value\. A model needs at least two different target values \(two classes\)"),
    Case("too_few_rows", r"train\.csv has only 2 rows with a value in 'label'; at least 20 are needed: every model "
                         r"is scored on rows it was not trained on.*Add training rows"),
    Case("test_no_shared_columns", r"{test} shares no feature column with train\.csv: it lacks size, colour, and "
                                   r"has height, weight, which train\.csv lacks\. A model trained on train\.csv "
                                   r"cannot predict it"),
    Case("test_no_shared_columns", r"{test} shares no feature column with train\.csv: it lacks size, colour, "
                                   r"label \(one of them is presumably the target\), and has height, weight",
         args=()),
    Case("test_renamed_columns", r"the columns of {test} do not match train\.csv: it lacks size, and has Size, "
                                 r"which train\.csv lacks\. Renamed columns\? size → Size\. Give {test} the same "
                                 r"feature columns"),
    Case("unsupported_metric", r"the description says the task is judged by MAP@k, which this tool does not "
                               r"support.*Pick a supported metric with --metric \(the Metric menu in the app\): "
                               r"accuracy, .*roc_auc\.", args=()),
    Case("zips/traversal.zip", r"{zip} contains a path that leaves the folder \('task/\.\./\.\./evil\.csv'\), so it "
                               r"was rejected and nothing was unpacked"),
    Case("zips/absolute.zip", r"{zip} contains an absolute path \('/tmp/evil\.csv'\), so it was rejected"),
    Case("zips/symlink.zip", r"{zip} contains a symbolic link \('task/train\.csv'\), so it was rejected"),
]
# One per family of checks: format (delimiter, encoding), content (rows), train vs test, zip safety.
SUBPROCESS = {"semicolon", "latin1", "too_few_rows", "test_no_shared_columns", "zips/traversal.zip"}


def _id(case: Case) -> str:
    return case.name.removeprefix("zips/") + ("" if case.args == ("--target", "label") else "-" + "-".join(case.args))


def _argv(store: Path, out: Path, task: Path, args: tuple[str, ...]) -> list[str]:
    return ["--store", str(store), "run", "--task", str(task), "--out", str(out), *args]


def _assert_clean_failure(rc: int, stdout: str, stderr: str, pattern: str, store: Path) -> None:
    assert rc == 2, stderr
    assert "Traceback" not in stderr and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr  # one message, one line
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    assert Store(store).list_runs() == []  # validated before create_run: no run left behind
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())
    uploads = store / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []  # no half-unpacked zip either


def _zip_name(case: Case) -> str:
    return case.path.name if case.path.suffix == ".zip" else ""


@pytest.mark.parametrize("case", [c for c in CASES if c.name in SUBPROCESS and c.args == ("--target", "label")],
                         ids=_id)
def test_cli_subprocess_exits_2_with_one_message(case: Case, tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "mlestar_core", *_argv(store, tmp_path / "out", case.path,
                                                                         case.args)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    _assert_clean_failure(proc.returncode, proc.stdout, proc.stderr, case.pattern(zip_name=_zip_name(case)), store)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_cli_in_process_exits_2_with_one_message(case: Case, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    rc = cli.main(_argv(store, tmp_path / "out", case.path, case.args))
    captured = capsys.readouterr()
    _assert_clean_failure(rc, captured.out, captured.err, case.pattern(zip_name=_zip_name(case)), store)


def _upload_folder(case: Case, store: Path) -> Path:
    """What the New run page does with the case's files: a CSV upload (the user's own file names) or a zip."""
    if case.path.suffix == ".zip":
        return save_zip_upload(store, UploadedFile(case.path.name, case.path.read_bytes()))
    test = case.path / "test.csv"
    return save_csv_upload(store, UploadedFile(f"my {case.name}.csv", (case.path / "train.csv").read_bytes()),
                           UploadedFile("my test.csv", test.read_bytes()) if test.is_file() else None)


def _page_calls(folder: Path, case: Case) -> None:
    """The New run page's calls after an upload was saved, in its order."""
    train = train_csv_path(folder)
    preview_head(train)
    csv_columns(train)
    description = (case.path / "description.md").read_text() if (case.path / "description.md").is_file() else None
    target = case.args[1] if case.args[:1] == ("--target",) else None
    load_uploaded_task(folder, description=description, target=target)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_app_path_gives_the_same_message(case: Case, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with pytest.raises(TaskError) as err:
        _page_calls(_upload_folder(case, store), case)
    # Rejected at upload, a message names the user's file; later, the saved copy (train.csv, test.csv).
    train = f"my {case.name}.csv" if case.at_upload else "train.csv"
    assert re.search(case.pattern(train=train, zip_name=_zip_name(case)), str(err.value)), str(err.value)
    uploads = store / "uploads"
    leftovers = [p.name for p in uploads.iterdir()] if uploads.exists() else []
    assert not [n for n in leftovers if n.startswith(".")]  # no temporary (half-written) folder
    if case.at_upload or case.path.suffix == ".zip":
        assert leftovers == []  # nothing saved for a file that cannot be used


def test_every_corpus_entry_has_a_case() -> None:
    entries = {p.name for p in BAD.iterdir() if p.is_dir() and p.name != "zips"}
    entries |= {f"zips/{p.name}" for p in (BAD / "zips").iterdir()}
    covered = {c.name for c in CASES} | {"test_lacks_feature", "test_extra_column"}
    assert entries == covered


# -- test files that differ from train but can be used --------------------------------------------------------


def test_test_file_lacking_a_train_column_loads_with_a_note() -> None:
    # Allowed on purpose: Kaggle tasks ship train-only columns (known only after the fact); they are not features.
    folder = BAD / "test_lacks_feature"
    task = load_uploaded_task(folder, target="label")
    assert "colour" not in [c.name for c in task.columns] and "size" in [c.name for c in task.columns]
    assert any("test.csv lacks colour, which train.csv has" in n and "not used as features" in n for n in task.notes)


def test_extra_test_columns_are_a_note_not_an_error() -> None:
    task = load_uploaded_task(BAD / "test_extra_column", target="label")
    assert "Usage" not in [c.name for c in task.columns]
    assert any(n.startswith("test.csv has Usage, which train.csv lacks") and "it is ignored" in n for n in task.notes)


def test_unsupported_metric_is_fixed_by_choosing_one() -> None:
    description = (BAD / "unsupported_metric" / "description.md").read_text()
    task = load_uploaded_task(BAD / "unsupported_metric", description=description, metric="accuracy")
    assert (task.metric, task.target) == ("accuracy", "label")


# -- size limits and zip bombs (made at run time, never committed) --------------------------------------------


def test_upload_limit_matches_the_streamlit_config() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB and MAX_UPLOAD_BYTES == MAX_UPLOAD_MB * 1024 * 1024


def _big_csv(n_bytes: int) -> bytes:
    rows = "".join(f"{i},{i % 7},{i % 2}\n" for i in range(n_bytes // 6))
    return ("id,x,label\n" + rows).encode()[:n_bytes].rsplit(b"\n", 1)[0] + b"\n"


def test_file_over_the_upload_limit(tmp_path: Path) -> None:
    data = _big_csv(4096)
    with pytest.raises(TaskError, match=r"^big\.csv is 4\.0 KB, over the 2\.0 KB limit per file; upload a smaller "):
        save_csv_upload(tmp_path, UploadedFile("big.csv", data + b"0" * (4096 - len(data))), max_bytes=2048)
    with pytest.raises(TaskError, match=r"^task\.zip is .* KB, over the 1\.0 KB limit per file"):
        save_zip_upload(tmp_path, UploadedFile("task.zip", _zip({"train.csv": data}, zipfile.ZIP_STORED)),
                        max_bytes=1024)
    assert not (tmp_path / "uploads").exists()


def test_cli_file_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("mlestar_core.task.MAX_FILE_BYTES", 2048)  # the CLI's limit is 2 GB: not written here
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "train.csv").write_bytes(_big_csv(8192))
    rc = cli.main(_argv(tmp_path / "store", tmp_path / "out", tmp_path / "task", ("--target", "label")))
    captured = capsys.readouterr()
    _assert_clean_failure(rc, captured.out, captured.err,
                          r"train\.csv is 8\.0 KB, over the 2\.0 KB limit per file; use a smaller sample",
                          tmp_path / "store")


def _zip(files: dict[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_by_ratio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = _zip({"train.csv": "label\n" + "0\n" * 3_000_000})  # 6 MB of zeros in a few KB
    assert len(bomb) < 50_000
    message = r"'train\.csv' in bomb\.zip compresses \d+:1, which looks like a zip bomb, so it was rejected"
    with pytest.raises(TaskError, match=message):
        save_zip_upload(tmp_path / "app", UploadedFile("bomb.zip", bomb))
    assert list((tmp_path / "app" / "uploads").iterdir()) == []
    (tmp_path / "bomb.zip").write_bytes(bomb)
    rc = cli.main(_argv(tmp_path / "store", tmp_path / "out", tmp_path / "bomb.zip", ()))
    captured = capsys.readouterr()
    _assert_clean_failure(rc, captured.out, captured.err, message, tmp_path / "store")


def test_zip_over_the_unpacked_size_limit(tmp_path: Path) -> None:
    plain = _zip({"train.csv": _big_csv(300_000), "test.csv": _big_csv(300_000)}, zipfile.ZIP_STORED)
    with pytest.raises(TaskError, match=r"^big\.zip unpacks to more than 488\.3 KB \(the limit\), so it was rejected "
                                        r"and nothing was unpacked"):
        save_zip_upload(tmp_path, UploadedFile("big.zip", plain), max_unzipped_bytes=500_000)
    assert list((tmp_path / "uploads").iterdir()) == []


def test_cli_accepts_a_good_zip(tmp_path: Path) -> None:
    # The zip cases above reach their checks because the CLI now unpacks a --task zip as the app does.
    from mlestar_core.task import load_task
    from mlestar_core.uploads import save_zip_file

    files = {f"breast/{n}": (DEMOS / "breast-cancer" / n).read_bytes() for n in ("train.csv", "test.csv")}
    (tmp_path / "breast.zip").write_bytes(_zip(files))
    folder = save_zip_file(tmp_path / "store", tmp_path / "breast.zip")
    assert folder == save_zip_file(tmp_path / "store", tmp_path / "breast.zip")  # same bytes, same folder
    assert load_task(folder, target="malignant").n_train_rows > 100


# -- a run whose every initial candidate fails ----------------------------------------------------------------


class BrokenBrain(OfflineBrain):
    """Writes initial solutions that always crash, and a debugger that cannot fix them."""

    SCRIPT = 'raise ValueError("could not convert string to float: \'red\' (column colour)")\n'

    def write_initial_solution(self, ctx: BrainContext, card: ModelCard) -> str:
        return self.SCRIPT

    def debug(self, ctx: BrainContext, code: str, error: str, failure: str = "error") -> str:
        return self.SCRIPT


def test_no_working_initial_solution_is_a_clear_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "make_brain", lambda *args, **kwargs: BrokenBrain())
    store = tmp_path / "store"
    rc = cli.main(_argv(store, tmp_path / "out", DEMOS / "breast-cancer",
                        ("-M", "2", "-L", "1", "-T", "0", "-R", "0", "--folds", "2", "--workers", "2")))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    (run,) = Store(store).list_runs()
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"error: run {run['id']} failed: No initial solution ran successfully: all 2 initial "
                              "solutions failed, even after the debugger's fixes, so there is nothing to refine.")
    # The first candidate's error, shortened to its last line, and where to look.
    assert "failed: exit code 1, ValueError: could not convert string to float: 'red' (column colour)." in message
    assert "Its script, output and files are in " in message and "Refinement page" in message
    row = Store(store).get_run(run["id"])
    assert row["status"] == "failed"
    assert message.removeprefix(f"error: run {run['id']} failed: ") in row["error"]


def test_no_working_solution_message_for_a_timeout() -> None:
    class Log:
        def executions_of(self, script_id: int) -> list[dict[str, object]]:
            return [{"exit_code": -9, "killed_reason": "timeout", "timed_out": 1, "stderr": "", "workdir": ""}]

    from mlestar_core.steps import Scored

    exc = NoWorkingSolution.from_candidates(Log(), "r1", [Scored(7, None, label="XGBoost")])
    assert "The first, 'XGBoost' (script #7), failed: it ran out of time (the script timeout; raise it with " \
           "--script-timeout)." in str(exc)
    assert "the initial solution failed" in str(exc)
