"""Refinement (app_pages/attempts.py): the plan waiting for approval, every attempt and its block diff,
the script tree."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from .. import budget_clock
from ..metrics import improvement
from ..script import ScriptError, get_block
from .common import DECISION_KEY_RE, Row, describe_decision_key, first_line, fmt, fmt_score

ALL_ROLES = ["baseline", "initial", "debug", "merge", "data_usage", "leakage", "ablation", "refine", "ensemble"]
DEFAULT_ROLES = [r for r in ALL_ROLES if r != "ablation"]  # ablation variants are many and lead nowhere

# -- human in the loop -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingPlan:
    decision_id: int
    key: str
    track: int | None
    outer: int | None
    inner: int | None
    retry: int  # plans rejected before this one in the same attempt
    block: str
    plan: str
    block_code: str
    script_id: int | None  # the script the block will be rewritten in
    auto_text: str | None = None  # when it is approved automatically if nobody answers (auto_approve_after)

    @property
    def where(self) -> str:
        if self.track is None:
            return self.key
        return f"track {self.track + 1} · outer step {(self.outer or 0) + 1} · attempt {(self.inner or 0) + 1}"

    @property
    def headline(self) -> str:
        return (f"**A plan is waiting for your decision** — {self.where}, block **`{self.block}`**"
                + (f" (after {self.retry} rejected plan{'s' if self.retry > 1 else ''})" if self.retry else ""))


def no_plan_text(require_approval: bool) -> str:
    """What the Human in the loop section says while no plan waits."""
    if require_approval:
        return "No plan is waiting: when the planner proposes the next one, it shows up here within seconds."
    return ("This run does not ask for approval. Turn on *Require approval* when starting a run to approve, edit "
            "or reject each refinement plan before it is implemented.")


def pending_plan(decisions: Sequence[Row], ablations: Sequence[Row], scripts: Sequence[Row]) -> PendingPlan | None:
    """The oldest pending decision, with the script its block belongs to (the ablated script of that
    track and outer step: every ablation variant's parent)."""
    pending = [d for d in decisions if d["status"] == "pending"]
    if not pending:
        return None
    d = min(pending, key=lambda d: d["id"])
    m = DECISION_KEY_RE.match(d["key"] or "")
    track = int(m["t"]) if m else None
    outer = int(m["o"]) if m else None
    parents = {s["id"]: s.get("parent_id") for s in scripts}
    sid = next((parents.get(a["script_id"]) for a in ablations
                if a["track"] == track and a["outer_step"] == outer and a.get("script_id") in parents), None)
    return PendingPlan(d["id"], d["key"], track, outer, int(m["i"]) if m else None,
                       int(m["r"]) if m and m["r"] else 0, d.get("block") or "", d.get("plan") or "",
                       d.get("block_code") or "", sid, budget_clock.auto_approve_text(d))


DECISION_COLUMNS = ["decided", "where", "block", "decision", "who decided", "plan", "code edited"]


def decision_history(decisions: Sequence[Row]) -> pd.DataFrame:
    """Every decision taken, newest first; "who decided" tells a person's answer from an automatic approval
    (nobody answered before the deadline: `budget_clock.decision_status_text`)."""
    # The store keeps epoch seconds; a bare number would be read as milliseconds since 1970 by the table.
    rows = [{"decided": pd.Timestamp.fromtimestamp(d["decided"]) if d.get("decided") else None,
             "where": describe_decision_key(d["key"]), "block": d.get("block"),
             "decision": d["status"], "who decided": budget_clock.decision_status_text(d),
             "plan": first_line(d.get("edited_plan") or d.get("plan"), 120),
             "code edited": bool(d.get("edited_code"))}
            for d in sorted(decisions, key=lambda d: -d["id"]) if d["status"] != "pending"]
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def edit_payload(plan: str, original_plan: str, code: str | None, original_code: str) -> tuple[str, str | None]:
    """(edited_plan, edited_code) for Store.decide: the code only when it really changed, so an
    untouched editor does not replace the coder's work with the old block."""
    new_code = code if code is not None and code.rstrip() != original_code.rstrip() else None
    return (plan.strip() or original_plan), new_code


# -- refinement attempts ---------------------------------------------------------------------------

# An attempt's status (attempts.status) in words.
STATUS_TEXT = {"ok": "ok", "failed": "failed", "rejected": "plan rejected",
               "stopped early": "stopped early: it could not catch up",
               "edit failed": "edit failed: your edited code did not run",
               "edit repaired": "edit repaired: your edit failed, the debugger repaired it"}
FAILED_STATUSES = ("failed", "edit failed")


@dataclass(frozen=True)
class AttemptView:
    id: int
    track: int
    outer: int
    inner: int
    block: str
    plan: str
    score: float | None
    baseline: float | None
    gain: float | None  # direction-aware: positive = better than the block's starting script
    status: str  # ok, failed, rejected, stopped early, edit failed, edit repaired
    decision: str  # auto, approved, edited, rejected, auto-approved
    kept: bool
    script_id: int | None
    parent_script_id: int | None
    error: str | None = None  # why it failed (first line), what became of a failed edit
    edit_script_id: int | None = None  # the user's edited script as written (an edited block)

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)

    @property
    def label(self) -> str:
        """For the attempt picker: 'track 1 · 1.2 · model · 0.9712 ★ kept · approved'."""
        return (f"track {self.track + 1} · {self.outer + 1}.{self.inner + 1} · {self.block} · {fmt_score(self.score)}"
                + (" ★ kept" if self.kept else "") + f" · {self.decision}"
                + (f" · {self.status}" if self.status not in ("ok", self.decision) else ""))

    def summary(self, direction: str) -> str:
        """Its score against the block's starting script, for the attempt shown."""
        return (f"Score **{fmt_score(self.score)}** vs **{fmt_score(self.baseline)}** at the start of the block "
                f"({direction}) · status {self.status_text}" + (" · ★ kept" if self.kept else ""))


@dataclass(frozen=True)
class AttemptGroup:
    track: int
    outer: int
    block: str
    attempts: list[AttemptView]
    baseline: float | None  # score of the script the block started from

    @property
    def title(self) -> str:
        return f"Track {self.track + 1} · outer step {self.outer + 1} · block {self.block}"

    @property
    def kept(self) -> AttemptView | None:
        return next((a for a in self.attempts if a.kept), None)

    def head(self, active: bool) -> str:
        """The group's expander title: where it started and what it kept."""
        kept = self.kept
        none_kept = " · nothing kept yet" if active else " · no attempt beat the start"
        return f"{self.title} · started at {fmt_score(self.baseline)}" + (
            f" → kept attempt {kept.inner + 1}: {fmt_score(kept.score)}" if kept else none_kept)

    def rows(self) -> list[Row]:
        return [{"attempt": a.inner + 1, "plan": a.plan, "score": a.score, "vs start": a.gain,
                 "status": a.status_text, "error": first_line(a.error, 160) or None, "decision": a.decision,
                 "kept": a.kept, "script": a.script_id} for a in self.attempts]


def attempt_groups(rows: Sequence[Row], higher_is_better: bool) -> list[AttemptGroup]:
    """Every inner attempt (rejected plans included) grouped per (track, outer step, block)."""
    groups: dict[tuple[int, int, str], list[AttemptView]] = {}
    for r in sorted(rows, key=lambda r: (r["track"], r["outer_step"], r["inner_step"], r["id"])):
        a = AttemptView(r["id"], r["track"], r["outer_step"], r["inner_step"], r["block"], r.get("plan") or "",
                        r.get("score"), r.get("baseline"), improvement(r.get("score"), r.get("baseline"),
                                                                       higher_is_better),
                        r["status"], r["decision"], bool(r.get("kept")), r.get("script_id"),
                        r.get("parent_script_id"), r.get("error"), r.get("edit_script_id"))
        groups.setdefault((a.track, a.outer, a.block), []).append(a)
    return [AttemptGroup(t, o, b, atts, next((a.baseline for a in atts if a.baseline is not None), None))
            for (t, o, b), atts in sorted(groups.items())]


def inspectable(groups: Sequence[AttemptGroup]) -> dict[int, AttemptView]:
    """The attempts that produced a script, by id, in order (what "Inspect an attempt" offers)."""
    return {a.id: a for g in groups for a in g.attempts if a.script_id is not None}


def attempt_trace(rows: Sequence[Row], higher_is_better: bool) -> pd.DataFrame:
    """Scores through all attempts of the run in the order they were made (rejected plans left out).
    Columns: n, label, track, score, baseline, gain, kept, status."""
    out = []
    for r in sorted(rows, key=lambda r: r["id"]):
        if r["status"] == "rejected":
            continue
        out.append({"n": len(out) + 1,
                    "label": f"t{r['track'] + 1} {r['outer_step'] + 1}.{r['inner_step'] + 1} {r['block']}",
                    "track": f"track {r['track'] + 1}", "score": r.get("score"), "baseline": r.get("baseline"),
                    "gain": improvement(r.get("score"), r.get("baseline"), higher_is_better),
                    "kept": bool(r.get("kept")), "status": r["status"]})
    return pd.DataFrame(out, columns=["n", "label", "track", "score", "baseline", "gain", "kept", "status"])


@dataclass(frozen=True)
class BlockDiff:
    block: str
    before: str  # the block in the script the attempt started from
    after: str  # the block in the attempt's script ("" when it produced no script)
    unified: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _block_or_empty(code: str | None, block: str) -> str:
    if not code:
        return ""
    try:
        return get_block(code, block)
    except ScriptError:
        return ""


def block_diff(parent_code: str | None, code: str | None, block: str, names: tuple[str, str] = ("before", "after"),
               ) -> BlockDiff:
    before, after = _block_or_empty(parent_code, block), _block_or_empty(code, block)
    unified = "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                           f"{block} ({names[0]})", f"{block} ({names[1]})"))
    return BlockDiff(block, before, after, unified)


REPAIR_TITLE = "debugger repaired your edit: diff against what you wrote"
YOUR_EDIT_TITLE = "your edit, as you wrote it: diff against the script the attempt started from"
FAILED_REPAIR_TITLE = "the debugger's repair of your edit, which failed too: diff against what you wrote"


@dataclass(frozen=True)
class DiffPanel:
    """A block diff to show: what it compares (`title`, '' for an attempt's own change) and its two sides."""

    title: str
    diff: BlockDiff
    left: str
    right: str


@dataclass(frozen=True)
class AttemptDiffs:
    """What "Inspect an attempt" shows: the diff, a second one worth a look, and why the attempt failed."""

    main: DiffPanel
    more: DiffPanel | None  # a repair: your edit against its start; a failed edit the debugger tried: its repair
    error: str | None  # attempts.error, shown with the diff
    failed: bool  # the attempt produced no score (an error box, not a warning)


def attempt_diffs(a: AttemptView, parent_code: str | None, script_code: str | None,
                  edit_code: str | None = None) -> AttemptDiffs:
    """The diffs of an attempt. Its own change (the block in its script against the script it started from);
    for a human's edit that failed, what the human wrote against that start, with the error; for an edit the
    debugger repaired (`edit_script_id` set and not the attempt's script), the repair against what the human
    wrote, so a repair is never read as the human's code."""
    start = f"{a.block} in script #{a.parent_script_id}"
    failed = a.status in FAILED_STATUSES
    mine = f"your edit (script #{a.edit_script_id})"
    yours = DiffPanel(YOUR_EDIT_TITLE, block_diff(parent_code, edit_code, a.block, ("start", "your edit")), start,
                      mine) if a.edit_script_id is not None else None
    repaired = yours is not None and a.script_id is not None and a.script_id != a.edit_script_id
    repair = DiffPanel(FAILED_REPAIR_TITLE if failed else REPAIR_TITLE,
                       block_diff(edit_code, script_code, a.block, ("your edit", "debugger's repair")), mine,
                       f"debugger's repair (script #{a.script_id})") if repaired else None
    if yours is not None and a.status == "edit failed":
        return AttemptDiffs(yours, repair, a.error, True)
    if repair is not None:
        return AttemptDiffs(repair, yours, a.error, failed)
    own = DiffPanel("", block_diff(parent_code, script_code, a.block), start, f"{a.block} in script #{a.script_id}")
    return AttemptDiffs(own, None, a.error, failed)


def side_by_side_html(before: str, after: str, left: str = "before", right: str = "after") -> str:
    """A two-column HTML diff (difflib.HtmlDiff) with its styles: changed lines with 3 lines of context."""
    differ = difflib.HtmlDiff(tabsize=4, wrapcolumn=60)
    table = differ.make_table(before.splitlines(), after.splitlines(), left, right, context=True, numlines=3)
    style = ("<style>table.diff{font-family:ui-monospace,monospace;font-size:12px;border-collapse:collapse;"
             "width:100%} .diff td{padding:0 4px;vertical-align:top;white-space:pre} "
             ".diff_header{color:#888;text-align:right} td.diff_next{display:none} "
             ".diff_add{background:#d4f8d4} .diff_chg{background:#fff2a8} .diff_sub{background:#fcd4d4} "
             "th.diff_next{display:none} th{background:#f0f2f6;text-align:left;padding:2px 6px}</style>")
    return style + table


# -- the script tree -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeNode:
    id: int
    parent_id: int | None
    depth: int
    role: str
    label: str
    score: float | None
    ran: bool  # has a search execution
    children: int

    @property
    def text(self) -> str:
        """One line for an indented list / selectbox."""
        mark = fmt(self.score) if self.score is not None else ("failed" if self.ran else "not run")
        return f"{'    ' * self.depth}{'└ ' if self.depth else ''}#{self.id} {self.role}: {self.label} · {mark}"


def script_tree(scripts: Sequence[Row], executions: Sequence[Row], *, roles: Iterable[str] | None = None,
                ensemble_rounds: Sequence[Row] = ()) -> list[TreeNode]:
    """Scripts in depth-first order along parent_id edges (initial → merges → checks → attempts;
    ensembles, which combine several tracks, are roots). `roles` keeps only those roles, re-attaching
    a kept script to its nearest kept ancestor so the tree stays connected. An ensemble written after
    the engine scored its round on stored predictions carries that round's score."""
    score: dict[int, float | None] = {}
    for r in ensemble_rounds:
        if r.get("script_id") and r.get("strategy"):
            score[r["script_id"]] = r["score"]
    for e in executions:
        if e["purpose"] in ("search", "", None):
            score[e["script_id"]] = e["score"]
    keep = set(roles) if roles is not None else None
    by_id = {s["id"]: s for s in scripts}

    def parent_of(s: Row) -> int | None:
        p = s.get("parent_id")
        while p is not None and keep is not None and p in by_id and by_id[p]["role"] not in keep:
            p = by_id[p].get("parent_id")
        return p if p in by_id else None

    shown = [s for s in scripts if keep is None or s["role"] in keep]
    children: dict[int | None, list[Row]] = {}
    for s in shown:
        children.setdefault(parent_of(s), []).append(s)
    out: list[TreeNode] = []
    stack: list[tuple[Row, int]] = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:  # iterative: a deep chain of attempts must not hit the recursion limit
        s, depth = stack.pop()
        kids = children.get(s["id"], [])
        out.append(TreeNode(s["id"], s.get("parent_id"), depth, s["role"], s.get("label") or "",
                            score.get(s["id"]), s["id"] in score, len(kids)))
        stack.extend((k, depth + 1) for k in reversed(kids))
    return out


def default_node(nodes: Sequence[TreeNode], final: Row | None) -> int:
    """Index of the node selected first: the final solution when it is shown, else the newest script."""
    ids = [n.id for n in nodes]
    return ids.index(final["final_script_id"]) if final and final.get("final_script_id") in ids else len(ids) - 1


def lineage_text(chain: Sequence[Row], node_id: int, final: Row | None) -> str:
    """'Lineage: #1 initial → #4 merge → #9 refine · the final solution' (`chain`: `lineage` of node_id)."""
    return ("Lineage: " + " → ".join(f"#{s['id']} {s['role']}" for s in chain)
            + (" · **the final solution**" if final and final.get("final_script_id") == node_id else ""))


def lineage(scripts: Sequence[Row], script_id: int) -> list[Row]:
    """The script and its ancestors, root first."""
    by_id = {s["id"]: s for s in scripts}
    chain = []
    cur: int | None = script_id
    seen: set[int] = set()
    while cur is not None and cur in by_id and cur not in seen:
        seen.add(cur)
        chain.append(by_id[cur])
        cur = by_id[cur].get("parent_id")
    return list(reversed(chain))
