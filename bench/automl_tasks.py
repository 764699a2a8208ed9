"""Real public tables as MLE-bench task folders, for the AutoML benchmark (bench/bench_automl.py).

Every table ships inside a pip wheel (ISLP, palmerpenguins, statsmodels, plotly), so building the
tasks downloads nothing. The data packages live in bench/.venv-automl (bench/setup_automl.sh), so
this file is *run* with that environment's python; the project venv only imports it for `TASKS`
(the loaders import their package when called).

    bench/.venv-automl/bin/python bench/automl_tasks.py --out DIR [--tasks a,b]

writes, for each task NAME:
    DIR/tasks/NAME/{description.md, train.csv, test.csv, sample_submission.csv}   (what the agent sees)
    DIR/answers/NAME.csv                                  (id + target of test.csv; never in the task folder)
and prints a JSON manifest (one object per task) on stdout.

The split is a seeded 75/25 train/test split, stratified on the target for classification. Ids are a
seeded random permutation of 1..n, so they say nothing about the row order of the source table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 2024
TEST_SIZE = 0.25
ID = "id"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    source: str  # "package: table" it comes from
    task_type: str  # binary | multiclass | regression
    metric: str  # a key of mlestar_core.metrics.METRICS; the description names it
    target: str
    title: str
    overview: str  # what the rows are and what to predict (markdown)
    evaluation: str  # the sentence of the "## Evaluation" section
    special: str  # what makes the table interesting (missing values, categoricals, dates, ...)
    per_class_columns: bool = False  # sample submission with one probability column per class


# ----------------------------------------------------------------------------------------------
# Loaders: each returns the full table (features + target, no id), imports its package lazily.
# ----------------------------------------------------------------------------------------------


def _islp(name: str) -> pd.DataFrame:
    from ISLP import load_data

    df = load_data(name)
    # ISLP returns pandas categoricals; plain strings are what a CSV round trip gives anyway.
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df.reset_index(drop=True)


def load_penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins as _load

    return _load()


def load_auto() -> pd.DataFrame:
    # The raw Auto.data (397 cars) keeps the five cars whose horsepower is unknown ("?"); ISLP's
    # Auto.csv drops them. `name` is free text ("chevrolet chevelle malibu").
    from importlib.resources import files

    with files("ISLP").joinpath("data", "Auto.data").open() as f:
        return pd.read_csv(f, sep=r"\s+", na_values="?")


def load_bikeshare() -> pd.DataFrame:
    # Hourly rentals of Washington's Capital Bikeshare in 2011. As in Kaggle's "Bike Sharing Demand",
    # the hour is given as one timestamp column (rebuilt from the day of the year and the hour; the
    # recorded weekday matches: 2011-01-01 was a Saturday) instead of month/day/hour/weekday columns,
    # and casual + registered (which add up to the target) are left out.
    df = _islp("Bikeshare")
    hours = pd.to_numeric(df["hr"]).astype(int)
    stamp = pd.Timestamp("2011-01-01") + pd.to_timedelta(df["day"].astype(int) - 1, unit="D") \
        + pd.to_timedelta(hours, unit="h")
    assert (stamp.dt.dayofweek.map(lambda d: (d + 1) % 7) == df["weekday"].astype(int)).all()
    out = pd.DataFrame({"datetime": stamp.dt.strftime("%Y-%m-%d %H:%M:%S")})
    for c in ("season", "holiday", "workingday", "weathersit", "temp", "atemp", "hum", "windspeed", "bikers"):
        out[c] = df[c]
    return out


def load_default() -> pd.DataFrame:
    return _islp("Default")


def load_oj() -> pd.DataFrame:
    return _islp("OJ")


def load_wage() -> pd.DataFrame:
    return _islp("Wage").drop(columns=["logwage"])  # log of the target


def load_caravan() -> pd.DataFrame:
    return _islp("Caravan")


def load_carseats() -> pd.DataFrame:
    return _islp("Carseats")


def load_tips() -> pd.DataFrame:
    import plotly.data

    return pd.DataFrame(plotly.data.tips())


def load_affairs() -> pd.DataFrame:
    import statsmodels.datasets

    df = statsmodels.datasets.fair.load_pandas().data
    df = df.assign(affair=(df["affairs"] > 0).astype(int)).drop(columns=["affairs"])
    return df


LOADERS: dict[str, Callable[[], pd.DataFrame]] = {
    "penguins-species": load_penguins,
    "auto-mpg": load_auto,
    "bike-sharing": load_bikeshare,
    "default-risk": load_default,
    "oj-purchase": load_oj,
    "wage": load_wage,
    "caravan-insurance": load_caravan,
    "carseats-sales": load_carseats,
    "restaurant-tips": load_tips,
    "extramarital-affairs": load_affairs,
}

TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    TaskSpec(
        "penguins-species", "palmerpenguins: penguins", "multiclass", "log_loss", "species",
        "Palmer Penguins Species",
        "Size measurements, island and sex of 344 adult penguins observed near Palmer Station, "
        "Antarctica (2007-2009). Predict the `species` of each penguin (Adelie, Chinstrap or Gentoo). "
        "Some measurements and some `sex` values were not recorded.",
        "Submissions are evaluated on the multi-class logarithmic loss between the predicted class "
        "probabilities and the observed species.",
        "missing values (sex, 4 measurements), categoricals (island, sex), 3 classes, per-class probabilities",
        per_class_columns=True),
    TaskSpec(
        "auto-mpg", "ISLP: Auto (raw Auto.data)", "regression", "rmse", "mpg",
        "Auto MPG",
        "Engine and body data of 397 car models from 1970-1982. Predict the fuel consumption `mpg` "
        "(miles per gallon). `name` is the car's make and model as free text; `origin` is 1 = American, "
        "2 = European, 3 = Japanese. The horsepower of five cars is unknown.",
        "Submissions are evaluated on the root mean squared error between the predicted and the observed mpg.",
        "missing values (horsepower), free-text name (304 distinct)"),
    TaskSpec(
        "bike-sharing", "ISLP: Bikeshare", "regression", "rmsle", "bikers",
        "Bike Sharing Demand",
        "Hourly counts of rented bikes of Washington D.C.'s Capital Bikeshare system in 2011, with the "
        "weather of that hour. Predict `bikers`, the number of bikes rented in that hour. `datetime` is "
        "the start of the hour; `weathersit` describes the weather; `temp`, `atemp` (felt temperature), "
        "`hum` and `windspeed` are normalised.",
        "Submissions are evaluated on the Root Mean Squared Logarithmic Error (RMSLE) between the "
        "predicted and the observed counts.",
        "datetime column (hour of the day, weekday, season live in it), categorical weathersit"),
    TaskSpec(
        "default-risk", "ISLP: Default", "binary", "roc_auc", "default",
        "Credit Card Default",
        "10,000 credit card customers: whether they are a `student`, their average monthly card "
        "`balance` and their annual `income`. Predict whether the customer defaulted (`default`: Yes/No).",
        "Submissions are evaluated on area under the ROC curve between the predicted probability of "
        "default and the observed outcome.",
        "imbalanced (3% Yes), categorical student"),
    TaskSpec(
        "oj-purchase", "ISLP: OJ", "binary", "accuracy", "Purchase",
        "Orange Juice Brand Choice",
        "1,070 orange juice purchases, with the prices, discounts and specials of both brands in the "
        "store that week and the customer's brand loyalty. Predict which brand was bought: `Purchase` is "
        "CH (Citrus Hill) or MM (Minute Maid).",
        "Submissions are evaluated on classification accuracy.",
        "hard labels (CH/MM), redundant store columns (StoreID, STORE, Store7)"),
    TaskSpec(
        "wage", "ISLP: Wage", "regression", "mae", "wage",
        "Mid-Atlantic Wages",
        "3,000 male workers of the Mid-Atlantic region (US census, 2003-2009). Predict the yearly `wage` "
        "(in thousands of dollars) from the year, age, marital status, race, education, job class and "
        "health.",
        "Submissions are evaluated on the mean absolute error between the predicted and the observed wage.",
        "5 string categoricals (ordered education) and a constant one (region), skewed target"),
    TaskSpec(
        "caravan-insurance", "ISLP: Caravan", "binary", "f1", "Purchase",
        "Caravan Insurance",
        "5,822 customers of an insurance company, described by 85 socio-demographic and product-ownership "
        "variables. Predict whether the customer bought a caravan insurance policy (`Purchase`: Yes/No).",
        "Submissions are evaluated on the F1 score of the positive class (`Yes`): the harmonic mean of "
        "precision and recall for buyers.",
        "85 features, rare positive class (6% Yes), hard labels"),
    TaskSpec(
        "carseats-sales", "ISLP: Carseats", "regression", "r2", "Sales",
        "Child Car Seat Sales",
        "Child car seat sales in 400 stores. Predict `Sales` (unit sales, in thousands) from the "
        "competitor's price, local income, advertising budget, population, price, shelf location, "
        "average age and education, and whether the store is urban and in the US.",
        "Submissions are evaluated on the coefficient of determination (R²) between the predicted and "
        "the observed sales.",
        "categoricals (ShelveLoc, Urban, US), small (400 rows)"),
    TaskSpec(
        "restaurant-tips", "plotly: tips", "regression", "mape", "tip",
        "Restaurant Tips",
        "244 restaurant bills recorded by one waiter: the total bill, the payer's sex, smoker in the party, "
        "day, time and party size. Predict the `tip` in dollars.",
        "Submissions are evaluated on the mean absolute percentage error (MAPE) between the predicted and "
        "the observed tip.",
        "categoricals (sex, smoker, day, time), tiny (244 rows)"),
    TaskSpec(
        "extramarital-affairs", "statsmodels: fair", "binary", "log_loss", "affair",
        "Extramarital Affairs",
        "A 1974 survey of 6,366 married women (Redbook magazine): rating of the marriage, age, years "
        "married, children, religiousness, education, and the occupation of the woman and of her husband. "
        "Predict whether she had an affair (`affair` = 1) or not (0).",
        "Submissions are evaluated on the log loss between the predicted probability of an affair and the "
        "observed outcome.",
        "coded ordinal survey answers, probability of the positive class"),
]}
assert set(TASKS) == set(LOADERS)


# ----------------------------------------------------------------------------------------------
# Building the folders
# ----------------------------------------------------------------------------------------------


def _split(df: pd.DataFrame, spec: TaskSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    strat = df[spec.target] if spec.task_type != "regression" else None
    train, test = train_test_split(df, test_size=TEST_SIZE, random_state=SEED, stratify=strat)
    return train.sort_values(ID), test.sort_values(ID)


def _description(spec: TaskSpec, features: list[str], n_train: int, n_test: int, sample: pd.DataFrame,
                 positive: str | None) -> str:
    pred = [c for c in sample.columns if c != ID]
    if spec.per_class_columns:
        fmt = (f"For each `{ID}` in the test set, predict the probability of each class "
               f"({', '.join(pred)}); each row should sum to 1.")
    elif spec.task_type == "regression":
        fmt = f"For each `{ID}` in the test set, predict `{spec.target}`."
    elif spec.metric in ("roc_auc", "log_loss"):
        fmt = f"For each `{ID}` in the test set, predict the probability that `{spec.target}` is `{positive}`."
    else:
        fmt = f"For each `{ID}` in the test set, predict the class (`{spec.target}`)."
    example = sample.head(2).to_csv(index=False).strip()
    names = ", ".join(f"`{c}`" for c in features)
    return f"""# {spec.title}

## Overview

{spec.overview}

Source: {spec.source} (public data).

## Data

- **train.csv** — {n_train} rows: `{ID}`, the features ({names}) and the target `{spec.target}`.
- **test.csv** — {n_test} rows: the same columns without `{spec.target}`.
- **sample_submission.csv** — a sample submission file in the correct format.

## Evaluation

{spec.evaluation}

## Submission File

{fmt} The file should contain a header and have the following format:

```
{example}
```
"""


def _label(v: object) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def build_task(name: str, out: Path) -> dict:
    """Write tasks/NAME and answers/NAME.csv under `out`; return the manifest entry."""
    spec = TASKS[name]
    df = LOADERS[name]()
    df = df[df[spec.target].notna()].reset_index(drop=True)
    rng = np.random.default_rng(SEED)
    df.insert(0, ID, rng.permutation(len(df)) + 1)
    features = [c for c in df.columns if c not in (ID, spec.target)]
    train, test = _split(df, spec)

    task_dir = out / "tasks" / name
    answers_dir = out / "answers"
    task_dir.mkdir(parents=True, exist_ok=True)
    answers_dir.mkdir(parents=True, exist_ok=True)

    y = train[spec.target]
    sample = pd.DataFrame({ID: test[ID].to_numpy()})
    positive = None
    if spec.task_type == "regression":
        sample[spec.target] = float(y.median())
    else:
        classes = _sorted_classes({_label(v) for v in y})
        positive = classes[-1]
        if spec.per_class_columns:
            for c in classes:
                sample[c] = 1.0 / len(classes)
        elif spec.metric in ("roc_auc", "log_loss"):
            sample[spec.target] = float((y.map(_label) == classes[-1]).mean())
        else:
            sample[spec.target] = _label(y.map(_label).mode().iloc[0])

    train.to_csv(task_dir / "train.csv", index=False)
    test.drop(columns=[spec.target]).to_csv(task_dir / "test.csv", index=False)
    sample.to_csv(task_dir / "sample_submission.csv", index=False)
    (task_dir / "description.md").write_text(
        _description(spec, features, len(train), len(test), sample, positive), encoding="utf-8")
    answers_path = answers_dir / f"{name}.csv"
    test[[ID, spec.target]].to_csv(answers_path, index=False)

    missing = {c: int(n) for c, n in df[features].isna().sum().items() if n}
    return {**asdict(spec), "task_dir": str(task_dir), "answers": str(answers_path),
            "rows": len(df), "train_rows": len(train), "test_rows": len(test), "n_features": len(features),
            "missing_values": missing}


def _sorted_classes(labels: set[str]) -> list[str]:
    """Numeric labels numerically, others as strings: the order mlestar_core.task.sorted_classes uses."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for tasks/ and answers/")
    parser.add_argument("--tasks", default="", help=f"comma-separated subset of: {', '.join(TASKS)}")
    args = parser.parse_args(argv)
    names = [t for t in args.tasks.split(",") if t] or list(TASKS)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        print(f"unknown task(s): {', '.join(unknown)}; known: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    manifest = [build_task(n, Path(args.out)) for n in names]
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
