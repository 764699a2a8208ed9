"""Small demo tasks in the MLE-bench layout, generated deterministically.

Each task folder holds description.md, train.csv, test.csv and sample_submission.csv; the test
answers go to `<dest>/_answers/<task>.csv`, outside every task folder, so a solution can be
graded without ever seeing them. Run `python -m mlestar_core.demos DEST` to (re)write them.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.model_selection import train_test_split

ANSWERS_DIR = "_answers"
SEED = 20240601


def _write(dest: Path, name: str, description: str, train: pd.DataFrame, test: pd.DataFrame,
           sample: pd.DataFrame, answers: pd.DataFrame) -> Path:
    folder = dest / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "description.md").write_text(textwrap.dedent(description).strip() + "\n", encoding="utf-8")
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    sample.to_csv(folder / "sample_submission.csv", index=False)
    (dest / ANSWERS_DIR).mkdir(parents=True, exist_ok=True)
    answers.to_csv(dest / ANSWERS_DIR / f"{name}.csv", index=False)
    return folder


def _split(df: pd.DataFrame, target: str, stratify: bool, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = train_test_split(df, test_size=0.2, random_state=seed,
                                   stratify=df[target] if stratify else None)
    return train.sort_values("id"), test.sort_values("id")


def _with_ids(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Shuffle rows and number them, so ids carry no information about the target."""
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df.insert(0, "id", np.arange(1, len(df) + 1))
    return df


def breast_cancer(dest: Path) -> Path:
    data = load_breast_cancer(as_frame=True)
    df = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    # sklearn codes malignant as 0; the competition asks for P(malignant), so flip it to 1.
    df["malignant"] = 1 - df.pop("target")
    df = _with_ids(df, SEED)
    train, test = _split(df, "malignant", stratify=True, seed=SEED)
    sample = pd.DataFrame({"id": test["id"], "malignant": 0.5})
    description = """
        # Breast Cancer Diagnosis

        ## Overview

        Fine needle aspirates (FNA) of breast masses were digitised, and 30 measurements of the
        cell nuclei in each image were computed (radius, texture, perimeter, area, smoothness,
        compactness, concavity, concave points, symmetry and fractal dimension; each as mean,
        standard error and "worst" value). Your task is to predict whether a tumour is
        malignant from these measurements.

        ## Data

        - **train.csv** — the training set: an `id`, the 30 measurements and the target
          `malignant` (1 = malignant, 0 = benign).
        - **test.csv** — the test set: the same columns without `malignant`.
        - **sample_submission.csv** — a sample submission file in the correct format.

        ## Evaluation

        Submissions are evaluated on area under the ROC curve between the predicted probability
        and the observed target.

        ## Submission File

        For each `id` in the test set, predict the probability that the tumour is malignant.
        The file should contain a header and have the following format:

        ```
        id,malignant
        3,0.5
        7,0.5
        ```
    """
    return _write(dest, "breast-cancer", description, train, test.drop(columns="malignant"), sample,
                  test[["id", "malignant"]])


def diabetes_progression(dest: Path) -> Path:
    data = load_diabetes(as_frame=True, scaled=False)
    names = {"s1": "tc", "s2": "ldl", "s3": "hdl", "s4": "tch", "s5": "ltg", "s6": "glu"}
    df = data.frame.rename(columns=names).rename(columns={"target": "progression"})
    df = _with_ids(df, SEED + 1)
    train, test = _split(df, "progression", stratify=False, seed=SEED + 1)
    sample = pd.DataFrame({"id": test["id"], "progression": 150.0})
    description = """
        # Diabetes Disease Progression

        ## Overview

        Ten baseline variables (age, sex, body mass index, average blood pressure and six blood
        serum measurements) were recorded for 442 diabetes patients. Your goal is to predict
        `progression`, a quantitative measure of disease progression one year after baseline.

        ## Data

        - **train.csv** — `id`, the ten baseline variables (`age`, `sex`, `bmi`, `bp`, `tc`,
          `ldl`, `hdl`, `tch`, `ltg`, `glu`) and the target `progression`.
        - **test.csv** — the same columns without the target.
        - **sample_submission.csv** — a sample submission file in the correct format.

        ## Evaluation

        Submissions are scored on the root mean squared error (RMSE) between the predicted and
        the observed progression. Lower is better.

        ## Submission File

        For each `id` in the test set, predict `progression`. The file should contain a header
        and have the following format:

        ```
        id,progression
        2,150.0
        9,150.0
        ```
    """
    return _write(dest, "diabetes-progression", description, train, test.drop(columns="progression"),
                  sample, test[["id", "progression"]])


def wine_cultivar(dest: Path) -> Path:
    data = load_wine(as_frame=True)
    df = data.frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315",
                                    "target": "cultivar"})
    df = _with_ids(df, SEED + 2)
    train, test = _split(df, "cultivar", stratify=True, seed=SEED + 2)
    sample = pd.DataFrame({"id": test["id"], "class_0": 1 / 3, "class_1": 1 / 3, "class_2": 1 / 3})
    description = """
        # Wine Cultivar Classification

        ## Overview

        These data are the results of a chemical analysis of wines grown in the same region in
        Italy but derived from three different cultivars. Thirteen constituents (alcohol, malic
        acid, ash, magnesium, phenols, flavanoids, colour intensity, hue, proline, ...) were
        measured for each wine. Predict which cultivar (0, 1 or 2) each wine comes from.

        ## Data

        - **train.csv** — `id`, the 13 measurements and the target `cultivar`.
        - **test.csv** — the same columns without `cultivar`.
        - **sample_submission.csv** — a sample submission file in the correct format.

        ## Evaluation

        Submissions are evaluated using the multi-class logarithmic loss. Each wine has been
        labelled with one true cultivar; for each wine you must submit a set of predicted
        probabilities (one for every cultivar). The submitted probabilities are rescaled so that
        each row sums to one and clipped to [1e-15, 1 - 1e-15].

        ## Submission File

        For each `id` in the test set, predict a probability for each of the three cultivars.
        The file should contain a header and have the following format:

        ```
        id,class_0,class_1,class_2
        4,0.33,0.33,0.34
        ```
    """
    return _write(dest, "wine-cultivar", description, train, test.drop(columns="cultivar"), sample,
                  test[["id", "cultivar"]])


_OPENERS = ["Customer called about", "Chat regarding", "Email about", "Ticket opened for",
            "Follow-up on", "Customer wrote in about"]
_TOPICS = ["billing date change", "router setup", "password reset", "plan details", "an invoice copy",
           "an address update", "slow speed test results", "pairing a new device"]
_NEGATIVE = ["very unhappy and threatened to cancel", "asked how to cancel the contract",
             "frustrated by repeated outages", "complained about the price increase and wants a refund",
             "disappointed with slow support"]
_POSITIVE = ["issue resolved quickly, thanked the agent", "happy with the service overall",
             "asked about upgrade options", "resolved on the first call, very satisfied"]
_NEUTRAL = ["no further action needed", "agent sent instructions by email", "waiting for a reply",
            "escalated to tier 2", "callback scheduled"]


def customer_churn(dest: Path) -> Path:
    """A synthetic churn table with every column type and a known generating formula."""
    rng = np.random.default_rng(SEED + 3)
    n = 4000
    ids = [f"CUST-{i:05d}" for i in rng.permutation(np.arange(10_000, 10_000 + n))]
    signup = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 5 * 365, n), unit="D")
    tenure = np.clip(((pd.Timestamp("2024-06-30") - signup).days // 30).to_numpy()
                     - rng.integers(0, 12, n), 0, None)
    plan = rng.choice(["basic", "standard", "premium"], n, p=[0.4, 0.4, 0.2])
    base = np.select([plan == "basic", plan == "standard"], [45.0, 70.0], 100.0)
    charges = np.round(base + rng.normal(0, 9, n), 2)
    payment = rng.choice(["card", "bank_transfer", "paypal", "check"], n, p=[0.4, 0.25, 0.2, 0.15])
    cities = np.array([f"C{i:03d}" for i in range(300)])
    city_effect = rng.normal(0, 0.9, 300)
    city_idx = rng.integers(0, 300, n)
    autopay = rng.random(n) < 0.55
    calls = rng.poisson(1.2, n)
    mood = rng.choice([-1, 0, 1], n, p=[0.25, 0.45, 0.30])  # -1 negative note, +1 positive note
    notes = []
    for m in mood:
        tail = {-1: _NEGATIVE, 0: _NEUTRAL, 1: _POSITIVE}[int(m)]
        notes.append(f"{rng.choice(_OPENERS)} {rng.choice(_TOPICS)}; {rng.choice(tail)}.")
    has_note = rng.random(n) < 0.8
    month = signup.month.to_numpy()

    # The generating formula: a logistic model whose terms each need one column type handled well.
    z = (-0.9 + 1.4 * (plan == "basic") - 1.0 * (plan == "premium") - 0.07 * tenure
         + 0.04 * (charges - 65) + 0.8 * calls - 1.5 * autopay + 0.8 * (payment == "check")
         + 1.5 * city_effect[city_idx] + 2.0 * np.isin(month, [11, 12])
         + np.where(has_note, np.select([mood == -1, mood == 1], [3.0, -2.0], 0.0), 0.0))
    churned = rng.random(n) < 1 / (1 + np.exp(-z))

    df = pd.DataFrame({
        "customer_id": ids,
        "signup_date": signup.strftime("%Y-%m-%d"),
        "tenure_months": tenure,
        "plan": plan,
        "monthly_charges": np.where(rng.random(n) < 0.08, np.nan, charges),  # 8% not recorded
        "payment_method": payment,
        "city": cities[city_idx],
        "is_autopay": autopay,
        "support_calls": calls,
        "ticket_note": np.where(has_note, np.array(notes, dtype=object), None),
        "churned": np.where(churned, "yes", "no"),
    })
    train, test = df.iloc[:3000], df.iloc[3000:]
    sample = pd.DataFrame({"customer_id": test["customer_id"], "churned": "no"})
    description = """
        # Customer Churn Prediction

        ## Overview

        A broadband provider wants to know which customers are about to leave. For each
        customer you get the signup date, tenure, plan, monthly charges, payment method, home
        city, whether they pay by autopay, the number of support calls in the last quarter and
        the agent's note from their latest support ticket (if any). Predict whether the customer
        churned (`churned` = yes / no) in the following quarter.

        ## Data

        - **train.csv** — 3000 customers with the target `churned`.
        - **test.csv** — 1000 customers without the target.
        - **sample_submission.csv** — a sample submission file in the correct format.

        Some monthly charges were not recorded. City codes are anonymised.

        ## Evaluation

        Submissions are evaluated on the F1 score of the positive class (`yes`): the harmonic
        mean of precision and recall for churners.

        ## Submission File

        For each `customer_id` in the test set, predict `yes` or `no`. The file should contain a
        header and have the following format:

        ```
        customer_id,churned
        CUST-10001,no
        CUST-10002,yes
        ```
    """
    return _write(dest, "customer-churn", description, train, test.drop(columns="churned"), sample,
                  test[["customer_id", "churned"]])


DEMOS: dict[str, Callable[[Path], Path]] = {
    "breast-cancer": breast_cancer,
    "diabetes-progression": diabetes_progression,
    "wine-cultivar": wine_cultivar,
    "customer-churn": customer_churn,
}


def write_demo_tasks(dest: Path) -> list[Path]:
    """Write every demo task under dest (answers under dest/_answers); returns the task folders."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return [make(dest) for make in DEMOS.values()]


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("demo_tasks")
    for folder in write_demo_tasks(out):
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"{folder}  {size / 1024:.0f} KB")
