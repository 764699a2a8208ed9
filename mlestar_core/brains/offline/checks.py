"""Static checks of a script: does it use all the data, and is its validation score honest?

Both work on the script's syntax tree (never by running it). The data-usage check edits the
header's column lists; the leakage check rewrites the offending statements when it knows a
safe rewrite, and otherwise reports the finding for a human (or the debugger) to act on.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ...model import CheckResult
from ..base import BrainContext
from .constraints import forbidden_columns
from .templates import COLUMN_LISTS, read_header_value, set_header_value

# ------------------------------------------------------------------ data usage


def check_data_usage(ctx: BrainContext, code: str) -> CheckResult:
    task = ctx.task
    banned = forbidden_columns(ctx)
    findings: list[str] = []
    lists = {var: read_header_value(code, var) for var in COLUMN_LISTS.values()}
    if not all(isinstance(v, list) for v in lists.values()):
        return _usage_of_foreign_script(ctx, code)
    new = code
    used = {c for cols in lists.values() for c in cols}
    drop = read_header_value(code, "DROP_COLS")
    drop = list(drop) if isinstance(drop, list) else None
    expected = [
        c for c in task.columns if c.kind in COLUMN_LISTS and c.name not in (task.target, task.id_column)
    ]
    changed_lists: dict[str, list[str]] = {var: list(cols) for var, cols in lists.items()}
    for col in expected:
        var = COLUMN_LISTS[col.kind]
        if col.name in banned:
            continue
        if col.name not in used and drop is not None and col.name in drop:
            # Dropped on purpose (e.g. by the debugger because it broke the script): say so, keep it out.
            findings.append(
                f"column {col.name!r} ({col.kind}) is deliberately unused (DROP_COLS); "
                f"move it back to {var} to use it"
            )
        elif col.name not in used:
            changed_lists[var].append(col.name)
            findings.append(
                f"column {col.name!r} ({col.kind}, {col.missing_fraction:.0%} missing) was not used: "
                f"added to {var}"
            )
    for var, cols in changed_lists.items():
        for name in list(cols):
            reason = None
            if name in banned:
                reason = "a user constraint forbids it"
            elif name == task.target:
                reason = "it is the target (leakage)"
            elif name == task.id_column:
                reason = "it is the id column"
            if reason:
                cols.remove(name)
                if drop is not None and name in banned and name not in drop:
                    drop.append(name)
                findings.append(f"column {name!r} removed from {var}: {reason}")
    for var, cols in changed_lists.items():
        if cols != lists[var]:
            new = set_header_value(new, var, cols)
    if drop is not None and drop != read_header_value(code, "DROP_COLS"):
        new = set_header_value(new, "DROP_COLS", drop)
    for constant in ("TRAIN_FILE", "TEST_FILE", "SAMPLE_SUBMISSION_FILE"):
        attr = {
            "TRAIN_FILE": task.train_file,
            "TEST_FILE": task.test_file,
            "SAMPLE_SUBMISSION_FILE": task.sample_submission_file,
        }[constant]
        if attr and read_header_value(new, constant) != attr:
            new = set_header_value(new, constant, attr)
            findings.append(f"{constant} now points at the task's file {attr!r}")
    for extra in task.other_files:
        if extra not in new:
            findings.append(
                f"extra file {extra!r} is not read by the script; the offline brain cannot join "
                f"unknown side tables automatically (describe the join key to use it)"
            )
    return CheckResult(code=new, changed=new != code, findings=findings)


def _usage_of_foreign_script(ctx: BrainContext, code: str) -> CheckResult:
    """A script not written by this brain: report unused columns/files, change nothing."""
    task = ctx.task
    banned = forbidden_columns(ctx)
    strings = {
        n.value
        for n in ast.walk(_parse(code) or ast.Module(body=[], type_ignores=[]))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    findings = []
    mentions_all = any("drop(" in line and task.target in line for line in code.splitlines())
    if not mentions_all:
        for col in task.columns:
            if col.kind in COLUMN_LISTS and col.name not in strings and col.name not in banned:
                findings.append(
                    f"column {col.name!r} ({col.kind}) is never named in the script; check it is used"
                )
    for name in [task.train_file, task.test_file, task.sample_submission_file, *task.other_files]:
        if name and name not in code:
            findings.append(f"file {name!r} is not read by the script")
    for col in banned:
        if col in strings:
            findings.append(f"column {col!r} is named in the script but a user constraint forbids using it")
    return CheckResult(code=code, changed=False, findings=findings)


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


# ------------------------------------------------------------------ leakage

_HELDOUT_NAME = re.compile(r"(^|_)(val|valid|validation|test|holdout|hold_out|dev)(_|$|\d)", re.I)
_FIT_METHODS = {"fit", "fit_transform", "partial_fit", "fit_resample"}


@dataclass
class _Edit:
    start: int  # 0-based first line
    end: int  # 0-based last line (inclusive)
    lines: list[str]  # replacement lines (without newlines)


def _root_name(node: ast.AST) -> str | None:
    """`X_val` for X_val, X_val[cols], X_val.values, X_val.iloc[idx] ..."""
    while isinstance(node, (ast.Subscript, ast.Attribute, ast.Call)):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def _is_split_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "train_test_split") or (
        isinstance(f, ast.Attribute) and f.attr == "train_test_split"
    )


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def check_leakage(ctx: BrainContext, code: str) -> CheckResult:
    tree = _parse(code)
    if tree is None:
        return CheckResult(
            code, False, ["the script does not parse, so leakage cannot be checked (debug it first)"]
        )
    task = ctx.task
    lines = code.splitlines()
    findings: list[str] = []
    edits: list[_Edit] = []

    # 1. The shared split: held-out names, the frame it splits, and protocol drift.
    heldout: set[str] = set()
    splits: list[tuple[ast.stmt, ast.Call, list[str]]] = []
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.Assign) and _is_split_call(stmt.value):
            call = stmt.value
            targets = stmt.targets[0]
            names = (
                [e.id if isinstance(e, ast.Name) else "" for e in targets.elts]
                if isinstance(targets, (ast.Tuple, ast.List))
                else []
            )
            heldout.update(n for i, n in enumerate(names) if i % 2 == 1 and n)
            splits.append((stmt, call, names))
            findings += _protocol_drift(ctx, call, lines, edits, code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and _HELDOUT_NAME.search(node.id) and "idx" not in node.id.lower():
            heldout.add(node.id)

    # 2. Anything fitted on held-out rows (validation or test).
    fitted_elsewhere: set[str] = set()
    heldout_fits: list[tuple[ast.Call, ast.stmt]] = []
    for stmt in ast.walk(tree):
        if not isinstance(stmt, (ast.Expr, ast.Assign)):
            continue
        for call in [n for n in ast.walk(stmt) if isinstance(n, ast.Call)]:
            f = call.func
            if not (isinstance(f, ast.Attribute) and f.attr in _FIT_METHODS and call.args):
                continue
            owner = ast.unparse(f.value)
            if _root_name(call.args[0]) in heldout:
                heldout_fits.append((call, stmt))
            else:
                fitted_elsewhere.add(owner)
    for call, stmt in heldout_fits:
        f = call.func
        assert isinstance(f, ast.Attribute)
        owner = ast.unparse(f.value)
        text = ast.unparse(call)
        findings.append(
            f"line {call.lineno}: `{text[:80]}` fits on held-out rows "
            f"({_root_name(call.args[0])}): the validation score would be optimistic"
        )
        if f.attr == "fit_transform" and owner in fitted_elsewhere:
            line = lines[call.lineno - 1]
            if call.lineno == f.end_lineno:
                col = f.end_col_offset - len("fit_transform")
                fixed = line[:col] + "transform" + line[col + len("fit_transform") :]
                edits.append(_Edit(call.lineno - 1, call.lineno - 1, [fixed]))
                findings[-1] += " — fixed: it now only transforms with the object fitted on training rows"
        elif f.attr in ("fit", "partial_fit") and isinstance(stmt, ast.Expr) and owner in fitted_elsewhere:
            first = stmt.lineno - 1
            edits.append(
                _Edit(
                    first,
                    (stmt.end_lineno or stmt.lineno) - 1,
                    [f"{_indent(lines[first])}pass  # removed by the leakage check: refit on held-out rows"],
                )
            )
            findings[-1] += " — fixed: the refit on held-out rows was removed"

    # 3. Preprocessing fitted on all rows before the split (its statistics include the validation rows).
    for split_stmt, call, names in splits:
        if not call.args or not isinstance(call.args[0], ast.Name) or len(names) < 2:
            continue
        frame = call.args[0].id
        for stmt in tree.body:
            if stmt.lineno >= split_stmt.lineno:
                break
            leak = _fit_on_frame(stmt, frame)
            if leak is None:
                continue
            owner, whole = leak
            findings.append(
                f"line {stmt.lineno}: `{ast.unparse(stmt)[:80]}` fits {owner} on all rows before "
                f"the validation split: its statistics include the validation rows"
            )
            if whole and names[0] and names[1] and split_stmt in tree.body:
                pad = _indent(lines[split_stmt.lineno - 1])
                raw = f"{frame}_before_{owner.replace('.', '_')}"
                # Keep the full-data fit (the final refit uses it) but split the raw frame and fit a clone on
                # the training part only, so the validation rows never inform the preprocessing.
                edits.append(
                    _Edit(
                        stmt.lineno - 1,
                        stmt.lineno - 1,
                        [f"{_indent(lines[stmt.lineno - 1])}{raw} = {frame}", lines[stmt.lineno - 1]],
                    )
                )
                span = range(split_stmt.lineno - 1, split_stmt.end_lineno or split_stmt.lineno)
                # Start from any protocol fix already made on these lines, and replace it.
                split_text = [
                    next((e.lines[0] for e in edits if e.start == i == e.end), lines[i]) for i in span
                ]
                edits[:] = [e for e in edits if e.start not in span]
                split_text[0] = re.sub(
                    r"train_test_split\(\s*" + re.escape(frame) + r"\b",
                    f"train_test_split({raw}",
                    split_text[0],
                    count=1,
                )
                fit_part = f"{owner}_train_part"
                split_text += [
                    f"{pad}from sklearn.base import clone as _clone_for_split",
                    f"{pad}{fit_part.replace('.', '_')} = _clone_for_split({owner})",
                    f"{pad}{names[0]} = {fit_part.replace('.', '_')}.fit_transform({names[0]})"
                    f"  # fitted on the training part only",
                    f"{pad}{names[1]} = {fit_part.replace('.', '_')}.transform({names[1]})",
                ]
                edits.append(
                    _Edit(split_stmt.lineno - 1, (split_stmt.end_lineno or split_stmt.lineno) - 1, split_text)
                )
                findings[-1] += " — fixed: validation now uses a copy fitted on the training part only"

    # 4. The target among the features.
    new_code = _apply(lines, edits, code)
    new_code, target_findings = _target_as_feature(ctx, new_code)
    findings += target_findings
    for stmt in tree.body:
        if splits and stmt.lineno < splits[0][0].lineno and _target_stats(stmt, task.target):
            findings.append(
                f"line {stmt.lineno}: target statistics are computed on all rows before the split "
                f"(e.g. a groupby mean of {task.target!r}); compute them on the training part only"
            )
    return CheckResult(code=new_code, changed=new_code != code, findings=findings)


def _apply(lines: list[str], edits: list[_Edit], code: str) -> str:
    if not edits:
        return code
    out = list(lines)
    for e in sorted(edits, key=lambda e: -e.start):
        out[e.start : e.end + 1] = e.lines
    return "\n".join(out) + ("\n" if code.endswith("\n") else "")


def _fit_on_frame(stmt: ast.stmt, frame: str) -> tuple[str, bool] | None:
    """(owner, is `frame = owner.fit_transform(frame)`) when stmt fits something on `frame`."""
    for call in [n for n in ast.walk(stmt) if isinstance(n, ast.Call)]:
        f = call.func
        if (
            isinstance(f, ast.Attribute)
            and f.attr in ("fit", "fit_transform")
            and call.args
            and isinstance(call.args[0], ast.Name)
            and call.args[0].id == frame
        ):
            owner = ast.unparse(f.value)
            whole = (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id == frame
                and stmt.value is call
                and f.attr == "fit_transform"
                and isinstance(f.value, ast.Name)
            )
            return owner, whole
    return None


def _target_stats(stmt: ast.stmt, target: str) -> bool:
    text = ast.unparse(stmt)
    return "groupby" in text and repr(target) in text and any(k in text for k in ("mean", "transform", "agg"))


def _target_as_feature(ctx: BrainContext, code: str) -> tuple[str, list[str]]:
    task = ctx.task
    findings: list[str] = []
    for var in COLUMN_LISTS.values():
        cols = read_header_value(code, var)
        if isinstance(cols, list) and task.target in cols:
            code = set_header_value(code, var, [c for c in cols if c != task.target])
            findings.append(
                f"the target {task.target!r} was listed in {var} — fixed: removed from the features"
            )
    tree = _parse(code)
    if tree is None:
        return code, findings
    lines = code.splitlines()
    edits: list[_Edit] = []
    for stmt in ast.walk(tree):
        if not isinstance(stmt, ast.Assign):
            continue
        call = next(
            (
                n
                for n in ast.walk(stmt.value)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "drop"
            ),
            None,
        )
        if call is None:
            continue
        f = call.func
        assert isinstance(f, ast.Attribute)
        frame = _root_name(f.value) or ""
        if _HELDOUT_NAME.search(frame):
            continue  # a test frame has no target to drop
        cols = next((kw.value for kw in call.keywords if kw.arg == "columns"), None)
        if not isinstance(cols, ast.List) or not all(isinstance(e, ast.Constant) for e in cols.elts):
            continue
        names = [e.value for e in cols.elts]  # type: ignore[attr-defined]
        uses_target_name = any(isinstance(e, ast.Name) and e.id == "TARGET" for e in ast.walk(call))
        if task.target in names or uses_target_name or stmt.lineno != stmt.end_lineno:
            continue
        findings.append(
            f"line {stmt.lineno}: `{ast.unparse(stmt)[:80]}` keeps the target {task.target!r} among "
            f"the features — fixed: the target is dropped too"
        )
        line = lines[stmt.lineno - 1]
        seg = ast.get_source_segment(code, cols) or ""
        new_list = repr([*names, task.target])
        lines[stmt.lineno - 1] = line.replace(seg, new_list, 1) if seg else line
        edits.append(_Edit(stmt.lineno - 1, stmt.lineno - 1, [lines[stmt.lineno - 1]]))
    return (_apply(code.splitlines(), edits, code) if edits else code), findings


def _protocol_drift(
    ctx: BrainContext, call: ast.Call, lines: list[str], edits: list[_Edit], code: str
) -> list[str]:
    """The split must use the run's VALID_FRACTION and SEED so every script's score is comparable."""
    out: list[str] = []
    has_seed = "SEED" in {
        n.id
        for n in ast.walk(_parse(code) or ast.Module(body=[], type_ignores=[]))
        if isinstance(n, ast.Name)
    } or re.search(r"^SEED\s*=", code, re.M)
    wanted = {
        "test_size": (
            "VALID_FRACTION" if re.search(r"^VALID_FRACTION\s*=", code, re.M) else repr(ctx.valid_fraction),
            ctx.valid_fraction,
        ),
        "random_state": ("SEED" if has_seed else repr(ctx.seed), ctx.seed),
    }
    # Right to left, so an edit never shifts the columns of the next one on the same line.
    for kw in sorted(call.keywords, key=lambda k: -(k.value.col_offset or 0)):
        if kw.arg in wanted and isinstance(kw.value, ast.Constant) and kw.value.value != wanted[kw.arg][1]:
            if kw.value.lineno == kw.value.end_lineno:
                line_no = kw.value.lineno - 1
                line = next((e.lines[0] for e in edits if e.start == line_no), lines[line_no])
                new = line[: kw.value.col_offset] + wanted[kw.arg][0] + line[kw.value.end_col_offset :]
                edits[:] = [e for e in edits if e.start != line_no]
                edits.append(_Edit(line_no, line_no, [new]))
                out.append(
                    f"line {kw.value.lineno}: the split uses {kw.arg}={kw.value.value!r} instead of the "
                    f"shared "
                    f"protocol's {wanted[kw.arg][1]!r} — fixed, so scores stay comparable"
                )
    return out
