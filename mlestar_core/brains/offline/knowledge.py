"""The bundled knowledge base: one card per model family, ranked by fit to the task at hand.

Relevance is a transparent score built from what the task profile tells us (task type, rows,
feature count, categorical/text share, missingness), following well-known practice: gradient
boosting leads on medium/large mixed tables (LightGBM on large ones, CatBoost when many features
are categorical; CatBoost's ordered boosting holds up on small tables too), linear and kernel
models shine on small numeric ones, forests are robust all-rounders, kNN/MLP need scaled numeric
inputs and enough rows. Retrieval (`diverse_ranking`) then spreads the picks over kinds of model,
so the M candidates (and the L solution tracks built from them) are not all boosting libraries.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...model import ModelCard, Task
from .constraints import INTERPRETABLE_FAMILIES


@dataclass(frozen=True)
class TaskProfile:
    n_rows: int
    n_features: int
    categorical_share: float
    text_share: float
    missing_share: float
    high_cardinality: bool
    task_type: str

    @classmethod
    def of(cls, task: Task) -> TaskProfile:
        feats = [c for c in task.columns if c.kind not in ("id", "constant") and c.name != task.target]
        n = max(1, len(feats))
        cats = [c for c in feats if c.kind in ("categorical", "boolean")]
        return cls(
            n_rows=max(1, task.n_train_rows or 1000),
            n_features=len(feats),
            categorical_share=len(cats) / n,
            text_share=sum(c.kind == "text" for c in feats) / n,
            missing_share=sum(c.missing_fraction > 0 for c in feats) / n,
            high_cardinality=any(c.n_unique > 50 for c in cats),
            task_type=task.task_type,
        )


@dataclass(frozen=True)
class KnowledgeCard:
    family: str
    title: str
    why: str
    example: str
    base: float  # prior strength on typical tabular data

    def relevance(self, p: TaskProfile) -> float:
        return self.base + _ADJUST[self.family](p)


def _gbdt(p: TaskProfile) -> float:
    s = 0.05 * (p.n_rows >= 2000) + 0.04 * (p.missing_share > 0) + 0.04 * (p.categorical_share > 0.2)
    return s - 0.12 * (p.n_rows < 500)


def _xgb(p: TaskProfile) -> float:
    return _gbdt(p) + 0.01


def _lgbm(p: TaskProfile) -> float:
    # Leaf-wise trees: the fastest and often the best from a few thousand rows up, the first to overfit tiny
    # tables.
    return _gbdt(p) + 0.02 * (p.n_rows >= 2000) + 0.02 * (p.n_rows >= 10000) - 0.04 * (p.n_rows < 1000)


def _catboost(p: TaskProfile) -> float:
    # Ordered target statistics make categoricals (high-cardinality ones too) its strength; ordered
    # boosting and robust defaults suit small tables; its symmetric trees cost more on huge ones.
    s = 0.05 * (p.categorical_share > 0.2) + 0.03 * p.high_cardinality + 0.03 * (p.n_rows < 2000)
    return _gbdt(p) + s - 0.04 * (p.n_rows > 100000)


def _forest(p: TaskProfile) -> float:
    return 0.04 * (p.n_rows < 5000) + 0.02 * (p.categorical_share > 0.2) - 0.05 * (p.n_rows > 50000)


def _linear(p: TaskProfile) -> float:
    s = 0.2 * (p.n_rows < 1000) + 0.08 * (p.n_rows < 3000) + 0.08 * (p.text_share > 0)
    return s + 0.05 * (p.n_features > p.n_rows / 20) - 0.05 * (p.n_rows > 20000)


def _knn(p: TaskProfile) -> float:
    s = 0.1 * (p.n_rows < 2000) + 0.05 * (p.categorical_share == 0)
    return s - 0.1 * (p.n_features > 50) - 0.1 * (p.n_rows > 20000) - 0.05 * (p.categorical_share > 0.3)


def _svm(p: TaskProfile) -> float:
    s = 0.22 * (p.n_rows < 1000) + 0.1 * (p.categorical_share == 0)
    return s - 0.12 * (p.n_rows > 5000) - 0.05 * (p.categorical_share > 0.3)


def _mlp(p: TaskProfile) -> float:
    return 0.06 * (2000 <= p.n_rows <= 50000) - 0.15 * (p.n_rows < 1000) + 0.03 * (p.categorical_share == 0)


_ADJUST = {
    "xgboost": _xgb,
    "lightgbm": _lgbm,
    "catboost": _catboost,
    "hist_gb": _gbdt,
    "random_forest": _forest,
    "extra_trees": _forest,
    "linear": _linear,
    "knn": _knn,
    "svm": _svm,
    "mlp": _mlp,
}

CARDS: tuple[KnowledgeCard, ...] = (
    KnowledgeCard(
        "xgboost",
        "XGBoost (gradient-boosted trees, hist)",
        "Gradient boosting is the strongest general-purpose learner on tabular data: it captures "
        "non-linear effects and interactions, handles missing values natively, is insensitive to "
        "feature scaling, and with a moderate learning rate plus early stopping on an inner split "
        "it rarely overfits. Best on medium to large mixed-type tables.",
        "from xgboost import XGBClassifier\n"
        "model = XGBClassifier(n_estimators=2000, learning_rate=0.05, max_depth=6, subsample=0.8,\n"
        "                      colsample_bytree=0.8, tree_method='hist', enable_categorical=True,\n"
        "                      eval_metric='auc', early_stopping_rounds=50)\n"
        "model.fit(X_tr, y_tr, eval_set=[(X_inner, y_inner)], verbose=False)",
        0.90,
    ),
    KnowledgeCard(
        "lightgbm",
        "LightGBM (leaf-wise gradient boosting)",
        "Histogram gradient boosting that grows each tree leaf by leaf: usually the fastest and among "
        "the most accurate learners on medium to large tables, with native missing values and native "
        "categorical splits on pandas category columns (no one-hot needed). num_leaves and "
        "min_child_samples bound the complexity; a moderate learning rate with early stopping on the "
        "task's metric picks the number of rounds. Leaf-wise growth can overfit very small tables.",
        "import lightgbm as lgb\n"
        "X_tr[cat_cols] = X_tr[cat_cols].astype('category')  # the same categories for X_inner, X_test\n"
        "model = lgb.LGBMClassifier(n_estimators=2000, learning_rate=0.05, num_leaves=31,\n"
        "                           min_child_samples=20, subsample=0.8, subsample_freq=1,\n"
        "                           colsample_bytree=0.8, verbosity=-1)\n"
        "model.fit(X_tr, y_tr, eval_X=X_inner, eval_y=y_inner, eval_metric='auc',\n"
        "          callbacks=[lgb.early_stopping(50, verbose=False)])",
        0.91,
    ),
    KnowledgeCard(
        "catboost",
        "CatBoost (ordered boosting with native categoricals)",
        "Gradient boosting on symmetric trees that encodes categorical columns itself with ordered "
        "target statistics: high-cardinality categoricals and their combinations are used without "
        "target leakage and without one-hot or target encoding. Ordered boosting and strong defaults "
        "make it robust on small tables as well; usually the strongest choice when many features are "
        "categorical, slower per round than LightGBM on very large tables.",
        "from catboost import CatBoostClassifier\n"
        "model = CatBoostClassifier(iterations=2000, learning_rate=0.05, depth=6, l2_leaf_reg=3,\n"
        "                           cat_features=cat_cols, eval_metric='AUC', verbose=0)\n"
        "model.fit(X_tr, y_tr, eval_set=(X_inner, y_inner), early_stopping_rounds=50)",
        0.90,
    ),
    KnowledgeCard(
        "hist_gb",
        "scikit-learn HistGradientBoosting",
        "Histogram gradient boosting (LightGBM-style) in scikit-learn: very fast on thousands to "
        "millions of rows, native missing-value and categorical support, built-in early stopping. "
        "A strong, dependency-free alternative to XGBoost with slightly different inductive bias.",
        "from sklearn.ensemble import HistGradientBoostingClassifier\n"
        "model = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=2000, max_leaf_nodes=31,\n"
        "                                       early_stopping=True, categorical_features=cat_idx)\n"
        "model.fit(X_tr, y_tr)",
        0.88,
    ),
    KnowledgeCard(
        "random_forest",
        "Random forest",
        "Bagged deep decision trees: robust with almost no tuning, hard to overfit badly, good "
        "probability ranking on small and medium tables, and a very different error pattern from "
        "boosting, which makes it a valuable ensemble member.",
        "from sklearn.ensemble import RandomForestClassifier\n"
        "model = RandomForestClassifier(n_estimators=300, max_features='sqrt', n_jobs=-1)\n"
        "model.fit(X_tr, y_tr)",
        0.76,
    ),
    KnowledgeCard(
        "extra_trees",
        "Extremely randomised trees",
        "Like a random forest but with random split thresholds: lower variance, faster to train, "
        "often better than random forests on small noisy numeric data, and diverse in an ensemble.",
        "from sklearn.ensemble import ExtraTreesClassifier\n"
        "model = ExtraTreesClassifier(n_estimators=400, max_features='sqrt', n_jobs=-1)\n"
        "model.fit(X_tr, y_tr)",
        0.73,
    ),
    KnowledgeCard(
        "linear",
        "Regularised linear model (LogisticRegression / Ridge)",
        "A linear model on standardised numeric and one-hot categorical features: fast, "
        "well-calibrated, interpretable coefficients, and often the best choice on small data or "
        "when the signal is close to additive; also the natural consumer of text features.",
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))\n"
        "model.fit(X_tr, y_tr)",
        0.62,
    ),
    KnowledgeCard(
        "knn",
        "k-nearest neighbours",
        "Predicts from the closest training rows in a scaled feature space: no training cost, "
        "captures local structure on small, low-dimensional numeric data, but degrades with many "
        "features or categorical columns.",
        "from sklearn.neighbors import KNeighborsClassifier\n"
        "model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=15, weights='distance'))\n"
        "model.fit(X_tr, y_tr)",
        0.48,
    ),
    KnowledgeCard(
        "svm",
        "Support vector machine (RBF kernel; calibrated linear SVM on large data)",
        "A kernel SVM on standardised features is among the most accurate models on small and "
        "medium numeric tables (smooth non-linear boundaries with strong regularisation). It scales "
        "quadratically, so large tasks use a calibrated LinearSVC / LinearSVR instead.",
        "from sklearn.svm import SVC\n"
        "model = make_pipeline(StandardScaler(), SVC(C=1.0, gamma='scale', probability=True))\n"
        "model.fit(X_tr, y_tr)",
        0.56,
    ),
    KnowledgeCard(
        "mlp",
        "Multi-layer perceptron",
        "A small neural network (two hidden layers, L2 penalty, early stopping) on scaled inputs: "
        "learns smooth interactions and complements tree ensembles, given a few thousand rows.",
        "from sklearn.neural_network import MLPClassifier\n"
        "model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(128, 64), alpha=1e-3,\n"
        "                                                      early_stopping=True))\n"
        "model.fit(X_tr, y_tr)",
        0.52,
    ),
)

CARD_BY_FAMILY: dict[str, KnowledgeCard] = {c.family: c for c in CARDS}


def rank_cards(task: Task, interpretable_only: bool = False) -> list[tuple[KnowledgeCard, float]]:
    """Cards by descending relevance (ties broken by the order above: deterministic)."""
    profile = TaskProfile.of(task)
    cards = [c for c in CARDS if not interpretable_only or c.family in INTERPRETABLE_FAMILIES]
    scored = [(c, round(c.relevance(profile), 4)) for c in cards]
    order = {c.family: i for i, c in enumerate(CARDS)}
    return sorted(scored, key=lambda cs: (-cs[1], order[cs[0].family]))


# Kinds of model: two picks of one kind learn much the same function, so retrieval spreads over kinds.
KIND: dict[str, str] = {
    "xgboost": "boosting",
    "lightgbm": "boosting",
    "catboost": "boosting",
    "hist_gb": "boosting",
    "random_forest": "bagging",
    "extra_trees": "bagging",
    "linear": "linear",
    "svm": "kernel",
    "knn": "neighbours",
    "mlp": "neural",
}
# Relevance given up per card of the same kind already picked: a second boosting library still
# beats a weak forest, a third one rarely beats a decent model of another kind.
VARIETY_PENALTY = 0.2


def diverse_ranking(task: Task, interpretable_only: bool = False) -> list[tuple[KnowledgeCard, float]]:
    """Every card in retrieval order: greedily the most relevant after VARIETY_PENALTY per card of the
    same kind already chosen (deterministic; the scores returned are the plain relevances)."""
    remaining = rank_cards(task, interpretable_only)
    chosen: list[tuple[KnowledgeCard, float]] = []
    picked: dict[str, int] = {}

    def adjusted(i: int) -> tuple[float, int]:
        card, score = remaining[i]
        return score - VARIETY_PENALTY * picked.get(KIND[card.family], 0), -i  # ties: the earlier card

    while remaining:
        card, score = remaining.pop(max(range(len(remaining)), key=adjusted))
        chosen.append((card, score))
        picked[KIND[card.family]] = picked.get(KIND[card.family], 0) + 1
    return chosen


def to_model_card(card: KnowledgeCard, score: float) -> ModelCard:
    return ModelCard(
        name=card.title,
        why=f"{card.why} (relevance {score:.2f} for this task)",
        example_code=card.example,
        source="knowledge base",
        family=card.family,
    )


def family_of(card: ModelCard) -> str:
    """Map any card (ours or a foreign one) to a family we can write; HistGradientBoosting otherwise."""
    if card.family in CARD_BY_FAMILY:
        return card.family
    text = f"{card.family} {card.name}".lower()
    hints = [
        ("xgb", "xgboost"),
        ("lightgbm", "lightgbm"),
        ("lgbm", "lightgbm"),
        ("catboost", "catboost"),
        ("histgradient", "hist_gb"),
        ("gradient", "hist_gb"),
        ("random forest", "random_forest"),
        ("randomforest", "random_forest"),
        ("extra", "extra_trees"),
        ("logistic", "linear"),
        ("ridge", "linear"),
        ("linear", "linear"),
        ("lasso", "linear"),
        ("neighbo", "knn"),
        ("knn", "knn"),
        ("svm", "svm"),
        ("svc", "svm"),
        ("svr", "svm"),
        ("support vector", "svm"),
        ("mlp", "mlp"),
        ("neural", "mlp"),
        ("perceptron", "mlp"),
    ]
    for hint, family in hints:
        if hint in text:
            return family
    return "hist_gb"
