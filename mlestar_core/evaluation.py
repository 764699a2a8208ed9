"""The evaluation protocol the engine owns (docs/protocol.md).

The engine fixes the folds (`folds.csv`, written once per run), reads the out-of-fold
predictions each script writes (`oof.csv`), and computes every score itself with the metric
code grading uses. Ensembles are planned and scored on the stored out-of-fold predictions.

Two pieces of code are written once as source and run both here and inside generated scripts,
so a script run on its own and the engine cannot drift: `FOLDS_SOURCE` (how folds are made) and
`ENSEMBLE_SOURCE` (how stored predictions are combined).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .metrics import get_metric, improvement, is_better, metric_function
from .model import Task
from .task import label_str, read_csv, sorted_classes

FOLDS_FILE = "folds.csv"
OOF_FILE = "oof.csv"
TEST_PRED_FILE = "test_pred.csv"
PROTOCOL_FILE = "protocol.json"  # in the run's data folder, beside (not inside) the script inputs
TRUTH_FILE = "truth.npy"

FOLDS_SOURCE = '''
def make_folds(y, classification, n_folds, n_repeats, seed, valid_fraction=0.2):
    """(repeat, position, fold) arrays for the rows of y: K-fold (stratified for classification),
    repeated n_repeats times; n_folds == 1 is a single hold-out split (fold -1 = train only)."""
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
    y = np.asarray(y)
    n = len(y)
    positions = np.arange(n)
    counts = np.unique(y, return_counts=True)[1] if classification else np.array([])
    if n_folds <= 1:
        stratify = y if classification and counts.min() >= 2 else None
        _, valid = train_test_split(positions, test_size=valid_fraction, random_state=seed, stratify=stratify)
        fold = np.full(n, -1)
        fold[valid] = 0
        return np.zeros(n, dtype=int), positions, fold
    stratified = classification and counts.min() >= n_folds
    repeats, rows, folds = [], [], []
    for r in range(n_repeats):
        splitter = (StratifiedKFold if stratified else KFold)(n_folds, shuffle=True, random_state=seed + r)
        fold = np.empty(n, dtype=int)
        for k, (_, held) in enumerate(splitter.split(positions, y if stratified else None)):
            fold[held] = k
        repeats.append(np.full(n, r))
        rows.append(positions)
        folds.append(fold)
    return np.concatenate(repeats), np.concatenate(rows), np.concatenate(folds)
'''

ENSEMBLE_SOURCE = '''
def blend(preds, weights):
    """Weighted mean of prediction arrays (values or class-probability matrices)."""
    import numpy as np
    weights = np.asarray(weights, dtype=float)
    return sum(w * p for w, p in zip(weights, preds)) / weights.sum()


def caruana_weights(preds, score, higher_is_better, rows, iterations=30):
    """Greedy ensemble selection with replacement (Caruana et al. 2004), started from the best single
    member; returns weights proportional to how often each member was picked."""
    import numpy as np
    sign = 1.0 if higher_is_better else -1.0
    singles = [sign * score(p[rows], rows) for p in preds]
    counts = np.zeros(len(preds))
    counts[int(np.argmax(singles))] = 1
    current, best = singles[int(np.argmax(singles))], None
    for _ in range(iterations):
        trials = []
        for j in range(len(preds)):
            trial = counts.copy()
            trial[j] += 1
            trials.append(sign * score(blend([p[rows] for p in preds], trial), rows))
        j = int(np.argmax(trials))
        if trials[j] < current - 1e-12:
            break
        best = trials[j]
        counts[j] += 1
        current = best
    return counts / counts.sum()


def optimised_weights(preds, score, higher_is_better, rows):
    """Weights on the simplex (softmax-parametrised) that optimise the metric, by Nelder-Mead from
    the greedy selection's weights."""
    import numpy as np
    from scipy.optimize import minimize
    start = caruana_weights(preds, score, higher_is_better, rows)
    sign = -1.0 if higher_is_better else 1.0
    parts = [p[rows] for p in preds]

    def weights_of(theta):
        e = np.exp(theta - theta.max())
        return e / e.sum()

    def loss(theta):
        return sign * score(blend(parts, weights_of(theta)), rows)

    theta0 = np.log(np.clip(start, 1e-3, None))
    res = minimize(loss, theta0, method="Nelder-Mead",
                   options={"maxiter": 30 * len(preds), "xatol": 1e-2, "fatol": 1e-6})
    best = weights_of(res.x)
    return best if loss(res.x) <= loss(theta0) else start


def stack_features(preds, task_type):
    import numpy as np
    cols = []
    for p in preds:
        if task_type == "regression":
            cols.append(np.asarray(p, dtype=float)[:, None])
        elif task_type == "binary":
            q = np.clip(p[:, 1], 1e-6, 1 - 1e-6)
            cols.append(np.log(q / (1 - q))[:, None])
        else:
            cols.append(np.log(np.clip(p, 1e-6, 1.0)))
    return np.hstack(cols)


def fit_stacker(features, y, task_type):
    from sklearn.linear_model import LogisticRegression, Ridge
    meta = Ridge(alpha=1.0) if task_type == "regression" else LogisticRegression(C=1.0, max_iter=2000)
    return meta.fit(features, y)


def apply_stacker(meta, features, task_type, n_classes):
    import numpy as np
    if task_type == "regression":
        return meta.predict(features)
    proba = np.zeros((len(features), n_classes))
    proba[:, meta.classes_] = meta.predict_proba(features)
    return proba


def rank_mean(preds):
    """Mean of each member's normalised ranks of P(class 1) (binary ROC-AUC depends on order only)."""
    import numpy as np
    from scipy.stats import rankdata
    ranks = [(rankdata(p[:, 1]) - 1) / max(1, len(p) - 1) for p in preds]
    r = np.mean(ranks, axis=0)
    return np.column_stack([1 - r, r])


def inner_units(units, n_inner=5):
    """A unit with nothing to fit on (one hold-out split) is cut into n_inner folds of its own rows, so
    weights and stackers are still fitted on other rows than the ones they are scored on."""
    import numpy as np
    out = []
    for fit_rows, held_rows in units:
        if len(fit_rows) or len(held_rows) < 2 * n_inner:
            out.append((fit_rows, held_rows))
            continue
        chunks = np.array_split(np.asarray(held_rows)[np.random.RandomState(0).permutation(len(held_rows))],
                                n_inner)
        for i, chunk in enumerate(chunks):
            rest = np.concatenate([c for j, c in enumerate(chunks) if j != i])
            out.append((np.sort(rest), np.sort(chunk)))
    return out


def combine_out_of_fold(strategy, preds, y, units, score, higher_is_better, task_type, n_classes):
    """Out-of-fold predictions of an ensemble strategy, and a combiner for new predictions.

    `units` lists (fit_rows, held_rows) index pairs (one per repeat and fold): anything fitted
    (weights, a stacker) is fitted on fit_rows and applied to held_rows, so the ensemble's own
    score is out-of-fold; the combiner for the test predictions is fitted on every row."""
    import numpy as np
    every = np.arange(len(y))
    units = inner_units(units)
    if strategy == "rank_mean":
        return rank_mean(preds), rank_mean
    if strategy in ("mean", "fixed"):
        return blend(preds, [1.0] * len(preds)), lambda new: blend(new, [1.0] * len(new))
    out = np.zeros_like(np.asarray(preds[0], dtype=float))
    if strategy in ("caruana", "weights"):
        choose = caruana_weights if strategy == "caruana" else optimised_weights
        for fit_rows, held_rows in units:
            w = choose(preds, score, higher_is_better, fit_rows)
            out[held_rows] = blend([p[held_rows] for p in preds], w)
        final = choose(preds, score, higher_is_better, every)
        combiner = lambda new: blend(new, final)  # noqa: E731
        combiner.weights = [float(w) for w in final]
        return out, combiner
    if strategy == "stacking":
        features = stack_features(preds, task_type)
        for fit_rows, held_rows in units:
            meta = fit_stacker(features[fit_rows], y[fit_rows], task_type)
            out[held_rows] = apply_stacker(meta, features[held_rows], task_type, n_classes)
        meta = fit_stacker(features, y, task_type)
        return out, lambda new: apply_stacker(meta, stack_features(new, task_type), task_type, n_classes)
    raise ValueError(f"unknown ensemble strategy {strategy!r}")
'''

ENSEMBLE_STRATEGIES: dict[str, str] = {
    "mean": "equal-weight average of the members' predictions (class probabilities for classification)",
    "caruana": "greedy ensemble selection with replacement (Caruana et al. 2004) on the out-of-fold "
               "predictions; weights chosen on the other folds, so the score is out-of-fold",
    "weights": "weights on the simplex optimised for the metric (Nelder-Mead from the greedy selection), "
               "chosen on the other folds",
    "stacking": "a linear meta-learner (logistic regression on log-odds / ridge on values) over the members' "
                "out-of-fold predictions, cross-fitted on the same folds",
    "rank_mean": "mean of the members' normalised ranks of P(positive) (ROC-AUC depends on the order only)",
}


def _exec_source(source: str, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<{name}>", "exec"), namespace)  # noqa: S102 - our own source, also embedded in scripts
    return namespace


_FOLDS = _exec_source(FOLDS_SOURCE, "folds")
_ENSEMBLE = _exec_source(ENSEMBLE_SOURCE, "ensemble")
make_folds: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] = _FOLDS["make_folds"]


class PredictionError(ValueError):
    """A script's prediction file is missing or unusable; the message says what is wrong."""


@dataclass
class Protocol:
    """The run's evaluation protocol: which rows are validated in which fold, and how to score."""

    task_type: str
    metric: str
    higher_is_better: bool
    n_folds: int
    n_repeats: int
    classes: list[str]  # class labels (as text) in code order: column j of a probability matrix = classes[j]
    n_rows: int  # rows of the search train file with a target
    seed: int
    valid_fraction: float = 0.2
    probe_seconds: float | None = None  # the measured probe fit that sized K (None: not measured)
    reason: str = ""  # why this K, in words

    @property
    def classification(self) -> bool:
        return self.task_type != "regression"

    def describe(self) -> str:
        if self.n_folds <= 1:
            return f"one hold-out split ({self.valid_fraction:.0%} of {self.n_rows} rows validated)"
        rep = f" × {self.n_repeats} repeats" if self.n_repeats > 1 else ""
        return f"{self.n_folds}-fold{rep}{' stratified' if self.classification else ''} cross-validation " \
               f"over {self.n_rows} rows"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Protocol:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Evaluation:
    """The engine's verdict on one script's out-of-fold predictions."""

    score: float | None
    fold_scores: list[float | None] = field(default_factory=list)  # one per (repeat, fold) unit
    error: str | None = None  # why no score (a PredictionError message)


# ---------------------------------------------------------------- folds


def choose_folds(n_rows: int, probe_seconds: float | None = None, time_budget: float | None = None,
                 workers: int = 1, scripts_expected: int = 20) -> tuple[int, int, str]:
    """(K, repeats, reason): 5 folds on small tables, repeated on tiny ones, fewer folds or a single
    hold-out split on large ones or when the measured probe fit says K-fold cannot fit the budget."""
    if n_rows < 30:
        k, r = max(2, min(5, n_rows // 6)), 1
    elif n_rows < 200:
        k, r = 5, 3
    elif n_rows < 500:
        k, r = 5, 2
    elif n_rows <= 50_000:
        k, r = 5, 1
    elif n_rows <= 300_000:
        k, r = 3, 1
    else:
        k, r = 1, 1
    reason = f"chosen for {n_rows} rows"
    if probe_seconds is not None and time_budget is not None:
        # A script fits K x repeats models (plus overhead); a minimal search (candidates, a merge, an outer step
        # per track) runs about scripts_expected of them.
        def cost(k_: int, r_: int) -> float:
            return (2.0 + 1.6 * probe_seconds * max(1, k_) * r_) * scripts_expected / max(1, workers)

        room = 0.8 * time_budget  # reliable scores first: fewer folds only when a minimal search cannot fit
        while cost(k, r) > room and (r > 1 or k > 1):
            if r > 1:
                r -= 1
            elif k > 3:
                k = 3
            elif k > 2:
                k = 2
            else:
                k = 1
        reason += f", a measured probe fit of {probe_seconds:.2f} s and a {time_budget:g} s budget"
    return k, r, reason


def fold_table(protocol: Protocol, y: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    """folds.csv's content: `rows` are the train-file positions of the rows with a target."""
    rep, pos, fold = make_folds(y, protocol.classification, protocol.n_folds, protocol.n_repeats,
                                protocol.seed, protocol.valid_fraction)
    return pd.DataFrame({"repeat": rep, "row": rows[pos], "fold": fold})


def read_truth(task: Task, train_path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(row positions with a target, encoded target, class labels) of a train file, encoded the way
    the scripts encode it (sorted class order; regression targets as floats)."""
    target = read_csv(train_path, usecols=[task.target])[task.target]
    if task.task_type == "regression":
        values = pd.to_numeric(target, errors="coerce")
        rows = np.flatnonzero(values.notna().to_numpy())
        return rows, values.to_numpy(dtype=float)[rows], []
    rows = np.flatnonzero(target.notna().to_numpy())
    labels = [label_str(v) for v in target.iloc[rows]]
    classes = sorted_classes(labels)
    code = {c: i for i, c in enumerate(classes)}
    return rows, np.array([code[v] for v in labels], dtype=int), classes


# ---------------------------------------------------------------- the run's protocol on disk


@dataclass
class RunProtocol:
    """The protocol plus the truth it scores against (kept outside every script's input folder)."""

    protocol: Protocol
    folds: pd.DataFrame  # repeat, row, fold (search rows)
    rows: np.ndarray  # train-file positions with a target (search rows)
    y: np.ndarray  # encoded target of those rows
    _units: list[tuple[np.ndarray, np.ndarray]] | None = None
    _keys: pd.MultiIndex | None = None

    @property
    def keys(self) -> pd.MultiIndex:
        """(repeat, row) of every validated prediction, in the order every stored array uses."""
        if self._keys is None:
            v = self.folds[self.folds["fold"] >= 0]
            self._keys = pd.MultiIndex.from_arrays([v["repeat"].to_numpy(), v["row"].to_numpy()],
                                                   names=["repeat", "row"])
        return self._keys

    @property
    def validated(self) -> pd.DataFrame:
        return self.folds[self.folds["fold"] >= 0].reset_index(drop=True)

    def truth(self) -> np.ndarray:
        """The target of each validated prediction, aligned with `keys`."""
        pos = pd.Series(np.arange(len(self.rows)), index=self.rows)
        return self.y[pos.loc[self.validated["row"].to_numpy()].to_numpy()]

    def unit_keys(self) -> list[tuple[int, int]]:
        """(repeat, fold) of each unit, in the order of `units()` and of every fold-score list."""
        v = self.validated
        return [(int(r), int(f)) for r, f in sorted(set(zip(v["repeat"], v["fold"], strict=True)))]

    def units(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(fit positions, held positions) into the `keys` order, one per (repeat, fold): what an
        ensemble fits on and applies to when it is scored out of fold."""
        if self._units is None:
            v = self.validated
            out = []
            for (rep, fold), held in v.groupby(["repeat", "fold"]).groups.items():
                fit = np.flatnonzero((v["repeat"].to_numpy() == rep) & (v["fold"].to_numpy() != fold))
                out.append((fit, np.asarray(sorted(v.index.get_indexer(held)))))
            self._units = out
        return self._units


def write_protocol(task: Task, data_dir: Path, search_dir: Path, extra_dirs: list[Path], protocol: Protocol,
                   full_dir: Path | None = None) -> RunProtocol:
    """Write folds.csv into the search folder (and the folders sharing its train rows), the full-data
    folds into full/, and the truth + manifest into data_dir (last: its presence means complete)."""
    train_name = task.train_file
    rows, y, classes = read_truth(task, search_dir / train_name)
    protocol.classes = classes
    protocol.n_rows = len(rows)
    folds = fold_table(protocol, y, rows)
    for folder in [search_dir, *extra_dirs]:
        folds.to_csv(folder / FOLDS_FILE, index=False)
    if full_dir is not None and (full_dir / train_name).is_file():
        f_rows, f_y, _ = read_truth(task, full_dir / train_name)
        fold_table(protocol, f_y, f_rows).to_csv(full_dir / FOLDS_FILE, index=False)
    np.save(data_dir / TRUTH_FILE, np.column_stack([rows, y]).astype(float))
    folds.to_csv(data_dir / "folds_engine.csv", index=False)
    (data_dir / PROTOCOL_FILE).write_text(json.dumps(protocol.to_dict(), indent=2), encoding="utf-8")
    return RunProtocol(protocol, folds, rows, y)


def load_protocol(data_dir: Path) -> RunProtocol | None:
    """The protocol written earlier for this run (resume), or None."""
    if not (data_dir / PROTOCOL_FILE).is_file():
        return None
    protocol = Protocol.from_dict(json.loads((data_dir / PROTOCOL_FILE).read_text(encoding="utf-8")))
    truth = np.load(data_dir / TRUTH_FILE)
    rows = truth[:, 0].astype(int)
    y = truth[:, 1] if protocol.task_type == "regression" else truth[:, 1].astype(int)
    folds = pd.read_csv(data_dir / "folds_engine.csv")
    return RunProtocol(protocol, folds, rows, y)


# ---------------------------------------------------------------- reading predictions


def prediction_columns(protocol: Protocol) -> list[str]:
    return ["prediction"] if not protocol.classification else list(protocol.classes)


def _match_columns(frame: pd.DataFrame, protocol: Protocol, what: str) -> np.ndarray:
    """The prediction columns of a frame as a float matrix in class order (or a vector)."""
    if not protocol.classification:
        if "prediction" not in frame.columns:
            raise PredictionError(f"{what} has no 'prediction' column (columns: {list(frame.columns)[:8]})")
        values = pd.to_numeric(frame["prediction"], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            raise PredictionError(f"{what}: {int(bad.sum())} prediction(s) are NaN, infinite or not numbers")
        return values
    by_label = {label_str(_maybe_number(c)): c for c in frame.columns if c not in ("repeat", "row")}
    missing = [c for c in protocol.classes if c not in by_label]
    if missing:
        raise PredictionError(
            f"{what} lacks the probability column(s) {missing[:6]}: it needs one column per class, named "
            f"by the class label ({protocol.classes[:10]})")
    matrix = frame[[by_label[c] for c in protocol.classes]].apply(pd.to_numeric, errors="coerce")
    values = matrix.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise PredictionError(f"{what}: {int((~np.isfinite(values)).sum())} probabilities are NaN, infinite "
                              "or not numbers")
    if (values < -1e-6).any() or (values > 1 + 1e-6).any():
        raise PredictionError(f"{what}: probabilities must lie in [0, 1] (found {values.min():.4g} .. "
                              f"{values.max():.4g})")
    values = np.clip(values, 0.0, 1.0)
    totals = values.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise PredictionError(f"{what}: some rows have all class probabilities 0")
    return values / totals


def _maybe_number(text: str) -> Any:
    try:
        f = float(text)
    except (TypeError, ValueError):
        return text
    return f if math.isfinite(f) else text


def read_oof(path: Path, rp: RunProtocol) -> np.ndarray:
    """A script's out-of-fold predictions aligned with `rp.keys` (vector or class-probability matrix)."""
    if not path.is_file():
        raise PredictionError(f"no {OOF_FILE} was written: every script must write its out-of-fold "
                              f"predictions to ./{OOF_FILE} (see the protocol)")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # any parse failure is the script's fault, said plainly
        raise PredictionError(f"{OOF_FILE} cannot be read as CSV: {exc}") from None
    if "row" not in frame.columns:
        raise PredictionError(f"{OOF_FILE} has no 'row' column (the train-file row number of each prediction)")
    if "repeat" not in frame.columns:
        frame["repeat"] = 0
    keys = pd.MultiIndex.from_arrays([pd.to_numeric(frame["repeat"], errors="coerce"),
                                      pd.to_numeric(frame["row"], errors="coerce")])
    if keys.has_duplicates:
        raise PredictionError(f"{OOF_FILE} has {int(keys.duplicated().sum())} duplicated (repeat, row) lines")
    expected = rp.keys
    missing = expected.difference(keys)
    extra = keys.difference(expected)
    if len(missing) or len(extra):
        raise PredictionError(
            f"{OOF_FILE} is misaligned with {FOLDS_FILE}: {len(missing)} validated row(s) missing"
            f"{' (e.g. row ' + str(missing[0][1]) + ')' if len(missing) else ''}, {len(extra)} unexpected "
            f"row(s){' (e.g. row ' + str(extra[0][1]) + ')' if len(extra) else ''}. Predict every row with "
            f"fold >= 0 exactly once per repeat, from a model that did not train on its fold.")
    values = _match_columns(frame, rp.protocol, OOF_FILE)
    order = keys.get_indexer(expected)
    return values[order]


def read_test_pred(path: Path, protocol: Protocol, n_test: int) -> np.ndarray:
    """A script's test predictions in test-file order."""
    if not path.is_file():
        raise PredictionError(f"no {TEST_PRED_FILE} was written")
    frame = pd.read_csv(path)
    if "row" not in frame.columns or sorted(frame["row"].tolist()) != list(range(n_test)):
        raise PredictionError(f"{TEST_PRED_FILE} must have one line per test row, numbered 0..{n_test - 1}")
    values = _match_columns(frame, protocol, TEST_PRED_FILE)
    return values[np.argsort(frame["row"].to_numpy())]


# ---------------------------------------------------------------- scoring


def metric_input(pred: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Stored predictions in the form the metric takes (labels, P(class 1), a matrix, values)."""
    needs = get_metric(protocol.metric).needs
    if not protocol.classification:
        return pred
    if needs == "label":
        return pred.argmax(axis=1)
    if protocol.task_type == "binary":
        return pred[:, 1]
    return pred


class Scorer:
    """Scores prediction arrays (aligned with the protocol's keys) per (repeat, fold) unit."""

    def __init__(self, rp: RunProtocol) -> None:
        self.rp = rp
        self.protocol = rp.protocol
        self.metric = metric_function(rp.protocol.metric, rp.protocol.task_type)
        self.truth = rp.truth()
        self.units = rp.units()

    def _metric(self, y: np.ndarray, pred: np.ndarray) -> float | None:
        try:
            value = float(self.metric(y, metric_input(pred, self.protocol)))
        except ValueError:  # e.g. a fold with one class for ROC-AUC
            return None
        return value if math.isfinite(value) else None

    def fold_scores(self, pred: np.ndarray) -> list[float | None]:
        return [self._metric(self.truth[held], pred[held]) for _, held in self.units]

    def evaluate(self, pred: np.ndarray) -> Evaluation:
        scores = self.fold_scores(pred)
        ok = [s for s in scores if s is not None]
        if not ok:
            return Evaluation(None, scores, "the metric could not be computed on any fold")
        return Evaluation(float(np.mean(ok)), scores)

    def score_rows(self, pred_rows: np.ndarray, rows: np.ndarray) -> float:
        """The metric on a subset of the out-of-fold positions, pooled: what ensemble weights and stackers
        are fitted on (one metric call per trial keeps a greedy search in milliseconds)."""
        value = self._metric(self.truth[rows], pred_rows)
        if value is None:
            return -np.inf if self.protocol.higher_is_better else np.inf
        return value

    def evaluate_workdir(self, workdir: Path) -> tuple[Evaluation, np.ndarray | None]:
        try:
            pred = read_oof(workdir / OOF_FILE, self.rp)
        except PredictionError as exc:
            return Evaluation(None, [], str(exc)), None
        ev = self.evaluate(pred)
        return ev, (pred if ev.score is not None else None)


FOLD_LINE = re.compile(r"^Fold score: repeat=(\d+) fold=(\d+) value=(\S+)\s*$", re.M)


def hopeless(stdout: str, baseline_folds: list[float | None], unit_keys: list[tuple[int, int]],
             higher_is_better: bool) -> str | None:
    """Why a running attempt cannot catch up with its baseline, or None.

    From the `Fold score:` lines printed so far (at least half the folds, and two): even if every fold
    still to come gained as much as the attempt's best fold so far, the fold mean could not beat the
    baseline's."""
    index = {key: i for i, key in enumerate(unit_keys)}
    deltas: dict[int, float] = {}
    for m in FOLD_LINE.finditer(stdout):
        i = index.get((int(m.group(1)), int(m.group(2))))
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        if i is None or i >= len(baseline_folds) or baseline_folds[i] is None or not math.isfinite(value):
            continue
        deltas[i] = improvement(value, baseline_folds[i], higher_is_better) or 0.0
    n = len(unit_keys)
    if len(deltas) < max(2, (n + 1) // 2):
        return None
    best = max(0.0, max(deltas.values()))
    if sum(deltas.values()) + (n - len(deltas)) * best > 0:
        return None
    lost = sum(d < 0 for d in deltas.values())
    mean_loss = -sum(deltas.values()) / len(deltas)
    return (f"after {len(deltas)} of {n} folds it lost {lost} to its baseline by {mean_loss:.4g} on average; even "
            "if every remaining fold gained as much as its best one, it could not catch up")


def claim_disagrees(claimed: float | None, measured: float | None) -> bool:
    """A printed score that does not match the engine's (beyond float noise)."""
    if measured is None:
        return False
    if claimed is None:
        return True
    return not math.isclose(claimed, measured, rel_tol=1e-6, abs_tol=1e-9)


# ---------------------------------------------------------------- paired comparisons


def paired_wins(new: list[float | None], old: list[float | None], higher_is_better: bool) -> tuple[int, int]:
    """(folds where new beats old, folds compared)."""
    pairs = [(a, b) for a, b in zip(new, old, strict=False) if a is not None and b is not None]
    return sum(is_better(a, b, higher_is_better) for a, b in pairs), len(pairs)


# ---------------------------------------------------------------- ensembles over stored predictions


@dataclass
class EnsembleResult:
    strategy: str
    members: list[int]  # script ids, in the order of `weights`
    weights: list[float] | None  # None for stacking / rank averaging
    evaluation: Evaluation
    seconds: float


def ensemble(strategy: str, members: list[int], preds: list[np.ndarray], scorer: Scorer) -> EnsembleResult:
    """Score an ensemble strategy on stored out-of-fold predictions (milliseconds, no script run)."""
    started = time.perf_counter()
    protocol = scorer.protocol

    def score(pred_rows: np.ndarray, rows: np.ndarray) -> float:
        return scorer.score_rows(pred_rows, rows)

    oof, combiner = _ENSEMBLE["combine_out_of_fold"](
        strategy, preds, scorer.truth, scorer.units, score, protocol.higher_is_better, protocol.task_type,
        max(1, len(protocol.classes)))
    weights = getattr(combiner, "weights", None)
    if strategy == "mean":
        weights = [1.0 / len(preds)] * len(preds)
    return EnsembleResult(strategy, list(members), weights, scorer.evaluate(np.asarray(oof, dtype=float)),
                          time.perf_counter() - started)


# ---------------------------------------------------------------- the probe that sizes K


def probe_script(task: Task) -> str:
    """An engine-written script that times one typical fit (gradient boosting, 100 rounds, on 80 % of
    the search rows); its time sizes the number of folds a run can afford."""
    return f'''\
import time
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

df = pd.read_csv("input/" + {task.train_file!r}, low_memory=False)
y = df.pop({task.target!r})
if {task.task_type == "regression"!r}:
    y = pd.to_numeric(y, errors="coerce")
keep = y.notna().to_numpy()
X, y = df[keep].drop(columns=[c for c in [{task.id_column!r}] if c in df.columns]), y[keep]
for col in X.columns:
    if not pd.api.types.is_numeric_dtype(X[col]):
        X[col] = pd.factorize(X[col])[0].astype(float)
X = X.apply(pd.to_numeric, errors="coerce").astype(float)
X = X.loc[:, X.notna().any() & (X.nunique() > 1)]  # nothing to split on in empty or constant columns
if X.shape[1] == 0:
    X = pd.DataFrame({{"constant": np.zeros(len(y))}})
n = int(len(X) * 0.8)
model = (HistGradientBoostingRegressor if {task.task_type == "regression"!r} else HistGradientBoostingClassifier)(
    max_iter=100, early_stopping=False, random_state=0)
started = time.perf_counter()
model.fit(X.iloc[:n], y.iloc[:n] if {task.task_type == "regression"!r} else pd.factorize(y)[0][:n])
print(f"PROBE_FIT_SECONDS {{time.perf_counter() - started:.4f}}")
'''


def probe_seconds(stdout: str) -> float | None:
    for line in stdout.splitlines():
        if line.startswith("PROBE_FIT_SECONDS "):
            try:
                return float(line.split()[1])
            except ValueError:
                return None
    return None


def strategy_in(plan: str) -> str | None:
    """The engine strategy a plan names (`strategy='caruana'`), or None for a free-form plan."""
    m = re.search(r"strategy\s*[=:]\s*['\"]?([a-z_]+)", plan, re.I)
    if m and m.group(1).lower() in ENSEMBLE_STRATEGIES:
        return m.group(1).lower()
    return None
