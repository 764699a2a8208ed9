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
from ...script import ScriptError, block_names, blocks, get_block, replace_block, split_block

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


def _verdict(data: dict[str, Any], keys: tuple[str, ...]) -> bool:
    """A checker's yes/no. A missing or unreadable verdict is an unusable answer (re-asked), never a
    silent "no problem": a check that was not made must not read as one that passed."""
    for key in keys:
        if key in data:
            value = data[key]
            if isinstance(value, bool):
                return value
            word = re.match(r"[a-z]*", str(value).strip().lower())
            if word is not None and word.group() in ("yes", "true", "y", "no", "false", "n"):
                return word.group() in ("yes", "true", "y")
            raise AnswerError(f"\"{key}\" must be \"yes\" or \"no\" (got {str(value)[:60]!r})")
    raise AnswerError(f"the answer has no \"{keys[0]}\" field (its keys: {', '.join(map(str, data)) or 'none'}); "
                      "answer with the JSON the format asks for")


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


def card_sources(text: str, cards: list[ModelCard], sources: list[dict[str, Any]],
                 supports: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """For each card, the web sources that support it: those of the grounding supports whose segment
    lies in the card's part of the answer.

    Search grounding ties segments of the answer (`supports`: "start"/"end" character offsets into
    `text`, "chunks" indexing `sources`) to the pages they rest on. A card's part is its JSON object
    in the answer, found by its name in card order, so prose, fences or a wrapper object around the
    list do not matter. A segment counts for a card when it overlaps that part with more than
    punctuation and spaces. A card no segment falls in gets [] (the answer's other sources say
    nothing about it). Each card's sources are deduplicated by URI, in the order of their first support."""
    spans = _card_spans(text, cards)
    segments = sorted(_segments(text, supports), key=lambda s: s[0])
    out: list[list[dict[str, Any]]] = []
    for span in spans:
        found: dict[str, dict[str, Any]] = {}
        for start, end, chunks in segments if span is not None else []:
            lo, hi = max(span[0], start), min(span[1], end)
            if lo >= hi or not any(ch.isalnum() for ch in text[lo:hi]):
                continue
            for i in chunks:
                source = sources[i] if 0 <= i < len(sources) and isinstance(sources[i], dict) else None
                key = str(source.get("uri") or source.get("title") or "") if source else ""
                if source and key and key not in found:
                    found[key] = dict(source)
        out.append(list(found.values()))
    return out


def _card_spans(text: str, cards: list[ModelCard]) -> list[tuple[int, int] | None]:
    """(start, end) of each card's JSON object in `text` (of its string, for a list of bare names);
    None for a card not found. Cards are searched in order, each after the previous one."""
    # Trailing commas become spaces so lenient JSON parses at the same offsets.
    relaxed = _TRAILING_COMMA.sub(lambda m: " " + m.group(1), text)
    decoder = json.JSONDecoder()
    objects: list[tuple[int, int, dict[str, Any]]] = []
    for i, ch in enumerate(relaxed):
        if ch == "{":
            try:
                value, end = decoder.raw_decode(relaxed, i)
            except ValueError:
                continue
            if isinstance(value, dict):
                objects.append((i, end, value))
    spans: list[tuple[int, int] | None] = []
    pos = 0
    for card in cards:
        span = next(((s, e) for s, e, obj in objects
                     if s >= pos and _pick(obj, "model_name", "name", "model", "title").strip() == card.name), None)
        if span is None:  # a list of bare names: the card is its string
            for literal in dict.fromkeys((json.dumps(card.name, ensure_ascii=False), json.dumps(card.name))):
                at = text.find(literal, pos)
                if at >= 0:
                    span = (at, at + len(literal))
                    break
        if span is not None:
            pos = span[1]
        spans.append(span)
    return spans


def _segments(text: str, supports: list[dict[str, Any]]) -> list[tuple[int, int, list[int]]]:
    """(start, end, source indices) of each usable support. Offsets that do not hold the support's own
    text are corrected to the occurrence of that text nearest to them; a support that cannot be placed
    is left out."""
    out = []
    for s in supports:
        if not isinstance(s, dict):
            continue
        chunks = [int(i) for i in s.get("chunks") or [] if isinstance(i, int | str) and str(i).isdigit()]
        start, end, said = s.get("start") or 0, s.get("end"), str(s.get("text") or "")
        placed = isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
        if said and not (placed and text[start:end] == said):
            hits = [m.start() for m in re.finditer(re.escape(said), text)]
            if hits:
                start = min(hits, key=lambda h: abs(h - (start if isinstance(start, int) else 0)))
                end, placed = start + len(said), True
        if placed and chunks:
            out.append((int(start), int(end), chunks))
    return out


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
        problem = not _verdict(data, ("all_used", "all_data_used", "uses_all_data"))
    else:
        problem = _verdict(data, ("leakage", "has_leakage", "data_leakage", "leak"))
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


def parse_block_body(text: str, block: str, original: str | None = None) -> str:
    """The new body of `block`; a whole script (or a fenced block) in the answer is cut down to it.

    A whole script without fences cannot be cut down: spliced into the block it would run the script
    twice (and its second score line would count), so it is an unusable answer, re-asked."""
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
    if original is not None:
        signs = _whole_script_signs(code, original)
        if signs:
            raise AnswerError(f"the answer looks like a whole script ({'; '.join(signs)}), not the body of the "
                              f"`{block}` block; return only the lines that replace the `{block}` block's body")
    return code


_SCRIPT_SIGNS: tuple[tuple[str, str], ...] = (
    (r"Final Validation Performance", "it prints the score line"),
    (r"folds\.csv", "it reads the folds"),
    (r"oof\.csv", "it writes the out-of-fold predictions"),
    (r"submission\.csv", "it writes the submission"),
    (r"input/train\.csv|['\"]train\.csv", "it loads the training data"),
)


def _whole_script_signs(body: str, original: str) -> list[str]:
    """What a block body has that only a whole script (and not the block it replaces) has. Two signs are
    needed: one alone can be a legitimate change of a block that, say, loads the data."""
    signs = [why for pattern, why in _SCRIPT_SIGNS
             if re.search(pattern, body) and not re.search(pattern, original)]
    return signs if len(signs) >= 2 else []


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
    span = _pick(data, "code_span", "span", "lines")
    span_name = _pick(data, "span_name", "span_block", default="").strip()
    if span.strip():
        try:
            split_block(code, block, span, span_name or f"{block}_focus")
        except ScriptError as e:
            raise AnswerError(f"\"code_span\" must be whole lines copied verbatim from inside the `{block}` "
                              f"block ({e}); or leave it empty to refine the whole block") from None
    return BlockChoice(block=block, plan=plan, reason=_pick(data, "reason", "why").strip(),
                       span=span if span.strip() else "", span_name=span_name)


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
