"""The LLM brains' prompt templates: one per role, all renderable with a real task, strict fields."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlestar_core import environment_info, metrics, prompts
from mlestar_core.brains.base import BrainContext
from mlestar_core.brains.offline import OfflineBrain
from mlestar_core.model import (
    AblationResult,
    AttemptSummary,
    EnsembleAttempt,
    SolutionSummary,
    Task,
)
from mlestar_core.prompts import PromptError
from mlestar_core.script import block_names, get_block
from mlestar_core.task import load_task

CONSTRAINTS = ["Do not use the column city.", "Keep each script under ten minutes of run time."]
CODE_WRITERS = ("write_initial_solution", "merge", "check_data_usage", "check_leakage", "debug",
                "write_ablation", "implement_refinement", "implement_ensemble")
FULL_SCRIPT_WRITERS = ("write_initial_solution", "merge", "check_data_usage", "check_leakage", "debug",
                       "implement_ensemble")
PLANNERS = ("extract_block", "plan_refinement", "plan_ensemble")
JSON_ROLES = ("retrieve_models", "check_data_usage", "check_leakage", "write_ablation", "extract_block")
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
PROTOCOL_HEADING = "## Evaluation protocol"


@pytest.fixture(scope="module")
def task(demo_tasks_dir: Path) -> Task:
    return load_task(demo_tasks_dir / "customer-churn")


@pytest.fixture(scope="module")
def fields(task: Task) -> dict[str, dict[str, str]]:
    """Realistic fields for every role: real offline-brain scripts and role inputs."""
    ctx = BrainContext(task=task, seed=7, valid_fraction=0.25, constraints=list(CONSTRAINTS))
    brain = OfflineBrain()
    cards = brain.retrieve_models(ctx, 2)
    base = brain.write_initial_solution(ctx, cards[0])
    reference = brain.write_initial_solution(ctx, cards[1])
    assert "features" in block_names(base)
    results = [
        AblationResult("features", "no engineered features", 0.61, 0.64, 0.03),
        AblationResult("preprocess", "median imputation and ordinal encoding", 0.635, 0.64, 0.005),
        AblationResult("model", "a single logistic regression", None, 0.64, None),
    ]
    history = [AttemptSummary("Add log-transformed charges per tenure month.", 0.645, 0.64, True),
               AttemptSummary("Drop the text features.", None, 0.64, False)]
    solutions = [SolutionSummary("A", base, 0.645), SolutionSummary("B", reference, 0.632)]
    common = prompts.task_fields(task, CONSTRAINTS, seed=ctx.seed, valid_fraction=ctx.valid_fraction)
    error = ('Traceback (most recent call last):\n  File "solution.py", line 80, in <module>\n'
             "KeyError: \"['city'] not in index\"")
    block = "features"
    role_fields: dict[str, dict[str, str]] = {
        "retrieve_models": {"m": "2"},
        "write_initial_solution": {"model_name": cards[0].name, "model_example": cards[0].example_code},
        "merge": {"base_code": base, "reference_code": reference},
        "check_data_usage": {"code": base},
        "check_leakage": {"code": base},
        "debug": {"code": base, "error": error, "failure_advice": prompts.debug_advice("timeout")},
        "write_ablation": {"code": base, "previous_ablations": "Study 1:\nThe model block mattered most."},
        "summarize_ablation": {"ablation_results": prompts.format_ablation_results(results)},
        "extract_block": {"code": base, "ablation_results": prompts.format_ablation_results(results),
                          "ablation_summary": "Engineered features help most (+0.03).",
                          "refined_blocks": prompts.format_blocks(["model"])},
        "plan_refinement": {"code": base, "block": block, "block_code": get_block(base, block),
                            "history": prompts.format_attempts(history)},
        "implement_refinement": {"code": base, "block": block, "block_code": get_block(base, block),
                                 "plan": "Add the ratio of monthly charges to tenure as a feature."},
        "plan_ensemble": {"solutions": prompts.format_solutions(solutions),
                          "history": prompts.format_ensemble_history([EnsembleAttempt("Average.", 0.65)])},
        "implement_ensemble": {"solutions": prompts.format_solutions(solutions),
                               "plan": "Average the two solutions' class probabilities."},
    }
    assert set(role_fields) == set(prompts.ROLES)
    return {role: {**common, **extra} for role, extra in role_fields.items()}


def _strip_values(text: str, fields: dict[str, str]) -> str:
    """The rendered text minus the inserted values (scripts hold f-string `{name}`s themselves)."""
    for value in sorted(fields.values(), key=len, reverse=True):
        text = text.replace(value, "")
    return text


def test_every_role_has_a_template() -> None:
    assert len(prompts.ROLES) == 13 == len(set(prompts.ROLES))
    for role in prompts.ROLES:
        assert (prompts.PROMPTS_DIR / f"{role}.md").is_file(), role
        assert prompts.placeholders(prompts.load_template(role)), role
    assert {p.stem for p in prompts.PROMPTS_DIR.glob("*.md")} == set(prompts.ROLES)


@pytest.mark.parametrize("role", prompts.ROLES)
def test_template_renders_with_a_real_task(role: str, fields: dict[str, dict[str, str]]) -> None:
    role_fields = fields[role]
    template = prompts.load_template(role)
    assert prompts.placeholders(template) <= set(role_fields), "test gives every field the template asks"
    out = prompts.render(role, **role_fields)
    template_text = _strip_values(out, role_fields)
    assert PLACEHOLDER.findall(template_text) == []
    assert "{{" not in template_text and "}}" not in template_text
    assert "customer-churn" in out and "churned" in out
    assert "Do not use the column city." in out  # constraints reach every role


@pytest.mark.parametrize("role", CODE_WRITERS)
def test_code_writers_state_the_script_rules(role: str, fields: dict[str, dict[str, str]]) -> None:
    template = prompts.load_template(role)
    assert "{protocol}" in template, "every code writer gets the shared protocol section"
    assert "Final Validation Performance" in template
    assert "./input" in template
    assert "# [block: " in template or "fence" in template
    assert "```python" in template
    out = prompts.render(role, **fields[role])
    assert out.count(PROTOCOL_HEADING) == 1
    for text in ("./input/folds.csv", "`repeat,row,fold`", "fold = -1", "oof.csv", "test_pred.csv",
                 "MLESTAR_SEED", "MLESTAR_SUBMIT", "MLESTAR_THREADS", "sys.exit()", "def compute_metric",
                 "F1 score (`f1`), higher is better", "mean over all (repeat, fold)", "only the script's claim",
                 "average of the test predictions", "killed after 300 s", "4096 MB", "100,000 rows"):
        assert text in out, (role, text)
    assert 'int(os.environ.get("MLESTAR_SEED", 7))' in out
    assert f'int(os.environ.get("MLESTAR_THREADS", {os.cpu_count() or 1}))' in out
    assert "train_test_split(" not in _strip_values(out, {k: v for k, v in fields[role].items() if k != "protocol"})


@pytest.mark.parametrize("role", sorted(set(prompts.ROLES) - set(CODE_WRITERS)))
def test_other_roles_get_no_protocol_section(role: str, fields: dict[str, dict[str, str]]) -> None:
    assert "{protocol}" not in prompts.load_template(role)
    assert PROTOCOL_HEADING not in prompts.render(role, **fields[role])


@pytest.mark.parametrize("role", FULL_SCRIPT_WRITERS)
def test_full_scripts_use_the_folds_and_write_the_files(role: str, fields: dict[str, dict[str, str]]) -> None:
    out = prompts.render(role, **fields[role])
    assert "VALID_FRACTION" not in _strip_values(out, fields[role])  # the single split is gone
    assert "./submission.csv" in out and "`customer_id`" in out
    assert "columns `repeat,row,no,yes`" in out and "columns `row,no,yes`" in out


# ----------------------------------------------------------------------------------------------
# The protocol section
# ----------------------------------------------------------------------------------------------


def test_protocol_binary_label_metric(task: Task) -> None:
    text = prompts.protocol_text(task, seed=3)
    assert metrics.metric_source(task.metric, task.task_type).strip() in text  # the engine's own code
    assert "`no` → 0, `yes` → 1" in text and "valid_pred.argmax(axis=1)" in text
    assert "PRED_COLUMNS = ['no', 'yes']" in text
    assert 'int(os.environ.get("MLESTAR_SEED", 3))' in text
    assert 'os.environ.get("MLESTAR_SUBMIT", "1") != "0"' in text
    assert "exit()" in text and "pip install" in text and "`./`" in text


def test_protocol_binary_proba_multiclass_and_regression(demo_tasks_dir: Path) -> None:
    cancer = prompts.protocol_text(load_task(demo_tasks_dir / "breast-cancer"))
    assert "ROC-AUC (`roc_auc`), higher is better" in cancer
    assert "probability of class `1` (code 1)" in cancer and "valid_pred[:, 1]" in cancer
    assert "columns `repeat,row,0,1`" in cancer
    wine = prompts.protocol_text(load_task(demo_tasks_dir / "wine-cultivar"))
    assert "Log loss (`log_loss`), lower is better" in wine
    assert "columns `repeat,row,0,1,2`" in wine and "(n, k) matrix" in wine
    assert "`0` → 0, `1` → 1, `2` → 2" in wine
    diabetes = prompts.protocol_text(load_task(demo_tasks_dir / "diabetes-progression"))
    assert "RMSE (`rmse`), lower is better" in diabetes
    assert "columns `repeat,row,prediction`" in diabetes and "columns `row,prediction`" in diabetes
    assert "PRED_COLUMNS = ['prediction']" in diabetes and "valid_pred[:, 0]" in diabetes
    assert "class codes" not in diabetes


def test_protocol_limits_and_folds(task: Task) -> None:
    text = prompts.protocol_text(task, timeout=123, memory_mb=777, cores=3, n_folds=4, n_repeats=2)
    assert "killed after 123 s" in text and "777 MB" in text and "Cores: 3" in text
    assert 'int(os.environ.get("MLESTAR_THREADS", 3))' in text
    assert "K = 4 folds, repeated 2 times: 8 fits per script" in text
    assert "one hold-out split" in prompts.protocol_text(task, n_folds=1)
    default = prompts.protocol_text(task)
    assert "killed after 300 s" in default and "4096 MB" in default
    assert f"Cores: {os.cpu_count() or 1}" in default
    assert "come from the file" in default
    assert "this applies" not in default  # 3000 rows: the large-data advice is general only
    big = prompts.protocol_text(replace(task, n_train_rows=250_000))
    assert "about 250,000 rows: this applies" in big
    no_test = prompts.protocol_text(replace(task, test_file=None))
    assert "no test file" in no_test and "test_preds.append" not in no_test


def test_task_and_context_fields_pass_the_limits(task: Task) -> None:
    f = prompts.task_fields(task, [], timeout=60, memory_mb=1024, cores=1, n_folds=3, n_repeats=1)
    assert "killed after 60 s" in f["protocol"] and "1024 MB" in f["protocol"] and "K = 3 folds" in f["protocol"]
    ctx = BrainContext(task=task, seed=5, valid_fraction=0.3, n_folds=2, n_repeats=3)
    g = prompts.context_fields(ctx, code="x = 1\n")
    assert g["code"] == "x = 1\n" and g["seed"] == "5"
    assert "K = 2 folds, repeated 3 times" in g["protocol"] and "validating 0.3 of the rows" in g["protocol"]
    limited = SimpleNamespace(task=task, constraints=["c"], seed=1, valid_fraction=0.2, script_timeout=90.0,
                              memory_mb=2048, threads=2, python=sys.executable)
    h = prompts.context_fields(limited)
    assert "killed after 90 s" in h["protocol"] and "2048 MB" in h["protocol"] and "Cores: 2" in h["protocol"]
    assert h["constraints"] == "- c"


# ----------------------------------------------------------------------------------------------
# Installed packages: read from the scripts' interpreter, never hard-coded
# ----------------------------------------------------------------------------------------------


def _not_installed() -> list[str]:
    """Packages with no distribution here, under their own name or one that ships their module
    (xgboost-cpu installs `xgboost`)."""
    out = []
    for name, _module in environment_info.ML_PACKAGES:
        names = [name] + [a for a, n in environment_info.DISTRIBUTION_ALIASES.items() if n == name]
        if not any(_has_distribution(n) for n in names):
            out.append(name)
    return out


def _has_distribution(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_a_distribution_under_another_name_counts_as_its_module() -> None:
    assert "xgboost" in environment_info.installed_packages()  # the venv installs xgboost-cpu
    assert not _has_distribution("xgboost") and _has_distribution("xgboost-cpu")


def test_packages_reflect_the_real_environment(fields: dict[str, dict[str, str]]) -> None:
    sklearn_version = importlib.metadata.version("scikit-learn")
    found = environment_info.installed_packages()
    assert found["scikit-learn"] == sklearn_version
    assert found["numpy"] == importlib.metadata.version("numpy")
    text = environment_info.describe_environment()
    installed_part = text.split("Not installed")[0]
    assert f"scikit-learn {sklearn_version}" in installed_part
    assert f"Python {platform.python_version()}" in text
    for name in _not_installed():  # named only as not installed
        assert name not in found
        assert f"{name} " not in installed_part.replace("(import ", "("), name
        assert name in text.split("Not installed")[1]
    for role in CODE_WRITERS + ("retrieve_models", "extract_block", "plan_refinement", "plan_ensemble"):
        out = prompts.render(role, **fields[role])
        assert f"scikit-learn {sklearn_version}" in out, role


def test_templates_hard_code_no_package_recommendation() -> None:
    for role in prompts.ROLES:
        template = prompts.load_template(role).lower()
        for name in ("lightgbm", "xgboost", "catboost", "torch"):
            assert name not in template, (role, name)
    for role in ("retrieve_models", "extract_block", "plan_refinement", "plan_ensemble"):
        assert "{packages}" in prompts.load_template(role), role


def test_a_broken_interpreter_gives_no_packages_and_a_warning(caplog: pytest.LogCaptureFixture,
                                                              tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-python")
    with caplog.at_level(logging.WARNING, logger="mlestar_core.environment_info"):
        assert environment_info.installed_packages(missing) == {}
    assert "could not read the installed packages" in caplog.text
    failing = tmp_path / "failing-python"
    failing.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    failing.chmod(0o755)
    assert environment_info.installed_packages(str(failing)) == {}
    assert "could not be determined" in environment_info.describe_environment(str(failing))
    assert "could not be determined" in prompts.packages_text(missing)


def test_environment_probe_is_cached_per_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    environment_info.clear_cache()
    calls = []
    real = subprocess.run

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(environment_info.subprocess, "run", counting)
    first = environment_info.installed_packages(sys.executable)
    assert environment_info.installed_packages(sys.executable) == first
    environment_info.describe_environment(sys.executable)
    assert len(calls) == 1 and calls[0][0] == sys.executable and calls[0][1] == "-c"


def test_describe_environment_with_given_packages() -> None:
    text = environment_info.describe_environment(packages={"Scikit_Learn": "9.9", "numpy": "1.0"})
    assert text.startswith("Installed: scikit-learn 9.9 (import sklearn), numpy 1.0.")
    assert "Not installed (importing them fails): pandas" in text
    assert environment_info.canonical_name("scikit.learn") == "scikit-learn"
    assert "standard library" in environment_info.describe_environment(packages={})


@pytest.mark.parametrize("role", JSON_ROLES)
def test_json_roles_specify_json(role: str) -> None:
    template = prompts.load_template(role)
    assert "```json" in template and "JSON" in template


def test_leakage_and_retriever_schemas() -> None:
    leakage = prompts.load_template("check_leakage")
    assert '"leakage": "yes or no"' in leakage and '"code_block"' in leakage
    retriever = prompts.load_template("retrieve_models")
    assert "JSON" in retriever and '"model_name"' in retriever and '"example_code"' in retriever
    assert "{m}" in retriever
    ablation = prompts.load_template("write_ablation")
    assert '"block"' in ablation and '"code"' in ablation
    extract = prompts.load_template("extract_block")
    assert '"block"' in extract and '"plan"' in extract


@pytest.mark.parametrize("role", PLANNERS)
def test_constraints_reach_every_planner(role: str, fields: dict[str, dict[str, str]]) -> None:
    out = prompts.render(role, **fields[role])
    for c in CONSTRAINTS:
        assert f"- {c}" in out


def test_missing_field_is_named(fields: dict[str, dict[str, str]]) -> None:
    partial = dict(fields["debug"])
    del partial["error"]
    del partial["constraints"]
    with pytest.raises(PromptError, match="constraints, error"):
        prompts.render("debug", **partial)


def test_unknown_role_is_refused() -> None:
    with pytest.raises(PromptError, match="unknown prompt role"):
        prompts.render("write_poem", task_name="x")
    with pytest.raises(PromptError, match="unknown prompt role"):
        prompts.load_template("../README")


def test_placeholders_and_literal_braces() -> None:
    assert prompts.placeholders("a {x} b {{literal}} {y_z}") == {"x", "y_z"}
    with pytest.raises(PromptError):
        prompts.placeholders("a { b")
    with pytest.raises(PromptError):
        prompts.placeholders("a {x.y} b")


def test_task_fields(task: Task) -> None:
    f = prompts.task_fields(task, [])
    assert f["constraints"] == "none"
    assert f["metric"] == "F1 score (`f1`)" and f["direction"] == "higher is better"
    assert f["target"] == "churned" and f["task_type"] == "binary classification"
    assert "`customer_id`" in f["submission_format"] and "class label" in f["submission_format"]
    assert "train.csv" in f["input_files"] and "test.csv" in f["input_files"]
    assert f["data_summary"].startswith("Task: customer-churn")
    assert f["seed"] == "42" and f["valid_fraction"] == "0.2"
    assert f["protocol"].startswith(PROTOCOL_HEADING) and "F1 score (`f1`), higher is better" in f["protocol"]
    assert f["packages"].startswith("Python ") and f["packages"] in f["protocol"]
    assert all(isinstance(v, str) for v in f.values())
    g = prompts.task_fields(task, ["  use only linear models ", ""])
    assert g["constraints"] == "- use only linear models"


def test_formatters_handle_empty_and_failed() -> None:
    assert prompts.format_attempts([]).startswith("none")
    assert "failed to run" in prompts.format_attempts([AttemptSummary("p", None, 0.5, False)])
    assert prompts.format_ablation_results([]) == "none"
    assert "failed" in prompts.format_ablation_results([AblationResult("model", "d", None, 0.5, None)])
    assert prompts.format_solutions([]) == "none" and prompts.format_blocks([]) == "none"


def test_debug_advice_fits_the_failure() -> None:
    """A crash wants the smallest fix; a script killed for time or memory must become cheaper."""
    assert "smallest change" in prompts.debug_advice("error")
    for kind in ("timeout", "cpu"):
        advice = prompts.debug_advice(kind)
        assert "smallest change" not in advice and "fewer" in advice
    assert "memory" in prompts.debug_advice("memory") and "smallest change" not in prompts.debug_advice("memory")
