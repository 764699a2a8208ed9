"""Block-structured scripts: find the fenced blocks, replace one, diff two versions.

A block is fenced by comment lines ``# [block: NAME]`` and ``# [end block: NAME]``; the
text between the fences (exclusive) is the block body. Ablation swaps one body, refinement
rewrites one body, and nothing else in the script changes.
"""

from __future__ import annotations

import ast
import difflib
import re
import sys
from dataclasses import dataclass

_START = re.compile(r"^[ \t]*# \[block: (?P<name>[A-Za-z0-9_\-]+)\][ \t]*$", re.M)
_END = "# [end block: {name}]"

SCORE_LINE = re.compile(
    r"^Final Validation Performance:\s*(?P<score>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)\s*$",
    re.M | re.I,
)


class ScriptError(ValueError):
    """A script whose block structure is broken (missing or unbalanced fences)."""


@dataclass(frozen=True)
class Block:
    name: str
    body: str
    start: int  # offset of the body's first character
    end: int  # offset just past the body's last character


def blocks(code: str) -> list[Block]:
    """All top-level blocks in order. Raises ScriptError on an unclosed or duplicated fence."""
    found: list[Block] = []
    seen: set[str] = set()
    pos = 0
    while (m := _START.search(code, pos)) is not None:
        name = m.group("name")
        if name in seen:
            raise ScriptError(f"block {name!r} appears twice")
        seen.add(name)
        body_start = m.end() + 1 if m.end() < len(code) and code[m.end()] == "\n" else m.end()
        end_re = re.compile(r"^[ \t]*" + re.escape(_END.format(name=name)) + r"[ \t]*$", re.M)
        e = end_re.search(code, body_start)
        if e is None:
            raise ScriptError(f"block {name!r} has no '# [end block: {name}]' fence")
        found.append(Block(name, code[body_start : e.start()], body_start, e.start()))
        pos = e.end()
    return found


def block_names(code: str) -> list[str]:
    return [b.name for b in blocks(code)]


def get_block(code: str, name: str) -> str:
    for b in blocks(code):
        if b.name == name:
            return b.body
    raise ScriptError(f"script has no block {name!r} (blocks: {', '.join(block_names(code)) or 'none'})")


def replace_block(code: str, name: str, new_body: str) -> str:
    """Return code with block `name`'s body replaced; every other character is kept."""
    for b in blocks(code):
        if b.name == name:
            body = new_body if new_body.endswith("\n") or not new_body else new_body + "\n"
            return code[: b.start] + body + code[b.end :]
    raise ScriptError(f"script has no block {name!r} (blocks: {', '.join(block_names(code)) or 'none'})")


def split_block(code: str, name: str, span: str, new_name: str) -> tuple[str, str]:
    """Fence `span` (whole, contiguous lines inside block `name`) as a block of its own.

    The lines of `name` before the span stay block `name`; the lines after it become `<name>_after`.
    Only comment lines are added, so the script computes exactly what it did. Returns (new code, the
    span block's unique name). Raises ScriptError when the span is not whole lines inside that block."""
    target = next((b for b in blocks(code) if b.name == name), None)
    if target is None:
        raise ScriptError(f"script has no block {name!r}")
    lines = [ln for ln in span.splitlines() if ln.strip()]
    if not lines:
        raise ScriptError("the span is empty")
    body_lines = target.body.splitlines(keepends=True)
    stripped = [ln.rstrip("\r\n") for ln in body_lines]
    first = [i for i, ln in enumerate(stripped) if ln.rstrip() == lines[0].rstrip()]
    for start in first:  # the span's non-blank lines, in order, contiguous apart from blank lines
        i, k = start, 0
        while i < len(stripped) and k < len(lines):
            if not stripped[i].strip():
                i += 1
                continue
            if stripped[i].rstrip() != lines[k].rstrip():
                break
            i, k = i + 1, k + 1
        if k == len(lines):
            end = i
            break
    else:
        raise ScriptError(f"the span is not whole, contiguous lines of block {name!r} (copy them verbatim)")
    taken = set(block_names(code))
    base = re.sub(r"[^A-Za-z0-9_\-]+", "_", new_name.strip()).strip("_") or f"{name}_focus"
    unique = base if base not in taken else next(f"{base}_{n}" for n in range(2, 100) if f"{base}_{n}" not in taken)
    before, middle, after = "".join(body_lines[:start]), "".join(body_lines[start:end]), "".join(body_lines[end:])
    if not before.strip() and not after.strip():
        return code, name  # the span is the whole block
    # The enclosing block's name stays on its first remaining part (later steps and the UI know it).
    after_name = name if not before.strip() else (f"{name}_after" if f"{name}_after" not in taken
                                                   else f"{unique}_after")
    pieces = [fence(name, before)] if before.strip() else []
    pieces.append(fence(unique, middle))
    if after.strip():
        pieces.append(fence(after_name, after))
    start_fence = code.rfind("\n", 0, target.start - 1) + 1
    end_fence = code.find("\n", target.end)
    end_fence = len(code) if end_fence == -1 else end_fence + 1
    return code[:start_fence] + "".join(pieces) + code[end_fence:], unique


def fence(name: str, body: str) -> str:
    """Wrap a body in its fences (used by the brains that write scripts)."""
    body = body if body.endswith("\n") else body + "\n"
    return f"# [block: {name}]\n{body}{_END.format(name=name)}\n"


def parse_score(stdout: str) -> float | None:
    """The last `Final Validation Performance: <float>` in stdout, or None if absent/not finite."""
    matches = SCORE_LINE.findall(stdout or "")
    if not matches:
        return None
    try:
        value = float(matches[-1])
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def unified_diff(old: str, new: str, old_label: str = "before", new_label: str = "after") -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), old_label, new_label
        )
    )


def imported_modules(code: str) -> list[str]:
    """Top-level third-party modules a script imports, optional imports included (they may be taken); [] when the
    code does not parse."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if n not in sys.stdlib_module_names and n != "__future__")
