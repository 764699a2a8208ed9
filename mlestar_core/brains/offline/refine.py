"""The refinement catalogue per block, and the planner that walks it using earlier scores.

Every move is a small, named change of one block's config with the reason it tends to help.
The planner hill-climbs: each new plan carries the best improving settings found so far,
pushes a helpful numeric direction one step further, tries the opposite of a move that hurt,
and otherwise takes the next untried move from the catalogue. Plans are absolute settings on
the block's config in `code`, so a plan can be re-read, edited and re-implemented at will.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...metrics import improvement
from ...model import AttemptSummary
from ..base import BrainContext
from .constraints import INTERPRETABLE_FAMILIES, forbidden_columns, wants_interpretable
from .defaults import GBDT, NATIVE_CATEGORIES, STYLE, main_model, model_spec, n_rows, resolve_family
from .knowledge import rank_cards
from .plans import Settings, apply_settings, format_set_line, parse_set_line
from .templates import read_config


@dataclass
class Move:
    text: str  # what and why, for humans
    settings: Settings
    reversible: bool = False  # a numeric direction whose opposite is worth a try if it hurts
    tags: list[str] = field(default_factory=list)


# Safe ranges for pushing numeric hyperparameters further (keeps scripts fast and valid).
BOUNDS: dict[str, tuple[float, float]] = {
    "learning_rate": (0.01, 0.3),
    "n_estimators": (50, 6000),
    "max_iter": (50, 6000),
    "max_depth": (2, 12),
    "subsample": (0.4, 1.0),
    "colsample_bytree": (0.3, 1.0),
    "max_features": (0.1, 1.0),
    "min_child_weight": (0.0, 200.0),
    "reg_lambda": (0.0, 1000.0),
    "reg_alpha": (0.0, 1000.0),
    "max_leaf_nodes": (4, 255),
    "num_leaves": (4, 255),
    "min_child_samples": (1, 500),
    "iterations": (50, 6000),
    "depth": (2, 10),
    "l2_leaf_reg": (0.0, 100.0),
    "rsm": (0.1, 1.0),
    "min_data_per_group": (1, 500),
    "cat_smooth": (0.0, 200.0),
    "cat_l2": (0.0, 200.0),
    "min_samples_leaf": (1, 500),
    "l2_regularization": (0.0, 1000.0),
    "C": (1e-4, 1e4),
    "alpha": (1e-6, 1e4),
    "n_neighbors": (1, 200),
    "weight": (0.0, 100.0),
    "early_stopping_rounds": (10, 400),
    "n_seeds": (1, 5),
    "text_svd_components": (4, 128),
    "text_max_features": (500, 50000),
    "ratios": (2, 6),
    "products": (2, 6),
    "group_stats": (1, 5),
    "rare_min_frequency": (1, 200),
    "max_onehot": (5, 200),
    "learning_rate_init": (1e-4, 0.05),
}


# ------------------------------------------------------------------ catalogue


def catalogue(ctx: BrainContext, code: str, block: str, generic: bool = True) -> list[Move]:
    """Moves for the block in order of promise; `generic` appends plain numeric nudges as a last resort."""
    config = read_config(code, block)
    models = read_config(code, "model")
    models = models if isinstance(models, list) and models else [model_spec(ctx, "hist_gb")]
    if block == "model":
        moves = _model_moves(ctx, models)
        config = models
    elif config is None:
        return []
    elif block == "preprocess":
        moves = _preprocess_moves(ctx, config, models)
    elif block == "features":
        moves = _feature_moves(ctx, config, models)
    elif block == "train":
        moves = _train_moves(ctx, config, models)
    else:
        return []
    return moves + (_generic_moves(block, config) if generic else [])


# Numeric knobs worth nudging when the curated moves are used up (block -> keys; model: params).
_NUDGE_KEYS = {
    "preprocess": ("rare_min_frequency", "max_onehot"),
    "features": ("text_svd_components", "text_max_features", "ratios", "products", "group_stats"),
    "train": ("early_stopping_rounds",),
}


def _generic_moves(block: str, config: Any) -> list[Move]:
    moves: list[Move] = []
    if block == "model" and isinstance(config, list) and config:
        main = main_model(config)
        for key, value in sorted(main.get("params", {}).items()):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or key in ("max_iter", "n_estimators", "iterations", "n_jobs", "verbose", "subsample_freq")
                or key in ("max_ctr_complexity", "border_count", "max_bin")
            ):
                continue
            for factor in (1.5, 1 / 1.5):
                lo, hi = BOUNDS.get(key, (-math.inf, math.inf))
                new = min(hi, max(lo, value * factor))
                new = int(round(new)) if isinstance(value, int) else round(new, 6)
                if new != value:
                    moves.append(
                        Move(
                            f"Nudge {main['name']}.{key} from {value} to {new}.",
                            {f"{main['name']}.{key}": new},
                        )
                    )
        return moves
    if isinstance(config, dict):
        for key in _NUDGE_KEYS.get(block, ()):
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                for new in (value * 2, max(1, value // 2)):
                    lo, hi = BOUNDS.get(key, (-math.inf, math.inf))
                    new = int(min(hi, max(lo, new)))
                    if new != value:
                        moves.append(Move(f"Nudge {key} from {value} to {new}.", {key: new}))
    return moves


def _styles(models: list[dict[str, Any]]) -> set[str]:
    return {STYLE.get(m["name"], "gbdt") for m in models if m.get("weight", 1.0) > 0}


def _model_moves(ctx: BrainContext, models: list[dict[str, Any]]) -> list[Move]:
    main = main_model(models)
    moves = _family_moves(ctx, main)
    add = _add_model_move(ctx, models)
    if add is not None:
        moves.insert(min(1, len(moves)), add)  # a diverse second model is one of the surest gains
    for other in models:
        if other is not main:
            moves += _family_moves(ctx, other)[:2]
    if len(models) > 1:
        others = [m for m in models if m is not main]
        moves.append(
            Move(
                f"Lean the blend on the main model {main['name']} (double its weight).",
                {f"{main['name']}.weight": main.get("weight", 1.0) * 2},
                reversible=True,
            )
        )
        moves.append(
            Move(
                f"Give {others[0]['name']} more say in the blend (double its weight).",
                {f"{others[0]['name']}.weight": others[0].get("weight", 1.0) * 2},
            )
        )
    return moves


def _add_model_move(ctx: BrainContext, models: list[dict[str, Any]]) -> Move | None:
    if len(models) >= 3:
        return None
    interpretable = wants_interpretable(ctx)
    present = {m["name"] for m in models}
    styles = _styles(models)
    for card, _score in rank_cards(ctx.task, interpretable_only=interpretable):
        family = resolve_family(ctx, card.family)
        if family in present or family == "knn":
            continue
        if STYLE[family] in styles and len(styles) == 1 and family not in INTERPRETABLE_FAMILIES:
            continue  # prefer a different inductive bias: that is what makes blends work
        return Move(
            f"Add a {family} model to the blend: a different inductive bias averages out "
            f"the main model's errors (prediction averaging with equal weights).",
            {"add_model": family},
        )
    return None


def _slower_learning(name: str, lr: float, lr_floor: float, rounds_key: str, rounds: int) -> Move:
    """The boosting move every library shares: smaller steps, more of them (early stopping picks the count)."""
    return Move(
        "Halve the learning rate and double the round budget: smaller steps generalise better and "
        "early stopping still picks the count.",
        {f"{name}.learning_rate": max(lr_floor, round(lr / 2, 4)), f"{name}.{rounds_key}": min(6000, rounds * 2)},
    )


def _family_moves(ctx: BrainContext, spec: dict[str, Any]) -> list[Move]:
    name, p = spec["name"], dict(spec.get("params", {}))
    small = n_rows(ctx) < 2000
    big = n_rows(ctx) > 5000

    def get(key: str, default: Any) -> Any:
        return p.get(key, default)

    lr_floor = 0.02 if big else 0.01
    if name == "xgboost":
        lr, trees, depth = get("learning_rate", 0.3), get("n_estimators", 100), get("max_depth", 6)
        return [
            _slower_learning(name, lr, lr_floor, "n_estimators", trees),
            Move(
                f"{'Shallower' if small else 'Deeper'} trees: "
                f"{'small data overfits deep interactions' if small else 'more rows support richer ones'}.",
                {f"{name}.max_depth": max(2, depth - 2) if small else min(10, depth + 2)},
                reversible=True,
            ),
            Move(
                "Regularise leaves: a larger min_child_weight and L2 penalty smooth noisy splits.",
                {
                    f"{name}.min_child_weight": max(5.0, get("min_child_weight", 1.0) * 5),
                    f"{name}.reg_lambda": max(5.0, get("reg_lambda", 1.0) * 5),
                },
                reversible=True,
            ),
            Move(
                "More randomness per tree (row and column subsampling) to decorrelate trees.",
                {f"{name}.subsample": 0.7, f"{name}.colsample_bytree": 0.6},
            ),
            Move("Add an L1 penalty on leaf weights to ignore weak features.", {f"{name}.reg_alpha": 1.0}),
        ]
    if name == "lightgbm":
        lr, trees, leaves = get("learning_rate", 0.1), get("n_estimators", 100), get("num_leaves", 31)
        return [
            _slower_learning(name, lr, lr_floor, "n_estimators", trees),
            Move(
                f"{'Fewer' if small else 'More'} leaves per tree: "
                f"{'leaf-wise growth overfits small data' if small else 'richer interactions on more rows'}.",
                {f"{name}.num_leaves": max(4, leaves // 2) if small else min(255, leaves * 2)},
                reversible=True,
            ),
            Move(
                "Regularise leaves: more rows per leaf and a stronger L2 penalty smooth noisy splits.",
                {
                    f"{name}.min_child_samples": min(500, get("min_child_samples", 20) * 2),
                    f"{name}.reg_lambda": max(5.0, get("reg_lambda", 0.0) * 5),
                },
                reversible=True,
            ),
            Move(
                "More randomness per tree (row and column subsampling) to decorrelate trees.",
                {f"{name}.subsample": 0.7, f"{name}.subsample_freq": 1, f"{name}.colsample_bytree": 0.6},
            ),
            Move(
                "Smoother categorical splits: more rows per category group and stronger smoothing.",
                {
                    f"{name}.min_data_per_group": min(500, get("min_data_per_group", 100) * 2),
                    f"{name}.cat_smooth": min(200.0, get("cat_smooth", 10.0) * 3),
                },
                reversible=True,
            ),
            Move("Add an L1 penalty on leaf weights to ignore weak features.", {f"{name}.reg_alpha": 1.0}),
        ]
    if name == "catboost":
        lr, iters, depth = get("learning_rate", 0.05), get("iterations", 1000), get("depth", 6)
        return [
            _slower_learning(name, lr, lr_floor, "iterations", iters),
            Move(
                f"{'Shallower' if small else 'Deeper'} symmetric trees: "
                f"{'small data overfits deep interactions' if small else 'more rows support richer ones'}.",
                {f"{name}.depth": max(2, depth - 2) if small else min(10, depth + 2)},
                reversible=True,
            ),
            Move(
                "Stronger L2 regularisation of the leaf values.",
                {f"{name}.l2_leaf_reg": min(100.0, get("l2_leaf_reg", 3.0) * 3)},
                reversible=True,
            ),
            Move(
                "Random subspace per split level (rsm) to decorrelate trees.",
                {f"{name}.rsm": 0.5},
            ),
        ]
    if name == "hist_gb":
        lr, iters, leaves = get("learning_rate", 0.1), get("max_iter", 100), get("max_leaf_nodes", 31)
        return [
            _slower_learning(name, lr, lr_floor, "max_iter", iters),
            Move(
                f"{'Fewer' if small else 'More'} leaves per tree: "
                f"{'less variance on small data' if small else 'richer interactions on more rows'}.",
                {f"{name}.max_leaf_nodes": max(4, leaves // 2) if small else min(255, leaves * 2)},
                reversible=True,
            ),
            Move(
                "Regularise: larger leaves and a stronger L2 penalty.",
                {
                    f"{name}.min_samples_leaf": get("min_samples_leaf", 20) * 2,
                    f"{name}.l2_regularization": max(1.0, get("l2_regularization", 0.0) * 10),
                },
                reversible=True,
            ),
            Move("Feature subsampling per split decorrelates the trees.", {f"{name}.max_features": 0.5}),
        ]
    if name in ("random_forest", "extra_trees"):
        trees = get("n_estimators", 100)
        mf = get("max_features", "sqrt")
        wider = 0.5 if mf in ("sqrt", "log2", None) or (isinstance(mf, float) and mf < 0.5) else 0.33
        return [
            Move(
                "More trees: the forest's variance keeps falling with size.",
                {f"{name}.n_estimators": min(1500, trees * 2)},
            ),
            Move(
                "Change how many features each split considers (the main forest knob).",
                {f"{name}.max_features": wider},
                reversible=False,
            ),
            Move(
                "Larger leaves smooth the probability/value estimates.",
                {f"{name}.min_samples_leaf": get("min_samples_leaf", 1) + 2},
                reversible=True,
            ),
        ]
    if (
        name in ("linear", "linear_svm")
        and ctx.task.task_type != "regression"
        or name in ("svm", "linear_svm")
    ):
        c = get("C", 1.0)
        first = c * 4 if not small else c / 4
        return [
            Move(
                f"{'Weaker' if first > c else 'Stronger'} regularisation (C from {c} to {first:g}).",
                {f"{name}.C": round(first, 6)},
                reversible=True,
            ),
        ] + (
            [Move("Balanced class weights for the linear model.", {f"{name}.class_weight": "balanced"})]
            if name == "linear"
            else []
        )
    if name == "linear":
        a = get("alpha", 1.0)
        first = a * 4 if small else a / 4
        return [
            Move(
                f"{'Stronger' if first > a else 'Weaker'} ridge penalty (alpha from {a} to {first:g}).",
                {f"{name}.alpha": round(first, 6)},
                reversible=True,
            )
        ]
    if name == "knn":
        k = get("n_neighbors", 5)
        return [
            Move(
                "More neighbours: smoother, less noisy estimates.",
                {f"{name}.n_neighbors": min(200, k * 2)},
                reversible=True,
            ),
            Move("Manhattan distance is more robust to a few extreme features.", {f"{name}.p": 1}),
        ]
    if name == "mlp":
        a = get("alpha", 0.0001)
        return [
            Move("Stronger L2 penalty on the weights.", {f"{name}.alpha": round(a * 10, 6)}, reversible=True),
            Move(
                "A wider network with a smaller learning rate.",
                {f"{name}.hidden_layer_sizes": (256, 128), f"{name}.learning_rate_init": 0.0005},
            ),
        ]
    return []


def _preprocess_moves(ctx: BrainContext, cfg: dict[str, Any], models: list[dict[str, Any]]) -> list[Move]:
    styles = _styles(models)
    task = ctx.task
    cats = [c for c in task.columns if c.kind in ("categorical", "boolean")]
    high_card = any(c.n_unique > 30 for c in cats)
    missing = any(c.missing_fraction > 0 for c in task.columns if c.kind == "numeric")
    moves: list[Move] = []
    if "scaled" in styles:
        moves.append(
            Move(
                "Quantile-normalise numeric inputs for the linear/distance models: skewed columns "
                "and outliers stop dominating.",
                {"scaler": "quantile"},
            )
        )
        if high_card and cfg.get("linear_cat_encoding") != "target":
            moves.append(
                Move(
                    "Target-encode categoricals for the linear/distance models (cross-fitted), instead "
                    "of a wide one-hot.",
                    {"linear_cat_encoding": "target"},
                )
            )
    native = {m["name"] for m in models if m.get("weight", 1.0) > 0} & NATIVE_CATEGORIES
    if cats and native and cfg.get("tree_cat_encoding") != "native":
        moves.append(
            Move(
                f"Native categoricals for {', '.join(sorted(native))}: category columns split by the library "
                "itself (categories fixed on the fitting rows) instead of integer codes.",
                {"tree_cat_encoding": "native"},
            )
        )
    if cats and styles & {"gbdt", "tree"}:
        if cfg.get("tree_cat_encoding") != "target":
            moves.append(
                Move(
                    "Target-encode categoricals for the tree models (cross-fitted inside the training "
                    "part): high-cardinality columns become one informative number.",
                    {"tree_cat_encoding": "target"},
                )
            )
        if cfg.get("tree_cat_encoding") != "onehot" and not high_card:
            moves.append(
                Move(
                    "One-hot encode the (low-cardinality) categoricals for the trees, grouping rare "
                    "categories.",
                    {"tree_cat_encoding": "onehot", "max_onehot": 15},
                )
            )
        moves.append(
            Move(
                "Group rare categories more aggressively (fewer, better-estimated levels).",
                {"rare_min_frequency": max(20, cfg.get("rare_min_frequency", 5) * 4)},
            )
        )
        if native and cfg.get("tree_cat_encoding") == "native":
            moves.append(
                Move(
                    "Integer (ordinal) codes instead of native categorical splits: plain threshold splits "
                    "overfit many-level columns less.",
                    {"tree_cat_encoding": "ordinal"},
                )
            )
    if missing and (styles - {"gbdt"}):
        moves.append(
            Move(
                "Add missing-value indicator columns so models can learn from missingness itself.",
                {"missing_indicators": True},
            )
        )
        moves.append(
            Move(
                "Mean instead of median imputation.",
                {"num_impute": "mean" if cfg.get("num_impute") != "mean" else "median"},
            )
        )
    if missing and "gbdt" in styles:
        moves.append(
            Move(
                "Impute for boosting too, with missing indicators (sometimes steadier than native NaN "
                "handling).",
                {"gbdt_impute": True, "missing_indicators": True},
            )
        )
    if "scaled" in styles:
        moves.append(
            Move("Robust scaling (median/IQR) for the linear/distance models.", {"scaler": "robust"})
        )
    return moves


def _feature_moves(ctx: BrainContext, cfg: dict[str, Any], models: list[dict[str, Any]]) -> list[Move]:
    task = ctx.task
    styles = _styles(models)
    banned = forbidden_columns(ctx)
    numeric = [c.name for c in task.columns if c.kind == "numeric" and c.name not in banned]
    cats = [c for c in task.columns if c.kind in ("categorical", "boolean") and c.name not in banned]
    moves: list[Move] = []
    if task.columns_of("datetime"):
        extra = [p for p in ("hour", "dayofyear", "weekofyear", "quarter") if p not in cfg["datetime_parts"]]
        if extra:
            moves.append(
                Move(
                    "More calendar parts from the datetime columns (hour, day of year, week, quarter).",
                    {"datetime_parts": list(cfg["datetime_parts"]) + extra},
                )
            )
    if "scaled" in styles and numeric:
        moves.append(
            Move(
                "log1p of skewed non-negative numeric columns (chosen on the training part): linear "
                "and distance models see more symmetric inputs.",
                {"log1p": "auto"},
            )
        )
    if cats:
        moves.append(
            Move(
                "Frequency (count) encoding of the categoricals: how common a category is often "
                "carries signal, and it helps with high-cardinality columns.",
                {"count_encode": "auto"},
            )
        )
    if len(numeric) >= 2:
        moves.append(
            Move(
                "Pairwise ratios of the 4 numeric columns most correlated with the target (chosen on "
                "the training part).",
                {"ratios": 4},
            )
        )
        moves.append(
            Move(
                "Pairwise products of the 4 numeric columns most correlated with the target.", {"products": 4}
            )
        )
    if cats and numeric:
        moves.append(
            Move(
                "Group statistics: mean of the top-3 numeric columns within each category of the two "
                "lowest-cardinality categoricals, and each row's deviation from it.",
                {"group_stats": 3},
            )
        )
    if task.columns_of("text"):
        moves.append(
            Move(
                "Richer text representation: more TF-IDF terms and SVD components.",
                {
                    "text_max_features": min(50000, cfg["text_max_features"] * 2),
                    "text_svd_components": min(128, max(8, cfg["text_svd_components"]) * 2),
                },
            )
        )
        moves.append(
            Move(
                "Character n-grams (2-4) for the text columns: robust to typos and rare words.",
                {"text_analyzer": "char_wb"},
            )
        )
    if "scaled" not in styles and numeric:
        moves.append(Move("log1p of skewed numeric columns as extra features.", {"log1p": "auto"}))
    return moves


def _train_moves(ctx: BrainContext, cfg: dict[str, Any], models: list[dict[str, Any]]) -> list[Move]:
    task = ctx.task
    names = {m["name"] for m in models}
    moves: list[Move] = []
    randomised = names & {"xgboost", "lightgbm", "catboost", "hist_gb", "random_forest", "extra_trees", "mlp"}
    if randomised and cfg.get("n_seeds", 1) < 3:
        moves.append(
            Move(
                "Average 3 copies of each model trained with different seeds: less variance for free.",
                {"n_seeds": 3},
            )
        )
    if task.task_type == "regression":
        if cfg.get("target_transform") != "log1p":
            moves.append(
                Move(
                    "Fit on log1p(target) and map predictions back: skewed positive targets become "
                    "easier to model.",
                    {"target_transform": "log1p"},
                )
            )
        if cfg.get("target_transform") != "sqrt":
            moves.append(
                Move(
                    "Fit on sqrt(target): a milder variance-stabilising transform.",
                    {"target_transform": "sqrt"},
                )
            )
        if cfg.get("target_transform") != "none":
            moves.append(Move("Fit on the raw target (no transform).", {"target_transform": "none"}))
    if names & GBDT and cfg.get("early_stopping", True):
        moves.append(
            Move(
                "More patience for early stopping (fewer premature stops on a noisy inner split).",
                {"early_stopping_rounds": min(400, cfg.get("early_stopping_rounds", 50) * 2)},
                reversible=True,
            )
        )
        moves.append(
            Move(
                "A smaller inner split for early stopping leaves more rows for learning.",
                {"inner_valid_fraction": 0.1},
            )
        )
    if task.task_type != "regression" and task.metric in ("f1", "accuracy", "roc_auc"):
        moves.append(
            Move(
                "Re-weight classes (square root of balanced weights): rarer classes get more attention.",
                {"class_weight": "sqrt_balanced"},
            )
        )
    return moves


# ------------------------------------------------------------------ planner


def _canon(settings: Settings) -> str:
    return repr(sorted((k, repr(v)) for k, v in settings.items()))


def _base_value(base_cfg: Any, key: str) -> Any:
    """The value a setting key has in the block's current config (None when unset)."""
    if isinstance(base_cfg, dict):
        return base_cfg.get(key)
    if isinstance(base_cfg, list) and "." in key:
        name, param = key.split(".", 1)
        for spec in base_cfg:
            if spec["name"] == name:
                return spec.get("weight", 1.0) if param == "weight" else spec.get("params", {}).get(param)
    return None


def _push(settings: Settings, base_cfg: Any, factor_sign: float = 1.0) -> Settings | None:
    """One more step in the same numeric direction (factor_sign=-1: the opposite direction)."""
    out: Settings = dict(settings)
    moved = False
    for key, new in settings.items():
        old = _base_value(base_cfg, key)
        if isinstance(new, bool) or not isinstance(new, (int, float)) or not isinstance(old, (int, float)):
            continue
        if isinstance(old, bool) or old == new:
            continue
        param = key.split(".")[-1]
        lo, hi = BOUNDS.get(param, (-math.inf, math.inf))
        if factor_sign > 0:
            target = new * (new / old) if old not in (0, 0.0) and new / old > 0 else new + (new - old)
        else:
            target = old * (old / new) if new not in (0, 0.0) and old / new > 0 else old - (new - old)
        target = min(hi, max(lo, target))
        if isinstance(new, int) and isinstance(old, int):
            target = int(round(target))
        else:
            target = round(float(target), 6)
        if target != new and target != old:
            out[key] = target
            moved = True
        elif factor_sign < 0:
            out.pop(key)
    return out if moved else None


def _changes(block: str, base_cfg: Any, settings: Settings, ctx: BrainContext) -> bool:
    try:
        new = apply_settings(block, base_cfg, settings, new_spec=lambda f: model_spec(ctx, f))
    except ValueError:
        return False
    return new != base_cfg


def _describe(settings: Settings) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in settings.items())


def plan_next(ctx: BrainContext, code: str, block: str, history: list[AttemptSummary]) -> str:
    base_cfg = read_config(code, block)
    hib = ctx.task.higher_is_better
    moves = catalogue(ctx, code, block)
    tried: set[str] = set()
    scored: list[tuple[Settings, float | None]] = []
    for h in history:
        try:
            s = parse_set_line(h.plan)
        except ValueError:
            continue
        tried.add(_canon(s))
        gain = improvement(h.score, h.baseline, hib) if h.ok else None
        if gain is not None and h.folds_compared:
            # The paired per-fold scores decide what is evidence: a better mean that most folds disagree
            # with is noise to build on, and a worse mean that most folds prefer is no reason to turn back.
            won_most = 2 * h.folds_won > h.folds_compared
            lost_most = 2 * h.folds_won < h.folds_compared
            if (gain > 0 and not won_most) or (gain < 0 and not lost_most):
                gain = 0.0
        scored.append((s, gain))
    best: tuple[Settings, float] | None = None
    for s, g in scored:
        if g is not None and g > 0 and (best is None or g > best[1]):
            best = (s, g)
    carry: Settings = dict(best[0]) if best else {}
    candidates: list[tuple[str, Settings]] = []

    if best is not None:
        pushed = _push(best[0], base_cfg)
        if pushed is not None:
            candidates.append(
                (
                    f"The attempt with {_describe(best[0])} improved the score by {best[1]:.5g}; "
                    f"push the same direction one step further.",
                    pushed,
                )
            )
    improving = sorted(((s, g) for s, g in scored if g is not None and g > 0), key=lambda sg: -sg[1])
    for other, gain in improving[1:]:
        if not set(other) & set(carry):
            candidates.append(
                (
                    f"Two changes helped separately ({_describe(carry)}; {_describe(other)}, "
                    f"{gain:+.5g}): combine them.",
                    {**carry, **other},
                )
            )
    if scored:
        last, last_gain = scored[-1]
        last_move = next((m for m in moves if all(last.get(k) == v for k, v in m.settings.items())), None)
        if last_gain is not None and last_gain < 0 and (last_move is None or last_move.reversible):
            opposite = _push(
                {k: v for k, v in last.items() if k not in carry or carry[k] != v}, base_cfg, -1.0
            )
            if opposite:
                candidates.append(
                    (
                        f"{_describe(last)} made the score worse by {-last_gain:.5g}; "
                        f"try the opposite direction.",
                        {**carry, **opposite},
                    )
                )
    for move in moves:
        combined = {**carry, **move.settings}
        note = f" Kept from the best attempt so far: {_describe(carry)}." if carry else ""
        candidates.append((move.text + note, combined))

    for why, settings in candidates:
        if _canon(settings) in tried or not _changes(block, base_cfg, settings, ctx):
            continue
        return _plan_text(block, why, settings)
    if carry:
        return _plan_text(
            block,
            "Every catalogue move for this block has been tried; re-apply the best settings found.",
            carry,
        )
    fallback = moves[0].settings if moves else _neutral(block, base_cfg)
    return _plan_text(
        block, "No untried move is left for this block; re-run the first catalogue move.", fallback
    )


def expected_moves(ctx: BrainContext, code: str, block: str) -> int:
    """How many curated (non-generic) moves the block offers: blocks without any are poor choices."""
    return len(catalogue(ctx, code, block, generic=False))


def _neutral(block: str, cfg: Any) -> Settings:
    if block == "model" and isinstance(cfg, list) and cfg:
        return {f"{cfg[0]['name']}.weight": cfg[0].get("weight", 1.0)}
    if isinstance(cfg, dict) and cfg:
        key = next(iter(cfg))
        return {key: cfg[key]}
    return {}


def _plan_text(block: str, why: str, settings: Settings) -> str:
    return f"Refine the {block} block. {why}\n{format_set_line(settings)}"
