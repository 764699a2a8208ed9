"""Loading tasks: demo tasks, derivations, overrides, friendly errors and hostile zips."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlestar_core import task as task_mod
from mlestar_core.model import TaskError
from mlestar_core.task import describe_task, extract_task_zip, load_task, normalize_ids, sorted_classes


@pytest.mark.parametrize(
    ("name", "target", "id_col", "ttype", "metric", "kind", "classes", "positive", "columns"),
    [
        ("breast-cancer", "malignant", "id", "binary", "roc_auc", "proba_positive", ["0", "1"], "1",
         ["id", "malignant"]),
        ("diabetes-progression", "progression", "id", "regression", "rmse", "value", [], None,
         ["id", "progression"]),
        ("wine-cultivar", "cultivar", "id", "multiclass", "log_loss", "proba_per_class", ["0", "1", "2"],
         None, ["id", "class_0", "class_1", "class_2"]),
        ("customer-churn", "churned", "customer_id", "binary", "f1", "label", ["no", "yes"], "yes",
         ["customer_id", "churned"]),
    ],
)
def test_demo_tasks_load(demo_tasks_dir: Path, name: str, target: str, id_col: str, ttype: str, metric: str,
                         kind: str, classes: list[str], positive: str | None, columns: list[str]) -> None:
    t = load_task(demo_tasks_dir / name)
    assert (t.name, t.target, t.id_column, t.task_type, t.metric) == (name, target, id_col, ttype, metric)
    assert t.submission_kind == kind
    assert t.classes == classes
    assert t.positive_class == positive
    assert t.submission_columns == columns
    assert t.sample_submission_file == "sample_submission.csv"
    assert t.higher_is_better == (metric in ("roc_auc", "f1"))
    answers = pd.read_csv(demo_tasks_dir / "_answers" / f"{name}.csv")
    assert t.n_test_rows == len(answers) > 0
    assert t.n_train_rows == len(pd.read_csv(demo_tasks_dir / name / "train.csv"))
    assert target not in [c.name for c in t.columns]
    assert "Evaluation" in t.description


def test_demo_tasks_are_deterministic_and_small(demo_tasks_dir: Path, tmp_path: Path) -> None:
    from mlestar_core.demos import write_demo_tasks

    folders = write_demo_tasks(tmp_path)
    assert [f.name for f in folders] == ["breast-cancer", "diabetes-progression", "wine-cultivar",
                                         "customer-churn"]
    for fresh in sorted(tmp_path.rglob("*.csv")):
        committed = demo_tasks_dir / fresh.relative_to(tmp_path)
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed} differs from the generator"
    total = sum(p.stat().st_size for p in demo_tasks_dir.rglob("*") if p.is_file())
    assert total < 1_500_000


def test_demo_answers_match_test_ids(demo_tasks_dir: Path) -> None:
    for name in ("breast-cancer", "customer-churn"):
        t = load_task(demo_tasks_dir / name)
        test = pd.read_csv(demo_tasks_dir / name / "test.csv")
        answers = pd.read_csv(demo_tasks_dir / "_answers" / f"{name}.csv")
        sample = pd.read_csv(demo_tasks_dir / name / "sample_submission.csv")
        assert list(answers[t.id_column]) == list(test[t.id_column]) == list(sample[t.id_column])
        train = pd.read_csv(demo_tasks_dir / name / "train.csv")
        assert not set(train[t.id_column]) & set(test[t.id_column])


def test_customer_churn_column_kinds(demo_tasks_dir: Path) -> None:
    t = load_task(demo_tasks_dir / "customer-churn")
    kinds = {c.name: c.kind for c in t.columns}
    assert kinds == {
        "customer_id": "id", "signup_date": "datetime", "tenure_months": "numeric", "plan": "categorical",
        "monthly_charges": "numeric", "payment_method": "categorical", "city": "categorical",
        "is_autopay": "boolean", "support_calls": "numeric", "ticket_note": "text",
    }
    prof = {c.name: c for c in t.columns}
    assert 0.03 < prof["monthly_charges"].missing_fraction < 0.15
    assert prof["city"].n_unique > 250
    assert prof["plan"].n_unique == 3
    assert prof["customer_id"].n_unique == t.n_train_rows
    assert prof["signup_date"].example.count("-") == 2


def test_describe_task_mentions_what_matters(demo_tasks_dir: Path) -> None:
    text = describe_task(load_task(demo_tasks_dir / "customer-churn"))
    for needle in ("churned", "3000 rows", "1000 rows", "binary", "F1", "higher is better",
                   "text (1): ticket_note", "datetime (1): signup_date", "customer_id, churned",
                   "positive class 'yes'", "monthly_charges"):
        assert needle in text, needle
    reg = describe_task(load_task(demo_tasks_dir / "diabetes-progression"))
    assert "lower is better" in reg and "mean" in reg


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.choice(["x", "y", "z"], n),
                         "label": rng.choice(["cat", "dog"], n)})


def test_single_csv_with_target(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    _frame().to_csv(csv, index=False)
    t = load_task(csv, target="label")
    assert (t.name, t.target, t.task_type, t.metric) == ("label (binary)", "label", "binary", "roc_auc")
    assert t.test_file is None
    assert t.submission_columns == ["label"] and t.submission_kind == "proba_positive"
    assert t.positive_class == "dog"
    assert t.data_dir == tmp_path and t.train_file == "data.csv"


def test_single_csv_target_from_description_and_test_path(tmp_path: Path) -> None:
    df = _frame(80)
    df["row_id"] = range(80)
    df.iloc[:60].to_csv(tmp_path / "train_part.csv", index=False)
    other = tmp_path / "elsewhere"
    other.mkdir()
    df.iloc[60:].drop(columns="label").to_csv(other / "holdout.csv", index=False)
    t = load_task(tmp_path / "train_part.csv", test_path=other / "holdout.csv",
                  description="We want to predict the `label` of each pet. Evaluation: accuracy.")
    assert (t.target, t.metric, t.id_column, t.n_test_rows) == ("label", "accuracy", "row_id", 20)
    assert (t.data_dir / t.test_file).resolve() == (other / "holdout.csv").resolve()
    assert t.submission_columns == ["row_id", "label"]


def test_single_csv_without_target_says_what_to_add(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    _frame().to_csv(csv, index=False)
    with pytest.raises(TaskError, match="target="):
        load_task(csv)


def test_overrides_win(demo_tasks_dir: Path) -> None:
    t = load_task(demo_tasks_dir / "breast-cancer", metric="accuracy", name="bc")
    assert (t.metric, t.submission_kind, t.name, t.higher_is_better) == ("accuracy", "label", "bc", True)
    t = load_task(demo_tasks_dir / "breast-cancer",
                  description="Evaluation: submissions are scored on log loss.")
    assert t.metric == "log_loss" and not t.higher_is_better
    t = load_task(demo_tasks_dir / "diabetes-progression", metric="MAE")  # aliases work for metric=
    assert t.metric == "mae"
    t = load_task(demo_tasks_dir / "wine-cultivar", metric="accuracy", id_column="id")
    assert t.metric == "accuracy" and t.submission_kind == "proba_per_class"  # the sample's format stays


def test_description_metric_beats_default_and_type_inference(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"id": range(100), "x": rng.normal(size=100), "y": rng.integers(0, 5, 100)})
    test = train.drop(columns="y").assign(id=range(100, 200))
    plain = load_task(make_task_dir(train, test))
    assert (plain.target, plain.task_type, plain.metric) == ("y", "multiclass", "accuracy")
    assert plain.classes == ["0", "1", "2", "3", "4"]
    reg = load_task(make_task_dir(train, test, description="## Evaluation\nScored on mean absolute error."))
    assert (reg.task_type, reg.metric, reg.submission_kind) == ("regression", "mae", "value")
    train["y"] = rng.normal(size=100) * 100
    assert load_task(make_task_dir(train, test)).task_type == "regression"


def test_target_and_id_derivations(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"PassengerId": range(1, 101), "Age": rng.integers(1, 80, 100),
                          "Survived": rng.integers(0, 2, 100)})
    test = pd.DataFrame({"PassengerId": range(101, 151), "Age": rng.integers(1, 80, 50)})
    t = load_task(make_task_dir(train, test))  # only train-only column -> target
    assert (t.target, t.id_column, t.task_type) == ("Survived", "PassengerId", "binary")
    assert t.submission_columns == ["PassengerId", "Survived"]
    assert {c.name: c.kind for c in t.columns} == {"PassengerId": "id", "Age": "numeric"}
    # A sample submission under another accepted name, inside public/.
    folder = make_task_dir(None, files={"public/train.csv": train.to_csv(index=False),
                                        "public/test.csv": test.to_csv(index=False),
                                        "public/sampleSubmission.csv": "PassengerId,Survived\n101,0\n",
                                        "public/extra.csv": "a\n1\n", "public/task.txt": "Predict survival.",
                                        "private/answers.csv": "PassengerId,Survived\n101,1\n"})
    t = load_task(folder)
    assert t.sample_submission_file == "sampleSubmission.csv" and t.data_dir == folder / "public"
    assert t.other_files == ["extra.csv"] and t.description == "Predict survival."
    assert t.name == folder.name


def test_large_files_are_counted_and_all_classes_seen(make_task_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(task_mod, "PROFILE_ROWS", 50)
    train = pd.DataFrame({"x": range(300), "y": ["a"] * 100 + ["b"] * 150 + ["c"] * 50})  # "c" after row 50
    test = pd.DataFrame({"x": range(120)})
    t = load_task(make_task_dir(train, test), target="y")
    assert (t.n_train_rows, t.n_test_rows) == (300, 120)
    assert t.classes == ["a", "b", "c"] and t.task_type == "multiclass"


def test_numeric_classes_sort_numerically() -> None:
    assert sorted_classes(["10", "2", "1"]) == ["1", "2", "10"]
    assert sorted_classes(["True", "False"]) == ["False", "True"]
    assert sorted_classes(["yes", "no"]) == ["no", "yes"]


def test_normalize_ids_matches_numbers_but_keeps_codes() -> None:
    assert normalize_ids([7, 7.0, "7", " 7.0 ", np.int64(7)]) == ["7"] * 5
    # "0001_01" is a code, not the number 101 (float() would accept the underscore).
    assert normalize_ids(["0001_01", "nan", "1e3", "C-12"]) == ["0001_01", "nan", "1e3", "C-12"]


# --- errors -----------------------------------------------------------------------------------


def test_missing_folder_and_missing_train(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="does not exist"):
        load_task(tmp_path / "nope")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(TaskError, match=r"no train\.csv.*data\.csv"):
        load_task(tmp_path)


def test_broken_csv_names_file_and_line(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    folder = make_task_dir(None, files={"train.csv": "a,b,y\n1,2,0\n3,4,1\n5,6,7,8\n"})
    with pytest.raises(TaskError, match=r"train\.csv is not a valid CSV at line 4") as err:
        load_task(folder, target="y")
    assert "Traceback" not in str(err.value)


_ROWS = "".join(f"{i},{i % 7},{i % 3},{i % 2}\n" for i in range(20_000))  # ~250 KB: past the checked head


@pytest.mark.parametrize(("data", "message"), [
    # Past the first SNIFF_BYTES, pandas finds the problem; the message still names the line and the cause.
    (("id,a,b,y\n" + _ROWS + "20000,café,1,0\n").encode("latin-1"),
     r"train\.csv is not UTF-8 text: line 20002 \(20000,café,1,0\) has byte 0xe9, which is 'é' in Latin-1"),
    (("id,a,b,y\n" + _ROWS + "20000,1,2,3,4\n").encode(),
     r"train\.csv is not a valid CSV at line 20002: that row has 5 fields but the header has 4\."),
    (('id,a,b,y\n1,"2,3,0\n' + _ROWS).encode(),
     r"train\.csv is not a valid CSV at line 2: a quote \(\"\) opened in that row is never closed"),
    (("id,a,b,y\n" + _ROWS[:3000]).encode("utf-16"), r"train\.csv is UTF-16 text .*re-save it as UTF-8"),
    (("sep=;\nid;a;b;y\n" + _ROWS.replace(",", ";")).encode(), r"train\.csv starts with Excel's 'sep=;' line"),
    (b"id,a,a,b,b,y\n1,2,3,4,5,0\n", r"duplicate column names: 'a' \(columns 2, 3\); 'b' \(columns 4, 5\)"),
    (b"\x00\x01" + b"id,a,y\n" * 10, r"train\.csv is not a text CSV \(it looks like a binary file"),
    (b"%PDF-1.4\n" + b"x" * 100, r"train\.csv is not a text CSV \(it looks like a PDF document\)"),
])
def test_csv_format_problems_name_the_cause(make_task_dir, data: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TaskError, match=message):
        load_task(make_task_dir(None, files={"train.csv": data}), target="y")


@pytest.mark.parametrize("data", [
    ("id,a,b,y\n" + _ROWS).replace("\n", "\r\n").encode(),  # Windows line ends
    ("id,a,b,y\n" + _ROWS).replace("\n", "\r").encode(),  # old Mac line ends
    b"\xef\xbb\xbf" + ("id,a,b,y\n" + _ROWS).encode(),  # Excel's UTF-8 byte-order mark
    ('id,a,b,y\n1,"two\nlines, and a comma",2,0\n' + _ROWS).encode(),  # a quoted value over two lines
    ("id,a,b,y\n" + _ROWS + "5,6\n").encode(),  # a short row: its missing fields are missing values
    b"id;a\nx\ny\n",  # a semicolon in the header that the rows do not share: one column named "id;a"
])
def test_valid_csv_variants_still_load(make_task_dir, data: bytes) -> None:  # type: ignore[no-untyped-def]
    folder = make_task_dir(None, files={"train.csv": data})
    if data.startswith(b"id;a"):
        assert list(task_mod.read_csv(folder / "train.csv").columns) == ["id;a"]
        return
    assert load_task(folder, target="y").n_train_rows >= 20_000


def test_test_file_columns_must_match_train(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    train = _frame()
    with pytest.raises(TaskError, match=r"test\.csv shares no feature column with train\.csv: it lacks a, b, and has "
                                        r"p, q, which train\.csv lacks"):
        load_task(make_task_dir(train, pd.DataFrame({"p": [1], "q": [2]})), target="label")
    with pytest.raises(TaskError, match=r"the columns of test\.csv do not match train\.csv: it lacks b, and has B, "
                                        r"which train\.csv lacks\. Renamed columns\? b → B\."):
        load_task(make_task_dir(train, train.drop(columns=["label"]).rename(columns={"b": "B"})), target="label")
    # Extra test columns only: a note, they are ignored.
    task = load_task(make_task_dir(train, train.drop(columns=["label"]).assign(Usage="Public")), target="label")
    assert any(n.startswith("test.csv has Usage, which train.csv lacks") for n in task.notes)
    assert "Usage" not in [c.name for c in task.columns]


def test_too_few_rows_states_the_minimum(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    n = task_mod.MIN_TRAIN_ROWS
    small = pd.DataFrame({"x": range(n + 5), "y": [0, 1] * ((n + 5) // 2) + [0] * ((n + 5) % 2)})
    small.loc[: 5, "y"] = None  # n - 1 labelled rows
    small.loc[6, "y"] = None
    with pytest.raises(TaskError, match=rf"train\.csv has only {n - 2} rows with a value in 'y' \({n + 5} rows, "
                                        rf"{n - 2} of them with a target value\); at least {n} are needed"):
        load_task(make_task_dir(small), target="y")
    assert load_task(make_task_dir(small.fillna({"y": 1})), target="y").n_train_rows == n + 5


def test_empty_files(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TaskError, match=r"train\.csv is empty"):
        load_task(make_task_dir(None, files={"train.csv": ""}))
    with pytest.raises(TaskError, match="no data rows"):
        load_task(make_task_dir(None, files={"train.csv": "a,y\n"}), target="y")


def test_missing_target_suggests_similar(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    train = pd.DataFrame({"LotArea": [1, 2, 3], "SalePrice": [10.0, 20.0, 30.5]})
    with pytest.raises(TaskError, match=r"'SalesPrice' is not in train\.csv; similar columns: SalePrice"):
        load_task(make_task_dir(train), target="SalesPrice")


def test_single_valued_target(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    train = pd.DataFrame({"x": [1, 2, 3], "y": [1, 1, 1]})
    with pytest.raises(TaskError, match="single value"):
        load_task(make_task_dir(train), target="y")


def test_metric_type_mismatch(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    folder = make_task_dir(_frame())
    with pytest.raises(TaskError, match="RMSE is for regression.*'label'"):
        load_task(folder, target="label", metric="rmse")
    with pytest.raises(TaskError, match="for classification.*continuous"):
        load_task(folder, target="a", metric="accuracy")
    with pytest.raises(TaskError, match="is a regression metric but the task is binary"):
        load_task(make_task_dir(pd.DataFrame({"x": range(10), "y": [0, 1] * 5})), target="y",
                  metric="mae", task_type="binary")
    with pytest.raises(TaskError, match="not numeric"):
        load_task(folder, target="label", task_type="regression")


def test_unknown_metric_lists_known(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TaskError, match=r"unknown metric 'kappa'; known metrics: accuracy, balanced_accuracy, f1"):
        load_task(make_task_dir(_frame()), target="label", metric="kappa")


@pytest.mark.parametrize(("given", "expected"),
                         [("pr auc", "pr_auc"), ("Macro F1", "f1_macro"), ("quadratic weighted kappa", "qwk"),
                          ("MCC", "mcc"), ("normalized gini", "gini"), ("balanced_accuracy", "balanced_accuracy")])
def test_new_metrics_resolve_by_alias(make_task_dir, given: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    t = load_task(make_task_dir(_frame()), target="label", metric=given)
    assert (t.metric, t.task_type, t.metric_defaulted) == (expected, "binary", False)


def test_new_metric_from_description_sets_submission_kind(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    folder = make_task_dir(_frame(), description="## Evaluation\nSubmissions are evaluated on PR AUC.")
    t = load_task(folder, target="label")
    assert (t.metric, t.submission_kind, t.higher_is_better) == ("pr_auc", "proba_positive", True)
    folder = make_task_dir(_frame(), description="Submissions are evaluated on the mean squared error.")
    t = load_task(folder, target="a")
    assert (t.metric, t.task_type, t.higher_is_better) == ("mse", "regression", False)


def test_binary_only_metric_on_multiclass_task(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    train = pd.DataFrame({"x": range(30), "y": ["a", "b", "c"] * 10})
    with pytest.raises(TaskError, match="binary-classification metric but the task is multiclass"):
        load_task(make_task_dir(train), target="y", metric="gini")


def test_unsupported_metric_in_description_is_an_error(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    description = "## Evaluation\nSubmissions are evaluated on MAP@5. Last year's best accuracy was 0.8."
    folder = make_task_dir(_frame(), description=description)
    with pytest.raises(TaskError, match=r"the description says the task is judged by MAP@k, which this tool "
                                        r"does not support .* Pick a supported metric with --metric \(the Metric "
                                        r"menu in the app\): accuracy, .*roc_auc\."):
        load_task(folder, target="label")
    with pytest.raises(TaskError, match="judged by SMAPE"):  # also with an explicit task type
        load_task(make_task_dir(_frame(), description="Evaluation: SMAPE."), target="a", task_type="regression")
    # An explicit metric wins and is not flagged as a default.
    t = load_task(folder, target="label", metric="accuracy")
    assert (t.metric, t.metric_defaulted) == ("accuracy", False)
    assert not any("default" in note for note in t.notes)


def test_default_metric_is_flagged_and_noted(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    t = load_task(make_task_dir(_frame()), target="label")
    assert (t.metric, t.metric_defaulted) == ("roc_auc", True)
    assert any("no description" in n and "default for binary tasks: ROC-AUC (roc_auc)" in n for n in t.notes)
    t = load_task(make_task_dir(_frame(), description="Predict the pet."), target="a")
    assert (t.metric, t.metric_defaulted) == ("rmse", True)
    assert any("names no metric" in n and "RMSE (rmse)" in n and "--metric" in n for n in t.notes)
    t = load_task(make_task_dir(_frame(), description="Evaluation: log loss."), target="label")
    assert (t.metric, t.metric_defaulted) == ("log_loss", False)
    assert not any("default" in note for note in t.notes)


def test_task_json_without_metric_defaulted_still_loads(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from mlestar_core.model import task_from_dict

    t = load_task(make_task_dir(_frame()), target="label")
    data = dataclasses.asdict(t)
    data["data_dir"] = str(data["data_dir"])
    assert task_from_dict(data).metric_defaulted is True
    del data["metric_defaulted"]  # JSON written before the field existed
    assert task_from_dict(data).metric_defaulted is False


def test_train_only_columns_are_not_features(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    # Kaggle tasks often ship columns known only after the fact (e.g. bike sharing's casual/registered)
    train = _frame()
    test = train.drop(columns=["label", "b"])
    task = load_task(make_task_dir(train, test), target="label")
    assert "b" not in [c.name for c in task.columns]
    assert any("lacks b" in note and "not used as features" in note for note in task.notes)


def test_file_over_max_bytes(demo_tasks_dir: Path) -> None:
    with pytest.raises(TaskError, match=r"train\.csv is .*KB, over the 1\.0 KB limit"):
        load_task(demo_tasks_dir / "wine-cultivar", max_bytes=1024)


def test_undecidable_target(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    train = _frame().assign(count=1)  # two train-only columns and nothing saying which is the target
    with pytest.raises(TaskError, match=r"cannot tell which column.*target=<column>"):
        load_task(make_task_dir(train, train.drop(columns=["label", "count"])))
    # The description settles it.
    t = load_task(make_task_dir(train, train.drop(columns=["label"]),
                                description="Data for pets. The target column is label."))
    assert t.target == "label"


def test_sample_class_columns_must_match_classes(make_task_dir) -> None:  # type: ignore[no-untyped-def]
    train = pd.DataFrame({"id": range(30), "x": range(30), "y": ["a", "b", "c"] * 10})
    test = pd.DataFrame({"id": range(30, 40), "x": range(10)})
    sample = pd.DataFrame({"id": range(30, 40), "p_a": 0.3, "p_b": 0.3, "p_z": 0.4})
    with pytest.raises(TaskError, match="do not match the classes"):
        load_task(make_task_dir(train, test, sample), target="y")
    sample = sample.rename(columns={"p_z": "p_c"})[["id", "p_c", "p_a", "p_b"]]
    t = load_task(make_task_dir(train, test, sample), target="y")
    assert (t.submission_kind, t.classes) == ("proba_per_class", ["c", "a", "b"])  # sample's column order


# --- zips -------------------------------------------------------------------------------------


def _nothing_escaped(tmp_path: Path) -> None:
    assert not [p for p in tmp_path.rglob("*evil*")], "a hostile member was written"
    assert not Path("/tmp/evil_mlestar_abs.txt").exists()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def test_valid_zip_strips_top_folder_and_junk(tmp_path: Path, demo_tasks_dir: Path) -> None:
    src = demo_tasks_dir / "wine-cultivar"
    members = {f"wine/{p.name}": p.read_bytes() for p in src.iterdir()}
    members["__MACOSX/wine/._train.csv"] = b"junk"
    members["wine/.DS_Store"] = b"junk"
    folder = extract_task_zip(_zip(tmp_path / "t.zip", members), tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in src.iterdir())
    assert load_task(folder).target == "cultivar"


@pytest.mark.parametrize(
    ("member", "message"),
    [("../evil.txt", "leaves the folder"), ("sub/../../evil.txt", "leaves the folder"),
     ("/tmp/evil_mlestar_abs.txt", "absolute path"), ("C:/evil.txt", "absolute path")],
)
def test_hostile_paths_rejected(tmp_path: Path, member: str, message: str) -> None:
    z = _zip(tmp_path / "bad.zip", {"train.csv": b"a,y\n1,0\n", member: b"pwned"})
    dest = tmp_path / "inner" / "out"
    with pytest.raises(TaskError, match=message):
        extract_task_zip(z, dest)
    _nothing_escaped(tmp_path)
    assert not dest.exists()


def test_symlink_member_rejected(tmp_path: Path) -> None:
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train.csv", "a,y\n1,0\n")
        info = zipfile.ZipInfo("evil_link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(TaskError, match="symbolic link"):
        extract_task_zip(z, tmp_path / "out")
    _nothing_escaped(tmp_path)


def test_zip_bomb_rejected(tmp_path: Path) -> None:
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("train.csv", "w", force_zip64=True) as f:
        block = b"0" * (1 << 20)
        for _ in range(50):  # 50 MB of one byte compresses about 1000:1
            f.write(block)
    assert z.stat().st_size < 1_000_000
    with pytest.raises(TaskError, match="zip bomb|limit"):
        extract_task_zip(z, tmp_path / "out", max_total_bytes=10_000_000)
    with pytest.raises(TaskError, match="zip bomb"):
        extract_task_zip(z, tmp_path / "out2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_total_size_limit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    z = _zip(tmp_path / "big.zip", {"train.csv": rng.bytes(200_000)})  # incompressible
    with pytest.raises(TaskError, match="more than"):
        extract_task_zip(z, tmp_path / "out", max_total_bytes=100_000)
    assert not (tmp_path / "out").exists()


def test_too_many_files(tmp_path: Path) -> None:
    z = _zip(tmp_path / "many.zip", {f"f{i}.csv": b"a\n1\n" for i in range(10)})
    with pytest.raises(TaskError, match="more than 5 files"):
        extract_task_zip(z, tmp_path / "out", max_files=5)
    assert not (tmp_path / "out").exists()


def test_not_a_zip(tmp_path: Path) -> None:
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(TaskError, match="not a readable zip"):
        extract_task_zip(bad, tmp_path / "out")


@pytest.mark.parametrize(
    "text",
    ["The target column is `SalePrice`.", "Your job is to predict the SalePrice of each house.",
     "Goal: predict the value of **SalePrice** for every Id.", "SalePrice is the target.",
     "target: SalePrice", "Forecast what sells. The label we want is \"SalePrice\" (in dollars)."],
)
def test_target_named_in_description(tmp_path: Path, text: str) -> None:
    csv = tmp_path / "houses.csv"
    houses = pd.DataFrame({"Id": range(30), "LotArea": range(30), "SalePrice": np.arange(30) * 1000.5})
    houses.to_csv(csv, index=False)
    t = load_task(csv, description=text)
    assert (t.target, t.task_type, t.id_column) == ("SalePrice", "regression", "Id")


def test_zip_into_non_empty_folder_is_refused(tmp_path: Path) -> None:
    z = _zip(tmp_path / "t.zip", {"train.csv": b"a,y\n1,0\n"})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(TaskError, match="not an empty folder"):
        extract_task_zip(z, tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert (extract_task_zip(z, tmp_path / "empty") / "train.csv").is_file()


def test_a_generic_file_name_gives_a_descriptive_task_name(make_task_dir) -> None:  # noqa: ANN001
    import pandas as pd

    from mlestar_core.task import descriptive_name
    train = pd.DataFrame({"x": range(40), "price": [float(i) * 1.5 for i in range(40)]})
    folder = make_task_dir(train, name="train")
    task = load_task(folder / "train.csv", target="price")
    assert task.name == "price (regression)"
    assert load_task(folder / "train.csv", target="price", name="my houses").name == "my houses"
    assert descriptive_name("house-prices", "price", "regression") == "house-prices"


def test_the_feature_count_leaves_out_the_id_column(make_task_dir) -> None:  # noqa: ANN001
    import pandas as pd
    train = pd.DataFrame({"id": range(1000, 1040), "x": [i % 7 for i in range(40)], "z": range(40),
                          "y": [i % 2 for i in range(40)]})
    folder = make_task_dir(train, test=train.drop(columns="y"), name="houses")
    task = load_task(folder, target="y")
    assert task.id_column == "id"
    assert task.n_features == len([c for c in task.columns if c.name != "id"]) == 2


# -- target messages: a named target that is missing, names that differ only in case and punctuation --------


def _houses(n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.DataFrame({"Id": range(n), "area": [50 + 3 * i for i in range(n)],
                          "rooms": [1 + i % 5 for i in range(n)], "sale_price": [1000.0 + 37 * i for i in range(n)]})
    return train, train.drop(columns="sale_price").iloc[:10].assign(Id=range(n, n + 10))


def test_a_target_the_description_names_but_the_csv_lacks_is_said(make_task_dir) -> None:  # noqa: ANN001
    train, test = _houses()
    train = train.rename(columns={"sale_price": "price_usd"})
    folder = make_task_dir(train, test, description="House prices. The target column is `SalePrice`.")
    # Before: the one column test.csv lacks was picked silently. Now the page (and CLI) say what is wrong.
    with pytest.raises(TaskError) as err:
        load_task(folder)
    msg = str(err.value)
    assert msg.startswith("the description names target `SalePrice`, which is not a column of train.csv")
    assert "columns: Id, area, rooms, price_usd" in msg and "closest: price_usd" in msg
    assert not msg.startswith("cannot tell which column")  # the New run page's "nothing names a target" case
    # Choosing the target settles it, and the disagreement stays visible as a note.
    task = load_task(folder, target="price_usd")
    assert task.target == "price_usd"
    assert any("names `SalePrice` as the target, which is not a column of train.csv" in n for n in task.notes)


def test_normalised_names_match_the_sample_submission_and_say_so(make_task_dir) -> None:  # noqa: ANN001
    train, test = _houses()
    train = train.assign(casual=1)  # a second column test.csv lacks: the old fallback could not decide
    sample = pd.DataFrame({"Id": test["Id"], "SalePrice": 0.0})
    folder = make_task_dir(train, test, sample, description="Predict the SalePrice of each house.")
    task = load_task(folder)
    assert task.target == "sale_price"
    assert task.submission_columns == ["Id", "SalePrice"]  # the submission keeps the sample's column name
    assert any("prediction column `SalePrice` is `sale_price` in train.csv" in n for n in task.notes)


def test_the_description_names_a_column_by_another_spelling(make_task_dir) -> None:  # noqa: ANN001
    train, test = _houses()
    task = load_task(make_task_dir(train, test, description="The target is `SalePrice`. Evaluation: RMSE."))
    assert task.target == "sale_price"
    assert any("names `SalePrice` as the target; train.csv's column `sale_price` is taken to be it" in n
               for n in task.notes)


def test_a_sample_column_the_csv_lacks_is_never_replaced_silently(make_task_dir) -> None:  # noqa: ANN001
    train, test = _houses()
    train = train.rename(columns={"sale_price": "price_usd"})
    sample = pd.DataFrame({"Id": test["Id"], "SalePrice": 0.0})
    # The only column test.csv lacks is still taken, but the note says the sample names something else.
    task = load_task(make_task_dir(train, test, sample))
    assert task.target == "price_usd"
    assert any("prediction column `SalePrice` is not a column of train.csv" in n and "closest: price_usd" in n
               for n in task.notes)
    # With two candidate columns nothing settles it: the message names the sample's column.
    with pytest.raises(TaskError, match=r"^sample_submission\.csv's prediction column `SalePrice` is not a column "
                                        r"of train\.csv .*nothing else says which column to predict"):
        load_task(make_task_dir(train.assign(casual=1), test, sample))


def test_the_sample_submission_wins_over_the_description_and_says_so(make_task_dir) -> None:  # noqa: ANN001
    train, test = _houses()
    train = train.assign(list_price=train["sale_price"] * 1.1)
    sample = pd.DataFrame({"Id": test["Id"], "sale_price": 0.0})
    task = load_task(make_task_dir(train, test, sample, description="The target is `list_price`."))
    assert task.target == "sale_price"
    assert any("the description names `list_price` as the target, but sample_submission.csv predicts `sale_price`"
               in n for n in task.notes)


def test_a_chosen_target_that_differs_from_the_sample_is_said(make_task_dir) -> None:  # noqa: ANN001
    train, test = _houses()
    train = train.assign(list_price=train["sale_price"] * 1.1)
    sample = pd.DataFrame({"Id": test["Id"], "SalePrice": 0.0})
    task = load_task(make_task_dir(train, test, sample), target="list_price")
    assert task.target == "list_price"
    assert any("prediction column is `SalePrice`, not `list_price`" in n and "holds the predictions of `list_price`"
               in n for n in task.notes)
