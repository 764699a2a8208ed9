"""Prompt templates of the LLM brains: one markdown file per MLE-STAR role in `prompts/`.

A template is plain text with named `{placeholders}` (literal braces doubled, `{{ }}`), filled
with `str.format_map`. `render` is strict: a missing field raises `PromptError` naming every
missing field, an unknown role is refused. `task_fields` builds the fields every role shares
from a `Task` and the user's pinned constraints. Pure: no network, no store, no model calls.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from . import metrics
from .model import AblationResult, AttemptSummary, EnsembleAttempt, SolutionSummary, Task
from .task import describe_task

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"

# One template per Brain method (mlestar_core/brains/base.py), named after it.
ROLES: tuple[str, ...] = (
    "retrieve_models",
    "write_initial_solution",
    "merge",
    "check_data_usage",
    "check_leakage",
    "debug",
    "write_ablation",
    "summarize_ablation",
    "extract_block",
    "plan_refinement",
    "implement_refinement",
    "plan_ensemble",
    "implement_ensemble",
)

_KIND_TEXT = {
    "label": "the predicted class label (spelled as in the training data)",
    "value": "the predicted numeric value",
    "proba_positive": "the predicted probability of the positive class",
    "proba_per_class": "one probability column per class, each row summing to 1",
}
_TYPE_TEXT = {
    "binary": "binary classification",
    "multiclass": "multiclass classification",
    "regression": "regression",
}


class PromptError(ValueError):
    """A template that cannot be rendered: unknown role, missing fields or a malformed template."""


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise PromptError(f"unknown prompt role {role!r}; roles: {', '.join(ROLES)}")


def load_template(role: str) -> str:
    """The raw template text of `role` (prompts/<role>.md)."""
    _check_role(role)
    path = PROMPTS_DIR / f"{role}.md"
    if not path.is_file():
        raise PromptError(f"no template for role {role!r}: {path} is missing")
    return path.read_text(encoding="utf-8")


def placeholders(template: str) -> set[str]:
    """The field names a template asks for (`{name}`; doubled braces are literal text)."""
    names: set[str] = set()
    try:
        for _literal, field, _spec, _conv in string.Formatter().parse(template):
            if field is None:
                continue
            if not field.isidentifier():
                raise PromptError(f"placeholder {{{field}}} is not a plain name; double literal braces")
            names.add(field)
    except ValueError as e:  # unbalanced single brace
        raise PromptError(f"malformed template: {e}; double literal braces as {{{{ }}}}") from None
    return names


class _StrictFields(dict):
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


def render(role: str, **fields: Any) -> str:
    """The prompt of `role` with every placeholder filled; PromptError names missing fields."""
    template = load_template(role)
    missing = sorted(placeholders(template) - fields.keys())
    if missing:
        raise PromptError(f"prompt {role!r} is missing field(s): {', '.join(missing)}")
    try:
        return template.format_map(_StrictFields(fields))
    except KeyError as e:  # defensive: placeholders() and format_map disagree
        raise PromptError(f"prompt {role!r} is missing field(s): {e.args[0]}") from None
    except (ValueError, IndexError) as e:
        raise PromptError(f"prompt {role!r} could not be rendered: {e}") from None


def format_constraints(constraints: list[str]) -> str:
    """The user's pinned constraints as a bulleted list, or "none"."""
    items = [c.strip() for c in constraints if c and c.strip()]
    return "\n".join(f"- {c}" for c in items) if items else "none"


def input_files(task: Task) -> list[str]:
    """The files a script may read under ./input/, training table first."""
    files = [task.train_file]
    if task.test_file:
        files.append(task.test_file)
    if task.sample_submission_file:
        files.append(task.sample_submission_file)
    files.extend(task.other_files)
    return [Path(f).name if Path(f).is_absolute() else f for f in dict.fromkeys(files)]


def submission_format(task: Task) -> str:
    """What ./submission.csv must hold, in words."""
    cols = ", ".join(f"`{c}`" for c in task.submission_columns) or f"`{task.target}`"
    text = f"a CSV with columns {cols} (in this order); the prediction is {_KIND_TEXT[task.submission_kind]}"
    if task.id_column:
        text += f"; one row per `{task.id_column}` of the test set, ids copied from it"
    else:
        text += "; one row per test row, in test-set order"
    if task.task_type != "regression" and task.classes:
        text += f"; classes: {', '.join(task.classes)}"
        if task.positive_class is not None:
            text += f" (positive class {task.positive_class!r})"
    if task.sample_submission_file:
        text += f"; `{Path(task.sample_submission_file).name}` in ./input/ shows the exact layout"
    return text + "."


def task_fields(task: Task, constraints: list[str], *, seed: int = 42,
                valid_fraction: float = 0.2) -> dict[str, str]:
    """The fields every role template shares, as text."""
    m = metrics.get_metric(task.metric)
    return {
        "task_name": task.name,
        "task_description": task.description.strip() or "(no description was provided)",
        "data_summary": describe_task(task),
        "metric": f"{m.title} (`{task.metric}`)",
        "direction": "higher is better" if m.higher_is_better else "lower is better",
        "target": task.target,
        "task_type": _TYPE_TEXT.get(task.task_type, task.task_type),
        "submission_format": submission_format(task),
        "input_files": ", ".join(f"`{f}`" for f in input_files(task)),
        "constraints": format_constraints(constraints),
        "seed": str(seed),
        "valid_fraction": str(valid_fraction),
    }


# ----------------------------------------------------------------------------------------------
# Role inputs as prompt text
# ----------------------------------------------------------------------------------------------


def _num(value: float | None) -> str:
    return "failed (no score)" if value is None else f"{value:.6g}"


def format_ablation_results(results: list[AblationResult]) -> str:
    """One line per ablation variant: block, what it did, score, baseline, delta."""
    if not results:
        return "none"
    return "\n".join(
        f"- block `{r.block}`: {r.description} -> score {_num(r.score)} "
        f"(baseline {_num(r.baseline)}, delta {'n/a' if r.delta is None else f'{r.delta:+.6g}'})"
        for r in results
    )


def format_attempts(history: list[AttemptSummary]) -> str:
    """Earlier inner-loop attempts on one block, numbered."""
    if not history:
        return "none yet (this is the first attempt)"
    lines = []
    for i, a in enumerate(history, 1):
        outcome = f"score {_num(a.score)} vs baseline {_num(a.baseline)}" if a.ok else "failed to run"
        lines.append(f"{i}. {a.plan.strip()}\n   -> {outcome}")
    return "\n".join(lines)


def format_ensemble_history(history: list[EnsembleAttempt]) -> str:
    """Earlier ensemble plans with their scores, numbered."""
    if not history:
        return "none yet (this is the first attempt)"
    return "\n".join(f"{i}. {a.plan.strip()}\n   -> score {_num(a.score)}" for i, a in enumerate(history, 1))


def format_solutions(solutions: list[SolutionSummary]) -> str:
    """Each solution with its validation score and full code."""
    if not solutions:
        return "none"
    return "\n\n".join(
        f"### Solution {s.label} (validation score {_num(s.score)})\n```python\n{s.code.rstrip()}\n```"
        for s in solutions
    )


def format_blocks(names: list[str]) -> str:
    """A list of block names as text, or "none"."""
    return ", ".join(f"`{n}`" for n in names) if names else "none"
