"""Whole pipelines on LLM brains against local fake servers, with real script executions.

The real google-genai SDK talks to a fake `generateContent` server (tests/fakes), our
OpenAI-compatible client to a fake `/v1/chat/completions` server; a scripted expert answers
every role for the breast-cancer demo task, and fault plans inject what real services do:
429s, 500 storms, rejected keys, malformed answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fakes import Call, FakeGemini, FakeOpenAI, Fault, Reply, ScriptedExpert, model_page, page_of, scripted, searched

from mlestar_core.brains.llm.settings import LLMSettings
from mlestar_core.config import ConfigError, RunConfig
from mlestar_core.pipeline import Pipeline, create_run
from mlestar_core.store import Store
from mlestar_core.task import load_task

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "demo_tasks" / "breast-cancer"
SECRET = "AIzaSy-fake-0123456789-secret"
KNOBS = ["-M", "2", "-T", "1", "-K", "2", "-L", "2", "-R", "1", "--ablation-repeats", "1", "--workers", "2",
         "--script-timeout", "120", "--no-explain"]
SMALL = dict(num_models=2, outer_steps=1, inner_steps=1, num_solutions=1, ensemble_rounds=0, workers=2,
             script_timeout=120, ablation_repeats=1, n_folds=3,
             explain_at_end=False)  # what drives the model: tests/test_explain.py


def cli(*args: str, env: dict[str, str] | None = None, store: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")}
    return subprocess.run([sys.executable, "-m", "mlestar_core", "--store", str(store), *args], cwd=ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=600)


def env_printing(expert: ScriptedExpert, base: Any) -> Any:
    """The first initial script also prints its whole environment (the key must not be in it)."""

    def respond(call: Call) -> Reply | Fault:
        if call.role == "write_initial_solution" and call.role_n == 0:
            text = expert.answer(call.role, call.prompt)
            spy = "```python\nimport os\nprint('ENVIRONMENT', dict(os.environ))\n"
            return Reply(text.replace("```python\n", spy, 1))
        return base(call)

    return respond


@pytest.fixture(scope="module")
def gemini_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("gemini")
    expert = ScriptedExpert()
    plan = {("retrieve_models", 0): Fault(429, "Resource has been exhausted (e.g. check quota)."),
            ("extract_block", 0): "The model block matters most; I would add more trees."}  # not JSON
    with FakeGemini(env_printing(expert, scripted(expert, plan))) as server:
        proc = cli("run", "--task", str(TASK), "--out", str(root / "out"), "--brain", "gemini",
                   "--base-url", server.url, *KNOBS, env={"GEMINI_API_KEY": SECRET}, store=root / "store")
        calls = list(server.calls)
    store = Store(root / "store")
    (run,) = store.list_runs()
    return {"root": root, "proc": proc, "calls": calls, "store": store, "run": run, "url": server.url}


def test_gemini_run_finishes_with_a_submission(gemini_run: dict[str, Any]) -> None:
    proc, run = gemini_run["proc"], gemini_run["run"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert run["status"] == "finished" and run["brain"] == "gemini"
    sub = pd.read_csv(gemini_run["root"] / "out" / "submission.csv")
    assert list(sub.columns) == ["id", "malignant"] and sub["malignant"].between(0, 1).all()
    assert run["best_score"] is not None and run["best_score"] > 0.9
    report = (gemini_run["root"] / "out" / "report.md").read_text()
    assert "brain **gemini**" in report and "Brain calls:" in report and "estimated cost $" in report
    roles = Counter(c.role for c in gemini_run["calls"])
    # No merge here: with 2 candidates and 2 tracks each track starts from its own candidate and the
    # tracks merge only the candidates no track starts from (none); the one-track runs below merge.
    for role in ("retrieve_models", "write_initial_solution", "check_data_usage", "check_leakage",
                 "write_ablation", "summarize_ablation", "extract_block", "plan_refinement",
                 "implement_refinement", "plan_ensemble", "implement_ensemble"):
        assert roles[role] >= 1, f"no {role} call reached the server"
    assert all(c.path.endswith("/models/gemini-3.5-flash:generateContent") for c in gemini_run["calls"])
    # roles with a pure-JSON answer ask for structured output; free-text and code roles do not
    for call in gemini_run["calls"]:
        config = call.body.get("generationConfig") or {}
        if call.role in ("write_ablation", "extract_block"):
            assert config.get("responseMimeType") == "application/json" and "responseJsonSchema" in config
        else:
            assert "responseMimeType" not in config


def test_retrieval_is_grounded_and_cards_keep_their_sources(gemini_run: dict[str, Any]) -> None:
    retrievals = [c for c in gemini_run["calls"] if c.role == "retrieve_models"]
    assert retrievals and all(searched(c) for c in retrievals)
    assert not any(searched(c) for c in gemini_run["calls"] if c.role != "retrieve_models")
    cards = gemini_run["store"].table("model_cards", gemini_run["run"]["id"])
    assert len(cards) == 2
    pages = [{page_of(s["uri"]) for s in json.loads(card["sources_json"])} for card in cards]
    for card, own in zip(cards, pages, strict=True):  # each card keeps the sources that support it, not all
        assert model_page(card["name"]) in own
    assert model_page(cards[0]["name"]) not in pages[1] and model_page(cards[1]["name"]) not in pages[0]
    # Google's search suggestions are kept with the grounded call, to be shown where its answer is shown
    grounded = [r for r in gemini_run["store"].table("brain_calls", gemini_run["run"]["id"])
                if r["role"] == "retrieve_models" and r["answer"]]
    grounding = json.loads(grounded[0]["grounding_json"])
    assert "<style" in grounding["entry_point"] and grounding["queries"] and grounding["supports"]
    assert grounded[0]["tool_tokens"] > 0 and grounded[0]["search_queries"] == len(grounding["queries"])


def test_a_429_is_retried_and_recorded(gemini_run: dict[str, Any]) -> None:
    rows = [r for r in gemini_run["store"].table("brain_calls", gemini_run["run"]["id"])
            if r["role"] == "retrieve_models"]
    assert rows[0]["answer"] is None and "429" in rows[0]["error"]
    assert rows[1]["answer"] and rows[1]["error"] is None
    assert [c.role_n for c in gemini_run["calls"] if c.role == "retrieve_models"] == [0, 1]


def test_a_malformed_answer_is_re_asked(gemini_run: dict[str, Any]) -> None:
    rows = [r for r in gemini_run["store"].table("brain_calls", gemini_run["run"]["id"])
            if r["role"] == "extract_block"]
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["error"].startswith("answer not usable") and "JSON" in bad[0]["error"]
    reask = [c for c in gemini_run["calls"] if c.role == "extract_block" and "could not be used" in c.prompt]
    assert len(reask) == 1 and "The model block matters most" in reask[0].prompt
    chosen = [s for s in gemini_run["store"].steps(gemini_run["run"]["id"]) if s["key"].endswith("/extract")]
    assert chosen and all(json.loads(s["result_json"])["block"] == "model" for s in chosen)


def test_every_call_is_accounted_per_role(gemini_run: dict[str, Any]) -> None:
    store, run_id = gemini_run["store"], gemini_run["run"]["id"]
    usage = {u["role"]: u for u in store.brain_usage(run_id)}
    answered = [r for r in store.table("brain_calls", run_id) if r["answer"] is not None]
    assert len(answered) == sum(1 for _ in answered) and len(answered) >= 15
    for role, u in usage.items():
        assert u["tokens_in"] > 0 and u["tokens_out"] > 0 and u["cost"] > 0, role
    total_in = sum(r["tokens_in"] for r in answered)
    # gemini-3.5-flash rates, and Google Search at $14 per 1000 queries the model ran
    expected = sum((r["tokens_in"] * 1.5 + r["tokens_out"] * 9.0) / 1e6 + (r["search_queries"] or 0) * 14 / 1000
                   for r in answered)
    assert sum(r["search_queries"] or 0 for r in answered) > 0  # the grounded retrieval's fee is in there
    assert store.brain_spent(run_id) == pytest.approx(expected)
    assert total_in == sum(u["tokens_in"] for u in usage.values())
    assert all(r["model"] == "gemini-3.5-flash" and r["latency"] >= 0 for r in answered)
    assert all(r["step_key"] for r in answered)


def test_the_key_reaches_the_server_and_nothing_else(gemini_run: dict[str, Any]) -> None:
    calls, store, run_id = gemini_run["calls"], gemini_run["store"], gemini_run["run"]["id"]
    assert all(c.headers.get("x-goog-api-key") == SECRET for c in calls)
    printed = [e for e in store.table("executions", run_id) if "ENVIRONMENT" in (e["stdout"] or "")]
    assert printed, "the environment-printing script did not run"
    assert all(SECRET not in (e["stdout"] or "") + (e["stderr"] or "") for e in store.table("executions", run_id))
    leaks = [p for p in gemini_run["root"].rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []
    assert SECRET not in gemini_run["proc"].stdout + gemini_run["proc"].stderr


def test_replay_reproduces_the_recorded_run_step_for_step(gemini_run: dict[str, Any]) -> None:
    root, store, run_id = gemini_run["root"], gemini_run["store"], gemini_run["run"]["id"]
    cassette = root / "cassette.json"
    exported = cli("export-cassette", run_id, "-o", str(cassette), store=root / "store")
    assert exported.returncode == 0, exported.stderr
    data = json.loads(cassette.read_text())
    assert data["recorded"]["brain"] == "gemini" and data["config"]["num_models"] == 2
    assert SECRET not in cassette.read_text()
    # No key, no server, default knobs on the command line: the cassette brings its own.
    replay_store = root / "replay-store"
    proc = cli("run", "--task", str(TASK), "--out", str(root / "replay-out"), "--brain", "replay",
               "--cassette", str(cassette), "--workers", "2", store=replay_store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    replay = Store(replay_store)
    (rerun,) = replay.list_runs()
    assert rerun["status"] == "finished" and rerun["brain"] == "replay"

    def scripts(s: Store, rid: str) -> Counter[tuple[str, str, str]]:
        return Counter((r["role"], r["label"], r["code"]) for r in s.table("scripts", rid))

    def steps(s: Store, rid: str) -> dict[str, Any]:
        return {r["key"]: json.loads(r["result_json"]) for r in s.steps(rid) if r["status"] == "done"}

    assert scripts(replay, rerun["id"]) == scripts(store, run_id)
    recorded, replayed = steps(store, run_id), steps(replay, rerun["id"])
    assert replayed.keys() == recorded.keys()
    for key in recorded:
        if isinstance(recorded[key], dict) and "score" in recorded[key]:
            assert replayed[key]["score"] == pytest.approx(recorded[key]["score"]), key
    assert rerun["best_score"] == pytest.approx(gemini_run["run"]["best_score"])
    assert replay.brain_spent(rerun["id"]) == 0.0  # replayed answers cost nothing
    answered = [r for r in replay.table("brain_calls", rerun["id"]) if r["answer"] is not None]
    assert answered and all(r["model"].startswith("replay of gemini-3.5-flash") for r in answered)


def _pipeline_run(tmp_path: Path, brain: str, url: str, **llm: Any) -> tuple[Store, str]:
    store = Store(tmp_path / "store")
    config = RunConfig(**SMALL, brain=brain, llm=LLMSettings(base_url=url, backoff=0.05, max_retries=2, **llm))
    return store, create_run(store, load_task(TASK), config, out_dir=tmp_path / "out")


def test_a_500_storm_pauses_the_run_and_resume_finishes_it(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    expert = ScriptedExpert()
    base = scripted(expert)
    storm = {"on": True}

    def respond(call: Call) -> Reply | Fault:
        if call.role == "write_ablation" and storm["on"]:
            return Fault(500, "Internal error encountered.")
        return base(call)

    with FakeGemini(respond) as server:
        store, run_id = _pipeline_run(tmp_path, "gemini", server.url)
        summary = Pipeline(store, run_id).run()
        run = store.get_run(run_id)
        assert summary["status"] == "paused" and run["status"] == "paused" and run["control"] == "pause"
        assert "write_ablation" in run["pause_reason"] and "500" in run["pause_reason"]
        assert sum(c.role == "write_ablation" for c in server.calls) == 3  # 1 try + 2 retries
        steps = {s["key"]: s["status"] for s in store.steps(run_id)}
        assert steps["init"] == "done" and steps["t0/checks"] == "done"
        assert steps["t0/o0/ablation"] == "interrupted"
        initial_calls = sum(c.role == "write_initial_solution" for c in server.calls)
        scripts_before = len(store.table("scripts", run_id))

        storm["on"] = False
        store.update_run(run_id, control="run")  # what `resume` does
        summary = Pipeline(store, run_id).run()
        run = store.get_run(run_id)
        assert run["status"] == "finished" and run["pause_reason"] is None, summary
        # nothing already done was redone: no new initial solutions, the old scripts are all kept
        assert sum(c.role == "write_initial_solution" for c in server.calls) == initial_calls
        assert len(store.table("scripts", run_id)) > scripts_before
        assert (tmp_path / "out" / "submission.csv").is_file()


def test_a_rejected_key_pauses_at_once_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "wrong-key")
    with FakeGemini(lambda call: Fault(403, "API key not valid. Please pass a valid API key.")) as server:
        store, run_id = _pipeline_run(tmp_path, "gemini", server.url)
        summary = Pipeline(store, run_id).run()
        assert len(server.calls) == 1  # a refused key is not retried
    run = store.get_run(run_id)
    assert summary["status"] == "paused" and run["status"] == "paused"
    assert "403" in run["pause_reason"] and "API key not valid" in run["pause_reason"]
    assert "wrong-key" not in json.dumps(store.table("brain_calls", run_id))


def test_openai_compatible_server_runs_a_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    expert = ScriptedExpert()
    plan = {("write_initial_solution", 0): Fault(503, "model is loading"),
            ("implement_refinement", 0): "Here you go: model = RandomForest("}  # cut off, no code fence
    with FakeOpenAI(scripted(expert, plan)) as server:
        store, run_id = _pipeline_run(tmp_path, "openai", server.url + "/v1", model="qwen2.5-coder")
        summary = Pipeline(store, run_id).run()
        calls = list(server.calls)
    assert store.get_run(run_id)["status"] == "finished", summary
    assert all(c.path == "/v1/chat/completions" and c.body["model"] == "qwen2.5-coder" for c in calls)
    assert any(c.role == "merge" for c in calls)  # one track: it merges the other candidate
    assert all(c.headers.get("Authorization") == "Bearer sk-local-test" for c in calls)
    # no search tool: retrieval never reaches the server and says it used the knowledge base
    assert not any(c.role == "retrieve_models" for c in calls)
    cards = store.table("model_cards", run_id)
    assert cards and all("knowledge base" in c["source"] for c in cards)
    (note,) = [r for r in store.table("brain_calls", run_id) if r["role"] == "retrieve_models"]
    assert "no web-search tool" in note["prompt"]
    rows = store.table("brain_calls", run_id)
    assert any(r["error"] and "503" in r["error"] for r in rows)
    assert any(r["error"] and r["error"].startswith("answer not usable") for r in rows
               if r["role"] == "implement_refinement")
    assert (tmp_path / "out" / "submission.csv").is_file()


def test_missing_key_is_a_clear_error_and_creates_no_run(tmp_path: Path) -> None:
    proc = cli("run", "--task", str(TASK), "--out", str(tmp_path / "out"), "--brain", "gemini",
               store=tmp_path / "store")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no Gemini API key" in proc.stderr and "GEMINI_API_KEY" in proc.stderr
    assert Store(tmp_path / "store").list_runs() == []


def test_a_cost_cap_holds_mid_track_across_parallel_tracks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer uses its whole output allowance (the worst case a real service can bill): two tracks
    spend in parallel, and the cap is never passed, because each call reserves its worst case first."""
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    expert = ScriptedExpert()
    base = scripted(expert)
    max_out = 16384  # the default allowance: $0.147 of output per call at gemini-3.5-flash rates

    def verbose(call: Call) -> Reply | Fault:
        reply = base(call)
        if isinstance(reply, Reply):
            reply.tokens_out = max_out
        return reply

    with FakeGemini(verbose) as server:
        store = Store(tmp_path / "store")
        config = RunConfig(**{**SMALL, "outer_steps": 3, "num_solutions": 2}, brain="gemini", cost_cap=2.0,
                           llm=LLMSettings(base_url=server.url, max_output_tokens=max_out))
        run_id = create_run(store, load_task(TASK), config, out_dir=tmp_path / "out")
        summary = Pipeline(store, run_id).run()
        n_calls = len(server.calls)
    run = store.get_run(run_id)
    assert run["status"] == "finished" and summary["budget_exhausted"] is True
    spent = store.brain_spent(run_id)
    assert spent <= 2.0  # never passed, however the tracks interleaved
    assert spent > 2.0 - 3 * 0.2  # and the cap was used, not refused early
    events = store.events_after(run_id)
    capped = [e["payload"] for e in events if e["kind"] == "cost_cap_reached"]
    assert capped and any(s["key"].startswith("t1/") for s in store.steps(run_id))  # reached mid-track
    assert (tmp_path / "out" / "submission.csv").is_file()  # wrapped up with the best solution so far
    assert n_calls == len([r for r in store.table("brain_calls", run_id) if r["answer"] is not None])


def test_an_unpriced_model_cannot_run_under_a_cap(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    for model in ("gemini-flash-latest", "gemini-3.5-pro"):
        config = RunConfig(**SMALL, brain="gemini", cost_cap=1.0, llm=LLMSettings(model=model))
        with pytest.raises(ConfigError, match="no known price"):
            create_run(store, load_task(TASK), config)
    priced = RunConfig(**SMALL, brain="gemini", cost_cap=1.0,
                       llm=LLMSettings(model="gemini-flash-latest", prices={"gemini-flash-latest": [0.5, 3.0]}))
    assert create_run(store, load_task(TASK), priced)
    role = RunConfig(**SMALL, brain="gemini", cost_cap=1.0,
                     llm=LLMSettings(role_models={"plan_refinement": "gemini-3.5-pro"}))
    with pytest.raises(ConfigError, match="gemini-3.5-pro"):  # a per-role model must be priced too
        create_run(store, load_task(TASK), role)


def test_per_role_models_and_call_timeout(tmp_path: Path) -> None:
    import time as _time

    from mlestar_core.brains.base import BrainContext
    from mlestar_core.brains.llm.brain import LLMBrain
    from mlestar_core.brains.llm.clients import TransientError
    from mlestar_core.brains.llm.gemini import GeminiClient
    from mlestar_core.model import AblationResult

    def slow_for_summaries(call: Call) -> Reply | Fault:
        if call.role == "summarize_ablation":
            _time.sleep(2.0)
        return Reply("The model block matters most.")

    with FakeGemini(slow_for_summaries) as server:
        settings = LLMSettings(base_url=server.url, role_models={"plan_refinement": "gemini-3.1-pro-preview"},
                               timeout=0.5, max_retries=0)
        client = GeminiClient(settings, "k")
        brain = LLMBrain(client, settings, name="gemini", default_model="gemini-3.5-flash")
        ctx = BrainContext(task=load_task(TASK))
        code = "# [block: model]\nm = 1\n# [end block: model]\n"
        brain.plan_refinement(ctx, code, "model", [])
        assert server.calls[-1].path.endswith("/models/gemini-3.1-pro-preview:generateContent")
        brain.plan_ensemble(ctx, [], [])
        assert server.calls[-1].path.endswith("/models/gemini-3.5-flash:generateContent")
        started = _time.monotonic()
        from mlestar_core.brains.llm.clients import Request

        with pytest.raises(TransientError):
            client.complete(Request("summarize_ablation", "# Role: ablation-study summarizer\n", "gemini-3.5-flash"))
        assert _time.monotonic() - started < 1.9  # the per-call timeout cut the wait short
        results = [AblationResult("model", "x", 0.9, 0.95, 0.05)]
        from mlestar_core.brains.base import BrainUnavailable

        with pytest.raises(BrainUnavailable, match="summarize_ablation"):
            brain.summarize_ablation(ctx, results)


def test_vertex_without_project_or_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlestar_core.brains import BrainConfigError, make_brain
    from mlestar_core.brains.base import BrainContext, BrainUnavailable

    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(BrainConfigError, match="Vertex AI needs a Google Cloud project"):
        make_brain("gemini", LLMSettings(vertex=True))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    brain = make_brain("gemini", LLMSettings(vertex=True, project="my-project", max_retries=3, backoff=0.01))
    ctx = BrainContext(task=load_task(TASK))
    with pytest.raises(BrainUnavailable, match="credentials for Vertex AI.*credentials.json"):
        brain.plan_ensemble(ctx, [], [])  # a credentials problem is not retried


def test_a_model_that_never_answers_usably_still_ends_the_run_cleanly(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every answer is prose without JSON or code: each role is re-asked, then degrades honestly
    (knowledge-base cards, the offline expert's candidates, unchanged scripts, failed attempts and
    ensemble rounds), every fallback is recorded, and the run still finishes with a submission."""
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    with FakeGemini(lambda call: Reply("I am sorry, I cannot help with that.")) as server:
        store = Store(tmp_path / "store")
        config = RunConfig(**{**SMALL, "num_solutions": 2, "ensemble_rounds": 1}, brain="gemini",
                           llm=LLMSettings(base_url=server.url, format_retries=1))
        run_id = create_run(store, load_task(TASK), config, out_dir=tmp_path / "out")
        summary = Pipeline(store, run_id).run()
    assert store.get_run(run_id)["status"] == "finished", summary
    assert (tmp_path / "out" / "submission.csv").is_file()
    notes = {r["role"] for r in store.table("brain_calls", run_id) if r["model"] == "fallback"}
    assert {"retrieve_models", "write_initial_solution", "check_leakage", "write_ablation", "extract_block",
            "implement_refinement", "implement_ensemble"} <= notes
    assert all(c["source"].startswith("bundled knowledge base") for c in store.table("model_cards", run_id))
    (round_,) = store.table("ensemble_rounds", run_id)
    assert round_["script_id"] is None and round_["score"] is None
    attempts = store.table("attempts", run_id)
    assert attempts and all(a["status"] == "failed" for a in attempts)
    # Every degraded path is named as such: fallback records are failures, never successes ...
    fallbacks = [r for r in store.table("brain_calls", run_id) if r["model"] == "fallback"]
    assert all(r["outcome"] == "fallback" and r["error"].startswith("fallback:") and r["call_index"] == -1
               for r in fallbacks)
    events = store.events_after(run_id)
    assert {e["payload"]["role"] for e in events if e["kind"] == "fallback"} == notes
    assert all("written by the offline expert" in e["payload"]["label"]
               for e in events if e["kind"] == "candidate_scored")
    checks = [e["payload"] for e in events if e["kind"] == "check" and e["payload"]["check"] == "leakage"]
    assert checks and all(c["checked"] is False for c in checks)  # "not checked", never "found nothing"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "fell back to a substitute without a model answer" in report
    # ... and the run replays step for step from its cassette (fallbacks are not answers to replay).
    cassette = tmp_path / "cassette.json"
    assert cli("export-cassette", run_id, "-o", str(cassette), store=tmp_path / "store").returncode == 0
    assert all(c["index"] >= 0 for c in json.loads(cassette.read_text())["calls"])
    proc = cli("run", "--task", str(TASK), "--out", str(tmp_path / "replay-out"), "--brain", "replay",
               "--cassette", str(cassette), "--workers", "2", store=tmp_path / "replay-store")
    assert proc.returncode == 0, proc.stderr[-3000:]
    replay = Store(tmp_path / "replay-store")
    (rerun,) = replay.list_runs()

    for story in (lambda s, rid: Counter((r["role"], r["label"], r["code"]) for r in s.table("scripts", rid)),
                  lambda s, rid: {r["key"]: r["status"] for r in s.steps(rid)},
                  lambda s, rid: Counter((r["role"], r["outcome"]) for r in s.table("brain_calls", rid))):
        assert story(replay, rerun["id"]) == story(store, run_id)


def test_a_typed_key_is_asked_again_after_a_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key typed in the app lives in the RunManager's memory only: after a restart the run waits,
    paused with a reason that asks for the key, and goes on once it is given again."""
    from mlestar_core.service import RunManager

    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("mlestar_core.brains.llm.secrets.SECRETS_FILE", tmp_path / "no-secrets.toml")
    typed = "AIzaSy-typed-key-kept-in-memory"
    with FakeGemini(scripted(ScriptedExpert())) as server:
        store, run_id = _pipeline_run(tmp_path, "gemini", server.url)  # registered, as if the app died next
        manager = RunManager(store)  # the restarted app
        assert manager.resume_interrupted() == []
        run = store.get_run(run_id)
        assert run["status"] == "paused" and "no Gemini API key" in run["pause_reason"]
        assert manager.resume_interrupted() == []  # a run the brain paused waits for the user
        manager.resume(run_id, api_key=typed)
        manager.join(run_id, timeout=300)
        calls = list(server.calls)
    assert store.get_run(run_id)["status"] == "finished"
    assert calls and all(c.headers.get("x-goog-api-key") == typed for c in calls)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and typed.encode() in p.read_bytes()]


def test_a_crashed_llm_run_resumes_without_asking_any_answered_call_again(tmp_path: Path) -> None:
    """kill -9 right after a paid merge answer was used, and again inside a refinement attempt: the resumed
    run asks the service exactly what an uninterrupted run asks (33 calls against 23 before this was fixed)."""
    knobs = ["-M", "2", "-T", "1", "-K", "1", "-L", "1", "-R", "0", "--folds", "3", "--workers", "2"]
    env = {"GEMINI_API_KEY": SECRET}
    expert = ScriptedExpert()
    with FakeGemini(scripted(expert)) as server:
        ref = cli("run", "--task", str(TASK), "--out", str(tmp_path / "ref-out"), "--brain", "gemini",
                  "--base-url", server.url, *knobs, env=env, store=tmp_path / "ref")
        assert ref.returncode == 0, ref.stderr[-2000:]
        ref_calls = Counter(c.role for c in server.calls)
    expert = ScriptedExpert()
    with FakeGemini(scripted(expert)) as server:
        store_dir = tmp_path / "crashed"
        first = cli("run", "--task", str(TASK), "--out", str(tmp_path / "out"), "--brain", "gemini",
                    "--base-url", server.url, *knobs, env={**env, "MLESTAR_CRASH_AFTER": "t0/merge|script_executed"},
                    store=store_dir)
        assert first.returncode == -9, first.stderr[-2000:]
        (run,) = Store(store_dir).list_runs()
        second = cli("resume", run["id"], env={**env, "MLESTAR_CRASH_AFTER": "t0/o0/i0|script_executed"},
                     store=store_dir)
        assert second.returncode == -9, second.stderr[-2000:]
        last = cli("resume", run["id"], env=env, store=store_dir)
        assert last.returncode == 0, last.stderr[-2000:]
        calls = Counter(c.role for c in server.calls)
    assert calls == ref_calls
    store = Store(store_dir)
    assert store.get_run(run["id"])["status"] == "finished"
    rows = store.table("brain_calls", run["id"])
    assert len(rows) == len(Store(tmp_path / "ref").table("brain_calls", Store(tmp_path / "ref").list_runs()[0]["id"]))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "submission.csv"),
                                  pd.read_csv(tmp_path / "ref-out" / "submission.csv"))


def test_the_llm_path_follows_the_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scored script is reviewed for leakage once per distinct code; the ablation writer sees the
    earlier studies; the extractor may target some lines of a block, which become a block of their own;
    a script killed for time is sent to the debugger with "make it cheaper", not "smallest change"."""
    import ast

    from fakes.expert import _fenced_after, _json_answer

    from mlestar_core import views
    from mlestar_core.script import get_block

    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    expert = ScriptedExpert()
    base = scripted(expert)
    span: dict[str, str] = {}

    def respond(call: Call) -> Reply | Fault:
        if call.role == "write_initial_solution" and call.role_n == 0:  # the first candidate runs too long
            text = expert.answer(call.role, call.prompt)
            return Reply(text.replace("```python\n", "```python\nimport time\ntime.sleep(600)\n", 1))
        if call.role == "extract_block" and call.role_n == 0:
            code = _fenced_after(call.prompt, "## The current solution") or ""
            lines = [ln for ln in get_block(code, "model").splitlines() if ln.strip()]
            span["text"] = lines[0]
            return Reply(_json_answer({"block": "model", "code_span": lines[0], "span_name": "estimator",
                                       "plan": "Tune the estimator's regularisation.", "reason": "largest delta"}))
        return base(call)

    with FakeGemini(respond) as server:
        store = Store(tmp_path / "store")
        config = RunConfig(**{**SMALL, "outer_steps": 2, "script_timeout": 15}, brain="gemini",
                           llm=LLMSettings(base_url=server.url))
        run_id = create_run(store, load_task(TASK), config, out_dir=tmp_path / "out")
        summary = Pipeline(store, run_id).run()
        calls = list(server.calls)
    assert store.get_run(run_id)["status"] == "finished", summary

    # The timed-out candidate's debugger was told to make it cheaper.
    debug = [c for c in calls if c.role == "debug"]
    assert debug and "ran out of time" in debug[0].prompt and "smallest change" not in debug[0].prompt

    # Leakage review: every scored script that is not an ablation variant or the baseline, once per code.
    reviews = [c for c in calls if c.role == "check_leakage"]
    assert len({c.prompt for c in reviews}) == len(reviews)  # unchanged code is never asked twice
    reviewed = {e["payload"]["code"] for e in store.events_of_kind(run_id, "leak_review")}
    scored = [s for s in store.table("scripts", run_id) if s["role"] not in ("ablation", "baseline", "extract")]
    assert scored and all(s["code"] in reviewed for s in scored)
    assert {s["role"] for s in scored} >= {"initial", "debug", "refine"}

    # The second ablation study's writer saw the first one's summary.
    ablations = [c for c in calls if c.role == "write_ablation"]
    assert len(ablations) == 2 and "(none: this is the first study)" in ablations[0].prompt
    assert "Study 1:" in ablations[1].prompt

    # The span became a block of its own: same computation, refined and diffed like any block.
    (fenced,) = [s for s in store.table("scripts", run_id) if s["role"] == "extract"]
    parent = store.get_script(fenced["parent_id"])
    assert ast.dump(ast.parse(fenced["code"])) == ast.dump(ast.parse(parent["code"]))
    assert get_block(fenced["code"], "estimator").strip() == span["text"].strip()
    first = [a for a in store.table("attempts", run_id) if a["outer_step"] == 0]
    assert first and all(a["block"] == "estimator" and a["parent_script_id"] == fenced["id"] for a in first)
    diff = views.block_diff(fenced["code"], store.get_script(first[0]["script_id"])["code"]
                            if first[0]["script_id"] else None, "estimator")
    assert diff.before.strip() == span["text"].strip()
    chosen = [e["payload"] for e in store.events_of_kind(run_id, "block_chosen")]
    assert chosen[0]["block"] == "estimator" and chosen[0]["within"] == "model"
