"""The offline brain: every role writes scripts that really run, and each role does its one job.

Scripts run as real subprocesses (cwd with an `input/` folder) on three small hand-made tasks:
a binary task with every column kind plus missing values and NaN targets, a regression task
(diabetes) and a multiclass task (wine, probability-per-class submission with a shuffled
sample submission and extra mixed columns).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine

from mlestar_core.brains.base import BrainCallRecord, BrainContext
from mlestar_core.brains.offline import OfflineBrain, baseline_script
from mlestar_core.brains.offline.knowledge import KIND, family_of
from mlestar_core.brains.offline.plans import parse_set_line
from mlestar_core.brains.offline.templates import read_config, read_header_value
from mlestar_core.metrics import get_metric
from mlestar_core.model import (
    AblationResult,
    AttemptSummary,
    ColumnProfile,
    EnsembleAttempt,
    ModelCard,
    SolutionSummary,
    Task,
)
from mlestar_core.script import block_names, blocks, get_block, parse_score, replace_block

# ----------------------------------------------------------------------------- tasks


def _profile(df: pd.DataFrame, target: str, id_col: str, kinds: dict[str, str]) -> list[ColumnProfile]:
    out = []
    for c in df.columns:
        if c == target:
            continue
        s = df[c]
        kind = kinds.get(c) or (
            "id" if c == id_col else "numeric" if pd.api.types.is_numeric_dtype(s) else "categorical"
        )
        out.append(ColumnProfile(c, kind, str(s.dtype), int(s.nunique()), float(s.isna().mean())))  # type: ignore[arg-type]
    return out


def _write_task(
    root: Path,
    name: str,
    df: pd.DataFrame,
    target: str,
    task_type: str,
    metric: str,
    kinds: dict[str, str],
    kind: str,
    sample: bool = False,
) -> Task:
    folder = root / name
    folder.mkdir(parents=True)
    df = df.copy()
    df.insert(0, "row_id", np.arange(len(df)) + 100)
    n_test = len(df) // 4
    train, test = df.iloc[n_test:].reset_index(drop=True), df.iloc[:n_test].reset_index(drop=True)
    train.to_csv(folder / "train.csv", index=False)
    test.drop(columns=[target]).to_csv(folder / "test.csv", index=False)
    classes = (
        []
        if task_type == "regression"
        else sorted({str(v) for v in train[target].dropna()}, key=lambda v: (len(v), v))
    )
    pred_cols = [f"prob_{c}" for c in classes] if kind == "proba_per_class" else [target]
    sample_file = None
    if sample:
        shuffled = test["row_id"].sample(frac=1.0, random_state=3).to_numpy()
        pd.DataFrame({"row_id": shuffled, **{c: 0.0 for c in pred_cols}}).to_csv(
            folder / "sample_submission.csv", index=False
        )
        sample_file = "sample_submission.csv"
    m = get_metric(metric)
    return Task(
        name=name,
        description=name,
        data_dir=folder,
        target=target,
        task_type=task_type,  # type: ignore[arg-type]
        metric=metric,
        higher_is_better=m.higher_is_better,
        sample_submission_file=sample_file,
        id_column="row_id",
        submission_columns=["row_id", *pred_cols],
        submission_kind=kind,  # type: ignore[arg-type]
        classes=classes,
        positive_class=classes[-1] if task_type == "binary" else None,
        columns=_profile(train, target, "row_id", kinds),
        n_train_rows=len(train),
        n_test_rows=len(test),
    )


def _mixed_binary_frame(n: int = 480) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(0)
    tenure = rng.integers(0, 72, n).astype(float)
    charges = rng.gamma(2.0, 30.0, n)
    plan = rng.choice(["basic", "plus", "pro", None], n, p=[0.5, 0.3, 0.15, 0.05])
    city = rng.choice([f"c{i}" for i in range(120)], n)
    autopay = rng.choice([True, False], n)
    start = pd.to_datetime("2021-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")
    words = np.array(["slow", "great", "cancel", "bill", "help", "fast"])
    notes = [
        " ".join(rng.choice(words, rng.integers(1, 5))) if rng.random() > 0.2 else None for _ in range(n)
    ]
    logit = (
        -0.5
        - 0.04 * tenure
        + 0.012 * charges
        + 0.8 * (plan == "basic")
        + 1.2 * np.array(["cancel" in (t or "") for t in notes])
    )
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no").astype(object)
    charges[rng.random(n) < 0.1] = np.nan
    y[[5, 17]] = None  # rows without a target must be dropped, not crash the script
    df = pd.DataFrame(
        {
            "tenure": tenure,
            "charges": charges,
            "plan": plan,
            "city": city,
            "autopay": autopay,
            "signup": start.strftime("%Y-%m-%d"),
            "note": notes,
            "churn": y,
        }
    )
    return df, {"autopay": "boolean", "signup": "datetime", "note": "text"}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Task]:
    root = tmp_path_factory.mktemp("offline_tasks")
    df, kinds = _mixed_binary_frame()
    binary = _write_task(root, "mixed-binary", df, "churn", "binary", "roc_auc", kinds, "proba_positive")
    d = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    regression = _write_task(root, "diabetes", d, "progression", "regression", "rmse", {}, "value")
    w = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    rng = np.random.default_rng(1)
    w["region"] = rng.choice(["north", "south", "east", None], len(w))
    w["harvest"] = (
        pd.to_datetime("2015-03-01") + pd.to_timedelta(rng.integers(0, 2000, len(w)), unit="D")
    ).strftime("%Y-%m-%d")
    w.loc[rng.random(len(w)) < 0.1, "alcohol"] = np.nan
    w = w.sample(frac=1.0, random_state=0).reset_index(drop=True)
    multiclass = _write_task(
        root,
        "wine",
        w,
        "cultivar",
        "multiclass",
        "log_loss",
        {"harvest": "datetime"},
        "proba_per_class",
        sample=True,
    )
    return {"binary": binary, "regression": regression, "multiclass": multiclass}


# ----------------------------------------------------------------------------- running scripts


@dataclass
class Ran:
    ok: bool
    score: float | None
    stdout: str
    stderr: str
    submission: pd.DataFrame | None
    files: list[str] = field(default_factory=list)  # what the script left in its folder


def _run(task: Task, code: str, workdir: Path) -> Ran:
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "input").mkdir(parents=True)
    for name in (task.train_file, task.test_file, task.sample_submission_file):
        if name:
            shutil.copy(task.data_dir / name, workdir / "input" / name)
    (workdir / "script.py").write_text(code)
    env = {**os.environ, "MLESTAR_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "script.py"], cwd=workdir, capture_output=True, text=True, env=env, timeout=300
    )
    sub_path = workdir / "submission.csv"
    sub = pd.read_csv(sub_path) if sub_path.exists() else None
    score = parse_score(proc.stdout) if proc.returncode == 0 else None
    return Ran(proc.returncode == 0 and score is not None, score, proc.stdout, proc.stderr[-3000:], sub,
               sorted(p.name for p in workdir.iterdir()))


def _run_all(jobs: list[tuple[Task, str]], tmp: Path) -> list[Ran]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda ij: _run(ij[1][0], ij[1][1], tmp / f"job{ij[0]}"), enumerate(jobs)))


def _assert_submission(task: Task, ran: Ran) -> None:
    assert ran.ok, ran.stderr
    assert ran.submission is not None, "no submission.csv written"
    sub = ran.submission
    assert list(sub.columns) == task.submission_columns
    assert len(sub) == task.n_test_rows
    test_ids = pd.read_csv(task.data_dir / task.test_file)["row_id"]
    if task.sample_submission_file:
        expected = pd.read_csv(task.data_dir / task.sample_submission_file)["row_id"]
        assert sub["row_id"].tolist() == expected.tolist(), "rows must follow the sample submission's order"
    else:
        assert sub["row_id"].tolist() == test_ids.tolist()
    values = sub.drop(columns=["row_id"])
    assert not values.isna().any().any()
    if task.submission_kind == "proba_per_class":
        np.testing.assert_allclose(values.sum(axis=1).to_numpy(), 1.0, atol=1e-6)
        assert ((values >= 0) & (values <= 1)).all().all()
    if task.submission_kind == "proba_positive":
        assert values.iloc[:, 0].between(0, 1).all()


def _ctx(task: Task, **kw: object) -> BrainContext:
    # Three folds keep the scripts quick here; they run without folds.csv, so they make the folds themselves.
    return BrainContext(task, seed=7, **{"n_folds": 3, **kw})  # type: ignore[arg-type]


def _script_for(brain: OfflineBrain, ctx: BrainContext, family: str) -> str:
    return brain.write_initial_solution(ctx, ModelCard(family, "", "", "knowledge base", family=family))


# ----------------------------------------------------------------------------- retrieval & initial scripts


def test_retrieve_ranks_the_knowledge_base(tasks: dict[str, Task]) -> None:
    brain = OfflineBrain()
    calls: list[BrainCallRecord] = []
    brain.on_call = calls.append
    cards = brain.retrieve_models(_ctx(tasks["binary"]), 4)
    assert len(cards) == 4 and len({c.family for c in cards}) == 4
    assert all(c.source == "knowledge base" and c.why and c.example_code for c in cards)
    assert calls and calls[0].role == "retrieve_models"
    all_cards = brain.retrieve_models(_ctx(tasks["binary"]), 20)
    assert {c.family for c in all_cards} >= {
        "xgboost",
        "hist_gb",
        "random_forest",
        "extra_trees",
        "linear",
        "knn",
        "svm",
        "mlp",
    }
    # Small, purely numeric data favours the linear/kernel models over a big boosting setup.
    small = [c.family for c in brain.retrieve_models(_ctx(tasks["regression"]), 3)]
    assert "linear" in small
    only = brain.retrieve_models(_ctx(tasks["binary"], constraints=["the model must be interpretable"]), 3)
    assert [c.family for c in only] == ["linear"]


def test_initial_scripts_of_every_family_run_and_submit(tasks: dict[str, Task], tmp_path: Path) -> None:
    brain = OfflineBrain()
    plan = {
        "binary": ["xgboost", "hist_gb", "linear", "mlp"],
        "regression": ["random_forest", "svm", "knn", "xgboost"],
        "multiclass": ["extra_trees", "linear", "hist_gb"],
    }
    jobs = []
    for key, families in plan.items():
        ctx = _ctx(tasks[key])
        for family in families:
            code = _script_for(brain, ctx, family)
            assert block_names(code) == ["load", "preprocess", "features", "model", "train", "predict"]
            jobs.append((tasks[key], code))
    jobs += [(t, baseline_script(_ctx(t))) for t in tasks.values()]
    results = _run_all(jobs, tmp_path)
    for (task, _code), ran in zip(jobs, results, strict=True):
        _assert_submission(task, ran)
        assert ran.stdout.count("Final Validation Performance:") == 1
    base = {t.name: r.score for (t, c), r in zip(jobs, results, strict=True) if "trivial baseline" in c}
    assert base["mixed-binary"] == 0.5  # class priors carry no ranking
    for (task, code), ran in zip(jobs, results, strict=True):
        if "trivial baseline" in code:
            continue
        name, score = task.name, ran.score
        assert score is not None
        if name == "mixed-binary":
            assert score > 0.6  # a real signal is there to find (baseline: 0.5)
        elif name == "diabetes":
            assert score < base["diabetes"]  # every model beats predicting the mean
        else:
            assert score < base["wine"]  # log loss below the class-prior baseline


# ----------------------------------------------------------------------------- merge, checks, debug


def test_merge_adds_the_reference_models_and_runs(tasks: dict[str, Task], tmp_path: Path) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["regression"])
    base, ref = _script_for(brain, ctx, "linear"), _script_for(brain, ctx, "random_forest")
    merged = brain.merge(ctx, base, ref)
    models = read_config(merged, "model")
    assert [m["name"] for m in models] == ["linear", "random_forest"]
    for block in ("load", "preprocess", "features", "train", "predict"):
        assert get_block(merged, block) == get_block(base, block)
    ran = _run(ctx.task, merged, tmp_path / "merged")
    _assert_submission(ctx.task, ran)
    assert "model linear" in ran.stdout and "model random_forest" in ran.stdout


def test_data_usage_readds_a_dropped_column_and_obeys_constraints(tasks: dict[str, Task]) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["binary"])
    code = _script_for(brain, ctx, "xgboost")
    assert not brain.check_data_usage(ctx, code).changed
    dropped = code.replace("CATEGORICAL_COLS = ['plan', 'city']", "CATEGORICAL_COLS = ['plan']")
    assert dropped != code
    result = brain.check_data_usage(ctx, dropped)
    assert result.changed and read_header_value(result.code, "CATEGORICAL_COLS") == ["plan", "city"]
    assert any("city" in f for f in result.findings)

    banned = _ctx(tasks["binary"], constraints=["Do not use column city (privacy)."])
    code_banned = _script_for(brain, banned, "xgboost")
    assert "city" not in read_header_value(code_banned, "CATEGORICAL_COLS")
    assert read_header_value(code_banned, "DROP_COLS") == ["city"]
    again = brain.check_data_usage(banned, code_banned)
    assert "city" not in read_header_value(again.code, "CATEGORICAL_COLS")
    smuggled = brain.check_data_usage(banned, code)  # a script using the banned column loses it
    assert smuggled.changed and "city" not in read_header_value(smuggled.code, "CATEGORICAL_COLS")


LEAKY = """\
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

df = pd.read_csv("./input/train.csv").dropna(subset=["churn"])
df["churn"] = (df["churn"] == "yes").astype(int)
X = df.drop(columns=["row_id", "plan", "city", "autopay", "signup", "note"]).fillna(0)
y = df["churn"]
scaler = StandardScaler()
X = scaler.fit_transform(X)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0)
model = LogisticRegression().fit(X_train, y_train)
scaler.fit(X_val)
print(f"Final Validation Performance: {roc_auc_score(y_val, model.predict_proba(X_val)[:, 1])}")
"""


def test_leakage_check_flags_and_fixes_a_leaky_script(tasks: dict[str, Task], tmp_path: Path) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["binary"])
    clean = brain.check_leakage(ctx, _script_for(brain, ctx, "hist_gb"))
    assert not clean.changed and clean.findings == []  # our own templates are leak-free by construction
    result = brain.check_leakage(ctx, LEAKY)
    text = "\n".join(result.findings)
    assert result.changed
    assert "target" in text and "churn" in text  # the target column stays among the features
    assert "before the validation split" in text  # scaler fitted on all rows
    assert "held-out rows" in text  # scaler refitted on the validation frame
    assert "random_state" in text and "test_size" in text  # the split drifts from the shared protocol
    assert "random_state=7" in result.code and "test_size=0.2" in result.code
    ran = _run(ctx.task, result.code, tmp_path / "fixed")
    assert ran.ok, ran.stderr
    leaky = _run(ctx.task, LEAKY, tmp_path / "leaky")
    assert leaky.score is not None and leaky.score > 0.99  # the target leak makes it look perfect...
    assert ran.score is not None and ran.score < 0.95  # ...and the fixed script is honest


def test_debug_repairs_an_unknown_column(tasks: dict[str, Task], tmp_path: Path) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["multiclass"])
    code = _script_for(brain, ctx, "hist_gb").replace(
        "NUMERIC_COLS = ['alcohol'", "NUMERIC_COLS = ['no_such_column', 'alcohol'"
    )
    broken = _run(ctx.task, code, tmp_path / "broken")
    assert not broken.ok and "no_such_column" in broken.stderr
    fixed = brain.debug(ctx, code, "exit code 1\n" + broken.stderr)
    assert "no_such_column" not in read_header_value(fixed, "NUMERIC_COLS")
    ran = _run(ctx.task, fixed, tmp_path / "fixed")
    _assert_submission(ctx.task, ran)
    # A syntax error inside one block regenerates only that block.
    bad = replace_block(code, "features", get_block(code, "features") + "def oops(:\n")
    repaired = brain.debug(ctx, bad, 'File "script.py", line 200\nSyntaxError: invalid syntax')
    assert "def oops(" not in repaired


# ----------------------------------------------------------------------------- ablation & refinement


def test_ablation_variants_differ_in_exactly_one_block(tasks: dict[str, Task]) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["binary"])
    code = brain.merge(ctx, _script_for(brain, ctx, "xgboost"), _script_for(brain, ctx, "linear"))
    variants = brain.write_ablation(ctx, code)
    assert {v.block for v in variants} == {"preprocess", "features", "model", "train"}
    original = {b.name: b.body for b in blocks(code)}
    for v in variants:
        changed = [b.name for b in blocks(v.code) if b.body != original[b.name]]
        assert changed == [v.block], (v.block, changed)
        assert v.code.split("# [block: load]")[0] == code.split("# [block: load]")[0]  # header untouched
    model_variant = next(v for v in variants if v.block == "model")
    assert read_config(model_variant.code, "model") == [{"name": "xgboost", "weight": 1.0, "params": {}}]


def test_summary_and_block_choice_follow_the_numbers(tasks: dict[str, Task]) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["regression"])  # RMSE: lower is better, deltas are already direction-aware
    code = _script_for(brain, ctx, "xgboost")
    results = [
        AblationResult("preprocess", "simple prep", 55.0, 54.0, -1.0),
        AblationResult("model", "defaults", 60.0, 54.0, 6.0),
        AblationResult("train", "no early stopping", 57.0, 54.0, 3.0),
    ]
    summary = brain.summarize_ablation(ctx, results)
    assert "model block matters most" in summary and "+6" in summary and "lower is better" in summary
    choice = brain.extract_block(ctx, code, results, summary, [])
    assert choice.block == "model" and parse_set_line(choice.plan)
    assert brain.extract_block(ctx, code, results, summary, ["model"]).block == "train"
    none = [AblationResult("model", "defaults", None, 54.0, None)]
    assert brain.extract_block(ctx, code, none, "", []).block == "model"


def test_refinement_changes_only_its_block_and_honours_edits(tasks: dict[str, Task], tmp_path: Path) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["binary"])
    code = _script_for(brain, ctx, "xgboost")
    plan = brain.plan_refinement(ctx, code, "model", [])
    assert plan.splitlines()[-1].startswith("Set: ")
    body = brain.implement_refinement(ctx, code, "model", plan)
    new = replace_block(code, "model", body)
    assert [b.name for b in blocks(new) if b.body != get_block(code, b.name)] == ["model"]
    # A human edits the values on the Set: line: the edited values are what gets implemented.
    edited = "Use a slower, shallower booster.\nSet: xgboost.learning_rate=0.07, xgboost.max_depth=3, " \
        "add_model=linear"
    models = read_config(
        replace_block(code, "model", brain.implement_refinement(ctx, code, "model", edited)), "model"
    )
    assert models[0]["params"]["learning_rate"] == 0.07 and models[0]["params"]["max_depth"] == 3
    assert [m["name"] for m in models] == ["xgboost", "linear"]
    prep = brain.implement_refinement(
        ctx, code, "preprocess", "Set: tree_cat_encoding = target, missing_indicators=yes"
    )
    assert "'tree_cat_encoding': 'target'" in prep and "'missing_indicators': True" in prep
    for bad in (
        "make it better",
        "Set: learning_rate",
        "Set: xgboost.learning_rate=0.1, oops=1",
        "Set: scaler=fancy",
    ):
        block = "preprocess" if "scaler" in bad else "model"
        with pytest.raises(ValueError):
            brain.implement_refinement(ctx, code, block, bad)
    with pytest.raises(ValueError, match="interpretable"):
        brain.implement_refinement(
            _ctx(ctx.task, constraints=["keep it interpretable"]), code, "model", "Set: add_model=mlp"
        )
    ran = _run(ctx.task, replace_block(code, "preprocess", prep), tmp_path / "refined")
    _assert_submission(ctx.task, ran)


def test_planner_learns_from_earlier_attempts(tasks: dict[str, Task]) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["binary"])  # ROC-AUC: higher is better
    code = _script_for(brain, ctx, "xgboost")
    first = brain.plan_refinement(ctx, code, "model", [])
    s1 = parse_set_line(first)
    helped = [AttemptSummary(first, 0.80, 0.78, True)]
    second = parse_set_line(brain.plan_refinement(ctx, code, "model", helped))
    assert second != s1
    lr = "xgboost.learning_rate"
    if lr in s1:  # the helpful direction is pushed one step further
        assert second[lr] < s1[lr]
    hurt = [AttemptSummary(first, 0.70, 0.78, True)]
    third = parse_set_line(brain.plan_refinement(ctx, code, "model", hurt))
    assert third != s1 and all(third.get(k) != v for k, v in s1.items() if k in third)
    history: list[AttemptSummary] = []
    seen = []
    for _ in range(6):  # never repeats a tried plan while untried moves remain
        plan = brain.plan_refinement(ctx, code, "features", history)
        seen.append(repr(sorted(parse_set_line(plan).items())))
        history.append(AttemptSummary(plan, 0.77, 0.78, True))
    assert len(set(seen)) == len(seen)


# ----------------------------------------------------------------------------- ensemble


def test_ensembles_run_and_write_valid_submissions(tasks: dict[str, Task], tmp_path: Path) -> None:
    brain = OfflineBrain()
    jobs, plans = [], []
    for key, families in (("multiclass", ("linear", "extra_trees")), ("binary", ("linear", "hist_gb"))):
        ctx = _ctx(tasks[key])
        sols = [SolutionSummary(f, _script_for(brain, ctx, f), None) for f in families]
        history: list[EnsembleAttempt] = []
        for _ in range(4 if key == "binary" else 3):
            plan = brain.plan_ensemble(ctx, sols, history)
            code = brain.implement_ensemble(ctx, sols, plan)
            assert block_names(code) == ["load", "solutions", "ensemble", "predict"]
            history.append(EnsembleAttempt(plan, None))
            plans.append(parse_set_line(plan)["strategy"])
            jobs.append((tasks[key], code))
    assert plans == ["caruana", "weights", "stacking", "caruana", "weights", "stacking", "rank_mean"]
    results = _run_all(jobs, tmp_path)
    for (task, _code), ran in zip(jobs, results, strict=True):
        _assert_submission(task, ran)
        assert "solution 1:" in ran.stdout and "solution 2:" in ran.stdout
        # The ensemble writes its own out-of-fold predictions (what the engine scores) and test predictions.
        assert "oof.csv" in ran.files and "test_pred.csv" in ran.files
    ctx = _ctx(tasks["binary"])
    with pytest.raises(ValueError):
        brain.implement_ensemble(ctx, [SolutionSummary("a", "", 0.5)], "Set: strategy=voodoo")


# ----------------------------------------------------------------------------- determinism


def test_same_context_gives_the_same_answers(tasks: dict[str, Task]) -> None:
    def answers() -> list[str]:
        brain = OfflineBrain()
        ctx = _ctx(tasks["multiclass"])
        cards = brain.retrieve_models(ctx, 3)
        codes = [brain.write_initial_solution(ctx, c) for c in cards]
        merged = brain.merge(ctx, codes[0], codes[1])
        variants = brain.write_ablation(ctx, merged)
        plan = brain.plan_refinement(ctx, merged, "model", [])
        sols = [SolutionSummary("a", codes[0], 0.1), SolutionSummary("b", merged, 0.2)]
        ens = brain.implement_ensemble(ctx, sols, brain.plan_ensemble(ctx, sols, []))
        return (
            [c.name for c in cards]
            + codes
            + [merged]
            + [v.code for v in variants]
            + [
                plan,
                brain.implement_refinement(ctx, merged, "model", plan),
                ens,
                brain.check_leakage(ctx, merged).code,
                brain.debug(ctx, merged, "KeyError: 'alcohol'"),
            ]
        )

    assert answers() == answers()


def test_planner_reads_the_paired_fold_scores(tasks: dict[str, Task]) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["binary"])
    code = _script_for(brain, ctx, "xgboost")
    first = brain.plan_refinement(ctx, code, "model", [])
    # The same better mean, once won on most folds and once on one fold of five (noise).
    convincing = brain.plan_refinement(ctx, code, "model", [AttemptSummary(first, 0.80, 0.78, True, 4, 5)])
    noisy = brain.plan_refinement(ctx, code, "model", [AttemptSummary(first, 0.80, 0.78, True, 1, 5)])
    assert "push the same direction" in convincing
    assert "push the same direction" not in noisy and "improved the score" not in noisy


# ----------------------------------------------------------------------------- lightgbm, catboost, native categoricals


def test_knowledge_base_offers_lightgbm_and_catboost(tasks: dict[str, Task]) -> None:
    brain = OfflineBrain()
    cards = {c.family: c for c in brain.retrieve_models(_ctx(tasks["binary"]), 20)}
    for family in ("lightgbm", "catboost"):
        assert cards[family].why and cards[family].example_code and cards[family].source == "knowledge base"
    assert "LGBMClassifier" in cards["lightgbm"].example_code
    assert "cat_features" in cards["catboost"].example_code
    # Foreign cards (an LLM's, a human's) naming the libraries map to them, not to HistGradientBoosting.
    assert family_of(ModelCard("LightGBM (lightgbm.LGBMClassifier)", "", "", "llm", family="gbdt")) == "lightgbm"
    assert family_of(ModelCard("CatBoostRegressor", "", "", "llm", family="other")) == "catboost"
    # Medium table with many (high-cardinality) categoricals: CatBoost leads, LightGBM next, and the
    # other two picks are other kinds of model (no third boosting library crowds them out).
    medium = dataclasses.replace(tasks["binary"], n_train_rows=20000)
    top = [c.family for c in brain.retrieve_models(_ctx(medium), 4)]
    assert top[:2] == ["catboost", "lightgbm"], top
    assert len({KIND[f] for f in top[2:]} - {"boosting"}) == 2, top
    # Large numeric table: LightGBM leads.
    large = dataclasses.replace(tasks["regression"], n_train_rows=100000)
    assert brain.retrieve_models(_ctx(large), 1)[0].family == "lightgbm"


def test_lightgbm_and_catboost_scripts_run_and_submit(tasks: dict[str, Task], tmp_path: Path) -> None:
    brain = OfflineBrain()
    plan = {"binary": ["lightgbm", "catboost"], "regression": ["catboost"], "multiclass": ["lightgbm"]}
    jobs = []
    for key, families in plan.items():
        ctx = _ctx(tasks[key])
        for family in families:
            code = _script_for(brain, ctx, family)
            assert [m["name"] for m in read_config(code, "model")] == [family]
            assert read_config(code, "preprocess")["tree_cat_encoding"] == "native"
            jobs.append((tasks[key], code))
    for (task, _code), ran in zip(jobs, _run_all(jobs, tmp_path), strict=True):
        _assert_submission(task, ran)
        assert ran.stdout.count("Final Validation Performance:") == 1
        assert ran.score is not None
        if task.name == "mixed-binary":
            assert ran.score > 0.6  # ROC-AUC; the class prior scores 0.5
        elif task.name == "diabetes":
            assert ran.score < 70  # RMSE; the training mean scores about 77
        else:
            assert ran.score < 0.5  # log loss; the class prior scores about 1.1


def _script_namespace(task: Task, code: str, folder: Path) -> dict[str, object]:
    """Run a script's definitions up to its training loop here (input read from folder/input)."""
    (folder / "input").mkdir(parents=True)
    for name in (task.train_file, task.test_file, task.sample_submission_file):
        if name:
            shutil.copy(task.data_dir / name, folder / "input" / name)
    head = code[: code.index("def fit_predict_each(")]
    head = head.replace('INPUT_DIR = "./input"', f"INPUT_DIR = {str(folder / 'input')!r}")
    saved = dict(os.environ)  # the header sets thread variables: keep them out of this process
    ns: dict[str, object] = {"__name__": "solution"}
    try:
        exec(compile(head, str(folder / "solution.py"), "exec"), ns)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return ns


def _record_model_inputs(ns: dict[str, object]) -> list[object]:
    """Make the script's make_model hand out models that record what their fit() receives."""
    inputs: list[object] = []
    make_model = ns["make_model"]

    def recording_model(spec: dict, seed: int) -> object:
        model = make_model(spec, seed)
        real_fit = model.fit

        def fit(features: object, target: object, **kw: object) -> object:
            inputs.append(features)
            return real_fit(features, target, **kw)

        model.fit = fit
        return model

    ns["make_model"] = recording_model
    return inputs


def test_native_categoricals_reach_the_models_as_categories(tasks: dict[str, Task], tmp_path: Path) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["binary"])
    cat_cols = ["plan", "city", "autopay"]
    for family in ("xgboost", "lightgbm", "catboost", "hist_gb"):
        code = _script_for(brain, ctx, family)
        ns = _script_namespace(ctx.task, code, tmp_path / family)
        ns["PREPROCESS"]["tree_cat_encoding"] = "native"  # hist_gb starts with ordinal codes
        inputs = _record_model_inputs(ns)
        X, y = ns["X_all"], ns["y_all"]
        fitted = ns["FittedModel"](ns["MODELS"][0], 7).fit(X.iloc[:250], y[:250])
        assert len(inputs) == 2  # the early-stopping probe on the inner split, then all fitting rows
        unseen = X.iloc[250:270].copy()
        unseen["plan"] = "never-seen-plan"
        proba = fitted.predict(unseen)
        assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1.0)
        if family == "hist_gb":  # category codes in a float matrix, split natively by sklearn
            assert all(isinstance(x, np.ndarray) and x.dtype == float for x in inputs)
            assert len(fitted.model_.get_params()["categorical_features"]) == len(cat_cols)
            continue
        assert all(isinstance(x, pd.DataFrame) for x in inputs)
        frame = inputs[-1]
        if family == "catboost":  # text values, NaN spelt out; cat_features names those columns
            cats = fitted.model_.get_params()["cat_features"]
            assert len(cats) == len(cat_cols) and all(frame[c].map(type).eq(str).all() for c in cats)
            continue
        cats = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
        assert len(cats) == len(cat_cols)
        assert all(frame[c].dtype == x[c].dtype for x in inputs for c in cats)  # the same categories
        applied = fitted._model_input(unseen)
        assert all(applied[c].dtype == frame[c].dtype for c in cats)  # fixed on the fitting rows
        plan_col = next(c for c in cats if "basic" in frame[c].cat.categories)
        assert applied[plan_col].isna().all()  # an unseen category is missing, not a new code
    # The ordinal path still gives every model a float matrix.
    ns = _script_namespace(ctx.task, _script_for(brain, ctx, "lightgbm"), tmp_path / "ordinal")
    ns["PREPROCESS"]["tree_cat_encoding"] = "ordinal"
    fitted = ns["FittedModel"](ns["MODELS"][0], 7).fit(ns["X_all"].iloc[:250], ns["y_all"][:250])
    assert isinstance(fitted._model_input(ns["X_all"].iloc[250:]), np.ndarray)
    # Early stopping watches the task's metric (ROC-AUC here) in each library's spelling; on a small
    # inner split, where the AUC saturates after a few rounds, the log loss.
    libraries = ("xgboost", "lightgbm", "catboost")
    assert [ns["stopping_metric"](f, 2, 1000) for f in libraries] == ["auc", "auc", "AUC"]
    assert [ns["stopping_metric"](f, 2, 50) for f in libraries] == ["logloss", "binary_logloss", "Logloss"]


def test_refinement_ablation_and_repair_know_lightgbm_and_catboost(tasks: dict[str, Task]) -> None:
    brain = OfflineBrain()
    ctx = _ctx(tasks["binary"])
    for family in ("lightgbm", "catboost"):
        code = _script_for(brain, ctx, family)
        tuned = parse_set_line(brain.plan_refinement(ctx, code, "model", []))
        assert tuned and all(key.startswith(f"{family}.") for key in tuned), tuned
        assert "n_seeds" in parse_set_line(brain.plan_refinement(ctx, code, "train", []))
        prep = brain.implement_refinement(ctx, code, "preprocess", "Set: tree_cat_encoding=ordinal")
        assert "'tree_cat_encoding': 'ordinal'" in prep
        variants = {v.block: v.code for v in brain.write_ablation(ctx, code)}
        assert read_config(variants["model"], "model") == [{"name": family, "weight": 1.0, "params": {}}]
        assert read_config(variants["preprocess"], "preprocess")["tree_cat_encoding"] == "ordinal"
        before = read_config(code, "model")[0]["params"]
        after = read_config(brain.debug(ctx, code, "MemoryError: std::bad_alloc"), "model")[0]["params"]
        rounds = "n_estimators" if family == "lightgbm" else "iterations"
        assert after[rounds] < before[rounds]
    ordinal = _script_for(brain, ctx, "hist_gb")
    assert read_config(ordinal, "preprocess")["tree_cat_encoding"] == "ordinal"
    plan = brain.plan_refinement(ctx, brain.merge(ctx, ordinal, _script_for(brain, ctx, "lightgbm")), "preprocess", [])
    assert parse_set_line(plan) == {"tree_cat_encoding": "native"}
