"""The LLM brains' prompt templates: one per role, all renderable with a real task, strict fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlestar_core import prompts
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
        "debug": {"code": base, "error": error},
        "write_ablation": {"code": base},
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
    assert "Final Validation Performance" in template
    assert "./input" in template
    assert "MLESTAR_SEED" in template and "MLESTAR_SUBMIT" in template
    assert "sys.exit()" in template
    assert "# [block: " in template or "fence" in template
    assert "```python" in template
    out = prompts.render(role, **fields[role])
    assert 'int(os.environ.get("MLESTAR_SEED", 7))' in out


@pytest.mark.parametrize("role", FULL_SCRIPT_WRITERS)
def test_full_scripts_keep_shared_split_and_submission(role: str, fields: dict[str, dict[str, str]]) -> None:
    out = prompts.render(role, **fields[role])
    assert "VALID_FRACTION = 0.25" in out
    assert "./submission.csv" in out and "`customer_id`" in out


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
    assert all(isinstance(v, str) for v in f.values())
    g = prompts.task_fields(task, ["  use only linear models ", ""])
    assert g["constraints"] == "- use only linear models"


def test_formatters_handle_empty_and_failed() -> None:
    assert prompts.format_attempts([]).startswith("none")
    assert "failed to run" in prompts.format_attempts([AttemptSummary("p", None, 0.5, False)])
    assert prompts.format_ablation_results([]) == "none"
    assert "failed" in prompts.format_ablation_results([AblationResult("model", "d", None, 0.5, None)])
    assert prompts.format_solutions([]) == "none" and prompts.format_blocks([]) == "none"
