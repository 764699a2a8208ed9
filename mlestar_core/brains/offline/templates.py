"""Render whole scripts from block configs, and read the configs back out of a script.

`render_script(ctx, configs)` = header + the six fenced blocks. A script is fully described
by its header constants and four config literals, which is what lets every role (ablation,
refinement, merge, ensemble, debugging) work on configs instead of on raw text.
"""

from __future__ import annotations

import ast
from typing import Any

from ...evaluation import FOLDS_SOURCE
from ...metrics import get_metric, metric_source
from ...script import ScriptError, fence, get_block
from ..base import BrainContext
from .blocks import BLOCK_ORDER, CODES, CONFIG_NAMES, KEY_DOCS, LOAD_CODE, SUBMISSION_CODE
from .constraints import forbidden_columns

Config = dict[str, Any]
ModelList = list[dict[str, Any]]

COLUMN_LISTS: dict[str, str] = {
    "numeric": "NUMERIC_COLS",
    "categorical": "CATEGORICAL_COLS",
    "boolean": "BOOLEAN_COLS",
    "datetime": "DATETIME_COLS",
    "text": "TEXT_COLS",
}


# ---------------------------------------------------------------- literals


def format_literal(value: Any, indent: int = 0) -> str:
    """A deterministic, readable Python literal (dicts/lists of models are spread over lines)."""
    pad = " " * indent
    if isinstance(value, dict) and any(isinstance(v, (dict, list)) and v for v in value.values()):
        inner = ",\n".join(f"{pad}    {k!r}: {format_literal(v, indent + 4)}" for k, v in value.items())
        return "{\n" + inner + ",\n" + pad + "}"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        inner = ",\n".join(f"{pad}    {format_literal(v, indent + 4)}" for v in value)
        return "[\n" + inner + ",\n" + pad + "]"
    return repr(value)


def format_config(block: str, config: Config | ModelList) -> str:
    """`NAME = {...}` with one commented line per key (the models list is spread out)."""
    name = CONFIG_NAMES[block]
    if isinstance(config, list):
        return f"{name} = {format_literal(config)}\n"
    docs = KEY_DOCS.get(block, {})
    lines = [f"{name} = {{"]
    for key, value in config.items():
        doc = docs.get(key)
        lines.append(f"    {key!r}: {value!r},{'  # ' + doc if doc else ''}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_block(block: str, config: Config | ModelList | None) -> str:
    body = CODES[block]
    if block in CONFIG_NAMES:
        assert config is not None, f"block {block} needs a config"
        body = format_config(block, config) + "\n" + body
    return body


def read_config(code: str, block: str) -> Config | ModelList | None:
    """The block's config literal, or None when the block is missing or has no readable literal."""
    try:
        body = get_block(code, block)
        tree = ast.parse(body)
    except (ScriptError, SyntaxError):
        return None
    name = CONFIG_NAMES.get(block)
    return _literal(_assignment(tree, name)) if name else None


def _assignment(tree: ast.Module, name: str) -> ast.Assign | None:
    """The top-level `name = ...` statement of a module, if any."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == name
        ):
            return node
    return None


def _literal(node: ast.Assign | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node.value)
    except ValueError:
        return None


def read_header_value(code: str, name: str) -> Any:
    """A top-level constant of the script (e.g. NUMERIC_COLS), or None."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    return _literal(_assignment(tree, name))


def set_header_value(code: str, name: str, value: Any) -> str:
    """Replace the literal of a top-level `NAME = ...` line (single-line assignments only)."""
    node = _assignment(ast.parse(code), name)
    if node is None:
        raise ScriptError(f"script has no top-level {name} to set")
    lines = code.splitlines(keepends=True)
    start, end = node.lineno - 1, (node.end_lineno or node.lineno)
    comment = ""
    last = lines[end - 1].rstrip("\n")
    if "  #" in last:
        comment = "  #" + last.split("  #", 1)[1]
    lines[start:end] = [f"{name} = {value!r}{comment}\n"]
    return "".join(lines)


# ---------------------------------------------------------------- header


def column_lists(ctx: BrainContext) -> dict[str, list[str]]:
    """Feature columns by kind, minus id/constant/target and the ones a constraint forbids."""
    task = ctx.task
    banned = forbidden_columns(ctx)
    lists: dict[str, list[str]] = {v: [] for v in COLUMN_LISTS.values()}
    for col in task.columns:
        if col.name in (task.target, task.id_column) or col.name in banned:
            continue
        if col.kind in COLUMN_LISTS:
            lists[COLUMN_LISTS[col.kind]].append(col.name)
    return lists


def render_header(
    ctx: BrainContext, lists: dict[str, list[str]] | None = None, drop: list[str] | None = None
) -> str:
    task = ctx.task
    metric = get_metric(task.metric)
    lists = lists if lists is not None else column_lists(ctx)
    known = {c.name for c in task.columns}
    drop = drop if drop is not None else sorted(forbidden_columns(ctx) & known)
    direction = "higher is better" if task.higher_is_better else "lower is better"
    lines = [
        f"# MLE-STAR solution for task {task.name!r}: {task.task_type}, metric {task.metric} ({direction}).",
        "# Written by the offline brain. Reads ./input/ only; prints one 'Final Validation Performance'",
        "# line; writes ./submission.csv unless MLESTAR_SUBMIT=0.",
        "import os",
        "import warnings",
        "",
        'N_JOBS = int(os.environ.get("MLESTAR_THREADS", os.cpu_count() or 1))',
        "# Native thread pools (OpenMP, BLAS) follow N_JOBS; set before numpy/sklearn load them.",
        'for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):',
        "    os.environ.setdefault(_var, str(N_JOBS))",
        "",
        "import numpy as np  # noqa: E402",
        "import pandas as pd  # noqa: E402",
        "",
        'warnings.filterwarnings("ignore")',
        "",
        f"SEED = int(os.environ.get(\"MLESTAR_SEED\", {ctx.seed!r}))  # model seed (ablation repeats vary it)",
        "# The evaluation protocol (docs/protocol.md): the engine's ./input/folds.csv decides which rows each",
        "# fold validates; without it (a solution run on its own) the same folds are made with these settings.",
        f"FOLD_SEED = {ctx.seed!r}",
        f"N_FOLDS = {ctx.n_folds!r}",
        f"N_REPEATS = {ctx.n_repeats!r}",
        f"VALID_FRACTION = {ctx.valid_fraction!r}  # used when N_FOLDS == 1 (one hold-out split)",
        'INPUT_DIR = "./input"',
        f"TRAIN_FILE = {task.train_file!r}",
        f"TEST_FILE = {task.test_file!r}",
        f"SAMPLE_SUBMISSION_FILE = {task.sample_submission_file!r}",
        f"TARGET = {task.target!r}",
        f"ID_COL = {task.id_column!r}",
        f"TASK_TYPE = {task.task_type!r}",
        f"METRIC = {task.metric!r}",
        f"METRIC_NEEDS = {metric.needs!r}  # what compute_metric takes: label | proba | value",
        f"HIGHER_IS_BETTER = {task.higher_is_better!r}",
        f"SUBMISSION_COLUMNS = {list(task.submission_columns)!r}",
        f"SUBMISSION_KIND = {task.submission_kind!r}",
        f"SUBMISSION_CLASSES = {list(task.classes)!r}  # class labels (as text) in the submission's order",
        f"POSITIVE_CLASS = {task.positive_class!r}",
        "# The kept model (docs/protocol.md): MLESTAR_MODEL_DIR asks the script to save there what predicting new",
        "# rows needs; MLESTAR_PREDICT_FROM asks it to load that instead of fitting and predict ./input's test file.",
        'MODEL_DIR = os.environ.get("MLESTAR_MODEL_DIR") or None',
        'PREDICT_FROM = os.environ.get("MLESTAR_PREDICT_FROM") or None',
    ]
    for var in COLUMN_LISTS.values():
        lines.append(f"{var} = {lists.get(var, [])!r}")
    lines += [
        f"DROP_COLS = {drop!r}  # deliberately unused (e.g. a user constraint); not features",
        "",
        "",
        metric_source(task.metric, task.task_type).rstrip(),
        "",
        "",
        METRIC_INPUT.rstrip(),
        "",
        "",
        FOLDS_SOURCE.strip(),
        "",
        "",
        PROTOCOL_CODE.rstrip(),
        "",
        "",
    ]
    return "\n".join(lines)


METRIC_INPUT = '''\
def metric_input(pred):
    """Blended predictions (class-probability matrix or values) in the form compute_metric needs."""
    pred = np.asarray(pred, dtype=float)
    if TASK_TYPE == "regression":
        return np.clip(pred, 0, None) if METRIC == "rmsle" else pred
    if METRIC_NEEDS == "label":
        return pred.argmax(axis=1)
    if TASK_TYPE == "binary":
        return pred[:, 1]
    return pred
'''


PROTOCOL_CODE = '''\
def read_folds(train_rows, y):
    """(repeat, position, fold) of the rows to validate: from the engine's ./input/folds.csv (rows are
    train-file row numbers; train_rows maps them to positions in y), else made here the same way."""
    path = os.path.join(INPUT_DIR, "folds.csv")
    if not os.path.exists(path):
        return make_folds(y, TASK_TYPE != "regression", N_FOLDS, N_REPEATS, FOLD_SEED, VALID_FRACTION)
    folds = pd.read_csv(path)
    position = pd.Series(np.arange(len(train_rows)), index=train_rows)
    folds = folds[folds["row"].isin(position.index)]
    return (folds["repeat"].to_numpy(), position.loc[folds["row"].to_numpy()].to_numpy(),
            folds["fold"].to_numpy())


def fold_units(train_rows, y):
    """One (repeat, fold, fit positions, held-out positions) per fold: fit on the other folds only."""
    repeat, position, fold = read_folds(train_rows, y)
    units = []
    for r in sorted(set(repeat.tolist())):
        in_r = repeat == r
        for k in sorted(set(fold[in_r].tolist()) - {-1}):
            units.append((r, k, position[in_r & (fold != k)], position[in_r & (fold == k)]))
    return units


def prediction_frame(pred):
    """Predictions as the protocol writes them: `prediction`, or one probability column per class label."""
    pred = np.asarray(pred, dtype=float)
    if TASK_TYPE == "regression":
        return pd.DataFrame({"prediction": pred.reshape(len(pred))})
    return pd.DataFrame(pred, columns=[str(v) for v in CLASS_VALUES])


def write_oof(units, unit_preds, train_rows, path="oof.csv"):
    """oof.csv: repeat, row (train-file row number), predictions; the engine scores it."""
    parts = []
    for (r, _, _, held), pred in zip(units, unit_preds):
        frame = prediction_frame(pred)
        frame.insert(0, "row", train_rows[held])
        frame.insert(0, "repeat", r)
        parts.append(frame)
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)


def write_test_pred(pred, path="test_pred.csv"):
    frame = prediction_frame(pred)
    frame.insert(0, "row", np.arange(len(frame)))
    frame.to_csv(path, index=False)


def fold_mean_score(units, unit_preds, y):
    """The protocol's validation score: the metric on each fold's held-out rows, averaged."""
    return float(np.mean([compute_metric(y[held], metric_input(pred))
                          for (_, _, _, held), pred in zip(units, unit_preds)]))


def save_kept(state, folder, name="model.pkl"):
    """MLESTAR_MODEL_DIR: keep what predicting new rows needs. cloudpickle (installed with joblib) stores this
    script's own classes and functions by value, so the file loads without them (even from an ensemble)."""
    try:
        try:
            import cloudpickle as pickler
        except ImportError:  # plain pickle stores the script's classes by name: fine when run as a script
            import pickle as pickler
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            pickler.dump(state, f)
    except Exception as exc:  # keeping the model is a service on top of the run: its failure must not fail it
        print(f"the fitted model could not be kept: {type(exc).__name__}: {exc}")
        if os.path.exists(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))


def load_kept(folder, name="model.pkl"):
    """MLESTAR_PREDICT_FROM: what save_kept stored (the engine runs this only inside the sandbox)."""
    import pickle

    with open(os.path.join(folder, name), "rb") as f:
        return pickle.load(f)
'''


def header_of(code: str) -> str:
    """Everything before the first block fence."""
    marker = "# [block: "
    pos = code.find(marker)
    return code if pos < 0 else code[:pos]


def render_script(ctx: BrainContext, configs: dict[str, Any], header: str | None = None) -> str:
    """Header + six fenced blocks; `configs` maps preprocess/features/model/train to their literal."""
    parts = [header if header is not None else render_header(ctx)]
    for block in BLOCK_ORDER:
        parts.append(fence(block, render_block(block, configs.get(block))))
        parts.append("\n")
    return "".join(parts).rstrip("\n") + "\n"


def read_configs(code: str) -> dict[str, Any]:
    """All four configs of a script (missing/unreadable ones are absent from the result)."""
    out: dict[str, Any] = {}
    for block in CONFIG_NAMES:
        cfg = read_config(code, block)
        if cfg is not None:
            out[block] = cfg
    return out


# ---------------------------------------------------------------- baseline


BASELINE_BODY = """\
# The trivial baseline: class prior probabilities / majority class / training mean, fold by fold.
UNITS = fold_units(TRAIN_ROWS, y_all)


def constant_prediction(y, n_rows):
    if TASK_TYPE == "regression":
        centre = np.median(y) if METRIC == "mae" else np.mean(y)
        return np.full(n_rows, float(centre))
    prior = np.bincount(y, minlength=N_CLASSES) / len(y)  # argmax of the prior = the majority class
    return np.tile(prior, (n_rows, 1))


UNIT_PREDS = [constant_prediction(y_all[fit], len(held)) for _, _, fit, held in UNITS]
write_oof(UNITS, UNIT_PREDS, TRAIN_ROWS)
print(f"Final Validation Performance: {fold_mean_score(UNITS, UNIT_PREDS, y_all)!r}")
"""


def baseline_script(ctx: BrainContext) -> str:
    """The trivial baseline every brain's run is compared with, on the same split, same format."""
    predict = (
        SUBMISSION_CODE
        + """
if os.environ.get("MLESTAR_SUBMIT", "1") != "0" and test_df is not None:
    TEST_PRED = constant_prediction(y_all, len(test_df))
    write_test_pred(TEST_PRED)
    write_submission(TEST_PRED, "submission.csv")
"""
    )
    return "".join(
        [
            render_header(ctx),
            fence("load", LOAD_CODE),
            "\n",
            fence("train", BASELINE_BODY),
            "\n",
            fence("predict", predict),
        ]
    )
