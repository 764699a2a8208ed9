"""The code of the six script blocks, each driven by one config dict literal at its top.

A block body is `<NAME> = <config literal>` followed by fixed, task-independent code that
implements every choice the config can express. So a refinement or an ablation is a new
config rendered with the same code, a human can read every choice at the top of a block,
and the brain reads a script's choices back with `ast.literal_eval` (see templates.py).

Blocks talk to each other only through these names:
  load       -> train_df, test_df, sample_submission, X_all, y_all, X_test, CLASS_VALUES, N_CLASSES
  features   -> FEATURES, FeatureBuilder (fit on the fitting rows, transform any rows)
  preprocess -> PREPROCESS, build_preprocessor(style)
  model      -> MODELS, MODEL_STYLE, make_model(spec, seed)
  train      -> TRAIN, fit_predict(X_fit, y_fit, X_apply_list), the shared split, VALID_PRED
  predict    -> write_submission(pred, path), TEST_PRED
The header (outside the blocks) holds the task constants, compute_metric and metric_input.
"""

from __future__ import annotations

# Which dict literal holds each block's choices (load and predict have none: nothing to tune).
CONFIG_NAMES: dict[str, str] = {
    "preprocess": "PREPROCESS",
    "features": "FEATURES",
    "model": "MODELS",
    "train": "TRAIN",
}

BLOCK_ORDER: tuple[str, ...] = ("load", "preprocess", "features", "model", "train", "predict")
REFINABLE: tuple[str, ...] = ("preprocess", "features", "model", "train")

# One comment per config key, rendered next to it so the choices explain themselves.
KEY_DOCS: dict[str, dict[str, str]] = {
    "preprocess": {
        "num_impute": "numeric NaN fill for models that cannot take NaN: mean | median | constant",
        "gbdt_impute": "impute for gradient boosting too (it handles NaN natively when False)",
        "missing_indicators": "add 0/1 columns flagging missing numeric values",
        "scaler": "for linear/kNN/SVM/MLP models: standard | robust | quantile | none",
        "tree_cat_encoding": "categoricals for tree models: native (category dtype for xgboost/lightgbm/"
        "catboost; ordinal for the others) | ordinal | target | onehot",
        "linear_cat_encoding": "categoricals for linear/kNN/SVM/MLP models: onehot | target | ordinal",
        "rare_min_frequency": "categories seen fewer times are grouped as one 'rare' category",
        "max_onehot": "one-hot keeps at most this many categories per column",
    },
    "features": {
        "datetime_parts": "parts extracted from datetime columns (the raw string is dropped)",
        "text_stats": "add length and word count of each text column",
        "text_svd_components": "TF-IDF -> TruncatedSVD components per text column (0 = drop text)",
        "text_max_features": "TF-IDF vocabulary size",
        "text_ngram_max": "TF-IDF uses 1..n word n-grams",
        "text_analyzer": "word | char_wb",
        "text_model": "add the cross-fitted score of a linear model on each text column's TF-IDF",
        "log1p": "add log1p of these non-negative numeric columns ('auto' = the skewed ones)",
        "count_encode": "add the training frequency of each category ('auto' = all categoricals)",
        "ratios": "add pairwise ratios of the k numeric columns most correlated with the target",
        "products": "add pairwise products of the k numeric columns most correlated with the target",
        "group_stats": "add mean/deviation of the top-k numeric columns within each category "
        "of the 2 lowest-cardinality categoricals",
    },
    "train": {
        "early_stopping": "choose the number of boosting rounds on an inner split of the TRAIN part",
        "early_stopping_rounds": "stop after this many rounds without improvement",
        "inner_valid_fraction": "share of the TRAIN part used for that inner split",
        "target_transform": "regression: fit on none | log1p | sqrt of the target, predict back",
        "class_weight": "classification sample weights: none | balanced | sqrt_balanced",
        "n_seeds": "average this many copies of each model trained with different seeds",
        "max_fit_rows": "subsample the fitting rows to this many (None = all) when time is short",
        "decision_threshold": "binary label metrics: 'auto' (tuned out-of-fold on the TRAIN part) | 'none' "
        "(0.5) | a number",
    },
}


LOAD_CODE = """\
def read_input(name):
    return pd.read_csv(os.path.join(INPUT_DIR, name), low_memory=False)


def input_exists(name):
    return bool(name) and os.path.exists(os.path.join(INPUT_DIR, name))


FEATURE_COLS = NUMERIC_COLS + CATEGORICAL_COLS + BOOLEAN_COLS + DATETIME_COLS + TEXT_COLS

train_df = read_input(TRAIN_FILE)
if TASK_TYPE == "regression":
    train_df[TARGET] = pd.to_numeric(train_df[TARGET], errors="coerce")
# Rows without a target teach nothing; TRAIN_ROWS keeps the train-file row numbers (folds.csv, oof.csv).
TRAIN_ROWS = np.flatnonzero(train_df[TARGET].notna().to_numpy())
train_df = train_df.iloc[TRAIN_ROWS].reset_index(drop=True)
test_df = read_input(TEST_FILE) if input_exists(TEST_FILE) else None
sample_submission = read_input(SAMPLE_SUBMISSION_FILE) if input_exists(SAMPLE_SUBMISSION_FILE) else None

# Strict column selection: a listed column that is absent is an error worth seeing (the debugger fixes it).
X_all = train_df[FEATURE_COLS]
X_test = test_df[FEATURE_COLS] if test_df is not None else None

if TASK_TYPE == "regression":
    CLASS_VALUES = []
    y_all = train_df[TARGET].to_numpy(dtype=float)
else:
    target = train_df[TARGET]
    if target.dtype.kind == "f" and bool((target % 1 == 0).all()):
        target = target.astype(int)  # 1.0 -> 1: labels keep their integer spelling in the submission
    CLASS_VALUES = sorted(target.unique().tolist())  # sorted class order -> codes 0..k-1
    y_all = target.map({value: code for code, value in enumerate(CLASS_VALUES)}).to_numpy(dtype=int)
N_CLASSES = len(CLASS_VALUES)
"""


FEATURES_CODE = '''\
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold


def text_scorer():
    return Ridge(alpha=3.0) if TASK_TYPE == "regression" else LogisticRegression(C=2.0, max_iter=2000)


def text_scores(model, matrix, n_out):
    """Regression: the prediction; binary: P(class 1); multiclass: one probability per class."""
    if TASK_TYPE == "regression":
        return model.predict(matrix)[:, None]
    proba = np.zeros((matrix.shape[0], max(n_out, 2)))
    proba[:, model.classes_] = model.predict_proba(matrix)
    return proba[:, 1:2] if n_out <= 2 else proba


def as_category(series):
    """Text labels for a categorical/boolean column; 3.0 and 3 are the same category, NaN stays NaN."""
    def label(v):
        if pd.isna(v):
            return np.nan
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)
    return series.map(label).astype(object)


def target_correlation(frame, y, columns):
    """|Spearman| of each numeric column with the target (max over one-vs-rest for multiclass)."""
    y = np.asarray(y, dtype=float)
    targets = [y] if TASK_TYPE != "multiclass" else [(y == k).astype(float) for k in np.unique(y)]
    scores = {}
    for col in columns:
        ranks = frame[col].rank().to_numpy()
        ok = ~np.isnan(ranks)
        if ok.sum() < 5 or np.nanstd(ranks) == 0:
            continue
        best = 0.0
        for t in targets:
            if np.std(t[ok]) > 0:
                best = max(best, abs(np.corrcoef(ranks[ok], pd.Series(t[ok]).rank().to_numpy())[0, 1]))
        scores[col] = best
    return sorted(scores, key=lambda c: (-scores[c], c))


class FeatureBuilder:
    """Raw columns -> model-ready frame; every statistic it uses is learned in fit() (fitting rows only)."""

    def __init__(self, config):
        self.config = dict(config)

    def _base(self, df):
        out = {}
        for col in NUMERIC_COLS:
            out[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        for col in CATEGORICAL_COLS + BOOLEAN_COLS:
            out[col] = as_category(df[col])
        for col in DATETIME_COLS:
            stamp = pd.to_datetime(df[col], errors="coerce", format="mixed", utc=True)
            for part in self.config["datetime_parts"]:
                if part == "elapsed_days":
                    values = (stamp - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds() / 86400.0
                elif part == "weekofyear":
                    values = stamp.dt.isocalendar().week.astype(float)
                else:
                    values = getattr(stamp.dt, part)
                out[f"{col}__{part}"] = values.astype(float)
        return pd.DataFrame(out, index=df.index)

    def _texts(self, df, col):
        return df[col].fillna("").astype(str)

    def fit(self, df, y=None):
        cfg = self.config
        base = self._base(df)
        numeric = [c for c in NUMERIC_COLS if c in base]
        categorical = [c for c in CATEGORICAL_COLS + BOOLEAN_COLS if c in base]
        if cfg["log1p"] == "auto":
            self.log_cols_ = [c for c in numeric if base[c].min() >= 0 and base[c].skew() > 1.0]
        else:
            self.log_cols_ = [c for c in cfg["log1p"] if c in numeric]
        count_cols = categorical if cfg["count_encode"] == "auto" else \\
            [c for c in cfg["count_encode"] if c in categorical]
        self.count_maps_ = {c: base[c].value_counts() for c in count_cols}
        k = max(cfg["ratios"], cfg["products"], cfg["group_stats"])
        top = target_correlation(base, y, numeric)[:k] if k and y is not None else []
        self.ratio_cols_ = top[: cfg["ratios"]]
        self.product_cols_ = top[: cfg["products"]]
        group_cats = sorted((c for c in categorical if 2 <= base[c].nunique() <= 50),
                            key=lambda c: (base[c].nunique(), c))
        self.group_means_ = {}
        for cat in group_cats[:2] if cfg["group_stats"] else []:
            for num in top[: cfg["group_stats"]]:
                self.group_means_[(cat, num)] = base.groupby(cat)[num].mean()
        self.text_models_ = {}
        if cfg["text_svd_components"] > 0 or cfg["text_model"]:
            for col in TEXT_COLS:
                texts = self._texts(df, col)
                char = cfg["text_analyzer"] == "char_wb"
                for min_df in (2, 1):  # tiny corpora may have no term in two documents
                    vec = TfidfVectorizer(max_features=cfg["text_max_features"], sublinear_tf=True,
                                          min_df=min_df, analyzer=cfg["text_analyzer"], dtype=np.float32,
                                          ngram_range=(2, 4) if char else (1, cfg["text_ngram_max"]))
                    try:
                        matrix = vec.fit_transform(texts)
                        break
                    except ValueError:  # empty vocabulary: this column gets zero components
                        vec = None
                svd = None
                if vec is not None and matrix.shape[1] > 1 and cfg["text_svd_components"] > 0:
                    n_comp = min(cfg["text_svd_components"], matrix.shape[1] - 1)
                    svd = TruncatedSVD(n_components=n_comp, random_state=SEED).fit(matrix)
                self.text_models_[col] = (vec, svd)
        self.text_full_, self.text_oof_ = {}, {}
        if cfg["text_model"] and y is not None:
            # A linear model on the TF-IDF of each text column, cross-fitted: the fitting rows get
            # out-of-fold scores (no row sees its own target), other rows the model fitted on all of them.
            n_out = 1 if TASK_TYPE == "regression" else len(np.unique(y))
            for col in TEXT_COLS:
                vec = self.text_models_.get(col, (None, None))[0]
                if vec is None or (TASK_TYPE != "regression" and n_out < 2) or len(y) < 20:
                    continue
                matrix = vec.transform(self._texts(df, col))
                oof = np.zeros((len(y), 1 if n_out <= 2 else n_out))
                for fit_rows, held_rows in KFold(5, shuffle=True, random_state=SEED).split(matrix):
                    if TASK_TYPE != "regression" and len(np.unique(np.asarray(y)[fit_rows])) < 2:
                        continue  # a fold with one class has nothing to score
                    part = text_scorer().fit(matrix[fit_rows], np.asarray(y)[fit_rows])
                    oof[held_rows] = text_scores(part, matrix[held_rows], n_out)
                self.text_oof_[col] = oof
                self.text_full_[col] = (text_scorer().fit(matrix, y), n_out)
        return self

    def fit_transform(self, df, y=None):
        """Fit, then transform the same rows (using the out-of-fold text scores for them)."""
        return self.fit(df, y).transform(df, fitting_rows=True)

    def transform(self, df, fitting_rows=False):
        cfg = self.config
        base = self._base(df)
        extra = {}
        for col in self.log_cols_:
            extra[f"{col}__log1p"] = np.log1p(base[col].clip(lower=0))
        for col, counts in self.count_maps_.items():
            extra[f"{col}__count"] = base[col].map(counts).astype(float).fillna(0.0)
        for i, a in enumerate(self.ratio_cols_):
            for b in self.ratio_cols_[i + 1:]:
                extra[f"{a}__div__{b}"] = base[a] / base[b].where(base[b] != 0)
        for i, a in enumerate(self.product_cols_):
            for b in self.product_cols_[i + 1:]:
                extra[f"{a}__x__{b}"] = base[a] * base[b]
        for (cat, num), means in self.group_means_.items():
            group_mean = base[cat].map(means).astype(float)
            extra[f"{num}__mean_by__{cat}"] = group_mean
            extra[f"{num}__minus_mean_by__{cat}"] = base[num] - group_mean
        for col in TEXT_COLS:
            texts = self._texts(df, col)
            if cfg["text_stats"]:
                extra[f"{col}__chars"] = texts.str.len().astype(float)
                extra[f"{col}__words"] = texts.str.split().str.len().fillna(0).astype(float)
            if col in self.text_models_:
                vec, svd = self.text_models_[col]
                comps = np.zeros((len(df), cfg["text_svd_components"]))
                if svd is not None:
                    values = svd.transform(vec.transform(texts))
                    comps[:, : values.shape[1]] = values
                for j in range(comps.shape[1]):
                    extra[f"{col}__svd{j}"] = comps[:, j]
            if col in self.text_full_:
                model, n_out = self.text_full_[col]
                vec = self.text_models_[col][0]
                scores = self.text_oof_[col] if fitting_rows else \\
                    text_scores(model, vec.transform(texts), n_out)
                for j in range(scores.shape[1]):
                    extra[f"{col}__score{j}"] = scores[:, j]
        if extra:
            base = pd.concat([base, pd.DataFrame(extra, index=df.index)], axis=1)
        return base
'''


PREPROCESS_CODE = '''\
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (OneHotEncoder, OrdinalEncoder, QuantileTransformer, RobustScaler,
                                   StandardScaler, TargetEncoder)


def make_scaler(kind):
    if kind == "standard":
        return StandardScaler()
    if kind == "robust":
        return RobustScaler()
    if kind == "quantile":
        return QuantileTransformer(output_distribution="normal", n_quantiles=500, random_state=SEED)
    return None


class NativeCategories(TransformerMixin, BaseEstimator):
    """Categoricals kept as pandas `category` columns, for the boosting libraries that split on them.

    The categories are fixed on the fitting rows (values seen fewer than min_frequency times share one
    '__rare__' category), so every frame transformed later has the same categories in the same order;
    a value never seen while fitting, like a missing one, becomes NaN."""

    def __init__(self, min_frequency=1):
        self.min_frequency = min_frequency

    @staticmethod
    def _labels(column):
        return column.map(lambda v: v if pd.isna(v) else str(v)).astype(object)

    def fit(self, X, y=None):
        self.columns_ = list(X.columns)
        self.categories_, self.rare_ = {}, {}
        for col in self.columns_:
            counts = self._labels(X[col]).dropna().value_counts()
            rare = counts.index[counts < self.min_frequency]
            self.rare_[col] = set(rare)
            self.categories_[col] = sorted(counts.index[counts >= self.min_frequency]) + (["__rare__"] if len(rare)
                                                                                         else [])
        return self

    def transform(self, X):
        out = {}
        for col in self.columns_:
            labels = self._labels(X[col])
            labels = labels.where(~labels.isin(self.rare_[col]), "__rare__")
            labels = labels.where(labels.isin(self.categories_[col]))  # unseen -> NaN
            out[col] = pd.Categorical(labels, categories=self.categories_[col])
        return pd.DataFrame(out, index=X.index)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.columns_, dtype=object)


def make_category_encoder(kind, style):
    cfg = PREPROCESS
    if kind == "native":
        return NativeCategories(min_frequency=cfg["rare_min_frequency"])
    if kind == "target":
        # TargetEncoder cross-fits inside fit_transform, so training rows never see their own target.
        cv = (KFold if TASK_TYPE == "regression" else StratifiedKFold)(5, shuffle=True, random_state=SEED)
        encoder = TargetEncoder(target_type="continuous" if TASK_TYPE == "regression" else "auto", cv=cv)
        steps = [("fill", SimpleImputer(strategy="constant", fill_value="__missing__")), ("encode", encoder)]
    elif kind == "onehot":
        steps = [("encode", OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=False,
                                          min_frequency=cfg["rare_min_frequency"],
                                          max_categories=cfg["max_onehot"]))]
    else:  # ordinal; gradient boosting keeps NaN/unseen as missing, other models get -1
        missing = np.nan if style == "gbdt" else -1
        steps = [("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=missing,
                                           encoded_missing_value=missing,
                                           min_frequency=cfg["rare_min_frequency"]))]
    if style == "scaled" and kind != "onehot":
        steps.append(("scale", StandardScaler()))
    return Pipeline(steps)


def build_preprocessor(style):
    """style: 'gbdt' (NaN native; categoricals native too when tree_cat_encoding is 'native'),
    'tree' (forests) or 'scaled' (linear, kNN, SVM, MLP)."""
    cfg = PREPROCESS
    numeric = []
    if style != "gbdt" or cfg["gbdt_impute"]:
        numeric.append(("impute", SimpleImputer(strategy=cfg["num_impute"], fill_value=0.0,
                                                add_indicator=cfg["missing_indicators"],
                                                keep_empty_features=True)))
    if style == "scaled" and make_scaler(cfg["scaler"]) is not None:
        numeric.append(("scale", make_scaler(cfg["scaler"])))
    encoding = cfg["linear_cat_encoding"] if style == "scaled" else cfg["tree_cat_encoding"]
    if encoding == "native" and style != "gbdt":
        encoding = "ordinal"  # only the gradient-boosting libraries take category columns as they are
    transformer = ColumnTransformer(
        [("num", Pipeline(numeric) if numeric else "passthrough",
          make_column_selector(dtype_include="number")),
         ("cat", make_category_encoder(encoding, style), make_column_selector(dtype_exclude="number"))],
        remainder="drop")
    return transformer.set_output(transform="pandas")
'''


MODEL_CODE = '''\
# Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads make boosting tens of
# times slower. Read when an OpenMP runtime loads, so it reaches lightgbm's (imported in make_model).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR
from xgboost import XGBClassifier, XGBRegressor

# Which preprocessing each model family gets (see build_preprocessor).
MODEL_STYLE = {"xgboost": "gbdt", "lightgbm": "gbdt", "catboost": "gbdt", "hist_gb": "gbdt",
               "random_forest": "tree", "extra_trees": "tree",
               "linear": "scaled", "knn": "scaled", "svm": "scaled", "linear_svm": "scaled", "mlp": "scaled"}
# Libraries that split on pandas category columns themselves (tree_cat_encoding 'native').
NATIVE_CATEGORIES = ("xgboost", "lightgbm", "catboost")


def scaled_target(regressor):
    # SVR and MLP assume a target of unit scale; learn on the standardised target and map back.
    return TransformedTargetRegressor(regressor=regressor, transformer=StandardScaler())


def make_model(spec, seed):
    """One model from its spec; fixed plumbing (seed, threads, objective) is added here."""
    name, params = spec["name"], dict(spec.get("params", {}))
    classify = TASK_TYPE != "regression"
    if name == "xgboost":
        fixed = {"tree_method": "hist", "enable_categorical": True, "random_state": seed, "n_jobs": N_JOBS,
                 "verbosity": 0}
        if not classify and METRIC == "mae":
            fixed["objective"] = "reg:absoluteerror"
        return (XGBClassifier if classify else XGBRegressor)(**{**fixed, **params})
    if name == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        fixed = {"random_state": seed, "n_jobs": N_JOBS, "verbosity": -1}
        if not classify:
            fixed["objective"] = "l1" if METRIC == "mae" else "l2"
        return (LGBMClassifier if classify else LGBMRegressor)(**{**fixed, **params})
    if name == "catboost":
        from catboost import CatBoostClassifier, CatBoostRegressor

        fixed = {"random_seed": seed, "thread_count": N_JOBS, "verbose": 0, "allow_writing_files": False}
        if not classify:
            fixed["loss_function"] = "MAE" if METRIC == "mae" else "RMSE"
        return (CatBoostClassifier if classify else CatBoostRegressor)(**{**fixed, **params})
    if name == "hist_gb":
        if classify:
            return HistGradientBoostingClassifier(random_state=seed, **params)
        loss = "absolute_error" if METRIC == "mae" else "squared_error"
        return HistGradientBoostingRegressor(random_state=seed, **{"loss": loss, **params})
    if name == "random_forest":
        cls = RandomForestClassifier if classify else RandomForestRegressor
        return cls(random_state=seed, n_jobs=N_JOBS, **params)
    if name == "extra_trees":
        cls = ExtraTreesClassifier if classify else ExtraTreesRegressor
        return cls(random_state=seed, n_jobs=N_JOBS, **params)
    if name == "linear":
        return LogisticRegression(random_state=seed, **params) if classify else Ridge(**params)
    if name == "knn":
        return (KNeighborsClassifier if classify else KNeighborsRegressor)(**params)
    if name == "svm":
        if classify:
            return SVC(probability=True, random_state=seed, **params)
        return scaled_target(SVR(**params))
    if name == "linear_svm":
        if classify:
            return CalibratedClassifierCV(LinearSVC(random_state=seed, **params), cv=3)
        return scaled_target(LinearSVR(random_state=seed, **params))
    if name == "mlp":
        if classify:
            return MLPClassifier(random_state=seed, **params)
        return scaled_target(MLPRegressor(random_state=seed, **params))
    raise ValueError(f"unknown model {name!r}: choose one of {sorted(MODEL_STYLE)}")
'''


TRAIN_CODE = '''\
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import has_fit_parameter


def sample_weights(y):
    if TASK_TYPE == "regression" or TRAIN["class_weight"] == "none":
        return None
    weights = compute_sample_weight("balanced", y)
    return np.sqrt(weights) if TRAIN["class_weight"] == "sqrt_balanced" else weights


def to_target_space(y):
    kind = TRAIN["target_transform"] if TASK_TYPE == "regression" else "none"
    if kind == "log1p" and y.min() > -1:
        return np.log1p(y), np.expm1
    if kind == "sqrt" and y.min() >= 0:
        return np.sqrt(y), np.square
    return y, None


def stopping_metric(name, n_classes, n_eval):
    """METRIC as the early-stopping metric of a boosting library (n_eval: rows of the inner split): RMSE /
    MAE / MAPE, AUC and error rate given enough rows; log loss for the rest (F1 and other label metrics,
    multi-class AUC, and AUC or accuracy on a small inner split, where they saturate or move in coarse
    steps and stop after a handful of rounds)."""
    multi = n_classes > 2
    if TASK_TYPE == "regression":
        kind = METRIC if METRIC in ("mae", "mape") else "rmse"  # rmsle: RMSE of the log1p target; r2: RMSE
        if kind == "mape" and TRAIN["target_transform"] != "none":
            kind = "mae"  # a relative error of the transformed target is not the metric's
    elif METRIC == "roc_auc" and not multi and n_eval >= 200:
        kind = "auc"
    elif METRIC == "accuracy" and n_eval >= 500:
        kind = "error"
    else:
        kind = "logloss"
    names = {
        "xgboost": {"auc": "auc", "error": "merror" if multi else "error", "rmse": "rmse", "mae": "mae",
                    "logloss": "mlogloss" if multi else "logloss", "mape": "mape"},
        "lightgbm": {"auc": "auc", "error": "multi_error" if multi else "binary_error", "rmse": "rmse",
                     "logloss": "multi_logloss" if multi else "binary_logloss", "mae": "l1", "mape": "mape"},
        "catboost": {"auc": "AUC", "error": "Accuracy", "rmse": "RMSE", "mae": "MAE", "mape": "MAPE",
                     "logloss": "MultiClass" if multi else "Logloss"},
    }
    return names[name][kind]


def take_rows(X, rows):
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]


class FittedModel:
    """features -> preprocessing -> model; every step is fitted on the rows given to fit() only.

    With tree_cat_encoding 'native' the categoricals arrive as category columns (categories fixed on the
    fitting rows): xgboost and lightgbm get them as such in a frame, catboost as text (cat_features),
    hist_gb as category codes (categorical_features). Every other model gets a float matrix."""

    def __init__(self, spec, seed):
        self.spec, self.seed = spec, seed

    def _model_input(self, X, prepared=None):
        if prepared is None:
            prepared = self.prep_.transform(self.features_.transform(X))
        name = self.spec["name"]
        cats = [c for c in prepared.columns if isinstance(prepared[c].dtype, pd.CategoricalDtype)]
        if not cats:
            return prepared.to_numpy(dtype=float)
        if name not in NATIVE_CATEGORIES:
            codes = {c: prepared[c].cat.codes.astype(float).where(prepared[c].notna()) for c in cats}
            return prepared.assign(**codes).to_numpy(dtype=float)
        # Positional names: column names with JSON characters or brackets upset lightgbm and xgboost.
        frame = prepared.set_axis([f"f{i}" for i in range(prepared.shape[1])], axis=1)
        if name == "catboost":
            for col in self.native_cats_:
                frame[col] = frame[col].astype(object).where(frame[col].notna(), "__missing__")
        return frame

    def _new_model(self):
        model = make_model(self.spec, self.seed)
        if self.spec["name"] == "catboost" and self.native_cats_:
            model.set_params(cat_features=self.native_cats_)
        if self.spec["name"] == "hist_gb" and self.hist_cats_:
            model.set_params(categorical_features=self.hist_cats_)
        return model

    def _boosting_rounds(self, X, y, w):
        """Early stopping (on METRIC, see stopping_metric) on an inner split of the fitting rows; returns
        the rounds to use on all of them."""
        name = self.spec["name"]
        if not TRAIN["early_stopping"] or name not in ("xgboost", "lightgbm", "catboost", "hist_gb") or len(y) < 50:
            return None
        strat = y if TASK_TYPE != "regression" and np.bincount(y).min() >= 2 else None
        inner_fit, inner_eval = train_test_split(np.arange(len(y)), test_size=TRAIN["inner_valid_fraction"],
                                                 random_state=self.seed, stratify=strat)
        X_fit, y_fit, w_fit = take_rows(X, inner_fit), y[inner_fit], None if w is None else w[inner_fit]
        X_eval, y_eval = take_rows(X, inner_eval), y[inner_eval]
        patience = TRAIN["early_stopping_rounds"]
        probe = self._new_model()
        if name == "hist_gb":
            probe.set_params(early_stopping=True, n_iter_no_change=patience)
            probe.fit(X_fit, y_fit, sample_weight=w_fit, X_val=X_eval, y_val=y_eval)
            rounds = max(1, probe.n_iter_ - patience)
        else:
            n_classes = len(self.classes_) if self.classes_ is not None else 0
            metric = stopping_metric(name, n_classes, len(inner_eval))
            if name == "xgboost":
                probe.set_params(early_stopping_rounds=patience, eval_metric=metric)
                probe.fit(X_fit, y_fit, sample_weight=w_fit, eval_set=[(X_eval, y_eval)], verbose=False)
                rounds = probe.best_iteration + 1
            elif name == "lightgbm":
                import lightgbm

                probe.set_params(metric=metric)
                probe.fit(X_fit, y_fit, sample_weight=w_fit, eval_X=X_eval, eval_y=y_eval,
                          callbacks=[lightgbm.early_stopping(patience, verbose=False)])
                rounds = probe.best_iteration_ or probe.n_estimators_
            else:
                probe.set_params(eval_metric=metric)
                probe.fit(X_fit, y_fit, sample_weight=w_fit, eval_set=(X_eval, y_eval),
                          early_stopping_rounds=patience)
                rounds = probe.get_best_iteration() + 1
        # The final model sees all fitting rows, so it can afford a few more rounds.
        return max(10, int(round(rounds / (1 - TRAIN["inner_valid_fraction"]))))

    def fit(self, X, y):
        name = self.spec["name"]
        self.classes_ = np.unique(y) if TASK_TYPE != "regression" else None
        if self.classes_ is not None:
            y = np.searchsorted(self.classes_, y)  # codes must be contiguous even if a class is absent here
        y, self.inverse_ = to_target_space(y)
        self.features_ = FeatureBuilder(FEATURES)
        frame = self.features_.fit_transform(X, y)
        self.prep_ = build_preprocessor(MODEL_STYLE[name])
        prepared = self.prep_.fit_transform(frame, y)
        cat_pos = [i for i, c in enumerate(prepared.columns) if isinstance(prepared[c].dtype, pd.CategoricalDtype)]
        self.native_cats_ = [f"f{i}" for i in cat_pos] if name == "catboost" else []
        self.hist_cats_ = []
        if name == "hist_gb":
            # Native categorical splits for categories/ordinal codes that fit in the histogram bins.
            if cat_pos:
                self.hist_cats_ = [i for i in cat_pos if len(prepared.iloc[:, i].cat.categories) < 250]
            elif PREPROCESS["tree_cat_encoding"] == "ordinal":
                self.hist_cats_ = [i for i, c in enumerate(prepared.columns) if c.startswith("cat__")
                                   and np.nan_to_num(prepared[c].to_numpy(dtype=float), nan=0).max() < 250]
        Xm = self._model_input(None, prepared)
        w = sample_weights(y)
        self.model_ = self._new_model()
        if self.classes_ is not None and len(self.classes_) < 2:
            self.constant_ = True  # one class only: nothing to learn
            return self
        self.constant_ = False
        rounds = self._boosting_rounds(Xm, y, w)
        if rounds is not None:
            key = {"hist_gb": "max_iter", "catboost": "iterations"}.get(name, "n_estimators")
            if name == "catboost" and "n_estimators" in self.spec.get("params", {}):
                key = "n_estimators"  # catboost refuses both spellings at once
            self.model_.set_params(**{key: rounds})
            if name == "hist_gb":
                self.model_.set_params(early_stopping=False)
        if w is not None and has_fit_parameter(self.model_, "sample_weight"):
            self.model_.fit(Xm, y, sample_weight=w)
        else:
            self.model_.fit(Xm, y)
        return self

    def predict(self, X):
        """Class-probability matrix (n, N_CLASSES) for classification, values for regression."""
        if self.classes_ is None:
            pred = self.model_.predict(self._model_input(X))
            return self.inverse_(pred) if self.inverse_ is not None else pred
        proba = np.zeros((len(X), N_CLASSES))
        if self.constant_:
            proba[:, self.classes_[0]] = 1.0
            return proba
        proba[:, self.classes_] = self.model_.predict_proba(self._model_input(X))
        return proba


def fit_predict_each(X_fit, y_fit, X_apply_list, kept=None):
    """Per model: fit (averaging n_seeds seeds) on X_fit, predict every frame of X_apply_list; the fitted
    models are appended to `kept` as (spec, [one per seed]) when a list is given (MLESTAR_MODEL_DIR)."""
    if TRAIN["max_fit_rows"] and len(X_fit) > TRAIN["max_fit_rows"]:
        keep = np.sort(np.random.default_rng(SEED).choice(len(X_fit), TRAIN["max_fit_rows"], replace=False))
        X_fit, y_fit = X_fit.iloc[keep], y_fit[keep]
    results = []
    for spec in MODELS:
        if spec.get("weight", 1.0) <= 0:
            continue
        preds = [0.0 for _ in X_apply_list]
        seeds = []
        for s in range(TRAIN["n_seeds"]):
            fitted = FittedModel(spec, SEED + s).fit(X_fit, y_fit)
            preds = [p + fitted.predict(X) / TRAIN["n_seeds"] for p, X in zip(preds, X_apply_list)]
            seeds.append(fitted)
        results.append((spec, preds))
        if kept is not None:
            kept.append((spec, seeds))
    return results


def predict_kept(state, X):
    """Test predictions of kept fold models (MLESTAR_PREDICT_FROM), with the same arithmetic as the fold loop
    below: the seeds' mean per model, the weighted blend per fold, the mean over folds, the tuned threshold."""
    total = 0.0
    for unit in state["units"]:
        per_model = []
        for spec, seeds in unit:
            pred = 0.0
            for fitted in seeds:
                pred = pred + fitted.predict(X) / len(seeds)
            per_model.append((spec, [pred]))
        total = total + blend(per_model)[0]
    pred = total / len(state["units"])
    return pred if state["threshold"] is None else apply_threshold(pred, state["threshold"])


def blend(results):
    """Weighted mean of the models' predictions (probabilities for classification)."""
    total = sum(spec.get("weight", 1.0) for spec, _ in results)
    n_out = len(results[0][1])
    return [sum(spec.get("weight", 1.0) * preds[i] for spec, preds in results) / total for i in range(n_out)]


def best_threshold(p_positive, y):
    """The P(class 1) cut-off that maximises the (label) metric on these predictions."""
    grid = np.unique(np.quantile(p_positive, np.linspace(0.02, 0.98, 97)))
    scores = [compute_metric(y, (p_positive >= t).astype(int)) for t in grid]
    return float(grid[int(np.argmax(scores))])


def apply_threshold(proba, threshold):
    """Shift P(class 1) so that the argmax decides at `threshold` (ranking is unchanged)."""
    p = np.clip(proba[:, 1], 1e-9, 1 - 1e-9)
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    shifted = 1 / (1 + np.exp(-(np.log(p / (1 - p)) - np.log(t / (1 - t)))))
    return np.column_stack([1 - shifted, shifted])


def uses_threshold(y):
    return (TRAIN["decision_threshold"] != "none" and TASK_TYPE == "binary" and METRIC_NEEDS == "label"
            and np.bincount(y, minlength=2).min() >= 3)


def thresholded(units, unit_preds, y, test_pred):
    """Binary label metrics (F1): each fold's cut-off is tuned on the out-of-fold predictions of the OTHER
    folds of its repeat (so its own rows play no part); the test's on every out-of-fold prediction.
    Returns the shifted fold predictions, the shifted test predictions and the test's cut-off."""
    if TRAIN["decision_threshold"] != "auto":
        t = float(TRAIN["decision_threshold"])
        return [apply_threshold(p, t) for p in unit_preds], (None if test_pred is None else
                                                              apply_threshold(test_pred, t)), t
    out = []
    for i, (r, _, _, held) in enumerate(units):
        others = [j for j, u in enumerate(units) if u[0] == r and j != i]
        if not others:  # one hold-out split: nothing else to tune on, keep 0.5
            out.append(unit_preds[i])
            continue
        p = np.concatenate([unit_preds[j][:, 1] for j in others])
        t = best_threshold(p, np.concatenate([y[units[j][3]] for j in others]))
        out.append(apply_threshold(unit_preds[i], t))
    t_all = best_threshold(np.concatenate([p[:, 1] for p in unit_preds]),
                           np.concatenate([y[u[3]] for u in units]))
    print(f"decision threshold on P(class 1) for the test rows: {t_all:.4f}")
    return out, (None if test_pred is None else apply_threshold(test_pred, t_all)), t_all


def cross_fit(units, kept):
    """The engine's protocol: every model is fitted on the other folds and predicts its fold's rows; the test
    predictions are the mean of the fold models (no refit), so the score and the test share models. Returns
    the fold predictions, the test predictions and the test's decision threshold; fills `kept` (a list, or
    None) with each fold's fitted models."""
    unit_preds, model_preds, test_sum = [], {}, 0.0
    fold_scores_final = not uses_threshold(y_all)  # a tuned threshold changes the fold scores after the loop
    for r, k, fit, held in units:
        apply_to = [X_all.iloc[held]] + ([X_test] if PREDICT_TEST else [])
        unit_kept = [] if kept is not None else None
        per_model = fit_predict_each(X_all.iloc[fit], y_all[fit], apply_to, unit_kept)
        if kept is not None:
            kept.append(unit_kept)
        for spec, preds in per_model:
            model_preds.setdefault(spec["name"], []).append(preds[0])
        blended = blend(per_model)
        unit_preds.append(blended[0])
        if fold_scores_final:  # progress the engine reads while the script runs (a hopeless attempt is stopped)
            try:
                value = compute_metric(y_all[held], metric_input(blended[0]))
                print(f"Fold score: repeat={r} fold={k} value={value!r}")
            except ValueError:  # e.g. a fold with one class for ROC-AUC
                pass
        if PREDICT_TEST:
            test_sum = test_sum + blended[1]
    test_pred = test_sum / len(units) if PREDICT_TEST else None
    for name, preds in model_preds.items():
        print(f"model {name}: validation {METRIC} = {fold_mean_score(units, preds, y_all):.6f} (mean of folds)")
    threshold = None
    if uses_threshold(y_all):
        unit_preds, test_pred, threshold = thresholded(units, unit_preds, y_all, test_pred)
    return unit_preds, test_pred, threshold


UNITS = fold_units(TRAIN_ROWS, y_all)
PREDICT_TEST = os.environ.get("MLESTAR_SUBMIT", "1") != "0" and X_test is not None
OOF_PATH = "oof.csv"  # None: keep the predictions in memory (an ensemble embedding this script)
if PREDICT_FROM:
    # MLESTAR_PREDICT_FROM: the fold models a final run kept predict the test rows; nothing is fitted, so there
    # are no out-of-fold predictions and no validation score.
    unit_preds = []
    TEST_PRED = predict_kept(load_kept(PREDICT_FROM), X_test) if PREDICT_TEST else None
    print("Predicted with the kept model: nothing was fitted")
else:
    KEPT_UNITS = [] if MODEL_DIR else None
    unit_preds, TEST_PRED, TEST_THRESHOLD = cross_fit(UNITS, KEPT_UNITS)
    if MODEL_DIR:
        save_kept({"units": KEPT_UNITS, "threshold": TEST_THRESHOLD, "class_values": CLASS_VALUES}, MODEL_DIR)
    if OOF_PATH:
        write_oof(UNITS, unit_preds, TRAIN_ROWS, OOF_PATH)
    print(f"Final Validation Performance: {fold_mean_score(UNITS, unit_preds, y_all)!r}")
'''


SUBMISSION_CODE = '''\
def class_position(label):
    """Column of a submission class label in the sorted CLASS_VALUES (labels compared as text)."""
    keys = [str(v) for v in CLASS_VALUES]
    if str(label) in keys:
        return keys.index(str(label))
    try:
        as_number = [float(k) for k in keys]
        return as_number.index(float(label))
    except ValueError:
        return None


def write_submission(pred, path):
    """pred: class-probability matrix or values for the test rows, in test order."""
    out = pd.DataFrame(index=range(len(test_df)))
    if ID_COL and ID_COL in SUBMISSION_COLUMNS:
        out[ID_COL] = test_df[ID_COL].to_numpy()
    value_cols = [c for c in SUBMISSION_COLUMNS if c != ID_COL]
    pred = np.asarray(pred, dtype=float)
    if SUBMISSION_KIND == "value":
        out[value_cols[0]] = np.clip(pred, 0, None) if METRIC == "rmsle" else pred
    elif SUBMISSION_KIND == "label":
        out[value_cols[0]] = [CLASS_VALUES[i] for i in pred.argmax(axis=1)]
    elif SUBMISSION_KIND == "proba_positive":
        pos = class_position(POSITIVE_CLASS) if POSITIVE_CLASS is not None else None
        out[value_cols[0]] = pred[:, pos if pos is not None else pred.shape[1] - 1]
    else:  # proba_per_class: the submission's class columns, in SUBMISSION_CLASSES order
        for col, label in zip(value_cols, SUBMISSION_CLASSES):
            pos = class_position(label)
            out[col] = pred[:, pos] if pos is not None else 0.0
        total = out[value_cols].sum(axis=1).replace(0, 1.0)
        out[value_cols] = out[value_cols].div(total, axis=0)
    if sample_submission is not None and ID_COL and ID_COL in sample_submission and ID_COL in out:
        # The sample submission's row order wins; ids are matched as text so 7 and "7" agree.
        order = pd.Series(range(len(out)), index=out[ID_COL].astype(str))
        positions = order.reindex(sample_submission[ID_COL].astype(str)).dropna().astype(int)
        if len(positions) == len(out):
            out = out.iloc[positions.to_numpy()].reset_index(drop=True)
    out[SUBMISSION_COLUMNS].to_csv(path, index=False)
'''


PREDICT_CODE = (
    SUBMISSION_CODE
    + """

SUBMISSION_PATH = "submission.csv"  # None: keep TEST_PRED in memory (an ensemble embedding this script)
if TEST_PRED is not None and SUBMISSION_PATH:
    write_test_pred(TEST_PRED)
    write_submission(TEST_PRED, SUBMISSION_PATH)
"""
)

CODES: dict[str, str] = {
    "load": LOAD_CODE,
    "preprocess": PREPROCESS_CODE,
    "features": FEATURES_CODE,
    "model": MODEL_CODE,
    "train": TRAIN_CODE,
    "predict": PREDICT_CODE,
}
