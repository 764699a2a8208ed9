"""Cassettes: every answer of an LLM run, in order, so the run can be replayed without a key.

A call is identified by the pipeline step that made it, its role and its number for that
role within the step (`Request.step`, `.role`, `.index`). Steps run in one thread each, so
the identity does not depend on how two solution tracks interleave; replaying the same
answers makes the same scripts, which score the same, which makes the same next prompts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .clients import Completion, FatalError, Request

FORMAT = "mlestar-cassette"
VERSION = 1

# Knobs a replay must share with the recording to ask the same questions in the same steps.
ALGORITHM_KNOBS = ("num_models", "outer_steps", "inner_steps", "num_solutions", "ensemble_rounds",
                   "max_debug_rounds", "seed", "valid_fraction", "holdout_fraction", "use_data_usage_checker",
                   "use_leakage_checker", "constraints", "ablation_repeats", "start_code", "forked_from",
                   "n_folds", "n_fold_repeats")  # the folds decide the scores, which decide the next prompts


# Brain settings that change which questions are asked (not how they are sent).
LLM_KNOBS = ("format_retries",)


class CassetteError(ValueError):
    """A file that is not a usable cassette."""


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def make_cassette(run: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A cassette from a stored run and its brain_calls rows (only calls that got an answer), with each
    call's search grounding when it had one (an optional "grounding" per call: version 1 readers ignore it)."""
    config = json.loads(run["config_json"])
    task = json.loads(run["task_json"])
    return {
        "format": FORMAT, "version": VERSION,
        "recorded": {"run_id": run["id"], "name": run["name"], "brain": run["brain"],
                     "search": bool(config.get("llm", {}).get("search", True)) and run["brain"] == "gemini",
                     "task": task.get("name"), "metric": task.get("metric"),
                     "best_score": run.get("best_score")},
        "config": {k: config[k] for k in ALGORITHM_KNOBS if k in config},
        # How many times an unusable answer is re-asked decides which answers a replay asks for.
        "llm": {k: config.get("llm", {})[k] for k in LLM_KNOBS if k in config.get("llm", {})},
        "calls": [{"step": c.get("step_key") or "", "role": c["role"], "index": int(c.get("call_index") or 0),
                   "prompt_sha": prompt_hash(c.get("prompt") or ""), "answer": c["answer"],
                   "model": c.get("model") or "", "tokens_in": c.get("tokens_in") or 0,
                   "tokens_out": c.get("tokens_out") or 0,
                   "sources": json.loads(c["sources_json"]) if c.get("sources_json") else [],
                   **({"grounding": _grounding(c)} if _grounding(c) else {})}
                  for c in calls if _model_answer(c)],
    }


def _grounding(call: dict[str, Any]) -> dict[str, Any]:
    """A brain_calls row's search grounding as the cassette keeps it: {"queries", "supports", "entry_point"}
    (what the replayed run needs to attribute sources per model card and show Google's search suggestions)."""
    try:
        g = json.loads(call["grounding_json"]) if call.get("grounding_json") else {}
    except (TypeError, ValueError):
        return {}
    if not isinstance(g, dict):
        return {}
    kept = {"queries": list(g.get("queries") or []), "supports": list(g.get("supports") or []),
            "entry_point": str(g.get("entry_point") or "")}
    return kept if any(kept.values()) else {}


def _model_answer(call: dict[str, Any]) -> bool:
    """A call a model answered (used or not): what a replay must serve. A fallback is the brain's own
    substitute, not an answer: exported, it would overwrite the real answer with the same index."""
    if call.get("answer") is None or not call.get("step_key"):
        return False
    fallback = call.get("outcome") == "fallback" or call.get("model") == "fallback"
    return not fallback and int(call.get("call_index") or 0) >= 0


def replay_config(cassette: dict[str, Any], config: Any) -> Any:
    """`config` (a RunConfig) set up to replay `cassette`: the recording's algorithm knobs, brain "replay".
    Machine knobs (workers, timeouts, budget) stay as given."""
    import dataclasses

    knobs = {k: v for k, v in (cassette.get("config") or {}).items() if k in ALGORITHM_KNOBS}
    llm = {k: v for k, v in (cassette.get("llm") or {}).items() if k in LLM_KNOBS}
    if llm:
        knobs["llm"] = dataclasses.replace(config.llm, **llm)
    return dataclasses.replace(config, brain="replay", **knobs)


def load_cassette(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CassetteError(f"cassette {p} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CassetteError(f"{p} is not a cassette (not readable JSON: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("calls"), list):
        raise CassetteError(f"{p} is not an MLE-STAR Studio cassette (no \"format\": \"{FORMAT}\" and \"calls\")")
    if data.get("version", 0) > VERSION:
        raise CassetteError(f"{p} is cassette version {data['version']}; this app reads up to {VERSION}")
    for i, c in enumerate(data["calls"]):
        if not isinstance(c, dict) or not {"step", "role", "index", "answer"} <= c.keys():
            raise CassetteError(f"{p}: call #{i} lacks step, role, index or answer")
    return data


class ReplayClient:
    """Answers each request with the recorded answer for its step, role and number."""

    name = "replay"

    def __init__(self, cassette: dict[str, Any]) -> None:
        self.cassette = cassette
        self.supports_search = bool(cassette.get("recorded", {}).get("search"))
        self._answers: dict[tuple[str, str, int], dict[str, Any]] = {}
        for c in cassette["calls"]:  # a step redone after a resume was recorded twice: the last one counts
            self._answers[(c["step"], c["role"], int(c["index"]))] = c

    def complete(self, request: Request) -> Completion:
        c = self._answers.get((request.step, request.role, request.index))
        if c is None:
            raise FatalError(f"the cassette has no answer for step {request.step!r}, role {request.role}, "
                             f"call #{request.index + 1}: this run asked something the recorded run did not "
                             "(different task, settings or code)")
        model = f"replay of {c.get('model') or 'recording'}"
        if c.get("prompt_sha") and c["prompt_sha"] != prompt_hash(request.prompt):
            model += " (prompt differs from the recording)"
        grounding = c.get("grounding") if isinstance(c.get("grounding"), dict) else {}  # absent before grounding
        return Completion(text=c["answer"], tokens_in=int(c.get("tokens_in") or 0),
                          tokens_out=int(c.get("tokens_out") or 0), model=model,
                          sources=list(c.get("sources") or []),
                          search_queries=[str(q) for q in grounding.get("queries") or []],
                          supports=[s for s in grounding.get("supports") or [] if isinstance(s, dict)],
                          search_entry_point=str(grounding.get("entry_point") or ""))
