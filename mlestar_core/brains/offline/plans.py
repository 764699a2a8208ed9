"""The machine-readable end of a refinement plan: `Set: key=value, key=value`.

A plan is prose for humans plus one `Set:` line that implement_refinement executes. A human
may edit either in the UI; the values on the `Set:` line are what gets implemented, so they
are parsed tolerantly (bare words, true/false/none, lists without quotes) but validated
strictly (unknown keys or impossible values raise ValueError with a message saying what is
allowed).

Keys per block:
  preprocess / features / train:  a key of the block's config dict, e.g. `scaler=quantile`
  model:  `<model>.<param>=value`, `<model>.weight=2`, `<model>.params={...}` (replace all),
          `add_model=extra_trees`, `drop_model=knn`
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Callable
from typing import Any

from .defaults import MODEL_FAMILIES

Settings = dict[str, Any]

_SET_LINE = re.compile(r"^[ \t>*\-]*set\s*:\s*(?P<body>.*)$", re.I | re.M)

ENUMS: dict[str, tuple[str, ...]] = {
    "num_impute": ("mean", "median", "constant", "most_frequent"),
    "scaler": ("standard", "robust", "quantile", "none"),
    "tree_cat_encoding": ("native", "ordinal", "target", "onehot"),
    "linear_cat_encoding": ("onehot", "target", "ordinal"),
    "text_analyzer": ("word", "char_wb"),
    "target_transform": ("none", "log1p", "sqrt"),
    "class_weight": ("none", "balanced", "sqrt_balanced"),
}
BOOLS = {"gbdt_impute", "missing_indicators", "text_stats", "text_model", "early_stopping"}
INTS: dict[str, tuple[int, int]] = {
    "rare_min_frequency": (1, 100000),
    "max_onehot": (2, 1000),
    "text_svd_components": (0, 256),
    "text_max_features": (10, 200000),
    "text_ngram_max": (1, 3),
    "ratios": (0, 8),
    "products": (0, 8),
    "group_stats": (0, 8),
    "early_stopping_rounds": (5, 1000),
    "n_seeds": (1, 10),
}
FLOATS: dict[str, tuple[float, float]] = {"inner_valid_fraction": (0.05, 0.5)}
COLUMN_LISTS = {"log1p", "count_encode"}  # a list of column names or "auto"
DATETIME_PARTS = (
    "year",
    "month",
    "day",
    "dayofweek",
    "dayofyear",
    "hour",
    "weekofyear",
    "quarter",
    "elapsed_days",
)


def has_set_line(plan: str) -> bool:
    return _SET_LINE.search(plan or "") is not None


def parse_set_line(plan: str) -> Settings:
    """The settings of the plan's last `Set:` line, in order. Raises ValueError if absent/unparseable."""
    matches = list(_SET_LINE.finditer(plan or ""))
    if not matches:
        raise ValueError(
            "the plan has no machine-readable line: end it with 'Set: key=value, key=value' "
            "(e.g. 'Set: xgboost.learning_rate=0.05, xgboost.n_estimators=800')"
        )
    body = matches[-1].group("body").strip().rstrip(".;")
    if not body:
        raise ValueError("the plan's 'Set:' line is empty: give at least one key=value pair")
    settings: Settings = {}
    for part in _split_top_level(body):
        if "=" not in part:
            raise ValueError(f"cannot read {part.strip()!r} on the 'Set:' line: each item must be key=value")
        key, raw = part.split("=", 1)
        key = key.strip().strip("`'\"")
        if not re.fullmatch(r"[A-Za-z_][\w.\-]*", key):
            raise ValueError(f"bad key {key!r} on the 'Set:' line")
        settings[key] = parse_value(raw)
    return settings


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes (values may be lists or dicts)."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch in ",;" and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    if depth != 0 or quote:
        raise ValueError(f"unbalanced brackets or quotes on the 'Set:' line: {text!r}")
    return [p for p in parts if p.strip()]


def parse_value(raw: str) -> Any:
    """A Python literal when it is one; true/false/none in any case; `[a, b]` of bare words; else text."""
    text = raw.strip()
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_value(p) for p in _split_top_level(inner)] if inner else []
    if text.startswith("(") and text.endswith(")"):
        inner = text[1:-1].strip()
        return tuple(parse_value(p) for p in _split_top_level(inner)) if inner else ()
    return text.strip("'\"`")


def format_value(value: Any) -> str:
    return repr(value)


def format_set_line(settings: Settings) -> str:
    return "Set: " + ", ".join(f"{k}={format_value(v)}" for k, v in settings.items())


# ------------------------------------------------------------------ applying settings


def apply_settings(
    block: str,
    config: Any,
    settings: Settings,
    known_columns: set[str] | None = None,
    banned_columns: set[str] | None = None,
    new_spec: Callable[[str], dict[str, Any]] | None = None,
) -> Any:
    """A new config with the settings applied; ValueError names the offending key and what is allowed."""
    if block == "model":
        return _apply_model(config, settings, new_spec)
    if block not in ("preprocess", "features", "train"):
        raise ValueError(
            f"block {block!r} has no settings to change (refinable: preprocess, features, model, train)"
        )
    out = copy.deepcopy(config)
    for key, value in settings.items():
        if key not in out:
            raise ValueError(f"unknown {block} setting {key!r}; known: {', '.join(out)}")
        out[key] = _coerce(key, value, known_columns, banned_columns)
    return out


def _coerce(key: str, value: Any, known: set[str] | None, banned: set[str] | None) -> Any:
    if key in ENUMS:
        text = str(value if value is not None else "none").strip().lower()
        if text not in ENUMS[key]:
            raise ValueError(f"{key}={value!r} is not allowed; choose one of {', '.join(ENUMS[key])}")
        return text
    if key in BOOLS:
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"{key} takes true or false, not {value!r}")
    if key in INTS:
        lo, hi = INTS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ValueError(f"{key} takes a whole number between {lo} and {hi}, not {value!r}")
        if not lo <= int(value) <= hi:
            raise ValueError(f"{key}={value} is out of range [{lo}, {hi}]")
        return int(value)
    if key in FLOATS:
        lo_f, hi_f = FLOATS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo_f <= float(value) <= hi_f:
            raise ValueError(f"{key} takes a number between {lo_f} and {hi_f}, not {value!r}")
        return float(value)
    if key == "decision_threshold":
        if isinstance(value, str) and value.strip().lower() in ("auto", "none"):
            return value.strip().lower()
        if value is None:
            return "none"
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
            return float(value)
        raise ValueError(f"decision_threshold takes 'auto', 'none' or a probability in (0, 1), not {value!r}")
    if key == "max_fit_rows":
        if value is None or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 100
        ):
            return None if value is None else int(value)
        raise ValueError(f"max_fit_rows takes none or a row count >= 100, not {value!r}")
    if key == "datetime_parts":
        parts = [value] if isinstance(value, str) else list(value or [])
        bad = [p for p in parts if p not in DATETIME_PARTS]
        if bad:
            raise ValueError(f"unknown datetime part(s) {bad}; choose from {', '.join(DATETIME_PARTS)}")
        return parts
    if key in COLUMN_LISTS:
        if isinstance(value, str) and value.lower() == "auto":
            return "auto"
        cols = [value] if isinstance(value, str) else [str(v) for v in (value or [])]
        if known is not None:
            unknown = [c for c in cols if c not in known]
            if unknown:
                raise ValueError(f"{key}: unknown column(s) {unknown}")
        return [c for c in cols if not banned or c not in banned]
    return value


def _apply_model(
    models: list[dict[str, Any]], settings: Settings, new_spec: Callable[[str], dict[str, Any]] | None
) -> list[dict[str, Any]]:
    out = copy.deepcopy(models)
    names = [m["name"] for m in out]
    # Additions first, so that settings may tune a model added in the same plan.
    for key, value in settings.items():
        if key == "add_model":
            for family in [value] if isinstance(value, str) else list(value):
                if family not in MODEL_FAMILIES:
                    raise ValueError(
                        f"add_model={family!r}: unknown model; choose from {', '.join(MODEL_FAMILIES)}"
                    )
                if family not in names:
                    spec = new_spec(family) if new_spec else {"name": family, "weight": 1.0, "params": {}}
                    out.append(spec)
                    names.append(spec["name"])
    for key, value in settings.items():
        if key in ("add_model", "drop_model"):
            continue
        if "." not in key:
            raise ValueError(
                f"unknown model setting {key!r}: use <model>.<param>=value, <model>.weight=w, "
                f"add_model=<family> or drop_model=<model> (models in this script: {', '.join(names)})"
            )
        name, param = key.split(".", 1)
        if name not in names:
            raise ValueError(f"{key}: the script has no model {name!r} (models: {', '.join(names)})")
        spec = out[names.index(name)]
        if param == "weight":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} takes a non-negative number, not {value!r}")
            spec["weight"] = float(value)
        elif param == "params":
            if not isinstance(value, dict):
                raise ValueError(f"{key} takes a dict of hyperparameters, not {value!r}")
            spec["params"] = dict(value)
        else:
            if isinstance(value, list):
                value = tuple(value) if param == "hidden_layer_sizes" else value
            spec.setdefault("params", {})[param] = value
    for key, value in settings.items():
        if key == "drop_model":
            for name in [value] if isinstance(value, str) else list(value):
                if name not in names:
                    raise ValueError(
                        f"drop_model={name!r}: the script has no such model (models: {', '.join(names)})"
                    )
                out = [m for m in out if m["name"] != name]
                names = [m["name"] for m in out]
    if not out:
        raise ValueError("the plan would drop every model; keep at least one")
    return out
