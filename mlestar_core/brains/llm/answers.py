"""Turning a model's answer text into what a role must return.

Models wrap JSON in prose, forget fences, cut answers off, rename keys or return a whole
script where a block body was asked for. Each parser accepts the reasonable variants and
raises `AnswerError` with a message the model can act on when it is re-asked.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from ...model import AblationVariant, BlockChoice, CheckResult, ModelCard
from ...script import ScriptError, block_names, blocks, get_block, replace_block

_FENCE = re.compile(r"```[ \t]*(?P<lang>[A-Za-z0-9_+\-]*)[^\n]*\n(?P<body>.*?)(?:\n[ \t]*```|\Z)", re.S)
_FENCE_LINE = re.compile(r"^[ \t]*# \[(?:end )?block: [A-Za-z0-9_\-]+\][ \t]*$", re.M)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


class AnswerError(ValueError):
    """An answer that does not have the shape the role asked for; the message says what is wrong."""


def _fences(text: str) -> list[tuple[str, str, bool]]:
    """(language, body, closed) of every fenced block in order."""
    out = []
    for m in _FENCE.finditer(text):
        body = m.group("body")
        closed = m.end() < len(text) or text.rstrip().endswith("```")
        out.append((m.group("lang").lower(), body, closed))
    return out


def _looks_like_python(text: str) -> bool:
    try:
        compile(text, "<answer>", "exec", dont_inherit=True)  # bytecode: thread-safe, unlike ast
    except (SyntaxError, ValueError):
        return False
    return "\n" in text.strip() or "=" in text or "(" in text


def extract_code(text: str) -> str:
    """The Python code of an answer: its python fence (the longest if several), else a bare script."""
    fences = [(lang, body, closed) for lang, body, closed in _fences(text) if lang in ("python", "py", "")]
    fences = [f for f in fences if f[1].strip() and not _is_json(f[1])]
    if fences:
        lang, body, closed = max(fences, key=lambda f: (f[0] != "", len(f[1])))
        if not closed and not _looks_like_python(body):
            raise AnswerError("the ```python fence is not closed: the answer looks cut off; answer again, "
                              "complete, with the code in one closed ```python fence")
        return body.strip("\n") + "\n"
    stripped = text.strip()
    if stripped and "```" not in stripped and _looks_like_python(stripped):
        return stripped + "\n"
    raise AnswerError("no ```python fenced code block found; put the code in one ```python ... ``` block")


def _is_json(body: str) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(_TRAILING_COMMA.sub(r"\1", text))


def extract_json(text: str) -> Any:
    """The JSON value of an answer: a ```json fence, another fence holding JSON, the whole text,
    or the first balanced object/array in it."""
    fences = _fences(text)
    for lang, body, _closed in sorted(fences, key=lambda f: f[0] != "json"):
        if lang in ("json", "") or lang.startswith("json"):
            try:
                return _loads(body.strip())
            except ValueError:
                continue
    try:
        return _loads(text.strip())
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for candidate in dict.fromkeys((text, _TRAILING_COMMA.sub(r"\1", text))):
        for i, ch in enumerate(candidate):
            if ch in "[{":
                try:
                    value, _end = decoder.raw_decode(candidate, i)
                    return value
                except ValueError:
                    continue
    raise AnswerError("no valid JSON found; answer with the JSON in one ```json fenced block, exactly as the "
                      "schema shows")


def _pick(item: dict[str, Any], *keys: str, default: str = "") -> str:
    for k in keys:
        v = item.get(k)
        if v is not None and str(v).strip():
            return v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict | list) else str(v)
    return default


def _as_list(value: Any, *keys: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for k in keys:
            if isinstance(value.get(k), list):
                return value[k]
        return [value]
    raise AnswerError("expected a JSON list of objects")


def _one_object(data: Any, fields: str) -> dict[str, Any]:
    """The answer's JSON object (the first, if the model wrapped it in a list)."""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        raise AnswerError(f"expected one JSON object with {fields}")
    return data


def _yes(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = re.match(r"[a-z0-9]*", str(value).strip().lower())  # "Yes." / "yes, the scaler ..." count as yes
    return word is not None and word.group() in ("yes", "true", "y", "1")


# ------------------------------------------------------------------------------------------ roles

def parse_model_cards(text: str, m: int, default_source: str = "model knowledge") -> list[ModelCard]:
    items = _as_list(extract_json(text), "models", "candidates", "model_cards", "items")
    cards: list[ModelCard] = []
    for item in items:
        if isinstance(item, str) and item.strip():
            cards.append(ModelCard(name=item.strip(), why="", example_code="", source=default_source))
            continue
        if not isinstance(item, dict):
            continue
        name = _pick(item, "model_name", "name", "model", "title")
        if not name:
            continue
        cards.append(ModelCard(
            name=name.strip(), why=_pick(item, "why", "reason", "description", "rationale").strip(),
            example_code=_pick(item, "example_code", "code", "example").strip(),
            source=_pick(item, "source", "url", "reference", default=default_source).strip(),
            family=_pick(item, "family", "type").strip().lower()))
    if not cards:
        raise AnswerError(f"the JSON list holds no model with a \"model_name\"; list {m} models as the schema shows")
    return cards[:m]


def parse_check(text: str, code: str, kind: str) -> CheckResult:
    """A data-usage (`kind` "data_usage") or leakage ("leakage") check: findings plus maybe a new script."""
    data = extract_json(text)
    data = _one_object(data, "the check's fields")
    findings = data.get("findings") or []
    findings = [str(f) for f in findings] if isinstance(findings, list) else [str(findings)]
    if kind == "data_usage":
        unused = data.get("unused") or []
        if isinstance(unused, list) and unused:
            findings.append("unused: " + ", ".join(map(str, unused)))
        problem = not _yes(data.get("all_used", "yes"))
    else:
        problem = _yes(data.get("leakage", "no"))
    if not problem:
        return CheckResult(code=code, changed=False, findings=findings)
    fixed = _code_after_json(text)
    if fixed is None:
        raise AnswerError("the check found a problem but gave no corrected script; follow the JSON with one "
                          "```python block holding the complete corrected script")
    fixed = ensure_blocks(fixed)
    return CheckResult(code=fixed, changed=fixed.strip() != code.strip(), findings=findings)


def _code_after_json(text: str) -> str | None:
    try:
        return extract_code(text)
    except AnswerError:
        return None


def parse_block_body(text: str, block: str) -> str:
    """The new body of `block`; a whole script (or a fenced block) in the answer is cut down to it."""
    code = extract_code(text)
    try:
        names = block_names(code)
    except ScriptError:
        names = []
    if block in names:
        return get_block(code, block)
    if _FENCE_LINE.search(code):
        raise AnswerError(f"the answer has block fences but no `{block}` block; return only the new body of the "
                          f"`{block}` block, without fence lines")
    return code


def parse_ablation(text: str, code: str) -> list[AblationVariant]:
    """Variants as whole scripts (the answer gives block bodies; each is spliced into `code`)."""
    items = _as_list(extract_json(text), "variants", "ablations", "items")
    names = block_names(code)
    variants: list[AblationVariant] = []
    problems: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        named = _pick(item, "block", "block_name", "name")
        block = match_block(named, names) or _clean_block(named)
        body = _pick(item, "code", "body", "replacement")
        description = _pick(item, "description", "what", "change", default=f"simpler {block}")
        if block not in names:
            problems.append(f"unknown block {block!r}")
            continue
        if not body.strip():
            problems.append(f"variant of `{block}` has no code")
            continue
        try:
            body = parse_block_body(f"```python\n{body}\n```", block)
            variants.append(AblationVariant(block=block, description=description.strip(),
                                            code=replace_block(code, block, body)))
        except (AnswerError, ScriptError) as e:
            problems.append(f"variant of `{block}`: {e}")
    if not variants:
        detail = "; ".join(problems) or "no variants"
        raise AnswerError(f"no usable ablation variant ({detail}); blocks of the script: {', '.join(names)}")
    return variants


def _clean_block(name: str) -> str:
    return name.strip().strip("`'\"").removeprefix("# [block: ").removesuffix("]").strip()


def match_block(name: str, names: list[str], *, only_one: bool = False) -> str | None:
    """The script's block `name` refers to: exact, any case, a close spelling ("models" -> "model"),
    or (`only_one`) the only block a script has; None when it names none of them."""
    name = _clean_block(name)
    if name in names:
        return name
    lowered = {n.lower(): n for n in names}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)
    if close:
        return lowered[close[0]]
    return names[0] if only_one and len(names) == 1 else None


def parse_block_choice(text: str, code: str) -> BlockChoice:
    data = extract_json(text)
    data = _one_object(data, "\"block\", \"plan\" and \"reason\"")
    names = block_names(code)
    named = _pick(data, "block", "block_name", "code_block", "name")
    block = match_block(named, names, only_one=True) or _clean_block(named)
    if block not in names:
        raise AnswerError(f"\"block\" must name one block of the script, one of: {', '.join(names)} "
                          f"(got {block!r})")
    plan = _pick(data, "plan", "refinement_plan", "improvement").strip()
    if not plan:
        raise AnswerError("\"plan\" is empty; describe the refinement of the chosen block in words")
    return BlockChoice(block=block, plan=plan, reason=_pick(data, "reason", "why").strip())


def parse_text(text: str, what: str = "plan") -> str:
    """A plain-text answer (plans, summaries): fences and JSON wrappers removed."""
    stripped = text.strip()
    if stripped.startswith("{") or stripped.startswith("```"):
        try:
            data = extract_json(stripped)
        except AnswerError:
            data = None
        picked = _pick(data, what, "plan", "summary", "text") if isinstance(data, dict) else ""
        stripped = picked.strip() if picked else re.sub(r"```[A-Za-z]*\n?", "", stripped).strip()
    if not stripped:
        raise AnswerError(f"the answer is empty; write the {what} as plain text")
    return stripped


def parse_script(text: str) -> str:
    """A complete script; one whose block fences are missing or broken is given a single `main` block."""
    return ensure_blocks(extract_code(text))


def ensure_blocks(code: str) -> str:
    """`code` if its block fences are sound, else the script with one block `main` after its imports,
    so ablation and refinement still have something to work on."""
    try:
        if blocks(code):
            return code
    except ScriptError:
        pass
    lines = _FENCE_LINE.sub("", code).splitlines()
    head, depth, continued = 0, 0, False
    for i, line in enumerate(lines):
        s = line.strip()
        if depth > 0 or continued or not s or s.startswith(("#", "import ", "from ")):
            statement = s.split("#", 1)[0].rstrip()  # an import holds no strings: '#' starts a comment
            depth += statement.count("(") - statement.count(")")  # inside `from x import (\n a,\n b)`
            continued = statement.endswith("\\")
            head = i + 1
            continue
        break
    top, rest = lines[:head], lines[head:]
    return "\n".join([*top, "# [block: main]", *rest, "# [end block: main]"]) + "\n"
