import pytest

from mlestar_core.script import (
    ScriptError,
    block_names,
    fence,
    get_block,
    parse_score,
    replace_block,
    unified_diff,
)

CODE = (
    "import os\n"
    + fence("load", "x = 1\n")
    + "# between blocks\n"
    + fence("model", "def make():\n    return 2\n")
    + "print('Final Validation Performance: 0.5')\n"
)


def test_blocks_are_found_in_order() -> None:
    assert block_names(CODE) == ["load", "model"]
    assert get_block(CODE, "model") == "def make():\n    return 2\n"


def test_replace_block_changes_only_that_block() -> None:
    new = replace_block(CODE, "model", "def make():\n    return 3")
    assert get_block(new, "model") == "def make():\n    return 3\n"
    assert get_block(new, "load") == "x = 1\n"
    # everything outside the replaced body is byte-identical
    assert new.replace("return 3", "return 2") == CODE
    diff = unified_diff(CODE, new)
    assert "-    return 2" in diff and "+    return 3" in diff


def test_missing_or_broken_blocks_raise() -> None:
    with pytest.raises(ScriptError, match="no block 'features'"):
        get_block(CODE, "features")
    with pytest.raises(ScriptError, match="end block: load"):
        block_names("# [block: load]\nx = 1\n")
    with pytest.raises(ScriptError, match="twice"):
        block_names(fence("a", "x") + fence("a", "y"))


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("Final Validation Performance: 0.8731\n", 0.8731),
        ("noise\nFinal Validation Performance: -1.5e-3\nmore", -0.0015),
        ("Final Validation Performance: 0.1\nFinal Validation Performance: 0.2\n", 0.2),
        ("final validation performance: 3\n", 3.0),
        ("Final Validation Performance: nan\n", None),
        ("Final Validation Performance: inf\n", None),
        ("Validation Performance: 0.9\n", None),
        ("Final Validation Performance: 0.9 (approx)\n", None),
        ("", None),
    ],
)
def test_parse_score(stdout: str, expected: float | None) -> None:
    assert parse_score(stdout) == expected


SPLIT = ("import os\n# [block: load]\nx = 1\n# [end block: load]\n# [block: preprocess]\na = 1\n\nb = 2\nc = 3\n"
         "# [end block: preprocess]\n# [block: model]\nm = a + b + c\n# [end block: model]\n")


def test_split_block_fences_a_span_without_changing_what_the_script_computes() -> None:
    import ast

    from mlestar_core.script import split_block

    new, name = split_block(SPLIT, "preprocess", "b = 2\nc = 3\n", "impute")
    assert name == "impute" and block_names(new) == ["load", "preprocess", "impute", "model"]
    assert get_block(new, "impute") == "b = 2\nc = 3\n" and get_block(new, "preprocess").strip() == "a = 1"
    assert ast.dump(ast.parse(new)) == ast.dump(ast.parse(SPLIT))  # only comment lines were added
    new, name = split_block(SPLIT, "preprocess", "a = 1", "impute")  # a span at the top: the rest keeps the name
    assert block_names(new) == ["load", "impute", "preprocess", "model"]
    assert split_block(SPLIT, "preprocess", "a = 1\n\nb = 2\nc = 3\n", "x") == (SPLIT, "preprocess")
    new, name = split_block(SPLIT, "preprocess", "b = 2", "load")  # a taken name gets a suffix
    assert name == "load_2"
    assert split_block(SPLIT, "preprocess", "b = 2  \n", "y")[1] == "y"  # trailing spaces forgiven
    for bad in ("a = 1\nc = 3", "m = a + b + c", "b ="):  # not contiguous / another block / part of a line
        with pytest.raises(ScriptError):
            split_block(SPLIT, "preprocess", bad, "x")
