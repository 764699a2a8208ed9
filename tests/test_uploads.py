"""Uploads: bytes -> task folder in the store -> Task; previews; bad inputs -> TaskError messages."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlestar_core.exports import best_score_curve, final_files, zip_run_artifacts
from mlestar_core.model import TaskError
from mlestar_core.store import Store
from mlestar_core.uploads import (
    UploadedFile,
    column_table,
    demo_config,
    list_demo_tasks,
    load_uploaded_task,
    preview_head,
    save_csv_upload,
    save_zip_upload,
    target_distribution,
    train_csv_path,
)

ROOT = Path(__file__).resolve().parents[1]
BREAST = ROOT / "demo_tasks" / "breast-cancer"


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def _zip(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def churn() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": range(1, 41), "tenure": [i % 17 for i in range(40)],
                         "plan": ["basic", "pro"] * 20,
                         "charges": [None if i % 10 == 0 else 10.0 + i for i in range(40)],
                         "churned": ["yes" if i % 3 == 0 else "no" for i in range(40)]})


def test_csv_upload_becomes_a_task(tmp_path: Path, churn: pd.DataFrame) -> None:
    folder = save_csv_upload(tmp_path, UploadedFile("my churn.csv", _csv(churn)))
    assert folder.parent == tmp_path / "uploads"
    assert (folder / "train.csv").read_bytes() == _csv(churn)
    task = load_uploaded_task(folder, name="my churn", target="churned")
    assert (task.name, task.target, task.task_type) == ("my churn", "churned", "binary")
    assert task.metric == "roc_auc" and task.higher_is_better
    assert task.id_column == "customer_id"
    assert task.n_train_rows == 40


def test_same_bytes_are_saved_once_different_bytes_apart(tmp_path: Path, churn: pd.DataFrame) -> None:
    a = save_csv_upload(tmp_path, UploadedFile("a.csv", _csv(churn)))
    b = save_csv_upload(tmp_path, UploadedFile("b.csv", _csv(churn)))
    c = save_csv_upload(tmp_path, UploadedFile("a.csv", _csv(churn.head(30))))
    assert a == b != c
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == sorted({a.name, c.name})


def test_description_and_overrides_reach_the_task(tmp_path: Path, churn: pd.DataFrame) -> None:
    folder = save_csv_upload(tmp_path, UploadedFile("c.csv", _csv(churn)))
    desc = "Predict `churned`. Submissions are evaluated on the F1 score."
    assert load_uploaded_task(folder, description=desc).metric == "f1"
    task = load_uploaded_task(folder, description=desc, target="tenure", task_type="regression", metric="mae")
    assert (task.target, task.task_type, task.metric, task.higher_is_better) == ("tenure", "regression", "mae", False)


def test_test_csv_and_sample_submission_are_used(tmp_path: Path) -> None:
    train = (BREAST / "train.csv").read_bytes()
    test = (BREAST / "test.csv").read_bytes()
    sample = (BREAST / "sample_submission.csv").read_bytes()
    folder = save_csv_upload(tmp_path, UploadedFile("train.csv", train), UploadedFile("test.csv", test),
                             UploadedFile("sample_submission.csv", sample))
    task = load_uploaded_task(folder)  # the sample submission names the target
    assert task.target == "malignant"
    assert task.test_file == "test.csv" and task.sample_submission_file == "sample_submission.csv"
    assert task.n_test_rows == len(pd.read_csv(BREAST / "test.csv"))


def test_zip_of_a_task_folder(tmp_path: Path) -> None:
    files = {f"breast-cancer/{p.name}": p.read_bytes() for p in BREAST.iterdir()}
    folder = save_zip_upload(tmp_path, UploadedFile("bc.zip", _zip(files)))
    task = load_uploaded_task(folder)
    assert task.target == "malignant" and task.metric == "roc_auc"  # from description.md
    assert train_csv_path(folder) == folder / "train.csv"
    # MLE-bench layout: the data under public/, the description next to it
    files = {f"public/{p.name}": p.read_bytes() for p in BREAST.iterdir() if p.suffix == ".csv"}
    files["description.md"] = "Submissions are evaluated on log loss."
    folder = save_zip_upload(tmp_path, UploadedFile("bench.zip", _zip(files)))
    assert train_csv_path(folder) == folder / "public" / "train.csv"
    assert load_uploaded_task(folder).metric == "log_loss"
    assert load_uploaded_task(folder, description="Evaluated on accuracy.").metric == "accuracy"


@pytest.mark.parametrize(("upload", "message"), [
    (UploadedFile("data.xlsx", b"PK\x03\x04rest"), "is not a CSV file (.xlsx)"),
    (UploadedFile("data.csv", b""), "data.csv is empty"),
    (UploadedFile("data.csv", b"PK\x03\x04\x00\x00binary"), "is not a text CSV"),
    (UploadedFile("data.csv", b"a,b\n1,2\n" + b"x" * 2048), "over the"),
])
def test_bad_csv_uploads_are_rejected_before_saving(tmp_path: Path, upload: UploadedFile, message: str) -> None:
    with pytest.raises(TaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
        save_csv_upload(tmp_path, upload, max_bytes=1024)
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())


def test_broken_csv_and_missing_target_have_clear_messages(tmp_path: Path, churn: pd.DataFrame) -> None:
    broken = save_csv_upload(tmp_path, UploadedFile("broken.csv", b'a,b\n1,2\n3,"4\n5,6,7,8\n'))
    with pytest.raises(TaskError, match="not a valid CSV"):
        preview_head(train_csv_path(broken))
    folder = save_csv_upload(tmp_path, UploadedFile("c.csv", _csv(churn)))
    with pytest.raises(TaskError, match="target column 'churn' is not in train.csv; similar columns: churned"):
        load_uploaded_task(folder, target="churn")
    with pytest.raises(TaskError, match="cannot tell which column"):
        load_uploaded_task(folder)
    header_only = save_csv_upload(tmp_path, UploadedFile("h.csv", b"a,b\n"))
    with pytest.raises(TaskError, match="no data rows"):
        load_uploaded_task(header_only, target="a")


@pytest.mark.parametrize(("files", "message"), [
    ({"../evil.csv": "a\n1\n"}, "leaves the folder"),
    ({"/etc/evil.csv": "a\n1\n"}, "absolute path"),
    ({"notes.txt": "hello"}, "no train.csv"),
    ({"data/Train_v2.csv": "a\n1\n", "data/readme.md": "x"}, "rename the training table to train.csv"),
])
def test_hostile_or_wrong_zips_are_rejected(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(TaskError, match=message):
        save_zip_upload(tmp_path, UploadedFile("task.zip", _zip(files)))
    leftovers = [p for p in (tmp_path / "uploads").iterdir()] if (tmp_path / "uploads").exists() else []
    assert leftovers == []  # nothing half-written stays behind


def test_zip_bomb_and_non_zip(tmp_path: Path) -> None:
    bomb = _zip({"train.csv": "a\n" + "0\n" * 2_000_000})
    with pytest.raises(TaskError, match="zip bomb"):
        save_zip_upload(tmp_path, UploadedFile("bomb.zip", bomb))
    with pytest.raises(TaskError, match="bomb.zip is not a readable zip"):
        save_zip_upload(tmp_path, UploadedFile("bomb.zip", b"this is not a zip"))
    with pytest.raises(TaskError, match="is not a .zip file"):
        save_zip_upload(tmp_path, UploadedFile("task.tar.gz", b"x"))


def test_column_table_roles_kinds_and_missing(tmp_path: Path, churn: pd.DataFrame) -> None:
    folder = save_csv_upload(tmp_path, UploadedFile("c.csv", _csv(churn)))
    table = column_table(train_csv_path(folder), target="churned", id_column="customer_id",
                         test_columns=["customer_id", "tenure", "charges"]).set_index("column")
    assert table.loc["churned", "role"] == "target"
    assert table.loc["customer_id", "role"] == "id"
    assert table.loc["plan", "role"] == "not in test (unused)"
    assert table.loc["tenure", "kind"] == "numeric" and table.loc["plan", "kind"] == "categorical"
    assert table.loc["charges", "missing"] == 4 and table.loc["charges", "missing %"] == 10.0
    assert table.loc["tenure", "missing"] == 0


def test_target_distribution_bar_and_histogram(tmp_path: Path, churn: pd.DataFrame) -> None:
    folder = save_csv_upload(tmp_path, UploadedFile("c.csv", _csv(churn)))
    bar = target_distribution(train_csv_path(folder), "churned", "binary")
    assert bar.kind == "bar"
    assert dict(zip(bar.frame["class"], bar.frame["count"], strict=True)) == {"no": 26, "yes": 14}
    hist = target_distribution(train_csv_path(folder), "charges", "regression")
    assert hist.kind == "histogram" and len(hist.frame) == 36  # missing values dropped


def test_demo_tasks_and_demo_config() -> None:
    demos = list_demo_tasks()
    assert {"breast-cancer", "customer-churn"} <= set(demos)
    assert not any(name.startswith("_") for name in demos)
    config = demo_config(seed=7)
    assert config.time_budget == 300 and config.seed == 7 and config.num_models <= 4


def test_exports_final_files_zip_and_curve(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    task = load_uploaded_task(BREAST)
    run_id = store.create_run("bc", task, demo_config(), "offline")
    out = store.run_dir(run_id) / "output"
    out.mkdir(parents=True)
    (out / "solution.py").write_text("print('hi')\n")
    (out / "report.md").write_text("# report\n")
    (store.run_dir(run_id) / "data").mkdir()
    (store.run_dir(run_id) / "data" / "train.csv").write_text("big,copy\n")
    store.add_script(run_id, "initial", "print(1)\n", label="lightgbm model")
    assert set(final_files(store, run_id)) == {"solution.py", "report.md"}

    with zipfile.ZipFile(io.BytesIO(zip_run_artifacts(store, run_id))) as zf:
        names = set(zf.namelist())
        assert {"run.json", "run/output/solution.py", "run/output/report.md"} <= names
        assert any(n.startswith("scripts/") and n.endswith("-initial-lightgbm_model.py") for n in names)
        assert not any(n.startswith("run/data/") for n in names)  # the data copy is left out
        assert '"name": "bc"' in zf.read("run.json").decode()

    assert best_score_curve(store, run_id).empty
    # Parallel tracks announce out of order and repeat; the curve is sorted and only improves.
    for t, score in [(5.0, 0.9), (20.0, 0.95), (12.0, 0.93), (25.0, 0.95), (15.0, 0.91)]:
        store.emit(run_id, "best_score", {"score": score, "time": t})
    curve = best_score_curve(store, run_id)
    assert curve.to_dict("list") == {"seconds": [5.0, 12.0, 20.0], "best_score": [0.9, 0.93, 0.95],
                                     "improved": [True, True, True]}
    # Finished after 226 s of agent time: the curve goes on, flat, to there (not a last point at 20 s).
    store.update_run(run_id, status="finished", time_used=226.0)
    curve = best_score_curve(store, run_id)
    assert curve["seconds"].tolist() == [5.0, 12.0, 20.0, 226.0] and curve["best_score"].iloc[-1] == 0.95
    assert curve["improved"].tolist() == [True, True, True, False]


def test_best_score_curve_falls_back_to_executions_and_knows_the_direction(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    task = load_uploaded_task(BREAST, metric="log_loss")  # lower is better
    run_id = store.create_run("bc", task, demo_config(), "offline")
    sid = store.add_script(run_id, "initial", "print(1)\n")

    @dataclass
    class Result:
        score: float | None
        exit_code: int = 0
        stdout: str = ""
        stderr: str = ""
        wall_time: float = 1.0
        peak_memory_mb: float = 1.0
        timed_out: bool = False
        memory_exceeded: bool = False
        killed_reason: str | None = None

    for score, purpose in [(0.5, "search"), (None, "search"), (0.6, "search"), (0.3, "holdout"), (0.4, "search")]:
        store.add_execution(run_id, sid, Result(score), purpose=purpose)
    assert best_score_curve(store, run_id)["best_score"].tolist() == [0.5, 0.4]


def test_cassette_upload_is_checked_and_saved_once(tmp_path: Path) -> None:
    import json

    from mlestar_core.brains.llm.replay import FORMAT, CassetteError
    from mlestar_core.uploads import save_cassette_upload

    cassette = {"format": FORMAT, "version": 1, "recorded": {"brain": "gemini"}, "config": {"num_models": 2},
                "calls": [{"step": "retrieve", "role": "retrieve_models", "index": 0, "answer": "[]"}]}
    data = json.dumps(cassette).encode()
    path, loaded = save_cassette_upload(tmp_path, UploadedFile("run.json", data))
    assert path.parent == tmp_path / "cassettes" and path.suffix == ".json" and loaded == cassette
    again, _ = save_cassette_upload(tmp_path, UploadedFile("copy.json", data))
    assert again == path and len(list((tmp_path / "cassettes").iterdir())) == 1  # content-addressed
    for name, raw, message in [("notes.txt", data, "notes.txt is not a .json file"),
                               ("empty.json", b"", "empty.json is empty"),
                               ("broken.json", b"{", "broken.json is not a cassette (not readable JSON"),
                               ("other.json", b'{"calls": []}', "other.json is not an MLE-STAR Studio cassette")]:
        with pytest.raises(CassetteError) as err:
            save_cassette_upload(tmp_path, UploadedFile(name, raw))
        assert message in str(err.value) and str(tmp_path) not in str(err.value)
    assert len(list((tmp_path / "cassettes").iterdir())) == 1  # nothing kept of the bad ones


def test_zip_without_train_csv_names_the_zip_not_a_temporary_folder(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"^no train\.csv in task\.zip \(CSV files found: data\.csv; rename"):
        save_zip_upload(tmp_path, UploadedFile("task.zip", _zip({"data.csv": "a\n1\n"})))


def test_csv_upload_is_checked_like_load_task_and_names_the_users_file(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"^my data\.csv separates its columns with semicolons"):
        save_csv_upload(tmp_path, UploadedFile("my data.csv", b"a;b;y\n1;2;0\n"))
    with pytest.raises(TaskError, match=r"^holdout\.csv has duplicate column names: 'a'"):
        save_csv_upload(tmp_path, UploadedFile("t.csv", b"a,b\n1,2\n"), UploadedFile("holdout.csv", b"a,a\n1,2\n"))
    assert not (tmp_path / "uploads").exists()  # nothing saved for files that cannot be used
