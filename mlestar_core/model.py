"""The data model: plain dataclasses shared by every layer (one store table each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TaskType = Literal["binary", "multiclass", "regression"]
ColumnKind = Literal["numeric", "categorical", "boolean", "datetime", "text", "id", "constant"]
# label: the predicted class; value: a regression prediction; proba_positive: P(positive class);
# proba_per_class: one probability column per class (columns named as in the sample submission).
SubmissionKind = Literal["label", "value", "proba_positive", "proba_per_class"]


class TaskError(ValueError):
    """A task that cannot be understood; the message says what to add or fix."""


@dataclass
class ColumnProfile:
    name: str
    kind: ColumnKind
    dtype: str
    n_unique: int
    missing_fraction: float
    example: str = ""


@dataclass
class Task:
    name: str
    description: str
    data_dir: Path  # holds train_file, test_file, sample_submission_file and other_files
    target: str
    task_type: TaskType
    metric: str  # a key of metrics.METRICS
    higher_is_better: bool
    train_file: str = "train.csv"
    test_file: str | None = "test.csv"
    sample_submission_file: str | None = None
    id_column: str | None = None
    submission_columns: list[str] = field(default_factory=list)
    submission_kind: SubmissionKind = "label"
    # Class labels as they appear in the training data (stringified), in the order the
    # submission wants them (sample-submission column order for proba_per_class).
    classes: list[str] = field(default_factory=list)
    positive_class: str | None = None
    columns: list[ColumnProfile] = field(default_factory=list)  # features only (no target)
    other_files: list[str] = field(default_factory=list)
    n_train_rows: int = 0
    n_test_rows: int = 0
    notes: list[str] = field(default_factory=list)  # what ingestion decided on its own, for the user
    # True when neither the description nor the user named a metric and the task type's default
    # (metrics.DEFAULT_METRIC) was chosen; the UI should say so. Old JSON without it loads as False.
    metric_defaulted: bool = False

    def columns_of(self, *kinds: str) -> list[str]:
        return [c.name for c in self.columns if c.kind in kinds]

    @property
    def n_features(self) -> int:
        """Columns a model learns from: not the target, not the id column or other ids."""
        return sum(1 for c in self.columns if c.kind != "id" and c.name != self.id_column)


@dataclass
class ModelCard:
    name: str
    why: str
    example_code: str
    source: str  # a URL for web retrieval, "knowledge base" offline
    family: str = ""  # e.g. "gbdt", "linear", "forest", "knn", "svm", "mlp"
    sources: list[dict[str, str]] = field(default_factory=list)  # web pages the search grounded it on


@dataclass
class CheckResult:
    """Outcome of the data-usage or leakage check: possibly corrected code plus findings."""

    code: str
    changed: bool
    findings: list[str] = field(default_factory=list)
    checked: bool = True  # False: the checker could not be run or read; the script went on unchecked


@dataclass
class AblationVariant:
    block: str  # the block that is switched to a simpler alternative
    description: str  # what the variant does, in words
    code: str  # the full script with that one block replaced


@dataclass
class AblationResult:
    block: str
    description: str
    score: float | None
    baseline: float | None
    # Positive delta = the block helps: ablating it makes the score worse (direction-aware).
    delta: float | None


@dataclass
class BlockChoice:
    block: str
    plan: str
    reason: str = ""
    span: str = ""  # exact contiguous lines inside `block` to refine instead of the whole block ("" = whole)
    span_name: str = ""  # the name the span gets as a block of its own


@dataclass
class AttemptSummary:
    """What the planner sees of earlier inner-loop attempts on the same block."""

    plan: str
    score: float | None
    baseline: float | None
    ok: bool
    folds_won: int = 0  # folds on which the attempt beat its baseline (paired per-fold scores)
    folds_compared: int = 0


@dataclass
class SolutionSummary:
    """A refined solution handed to the ensemble roles."""

    label: str
    code: str
    score: float | None


@dataclass
class EnsembleAttempt:
    plan: str
    score: float | None


def task_from_dict(data: dict) -> Task:
    """Rebuild a Task stored as JSON (resume, UI)."""
    fields = dict(data)
    fields["data_dir"] = Path(fields["data_dir"])
    fields["columns"] = [ColumnProfile(**c) for c in fields.get("columns", [])]
    known = Task.__dataclass_fields__
    return Task(**{k: v for k, v in fields.items() if k in known})
