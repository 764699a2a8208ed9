"""Well-chosen starting configs per model family and task, plus the 'simpler alternative' of each block.

Numbers follow common practice for tabular data: moderate learning rates with early stopping
for boosting, shallower trees on small data, enough trees for forests to stabilise, scaled
inputs and mild regularisation for the distance/linear models.
"""

from __future__ import annotations

from typing import Any

from ...metrics import get_metric
from ..base import BrainContext

MODEL_FAMILIES: tuple[str, ...] = (
    "xgboost",
    "lightgbm",
    "catboost",
    "hist_gb",
    "random_forest",
    "extra_trees",
    "linear",
    "knn",
    "svm",
    "linear_svm",
    "mlp",
)
GBDT: frozenset[str] = frozenset({"xgboost", "lightgbm", "catboost", "hist_gb"})
# Boosting libraries that split on pandas category columns themselves: their scripts start with
# tree_cat_encoding 'native' (the others, and the ablation's simpler preprocessing, use 'ordinal').
NATIVE_CATEGORIES: frozenset[str] = frozenset({"xgboost", "lightgbm", "catboost"})
STYLE: dict[str, str] = {
    "xgboost": "gbdt",
    "lightgbm": "gbdt",
    "catboost": "gbdt",
    "hist_gb": "gbdt",
    "random_forest": "tree",
    "extra_trees": "tree",
    "linear": "scaled",
    "knn": "scaled",
    "svm": "scaled",
    "linear_svm": "scaled",
    "mlp": "scaled",
}
# Kernel SVMs with Platt scaling grow ~quadratically: past this many rows use the linear SVM.
SVM_MAX_ROWS = 4000


def n_rows(ctx: BrainContext) -> int:
    return max(1, ctx.task.n_train_rows or 1000)


def model_params(ctx: BrainContext, family: str) -> dict[str, Any]:
    """Starting hyperparameters for one family on this task."""
    n = n_rows(ctx)
    classify = ctx.task.task_type != "regression"
    small = n < 2000
    if family == "xgboost":
        return {
            "n_estimators": 2000,
            "learning_rate": 0.05,
            "max_depth": 4 if small else 6,
            "min_child_weight": 1.0,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            "max_bin": 256,
        }
    if family == "lightgbm":
        # Leaf-wise trees: num_leaves bounds the complexity. Large tables get a faster rate and a smaller
        # round budget (early stopping picks the count) so one fit stays within seconds on two cores.
        return {
            "n_estimators": 2000 if n < 50000 else 1000,
            "learning_rate": 0.1 if n >= 50000 or len(ctx.task.classes) >= 5 else 0.05,
            "num_leaves": 15 if n < 5000 else (31 if n < 50000 else 63),
            "min_child_samples": 5 if n < 500 else (10 if small else (20 if n < 50000 else 50)),
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            # Native categorical splits: rows needed per category group (the library's 100 mutes categories
            # on small data) and smoothing of the per-category statistics (many-level columns overfit without).
            "min_data_per_group": 10 if small else (50 if n < 50000 else 200),
            "cat_smooth": 10.0 if small else (30.0 if n < 50000 else 100.0),
            "cat_l2": 10.0 if n < 50000 else 20.0,
        }
    if family == "catboost":
        # Symmetric (oblivious) trees with ordered target statistics for the categoricals; a tree costs more
        # than lightgbm's, so the round budget shrinks and the rate grows with the table.
        return {
            "iterations": 2000 if n < 5000 else (1000 if n < 50000 else 600),
            "learning_rate": 0.05 if n < 5000 else (0.08 if n < 50000 else 0.15),
            "depth": 4 if n < 500 else 6,
            "l2_leaf_reg": 3.0,
            "border_count": 254 if n < 50000 else 128,
            # Combinations of categoricals are catboost's edge but cost ~3x the time: single ones on big tables.
            "max_ctr_complexity": 4 if n < 50000 else 1,
        }
    if family == "hist_gb":
        # One tree per class and iteration: many classes get a faster rate. tol stops early stopping
        # from chasing the tiny loss gains that multiclass problems keep making for thousands of rounds.
        return {
            "max_iter": 2000,
            "learning_rate": 0.1 if len(ctx.task.classes) >= 5 else 0.05,
            "max_leaf_nodes": 15 if small else 31,
            "min_samples_leaf": 10 if small else 20,
            "l2_regularization": 0.1,
            "max_features": 0.8,
            "tol": 1e-4,
        }
    if family in ("random_forest", "extra_trees"):
        return {
            "n_estimators": 300 if n < 20000 else 200,
            "max_features": "sqrt" if classify else (0.5 if family == "random_forest" else 0.7),
            "min_samples_leaf": 1 if classify else 2,
        }
    if family == "linear":
        return {"C": 1.0, "max_iter": 3000} if classify else {"alpha": 1.0}
    if family == "knn":
        k = int(min(30, max(5, round((0.8 * n) ** 0.5 / 2))))
        return {"n_neighbors": k, "weights": "distance"}
    if family == "svm":
        return {"C": 1.0, "gamma": "scale"} if classify else {"C": 1.0, "epsilon": 0.1, "gamma": "scale"}
    if family == "linear_svm":
        return {"C": 0.5, "max_iter": 5000} if classify else {"C": 0.5, "max_iter": 5000}
    if family == "mlp":
        return {
            "hidden_layer_sizes": (128, 64),
            "alpha": 0.001,
            "learning_rate_init": 0.001,
            "max_iter": 300,
            "early_stopping": n >= 1000,
            "n_iter_no_change": 15,
        }
    raise ValueError(f"unknown model family {family!r}")


def resolve_family(ctx: BrainContext, family: str) -> str:
    """Kernel SVMs do not scale: a large task gets the calibrated linear SVM instead."""
    if family == "svm" and n_rows(ctx) > SVM_MAX_ROWS:
        return "linear_svm"
    return family


def model_spec(ctx: BrainContext, family: str, weight: float = 1.0) -> dict[str, Any]:
    family = resolve_family(ctx, family)
    return {"name": family, "weight": weight, "params": model_params(ctx, family)}


def default_preprocess(ctx: BrainContext, family: str | None = None) -> dict[str, Any]:
    return {
        "num_impute": "median",
        "gbdt_impute": False,
        "missing_indicators": False,
        "scaler": "standard",
        "tree_cat_encoding": "native" if family in NATIVE_CATEGORIES else "ordinal",
        "linear_cat_encoding": "onehot",
        "rare_min_frequency": 5,
        "max_onehot": 30,
    }


def default_features(ctx: BrainContext) -> dict[str, Any]:
    has_text = bool(ctx.task.columns_of("text"))
    return {
        # The hour is in by default: on timestamps it often carries the most signal (bike rentals by hour of
        # the day); on plain dates it is a constant column the models ignore.
        "datetime_parts": ["year", "month", "day", "dayofweek", "hour", "elapsed_days"],
        "text_stats": has_text,
        "text_svd_components": 16 if has_text else 0,
        "text_max_features": 5000,
        "text_ngram_max": 2,
        "text_analyzer": "word",
        "text_model": has_text,
        "log1p": [],
        "count_encode": [],
        "ratios": 0,
        "products": 0,
        "group_stats": 0,
    }


def default_train(ctx: BrainContext) -> dict[str, Any]:
    # RMSLE is RMSE in log1p space: fitting on log1p(y) optimises the metric directly.
    return {
        "early_stopping": True,
        "early_stopping_rounds": 50,
        "inner_valid_fraction": 0.15,
        "target_transform": "log1p" if ctx.task.metric == "rmsle" else "none",
        "class_weight": "none",
        "n_seeds": 1,
        "max_fit_rows": None,
        # F1 on a binary task rewards a tuned cut-off far more than a better ranking does.
        "decision_threshold": "auto"
        if ctx.task.task_type == "binary" and get_metric(ctx.task.metric).needs == "label"
        else "none",
    }


def initial_configs(ctx: BrainContext, family: str) -> dict[str, Any]:
    return {
        "preprocess": default_preprocess(ctx, resolve_family(ctx, family)),
        "features": default_features(ctx),
        "model": [model_spec(ctx, family)],
        "train": default_train(ctx),
    }


# ------------------------------------------------------------ simpler alternatives (ablation)


def simple_preprocess(config: dict[str, Any]) -> dict[str, Any]:
    """Simplest imputation and encoding; scaling stays (distance models are meaningless without it)."""
    out = dict(config)
    out.update(
        {
            "num_impute": "mean",
            "gbdt_impute": False,
            "missing_indicators": False,
            "tree_cat_encoding": "ordinal",
            "linear_cat_encoding": "ordinal",
            "rare_min_frequency": 1,
            "scaler": "standard" if config.get("scaler", "standard") != "none" else "none",
        }
    )
    return out


def simple_features(config: dict[str, Any]) -> dict[str, Any]:
    """Raw columns only: no engineered feature (datetime and text columns are then left out)."""
    out = dict(config)
    out.update(
        {
            "datetime_parts": [],
            "text_stats": False,
            "text_svd_components": 0,
            "log1p": [],
            "count_encode": [],
            "ratios": 0,
            "products": 0,
            "group_stats": 0,
        }
    )
    return out


def simple_train(config: dict[str, Any]) -> dict[str, Any]:
    """No early stopping, no target transform, no class weights, one seed, the plain 0.5 cut-off."""
    out = dict(config)
    out.update(
        {
            "early_stopping": False,
            "target_transform": "none",
            "class_weight": "none",
            "n_seeds": 1,
            "decision_threshold": "none",
        }
    )
    return out


def library_default_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The same model with the library's default hyperparameters (the fixed plumbing stays)."""
    keep: dict[str, Any] = {}
    if spec["name"] == "linear":
        keep = {k: v for k, v in spec.get("params", {}).items() if k == "max_iter"}
    return {"name": spec["name"], "weight": 1.0, "params": keep}


def main_model(models: list[dict[str, Any]]) -> dict[str, Any]:
    """The strongest model of a list: the largest weight, the first one on ties."""
    best = models[0]
    for spec in models[1:]:
        if spec.get("weight", 1.0) > best.get("weight", 1.0):
            best = spec
    return best
