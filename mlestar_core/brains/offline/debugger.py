"""Pattern-based repair of a crashing script: read the error, change the smallest thing that fixes it.

Repairs, tried in order: a syntax error inside one block regenerates that block; an unknown
column is dropped from the lists; an empty text vocabulary drops the text columns; memory or
time trouble shrinks the models and data; a failure inside one model's library swaps that
model for HistGradientBoosting. If nothing matches, the whole script is regenerated with the
safest defaults (keeping the header's column lists).
"""

from __future__ import annotations

import re
from typing import Any

from ...script import ScriptError, blocks, replace_block
from ..base import BrainContext
from .blocks import BLOCK_ORDER, CONFIG_NAMES
from .defaults import initial_configs, model_spec, simple_features
from .templates import (
    COLUMN_LISTS,
    header_of,
    read_config,
    read_configs,
    read_header_value,
    render_block,
    render_header,
    render_script,
    set_header_value,
)

_MEMORY = re.compile(r"MemoryError|out of memory|Cannot allocate|Killed|memory limit|std::bad_alloc", re.I)
_TIMEOUT = re.compile(r"timed? ?out|timeout|time limit|deadline", re.I)
_LIB_OF_MODEL = {
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "catboost": ("catboost", "CatBoostError"),
    "hist_gb": ("_hist_gradient_boosting",),
    "random_forest": ("ensemble/_forest", "RandomForest"),
    "extra_trees": ("ensemble/_forest", "ExtraTrees"),
    "linear": ("linear_model", "LogisticRegression", "Ridge"),
    "knn": ("neighbors",),
    "svm": ("sklearn/svm", "SVC", "SVR", "_libsvm"),
    "linear_svm": ("sklearn/svm", "LinearSVC", "LinearSVR", "_liblinear", "calibration"),
    "mlp": ("neural_network",),
}


def repair(ctx: BrainContext, code: str, error: str) -> tuple[str, str]:
    """(fixed script, what was done)."""
    for attempt in (_syntax, _unknown_columns, _empty_vocabulary, _resources, _model_failure):
        result = attempt(ctx, code, error)
        if result is not None and result[0] != code:
            return result
    return _regenerate(ctx, code)


# ------------------------------------------------------------------ individual repairs


def _syntax(ctx: BrainContext, code: str, error: str) -> tuple[str, str] | None:
    if not re.search(r"SyntaxError|IndentationError|TabError", error):
        return None
    m = re.findall(r"line (\d+)", error)
    if not m:
        return _regenerate(ctx, code)
    line = int(m[-1])
    try:
        found = blocks(code)
    except ScriptError:
        return _regenerate(ctx, code)
    offset = sum(len(x) + 1 for x in code.split("\n")[: line - 1])
    for b in found:
        if b.start <= offset <= b.end and b.name in BLOCK_ORDER:
            defaults = initial_configs(ctx, "hist_gb")
            config = read_config(code, b.name) if b.name in CONFIG_NAMES else None
            body = render_block(b.name, config if config is not None else defaults.get(b.name))
            return replace_block(
                code, b.name, body
            ), f"syntax error in block {b.name!r}: regenerated that block"
    return _regenerate(ctx, code)


def _quoted(text: str) -> list[str]:
    """Every single- and double-quoted string (searched separately: messages nest one in the other)."""
    return re.findall(r"'([^']+)'", text) + re.findall(r'"([^"]+)"', text)


def _unknown_columns(ctx: BrainContext, code: str, error: str) -> tuple[str, str] | None:
    lines = [
        ln
        for ln in error.splitlines()
        if re.search(
            r"KeyError|not in index|are in the \[columns\]|not found in axis|columns are missing", ln
        )
    ]
    if not lines:
        return None
    names = {n for ln in lines for n in _quoted(ln)}
    names |= {n for ln in lines for n in re.findall(r"Index\(\[([^\]]*)\]", ln) for n in _quoted(n)}
    new, dropped = code, []
    for var in COLUMN_LISTS.values():
        cols = read_header_value(new, var)
        if isinstance(cols, list) and any(c in names for c in cols):
            dropped += [c for c in cols if c in names]
            new = set_header_value(new, var, [c for c in cols if c not in names])
    features = read_config(new, "features")
    if isinstance(features, dict):
        changed = False
        for key in ("log1p", "count_encode"):
            if isinstance(features.get(key), list) and any(c in names for c in features[key]):
                features[key] = [c for c in features[key] if c not in names]
                changed = True
        if changed:
            new = replace_block(new, "features", render_block("features", features))
    if new == code:
        return None
    return new, f"unknown column(s) {sorted(set(dropped)) or sorted(names)}: removed from the feature lists"


def _empty_vocabulary(ctx: BrainContext, code: str, error: str) -> tuple[str, str] | None:
    if "empty vocabulary" not in error:
        return None
    text = read_header_value(code, "TEXT_COLS")
    if not isinstance(text, list) or not text:
        return None
    new = set_header_value(code, "TEXT_COLS", [])
    drop = read_header_value(new, "DROP_COLS")
    if isinstance(drop, list):
        new = set_header_value(new, "DROP_COLS", sorted(set(drop) | set(text)))
    return new, f"text columns {text} have no usable vocabulary: dropped them"


def _resources(ctx: BrainContext, code: str, error: str) -> tuple[str, str] | None:
    if not (_MEMORY.search(error) or _TIMEOUT.search(error)):
        return None
    new = code
    models = read_config(code, "model")
    if isinstance(models, list):
        new = replace_block(new, "model", render_block("model", [_lighter(ctx, m) for m in models]))
    train = read_config(new, "train")
    if isinstance(train, dict):
        rows = max(
            1000, min(int(train.get("max_fit_rows") or 10**9), ctx.task.n_train_rows // 2 or 20000, 50000)
        )
        train.update({"n_seeds": 1, "max_fit_rows": rows})
        new = replace_block(new, "train", render_block("train", train))
    features = read_config(new, "features")
    if isinstance(features, dict):
        features.update(
            {
                "text_max_features": min(2000, features["text_max_features"]),
                "text_svd_components": min(8, features["text_svd_components"]),
                "ratios": min(3, features["ratios"]),
                "products": min(3, features["products"]),
                "group_stats": min(2, features["group_stats"]),
            }
        )
        new = replace_block(new, "features", render_block("features", features))
    if new == code:
        return None
    kind = "memory" if _MEMORY.search(error) else "time"
    return new, f"ran out of {kind}: fewer trees/iterations, smaller text features, subsampled fitting rows"


def _lighter(ctx: BrainContext, spec: dict[str, Any]) -> dict[str, Any]:
    name = spec["name"]
    if name in ("svm", "mlp", "knn"):
        return {**model_spec(ctx, "hist_gb"), "weight": spec.get("weight", 1.0)}
    p = dict(spec.get("params", {}))
    for key, cap in (
        ("n_estimators", 300 if name in ("random_forest", "extra_trees") else 1000),
        ("max_iter", 1000),
        ("iterations", 1000),  # catboost
    ):
        if key in p:
            p[key] = max(50, min(cap, int(p[key]) // 2))
    if "max_depth" in p and isinstance(p["max_depth"], int):
        p["max_depth"] = min(p["max_depth"], 8)
    if name in ("random_forest", "extra_trees"):
        p["max_depth"] = p.get("max_depth") or 16
    if name == "lightgbm":
        p["num_leaves"] = min(int(p.get("num_leaves", 31)), 31)
        p["max_bin"] = min(int(p.get("max_bin", 255)), 127)
    if name == "catboost":
        p["depth"] = min(int(p.get("depth", 6)), 6)
        p["max_ctr_complexity"] = 1  # no combinations of categoricals: the costliest part of a round
        p["border_count"] = min(int(p.get("border_count", 254)), 128)
    return {**spec, "params": p}


def _model_failure(ctx: BrainContext, code: str, error: str) -> tuple[str, str] | None:
    models = read_config(code, "model")
    if not isinstance(models, list):
        return None
    for spec in models:
        hints = _LIB_OF_MODEL.get(spec["name"], ())
        if any(h in error for h in hints):
            others = [m for m in models if m is not spec]
            if spec["name"] == "hist_gb":
                replacement = model_spec(ctx, "random_forest", spec.get("weight", 1.0))
            else:
                replacement = model_spec(ctx, "hist_gb", spec.get("weight", 1.0))
            if any(m["name"] == replacement["name"] for m in others):
                new_models = others
            else:
                new_models = [replacement if m is spec else m for m in models]
            if not new_models:
                continue
            new = replace_block(code, "model", render_block("model", new_models))
            return new, f"the {spec['name']} model failed: replaced it with {replacement['name']}"
    return None


def _regenerate(ctx: BrainContext, code: str) -> tuple[str, str]:
    """The safest script: HistGradientBoosting, default preprocessing, only robust features.

    The header's column lists are kept when readable (earlier repairs may have removed columns)."""
    lists = {var: read_header_value(code, var) for var in COLUMN_LISTS.values()}
    drop = read_header_value(code, "DROP_COLS")
    if all(isinstance(v, list) for v in lists.values()):
        header = render_header(ctx, lists, drop if isinstance(drop, list) else None)  # type: ignore[arg-type]
    else:
        header = render_header(ctx)
    configs = initial_configs(ctx, "hist_gb")
    configs["features"] = {
        **simple_features(configs["features"]),
        "datetime_parts": ["year", "month", "dayofweek"],
        "text_stats": True,
    }
    safe = render_script(ctx, configs, header=header)
    if safe == code or header_of(safe) == header_of(code) and read_configs(safe) == read_configs(code):
        # Already the safest script: also give up on text/datetime columns and subsample.
        lists_min = {
            var: (cols if var in ("NUMERIC_COLS", "CATEGORICAL_COLS", "BOOLEAN_COLS") else [])
            for var, cols in (
                lists
                if all(isinstance(v, list) for v in lists.values())
                else {v: [] for v in COLUMN_LISTS.values()}
            ).items()
        }
        configs["train"]["max_fit_rows"] = 20000
        safe = render_script(ctx, configs, header=render_header(ctx, lists_min))  # type: ignore[arg-type]
        return safe, "regenerated a minimal script: numeric/categorical columns only, HistGradientBoosting"
    return (
        safe,
        "no known failure pattern: regenerated the script with the safest defaults (HistGradientBoosting)",
    )
