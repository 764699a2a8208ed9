"""Parsing model answers (mlestar_core/brains/llm/answers.py): the reasonable variants are accepted,
and an unusable answer raises AnswerError with a message the model can act on."""

from __future__ import annotations

import json

import pytest

from mlestar_core.brains.llm.answers import (
    AnswerError,
    ensure_blocks,
    extract_code,
    extract_json,
    parse_ablation,
    parse_block_body,
    parse_block_choice,
    parse_check,
    parse_model_cards,
    parse_script,
    parse_text,
)
from mlestar_core.script import block_names, blocks, get_block

SCRIPT = """import os

import pandas as pd

SEED = int(os.environ.get("MLESTAR_SEED", 42))

# [block: load]
train = pd.read_csv("./input/train.csv")
# [end block: load]

# [block: preprocess]
train = train.fillna(0)
# [end block: preprocess]

# [block: model]
from sklearn.linear_model import LogisticRegression

model = LogisticRegression(random_state=SEED)
# [end block: model]

# [block: train]
model.fit(train.drop(columns=["y"]), train["y"])
print("Final Validation Performance: 0.9")
# [end block: train]
"""
BLOCKS = ["load", "preprocess", "model", "train"]


def fenced(body: str, lang: str = "python") -> str:
    return f"```{lang}\n{body.rstrip()}\n```"


def test_script_fixture_is_sound() -> None:
    assert block_names(SCRIPT) == BLOCKS


# ------------------------------------------------------------------------------------ extract_code


def test_extract_code_from_a_python_fence_with_prose() -> None:
    text = "Here is the script:\n\n```python\nx = 1\nprint(x)\n```\n\nIt prints 1."
    assert extract_code(text) == "x = 1\nprint(x)\n"
    assert extract_code("```py\nx = 1\n```") == "x = 1\n"


def test_extract_code_from_an_unlabeled_fence() -> None:
    assert extract_code("Fixed:\n```\nimport os\nprint(os.sep)\n```") == "import os\nprint(os.sep)\n"


def test_extract_code_longest_fence_wins() -> None:
    short = "x = 1"
    long = "import os\n\nfor name in os.listdir('.'):\n    print(name)"
    assert extract_code(f"{fenced(short)}\nand the full script:\n{fenced(long)}") == long + "\n"
    assert extract_code(f"{fenced(long)}\nor shorter:\n{fenced(short)}") == long + "\n"


def test_extract_code_prefers_a_labeled_fence_to_a_longer_unlabeled_one() -> None:
    text = fenced("y = 2") + "\n" + fenced("pip install scikit-learn lightgbm xgboost catboost", lang="")
    assert extract_code(text) == "y = 2\n"


def test_extract_code_bare_code_without_fences() -> None:
    code = "import os\n\nprint(os.getcwd())"
    assert extract_code(code) == code + "\n"
    assert extract_code("\n\n  x = compute()  \n") == "x = compute()\n"


def test_extract_code_prose_or_a_single_word_is_not_code() -> None:
    for text in ("I could not write the script, sorry.", "model", "", "Here:\nimport os"):
        with pytest.raises(AnswerError, match="no ```python fenced code block"):
            extract_code(text)


def test_extract_code_cut_off_fence_of_non_code_raises() -> None:
    with pytest.raises(AnswerError, match="not closed"):
        extract_code("```python\nimport os\n\nfor name in os.listdir(")


def test_extract_code_unclosed_fence_of_valid_code_is_accepted() -> None:
    assert extract_code("```python\nx = 1\nprint(x)\n") == "x = 1\nprint(x)\n"


def test_extract_code_json_only_fence_is_not_code() -> None:
    for text in (fenced('{"leakage": "no"}', lang="json"), fenced('{"leakage": "no"}', lang=""),
                 fenced('[1, 2, 3]', lang="")):
        with pytest.raises(AnswerError):
            extract_code(text)


def test_extract_code_skips_the_json_before_the_code() -> None:
    text = fenced('{"all_used": "no"}', lang="json") + "\n\n" + fenced("x = 1\nprint(x)")
    assert extract_code(text) == "x = 1\nprint(x)\n"
    assert extract_code(fenced('{"all_used": "no", "unused": ["a", "b", "c", "d"]}', lang="") + "\n"
                        + fenced("x = 1", lang="")) == "x = 1\n"


# ------------------------------------------------------------------------------------ extract_json


def test_extract_json_from_a_json_fence() -> None:
    assert extract_json('Answer:\n```json\n{"block": "model"}\n```\nDone.') == {"block": "model"}
    assert extract_json('```JSON\n[1, 2]\n```') == [1, 2]


def test_extract_json_prefers_the_json_fence() -> None:
    text = '```\n{"from": "plain fence"}\n```\n```json\n{"from": "json fence"}\n```'
    assert extract_json(text) == {"from": "json fence"}


def test_extract_json_from_prose_around_a_bare_object() -> None:
    assert extract_json('Sure! Here it is: {"block": "features", "plan": "add ratios"} Hope it helps.') == \
        {"block": "features", "plan": "add ratios"}
    assert extract_json('The list [see below]: [{"a": 1}]') == [{"a": 1}]


def test_extract_json_tolerates_trailing_commas() -> None:
    assert extract_json('```json\n{"a": [1, 2,], "b": {"c": 3,},}\n```') == {"a": [1, 2], "b": {"c": 3}}
    assert extract_json('[{"a": 1},]') == [{"a": 1}]
    assert extract_json('Here: {"block": "model", "plan": "more trees",} ok') == \
        {"block": "model", "plan": "more trees"}


def test_extract_json_nested() -> None:
    value = {"models": [{"model_name": "x", "params": {"depth": [3, 4], "lr": 0.1}}], "note": "a {brace}"}
    assert extract_json("Result:\n" + json.dumps(value, indent=2) + "\nThat's all.") == value


def test_extract_json_without_json_raises() -> None:
    for text in ("no json here", "", "```python\nx = 1\n```", "{not: json}"):
        with pytest.raises(AnswerError, match="no valid JSON"):
            extract_json(text)


# ------------------------------------------------------------------------------- parse_model_cards


def test_parse_model_cards_schema_keys() -> None:
    text = fenced(json.dumps([{"model_name": " LightGBM ", "family": "LightGBM", "why": "fast",
                               "example_code": "lgb.train()", "source": "https://x"}]), lang="json")
    (card,) = parse_model_cards(text, 1)
    assert (card.name, card.family, card.why, card.example_code, card.source) == \
        ("LightGBM", "lightgbm", "fast", "lgb.train()", "https://x")


def test_parse_model_cards_renamed_keys_and_defaults() -> None:
    text = json.dumps([{"name": "Random forest", "code": "RandomForestClassifier()", "reason": "robust"},
                       {"model": "Ridge", "example": "Ridge()", "url": "https://r"}])
    cards = parse_model_cards(text, 2, default_source="Google Search")
    assert [c.name for c in cards] == ["Random forest", "Ridge"]
    assert cards[0].example_code == "RandomForestClassifier()" and cards[0].why == "robust"
    assert cards[0].source == "Google Search" and cards[1].source == "https://r"


def test_parse_model_cards_wrapper_object_and_strings() -> None:
    text = 'Models: {"models": [{"model_name": "A"}, "B", {"why": "no name"}, 3]}'
    assert [c.name for c in parse_model_cards(text, 5)] == ["A", "B"]


def test_parse_model_cards_caps_at_m() -> None:
    text = json.dumps([{"model_name": f"model {i}"} for i in range(6)])
    assert [c.name for c in parse_model_cards(text, 3)] == ["model 0", "model 1", "model 2"]


def test_parse_model_cards_empty_raises() -> None:
    for text in ("[]", '[{"why": "x"}]', '{"models": []}'):
        with pytest.raises(AnswerError, match="model_name"):
            parse_model_cards(text, 2)
    with pytest.raises(AnswerError):
        parse_model_cards("I recommend LightGBM.", 2)


# ------------------------------------------------------------------------------------- parse_check


def test_parse_check_no_problem_keeps_the_script() -> None:
    text = fenced('{"all_used": "yes", "unused": [], "findings": ["id is an identifier"]}', lang="json")
    result = parse_check(text, SCRIPT, "data_usage")
    assert result.code == SCRIPT and not result.changed and result.findings == ["id is an identifier"]
    leak = parse_check('{"leakage": "no", "code_block": "", "findings": "none"}', SCRIPT, "leakage")
    assert leak.code == SCRIPT and not leak.changed and leak.findings == ["none"]


def test_parse_check_no_problem_ignores_a_stray_script() -> None:
    text = fenced('{"leakage": "No.", "findings": []}', lang="json") + "\n" + fenced("x = 1\nprint(x)")
    assert parse_check(text, SCRIPT, "leakage").code == SCRIPT


def test_parse_check_problem_with_code_changes_the_script() -> None:
    fixed = SCRIPT.replace("fillna(0)", "fillna(train.median())")
    text = (fenced('{"all_used": "no", "unused": ["extra.csv"], "findings": ["extra.csv is unused"]}', "json")
            + "\n\n" + fenced(fixed))
    result = parse_check(text, SCRIPT, "data_usage")
    assert result.changed and result.code == fixed
    assert result.findings == ["extra.csv is unused", "unused: extra.csv"]


def test_parse_check_yes_with_punctuation_is_a_finding() -> None:
    fixed = SCRIPT.replace("fillna(0)", "fillna(1)")
    text = fenced('{"leakage": "Yes.", "code_block": "scaler.fit(X)", "findings": ["scaler fit on all"]}',
                  "json") + "\n" + fenced(fixed)
    assert parse_check(text, SCRIPT, "leakage").code == fixed
    assert not parse_check('{"all_used": "Yes, all of them."}', SCRIPT, "data_usage").changed


def test_parse_check_problem_without_code_raises() -> None:
    with pytest.raises(AnswerError, match="corrected script"):
        parse_check(fenced('{"leakage": "yes", "findings": ["scaler fit on all rows"]}', "json"), SCRIPT,
                    "leakage")


def test_parse_check_fixed_script_without_fences_gets_a_block() -> None:
    text = fenced('{"leakage": true}', "json") + "\n" + fenced("import os\n\nprint(os.sep)")
    result = parse_check(text, SCRIPT, "leakage")
    assert result.changed and block_names(result.code) == ["main"]


def test_parse_check_not_an_object_raises() -> None:
    with pytest.raises(AnswerError, match="one JSON object"):
        parse_check("[1, 2]", SCRIPT, "leakage")


# ------------------------------------------------------------------------------- parse_block_body


def test_parse_block_body_body_only() -> None:
    body = "from sklearn.ensemble import RandomForestClassifier\n\nmodel = RandomForestClassifier()"
    assert parse_block_body(fenced(body), "model") == body + "\n"


def test_parse_block_body_from_a_whole_script() -> None:
    new = SCRIPT.replace("LogisticRegression(random_state=SEED)", "LogisticRegression(C=0.5, random_state=SEED)")
    body = parse_block_body("The full script:\n" + fenced(new), "model")
    assert body == get_block(new, "model") and "C=0.5" in body and "# [block" not in body


def test_parse_block_body_from_the_block_with_its_fences() -> None:
    text = fenced("# [block: model]\nmodel = None\n# [end block: model]")
    assert parse_block_body(text, "model") == "model = None\n"


def test_parse_block_body_fences_of_other_blocks_only_raise() -> None:
    text = fenced("# [block: train]\nmodel.fit(X, y)\n# [end block: train]")
    with pytest.raises(AnswerError, match="no `model` block"):
        parse_block_body(text, "model")
    with pytest.raises(AnswerError):  # a broken fence of the block itself
        parse_block_body(fenced("# [block: model]\nmodel = None"), "model")


# ---------------------------------------------------------------------------------- parse_ablation


def test_parse_ablation_variant_is_the_full_script_with_one_block_changed() -> None:
    text = fenced(json.dumps([
        {"block": "model", "description": "a decision tree",
         "code": "from sklearn.tree import DecisionTreeClassifier\nmodel = DecisionTreeClassifier(max_depth=2)"},
        {"block": "`preprocess`", "description": "no imputation", "code": "train = train"},
    ]), "json")
    variants = parse_ablation(text, SCRIPT)
    assert [(v.block, v.description) for v in variants] == [("model", "a decision tree"),
                                                            ("preprocess", "no imputation")]
    for v in variants:
        assert block_names(v.code) == BLOCKS
        changed = [new.name for new, old in zip(blocks(v.code), blocks(SCRIPT), strict=True) if new.body != old.body]
        assert changed == [v.block]
        outside = [v.code[:blocks(v.code)[0].start], SCRIPT[:blocks(SCRIPT)[0].start]]
        assert outside[0] == outside[1]
    assert get_block(variants[1].code, "preprocess") == "train = train\n"


def test_parse_ablation_unknown_and_empty_variants_are_skipped() -> None:
    text = json.dumps({"variants": [
        {"block": "features", "description": "none", "code": "pass"},
        {"block": "model", "description": "empty", "code": ""},
        {"block": "train", "code": "model.fit(train, train['y'])\nprint('Final Validation Performance: 0.5')"},
    ]})
    (variant,) = parse_ablation(text, SCRIPT)
    assert variant.block == "train" and variant.description == "simpler train"


def test_parse_ablation_all_unknown_names_the_blocks() -> None:
    text = json.dumps([{"block": "features", "code": "pass"}, {"block": "ensemble", "code": "pass"}])
    with pytest.raises(AnswerError) as info:
        parse_ablation(text, SCRIPT)
    message = str(info.value)
    assert "'features'" in message and "'ensemble'" in message
    assert "load, preprocess, model, train" in message


def test_parse_ablation_a_whole_script_as_code_is_cut_to_the_block() -> None:
    new = SCRIPT.replace("fillna(0)", "dropna()")
    (variant,) = parse_ablation(json.dumps([{"block": "preprocess", "code": new}]), SCRIPT)
    assert variant.code == new


# ------------------------------------------------------------------------------ parse_block_choice


def test_parse_block_choice_plain() -> None:
    text = fenced('{"block": "model", "plan": "Use 300 trees.", "reason": "the ablation"}', "json")
    choice = parse_block_choice(text, SCRIPT)
    assert (choice.block, choice.plan, choice.reason) == ("model", "Use 300 trees.", "the ablation")


@pytest.mark.parametrize("name", ["MODEL", "`model`", "'Model'", "# [block: model]", " model "])
def test_parse_block_choice_names_are_cleaned(name: str) -> None:
    text = json.dumps([{"block_name": name, "refinement_plan": "Tune C."}])
    choice = parse_block_choice(text, SCRIPT)
    assert choice.block == "model" and choice.plan == "Tune C." and choice.reason == ""


def test_parse_block_choice_unknown_block_lists_the_names() -> None:
    with pytest.raises(AnswerError, match=r"one of: load, preprocess, model, train \(got 'features'\)"):
        parse_block_choice('{"block": "features", "plan": "Add ratios."}', SCRIPT)


def test_parse_block_choice_empty_plan_raises() -> None:
    for text in ('{"block": "model", "plan": ""}', '{"block": "model"}', '{"block": "model", "plan": "  "}'):
        with pytest.raises(AnswerError, match="plan"):
            parse_block_choice(text, SCRIPT)


def test_parse_block_choice_not_json_raises() -> None:
    with pytest.raises(AnswerError, match="JSON"):
        parse_block_choice("The model block matters most; add more trees.", SCRIPT)


# ---------------------------------------------------------------------------------------- parse_text


def test_parse_text_plain() -> None:
    assert parse_text("  Use 500 trees with a lower learning rate.\n") == "Use 500 trees with a lower learning rate."
    assert parse_text("Weights {0.3, 0.7} chosen by CV.") == "Weights {0.3, 0.7} chosen by CV."


def test_parse_text_json_wrapper() -> None:
    assert parse_text('{"plan": "Average the two models."}') == "Average the two models."
    assert parse_text(fenced('{"summary": "Features matter most."}', "json"), "summary") == \
        "Features matter most."
    assert parse_text('{"text": "Stack them."}', "plan") == "Stack them."


def test_parse_text_strips_fences() -> None:
    assert parse_text("```\nAverage the probabilities.\n```") == "Average the probabilities."
    assert parse_text("```text\nUse weights [0.3, 0.7] for the average.\n```") == \
        "Use weights [0.3, 0.7] for the average."


def test_parse_text_empty_raises() -> None:
    for text in ("", "   \n ", "```\n```"):
        with pytest.raises(AnswerError, match="empty"):
            parse_text(text, "summary")


# ------------------------------------------------------------------------------------- ensure_blocks


def test_ensure_blocks_keeps_a_sound_script() -> None:
    assert ensure_blocks(SCRIPT) == SCRIPT
    assert parse_script(fenced(SCRIPT)) == SCRIPT


def test_ensure_blocks_adds_a_main_block_after_the_imports() -> None:
    code = "# a script\nimport os\nfrom pathlib import Path\n\nSEED = 42\nprint(Path(os.getcwd()), SEED)\n"
    out = ensure_blocks(code)
    assert block_names(out) == ["main"]
    assert out.startswith("# a script\nimport os\nfrom pathlib import Path\n\n# [block: main]\nSEED = 42\n")
    assert get_block(out, "main") == "SEED = 42\nprint(Path(os.getcwd()), SEED)\n"
    compile(out, "main.py", "exec")


def test_ensure_blocks_keeps_multi_line_imports_whole() -> None:
    code = ("from sklearn.metrics import (  # scores\n    accuracy_score,\n    roc_auc_score,\n)\n"
            "from os.path import join, \\\n    exists\nprint(accuracy_score, roc_auc_score, join, exists)\n")
    out = ensure_blocks(code)
    assert get_block(out, "main") == "print(accuracy_score, roc_auc_score, join, exists)\n"
    compile(out, "main.py", "exec")


def test_ensure_blocks_script_without_imports() -> None:
    out = ensure_blocks("x = 1\nprint(x)")
    assert out == "# [block: main]\nx = 1\nprint(x)\n# [end block: main]\n"


@pytest.mark.parametrize("broken", [
    SCRIPT.replace("# [end block: model]\n", ""),  # unclosed
    SCRIPT.replace("# [block: train]", "# [block: model]").replace("# [end block: train]", "# [end block: model]"),
])
def test_ensure_blocks_repairs_broken_fences(broken: str) -> None:
    out = ensure_blocks(broken)
    assert block_names(out) == ["main"]
    assert out.count("# [block:") == 1 and out.count("# [end block:") == 1
    compile(out, "main.py", "exec")
    assert "LogisticRegression(random_state=SEED)" in get_block(out, "main")
    assert parse_script(fenced(broken)) == out


def test_a_whole_script_given_for_a_block_body_is_refused() -> None:
    """Spliced into the block, a whole script would run twice and its second score line would count."""
    original = "model = RandomForestRegressor(random_state=SEED)\n"
    whole = ("```python\nimport pandas as pd\ntrain = pd.read_csv('./input/train.csv')\n"
             "folds = pd.read_csv('./input/folds.csv')\nmodel = GradientBoostingRegressor()\n"
             "print(f'Final Validation Performance: {score}')\n```")
    with pytest.raises(AnswerError, match="whole script"):
        parse_block_body(whole, "model", original)
    # A body that legitimately touches one such thing is fine, and so is the old call without `original`.
    body = "```python\nmodel = GradientBoostingRegressor(random_state=SEED)\n```"
    assert parse_block_body(body, "model", original).startswith("model = Gradient")
    assert "read_csv" in parse_block_body(whole, "model")


def test_a_check_answer_without_its_verdict_is_unusable_not_a_pass() -> None:
    """An answer with unexpected keys used to default to "all data used" / "no leakage"."""
    code = "x = 1\n"
    with pytest.raises(AnswerError, match='no "leakage" field'):
        parse_check('```json\n{"verdict": "clean", "findings": []}\n```', code, "leakage")
    with pytest.raises(AnswerError, match='no "all_used" field'):
        parse_check('{"status": "fine"}', code, "data_usage")
    with pytest.raises(AnswerError, match="yes"):
        parse_check('{"leakage": "maybe"}', code, "leakage")
    assert parse_check('{"leakage": "No.", "findings": []}', code, "leakage").changed is False
    assert parse_check('{"has_leakage": false}', code, "leakage").checked is True


def test_the_extractor_may_target_a_span_inside_a_block() -> None:
    code = ("# [block: preprocess]\nimp = SimpleImputer()\nscaler = StandardScaler()\n# [end block: preprocess]\n"
            "# [block: model]\nm = 1\n# [end block: model]\n")
    choice = parse_block_choice('{"block": "preprocess", "code_span": "imp = SimpleImputer()", '
                                '"span_name": "imputation", "plan": "Use KNN imputation."}', code)
    assert choice.span == "imp = SimpleImputer()" and choice.span_name == "imputation"
    with pytest.raises(AnswerError, match="verbatim"):  # a span that is not in the block is re-asked
        parse_block_choice('{"block": "model", "code_span": "imp = SimpleImputer()", "plan": "x"}', code)
    assert parse_block_choice('{"block": "model", "code_span": "", "plan": "More trees."}', code).span == ""
